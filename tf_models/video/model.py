"""Loading a converted classifier (zoo name, ``.keras`` file or SavedModel folder) for videos.

The model's input shape gives the frames and size of a view; the dataset (hence the view
protocol and the class names) comes from, in order: the caller, the conversion report
``NAME.json`` next to the artifact, the zoo name in the model's name, the class count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .. import presets
from ..artifacts.names import report_path
from ..artifacts.resolve import artifact_report
from ..presets import DATASETS
from ..tracing import inference_function
from .labels import index_names

# kinds a spec that is no local path keeps (a handle, not a zoo name)
HANDLE_KINDS = ("kerashub", "transformers")
_CLASS_COUNT_DATASET = {facts.num_classes: key for key, facts in DATASETS.items()
                        if facts.labelled}
_LABELLED = tuple(key for key, facts in DATASETS.items() if facts.labelled)


class ModelError(ValueError):
    """A model argument that cannot be used for classifying videos; ``str()`` is one line."""


@dataclass
class VideoModel:
    """A loaded classifier: ``run(views)`` maps float32 (batch, T, S, S, 3) to logits."""

    name: str
    source: str
    kind: str               # "keras", "weights", "savedmodel", "kerashub", "transformers"
    #                         or "zoo"
    num_frames: int
    img_size: int
    num_classes: int
    dataset: str
    dataset_from: str       # where the dataset came from (for messages)
    run_batch: Callable
    # the class names the model itself carries (a transformers config's id2label), else None:
    # the dataset's
    labels: Optional[Tuple[str, ...]] = None
    # what loading it changed or assumed (a transformers config's corrected head count)
    notes: Tuple[str, ...] = ()
    # the local file or folder the weights were read from (a zoo name's or handle's download
    # included), None when there is none: what identifies the model beyond its name
    path: Optional[str] = None

    def run(self, views: np.ndarray) -> np.ndarray:
        """Logits (batch, classes) as float32 numpy for normalised views (batch, T, S, S, 3)."""
        return np.asarray(self.run_batch(np.ascontiguousarray(views, dtype=np.float32)))


def _dataset_from_report(path: str) -> Optional[str]:
    report = artifact_report(path)
    dataset = report.dataset if report is not None else None
    return dataset if dataset in DATASETS else None


def dataset_from_name(name: str) -> Optional[str]:
    """``"k400"`` for a name containing ``TFVideoMAE_S_K400_16x224_FT`` and so on (fine-tuned
    names only: a classifier's)."""
    return presets.dataset_from_name(name, mode="FT")


def _choose_dataset(source: str, name: str, num_classes: int, dataset: Optional[str],
                    path: Optional[str]) -> Tuple[str, str, Optional[str]]:
    """(dataset, where it came from, a note or None). The dataset gives the views' protocol
    and, where its class count is the model's, the class names; a model fine-tuned on classes
    of its own (a count no dataset has) takes the protocol of the dataset it is given and its
    classes are named by index. Another dataset's count is a mistake: ModelError."""
    if dataset is not None:
        if dataset not in _LABELLED:  # a classifier's dataset names its classes
            raise ModelError(f"--dataset {dataset}: expected one of {_one_of(_LABELLED)}")
        found = dataset, "--dataset"
    else:
        found = None
        if path is not None:
            from_report = _dataset_from_report(path)
            if from_report:
                found = from_report, os.path.basename(report_path(path))
        if found is None and dataset_from_name(name):
            found = dataset_from_name(name), f"the model name {name}"
        if found is None and num_classes in _CLASS_COUNT_DATASET:
            found = _CLASS_COUNT_DATASET[num_classes], f"its {num_classes} classes"
        if found is None:
            raise ModelError(f"{source}: has {num_classes} classes, no dataset's count, so the "
                             f"views to take are unknown; pass --dataset {_one_of(_LABELLED)} "
                             f"for its protocol (the classes are then named class 0 ... class "
                             f"{num_classes - 1})")
    expected = DATASETS[found[0]].num_classes
    note = None
    if expected != num_classes:
        if num_classes in _CLASS_COUNT_DATASET:  # another dataset's classes: a mistake
            raise ModelError(f"{source}: has {num_classes} classes, "
                             f"{_CLASS_COUNT_DATASET[num_classes]}'s count, but {found[0]} "
                             f"(from {found[1]}) has {expected}; pass the right --dataset")
        note = (f"{source}: its {num_classes} classes are not {found[0]}'s {expected} (from "
                f"{found[1]}): {found[0]}'s views, the classes named by index")
    return found[0], found[1], note


def _one_of(keys) -> str:
    """``"k400, ssv2 or ucf101"``."""
    keys = list(keys)
    return ", ".join(keys[:-1]) + " or " + keys[-1] if len(keys) > 1 else keys[0]


def _input_frames_size(source: str, shape) -> tuple:
    dims = list(shape)
    if len(dims) != 5 or dims[-1] != 3 or dims[1] is None or dims[2] is None \
            or dims[2] != dims[3]:
        raise ModelError(f"{source}: expected a video classifier taking [batch, frames, size, "
                         f"size, 3], found input shape {dims}")
    return int(dims[1]), int(dims[2])


def _savedmodel_runner(signature, path: str):
    import tensorflow as tf

    inputs, outputs = signature.inputs, signature.outputs
    if signature.takes_raw_frames:
        raise ModelError(signature.raw_frames_refusal(path))
    if set(inputs) != {"video"} or "logits" not in outputs:
        raise ModelError(f"{path}: expected a classifier signature video -> logits, found "
                         f"{sorted(inputs)} -> {sorted(outputs)} (a PT or encoder-only model?)")
    frames, size = _input_frames_size(path, inputs["video"].shape)

    def run(views):
        return signature.serve(video=tf.constant(views))["logits"].numpy()

    run.keep_alive = signature.keep_alive  # the signature needs its object graph alive
    return frames, size, int(outputs["logits"].shape[-1]), run


def _keras_runner(model, source: str):
    import tf_models  # noqa: F401  (registers the VideoMAE classes)

    if not hasattr(model, "num_classes"):
        raise ModelError(f"{source}: holds a {type(model).__name__}, not a video classifier; "
                         "classifying takes a fine-tuned (FT) model (a pre-trained or "
                         "encoder-only one gives features: videomae-extract)")
    shape = (None, getattr(model, "num_frames", None), getattr(model, "img_size", None),
             getattr(model, "img_size", None), 3)
    frames, size = _input_frames_size(source, shape)
    run = inference_function(lambda video: model(video, training=False), model.variables,
                             frames, size)
    return frames, size, int(model.num_classes), run


def model_name(resolved, model) -> str:
    """What a loaded Keras model is called in messages and records: a ``.keras`` file's model
    its own name (a user's ``model.keras`` keeps the one it was given); anything else, the
    name its report, file, folder or handle gives (a ``.weights.h5`` file's model was just
    built from a config, under Keras's default name)."""
    return model.name if resolved.kind == "keras" else resolved.name


def load_video_model(spec: str, dataset: Optional[str] = None) -> VideoModel:
    """Load ``spec`` (zoo name, ``.keras`` file, ``.weights.h5`` with its report, SavedModel
    folder, release folder or URL, keras-hub or transformers-format preset:
    ``tf_models.artifacts.resolve``) as a VideoModel.

    Raises ModelError (one line) for anything that is not a readable video classifier, or
    whose class count disagrees with ``dataset``.
    """
    from ..artifacts.resolve import PresetError, load_artifact

    try:
        resolved, model = load_artifact(spec)
    except (PresetError, OSError) as error:
        raise ModelError(" ".join(str(error).split())[:300]) from None
    if resolved.kind == "savedmodel":
        name = resolved.name
        frames, size, num_classes, run = _savedmodel_runner(model, spec)
    else:
        name = model_name(resolved, model)
        frames, size, num_classes, run = _keras_runner(model, spec)
    local = os.path.exists(spec)
    kind = resolved.kind if local or resolved.kind in HANDLE_KINDS else "zoo"
    if not local:
        name = spec
    chosen, chosen_from, note = _choose_dataset(spec, name, num_classes, dataset,
                                                resolved.path if local else None)
    labels = getattr(model, "class_labels", None) or (index_names(num_classes) if note else None)
    return VideoModel(name=name, source=spec, kind=kind, num_frames=frames, img_size=size,
                      num_classes=num_classes, dataset=chosen, dataset_from=chosen_from,
                      run_batch=run, labels=labels,
                      notes=tuple(getattr(model, "conversion_notes", ())) + (
                          (note,) if note else ()),
                      path=resolved.path if os.path.exists(resolved.path) else None)
