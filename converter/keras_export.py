"""Export a VideoMAE classifier held in a Keras file (one ``videomae-finetune`` trained, or any
other ``.keras`` / ``.weights.h5`` / keras-hub preset of a classifier) as a conversion exports
a zoo entry: a SavedModel, ``NAME.weights.h5``, ``NAME.keras``, optionally ``NAME.tflite`` and
a keras-hub preset folder ``NAME.preset/``, and the report ``NAME.json``.

Everything below the model is the conversion's own code: ``export.StagedArtifacts`` writes each
artifact into a hidden staging folder, reloads it into fresh objects, proves it
(``proofs.prove_artifact``: outputs for the SavedModel and ``.tflite``, every variable
bit-identical for ``.weights.h5``, ``.keras`` and the preset, plus one clip for the last two)
and only then moves it to its final name; the lock, the recovery of a killed run and the
full-disk line are the same. Existing artifacts are not replaced without ``force``.

There is no torch model. The reference of every reload check is the in-memory Keras model
loaded from the file: its own float32 outputs on seeded random clips (and on one clip of a real
video when given), held to the tolerance a conversion of the same size uses (``PARITY_ATOL``;
the largest one when the encoder matches no zoo size). The report says so: ``reference``
"keras", ``parity`` null, ``parity_inputs.float64_samples`` 0, no ``tf_err_vs_f64``.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tf_models.artifacts.checksums import tree_sha256
from tf_models.artifacts.names import artifact_paths, clashing_word
from tf_models.artifacts.resolve import model_name
from tf_models.presets import ALL_SIZES, IMAGENET_MEAN, IMAGENET_STD

from .api import PhaseBar, library_versions
from .errors import ConversionError, require_tensorflow_backend
from .export import StagedArtifacts, check_output_dir, recover_killed_run
from .litert import check_litert_memory, quantization_modes
from .parity import (VIDEO_CASE_PREFIX, check_video_file, keras_reference, make_cases,
                     reference_fingerprints, video_case)
from .proofs import keras_runner, variable_digests
from .record import ConversionRecord, ParityInputs, SourceRecord
from .zoo import PARITY_ATOL

# phases of an export, as the progress bar and ``on_phase`` see them (the optional artifacts'
# write and reload phases come in between, as in a conversion)
PHASES = ("load model", "keras reference", "write SavedModel", "write .weights.h5",
          "write .keras", "reload savedmodel", "reload weights", "reload keras",
          "move into place")
# what a name may be: it becomes file names in --out
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# the backbone config keys that are not constructor arguments of the shape
_NOT_ARGUMENTS = ("name", "trainable", "dtype")


@dataclass(frozen=True)
class ExportTarget:
    """What is exported, answering what the writers and reload checks ask of a zoo ``Entry``:
    its name, clip shape, kind (a classifier: ``mode`` FT), tolerance, the constructor
    arguments of its model (``model_config``) and the preprocessor's mean / std."""

    name: str
    config: Dict[str, object]
    num_frames: int
    img_size: int
    patch_size: int
    tubelet_size: int
    num_classes: int
    parity_atol: float
    size: Optional[str]                # the zoo size the encoder matches, or None
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    mode: str = "FT"
    encoder_only: bool = False
    raw_frames: bool = False  # an export keeps the float ``video`` input

    @property
    def num_patches(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.img_size // self.patch_size) ** 2

    def model_config(self) -> dict:
        """Keyword arguments of ``VideoMAEVideoClassifier`` that rebuild the model (the
        ``.weights.h5`` reload check builds it so, and so does ``from_preset`` from the
        report beside that file)."""
        return dict(self.config)

    def to_dict(self) -> dict:
        """The report's ``entry`` object (the keys a conversion's has where they apply)."""
        return {"name": self.name, "family": None, "size": self.size, "mode": self.mode,
                "recipe": "FT", "dataset": None, "num_classes": self.num_classes,
                "num_frames": self.num_frames, "img_size": self.img_size,
                "patch_size": self.patch_size, "tubelet_size": self.tubelet_size,
                "parity_atol": self.parity_atol, "test_only": False, "encoder_only": False,
                "mean": list(self.mean), "std": list(self.std),
                "model_config": self.model_config()}


@dataclass
class ExportResult:
    """What ``export_model`` wrote: final paths, the report, timings."""

    target: ExportTarget
    paths: Dict[str, str]
    report: ConversionRecord
    seconds: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The CLI's ``--json`` line."""
        report = self.report
        return {"name": self.target.name, "paths": self.paths, "reference": report.reference,
                "tolerance": self.target.parity_atol, "cases": report.parity_inputs.cases,
                "reload_checks": {k: asdict(v) for k, v in report.reload_checks.items()},
                "source": asdict(report.source), "seconds": self.seconds}


def load_classifier(model_spec: str, progress: bool = True):
    """``(model, path, layout)``: the VideoMAE classifier ``model_spec`` names (a ``.keras``
    or ``.weights.h5`` file with its report, a keras-hub or transformers-format preset folder
    or handle, a zoo name, a release folder or URL), loaded by the one resolver in Keras's
    safe mode, and the names its weights were stored under (``keras``, or ``transformers``).
    ConversionError (one line naming the file) when it is no readable Keras model or not a
    VideoMAE classifier."""
    import tf_models
    from tf_models.artifacts.resolve import PresetError, load_keras_model, resolve_artifact

    try:
        resolved = resolve_artifact(model_spec, progress=progress)
        # a keras-hub preset too loads as the class it declares: a classifier's from_preset
        # would build a backbone-only or pre-trained one into a classifier with a new head
        model = load_keras_model(resolved)
    except PresetError as error:
        raise ConversionError(str(error)) from None
    if not isinstance(model, tf_models.VideoMAEVideoClassifier):
        raise ConversionError(
            f"{resolved.path}: holds a {type(model).__name__}, expected a VideoMAE classifier "
            f"(VideoMAEVideoClassifier: a fine-tuned or converted FT model); a pre-trained or "
            f"encoder-only model is exported by videomae-convert from its checkpoint")
    return model, resolved.path, "transformers" if resolved.kind == "transformers" else "keras"


def source_record(model, source: str, layout: str) -> SourceRecord:
    """Where an export's weights came from: a local file or folder, by its sha256; a hub
    handle, as given, by the sha256 of the variables it loaded to (names, shapes, dtypes and
    the sha256 of their bytes), which identifies the weights whatever the hub's cache holds."""
    if os.path.exists(source):
        return SourceRecord(sha256=tree_sha256(source), path=os.path.abspath(source),
                            layout=layout)
    digest = hashlib.sha256()
    for name, (shape, dtype, bytes_sha) in sorted(variable_digests(model).items()):
        digest.update(f"{name}\0{shape}\0{dtype}\0{bytes_sha}\n".encode())
    return SourceRecord(sha256=digest.hexdigest(), path=source, layout=layout)


def _size_of(backbone) -> Optional[str]:
    """The zoo size whose encoder ``backbone`` has (None: no zoo size)."""
    for letter, size in ALL_SIZES.items():
        if (size.embed_dim, size.depth, size.num_heads, size.patch_size) == (
                backbone.embed_dim, backbone.depth, backbone.num_heads, backbone.patch_size):
            return letter
    return None


def target_for(model, name: str) -> ExportTarget:
    """The export target of a loaded classifier: its constructor arguments from its own config
    (the backbone's flattened in, as the converter builds classifiers), its clip shape, the
    tolerance of its zoo size, its preprocessor's mean / std (ImageNet's, upstream's for every
    dataset, when it has none)."""
    backbone = model.backbone
    config = {k: v for k, v in backbone.get_config().items() if k not in _NOT_ARGUMENTS}
    config.update(num_classes=model.num_classes, dropout=model.dropout)
    size = _size_of(backbone)
    converter = getattr(getattr(model, "preprocessor", None), "video_converter", None)
    mean = tuple(getattr(converter, "mean", IMAGENET_MEAN))
    std = tuple(getattr(converter, "std", IMAGENET_STD))
    return ExportTarget(name=name, config=config, num_frames=backbone.num_frames,
                        img_size=backbone.img_size, patch_size=backbone.patch_size,
                        tubelet_size=backbone.tubelet_size, num_classes=model.num_classes,
                        parity_atol=PARITY_ATOL[size] if size else max(PARITY_ATOL.values()),
                        size=size, mean=mean, std=std)


def _check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ConversionError(f"--name {name!r}: names the artifact files, so letters, digits, "
                              f"'.', '_' and '-' only, starting with a letter or digit")
    word = clashing_word(name)
    if word is not None:
        raise ConversionError(f"--name {name!r}: ends in '.{word}', a word of the artifact "
                              f"file names, so its files could be another name's (the "
                              f"'{name.rsplit('.', 1)[0]}' artifacts'); choose a name without it")


def _check_not_source(out_dir: str, name: str, model_spec: str) -> None:
    """Refuse to write over the file being exported (``model.keras`` exported as ``model``
    into its own folder)."""
    for path in artifact_paths(out_dir, name, litert=True).values():
        if os.path.exists(path) and os.path.exists(model_spec) \
                and os.path.samefile(path, model_spec):
            raise ConversionError(f"{path}: is the model being exported; pass another --name "
                                  f"or --out")


def export_model(model_spec: str, out_dir: str, name: Optional[str] = None,
                 litert: bool = False, preset: bool = False, force: bool = False,
                 video: Optional[str] = None, batch: int = 2, seed: int = 0,
                 progress: bool = True,
                 on_phase: Optional[Callable[[str], None]] = None,
                 litert_quantize: Sequence[str] = ()) -> ExportResult:
    """Write the checked artifacts of the classifier ``model_spec`` to ``out_dir`` as ``name``
    (default: the file's name, ``model`` for ``model.keras``; a hub handle's entry name).

    ``litert`` adds ``NAME.tflite``, ``litert_quantize`` (implies ``litert``) each mode's
    ``NAME.fp16.tflite`` / ``NAME.int8.tflite`` (measured against the in-memory model, top-1 /
    top-5 agreement on the ``video`` clip), ``preset`` the keras-hub preset folder
    ``NAME.preset/`` (raw uint8 frames in). The reference is the in-memory model on ``batch``
    seeded random clips (``seed``), plus one clip of ``video`` when given. Raises
    ConversionError (bad input, an output that exists or cannot be written) or ParityError
    (an artifact that does not reload as the model); either way nothing is left under a
    final name.
    """
    require_tensorflow_backend("exporting")
    litert_quantize = quantization_modes(litert_quantize)
    name = model_name(model_spec) if name is None else name  # --name '' is refused below
    _check_name(name)
    _check_not_source(out_dir, name, model_spec)
    if video is not None:
        check_video_file(video)
    check_output_dir(out_dir, name, force)
    recover_killed_run(out_dir, name)
    litert = litert or bool(litert_quantize)
    # a write and a reload phase each
    optional = 2 * (int(litert) + len(litert_quantize) + int(preset))
    phases = PhaseBar(name, progress, on_phase, total=len(PHASES) + optional)
    try:
        phases("load model")
        model, source, layout = load_classifier(model_spec, progress=progress)
        origin = source_record(model, source, layout)
        target = target_for(model, name)
        if litert:
            weights = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
            check_litert_memory(name, weights)

        phases("keras reference")
        cases = make_cases(target, batch=batch, seed=seed)
        if video is not None:
            cases.append(video_case(video, target))
        references, checked = keras_reference(keras_runner(target, model), cases,
                                              target.parity_atol)
        report = _record(target, origin, references, batch, seed, video, phases.seconds)
        videos = [r for r in references if r.case.name.startswith(VIDEO_CASE_PREFIX)]
        with StagedArtifacts(target, out_dir, force, on_phase=phases, litert=litert,
                             preset=preset, quantize=litert_quantize,
                             video_references=videos) as staged:
            staged.write(model)
            del model  # the reload checks each build a fresh model; do not hold two
            gc.collect()
            staged.check(references, checked)
            paths = staged.place(report)
        phases.finish()
        return ExportResult(target, paths, report, phases.seconds)
    finally:
        phases.close()


def _record(target: ExportTarget, source: SourceRecord, references, batch: int, seed: int,
            video: Optional[str], seconds: Dict[str, float]) -> ConversionRecord:
    """The export's record (a conversion report whose reference is the Keras model)."""
    size = (f"videomae-convert's for ViT size {target.size}" if target.size else
            "the largest of videomae-convert's: the encoder matches no zoo size")
    notes: List[str] = [
        f"no torch model: every reload check compares the artifact with the in-memory Keras "
        f"model loaded from {source.path} (its own float32 outputs); what the "
        f"model computes is what training made it, not proven against upstream",
        f"tolerance {target.parity_atol:g}: {size}"]
    if video is not None:
        notes.append(f"reference clip of a real video: {os.path.abspath(video)} (dense "
                     f"sampling, one clip, centre crop)")
    return ConversionRecord(
        entry=target.to_dict(),
        source=source,
        versions=library_versions(), parity=None, notes=notes,
        parity_inputs=ParityInputs(batch=batch, seed=seed,
                                   cases=[r.case.name for r in references], float64_samples=0),
        reference_fingerprint=reference_fingerprints(references), seconds=seconds,
        reference="keras")
