"""Pooled encoder features of videos: the model side of ``videomae-extract``.

Two ways to cut a video (``Sampling``):

- ``views`` (no stride): the dataset's test views (``protocol.py``), one feature per view,
  normalised with ImageNet statistics as the classifier sees them;
- ``segments`` (``--stride S``): upstream VideoMAE V2's ``extract_tad_feature.py`` (temporal
  action detection features): clips of T consecutive frames starting at ``range(0, N - T + 1,
  S)`` (upstream: ``range(0, num_frames - 15, 4)`` for THUMOS14, stride 16 for FineAction, T =
  16), every frame resized to the model's size (224 x 224) without keeping the aspect ratio
  (upstream: bilinear ``interpolate(size=(224, 224))``), scaled to [0, 1] and NOT normalised
  with mean/std (upstream's transform is ``ToFloatTensorInZeroOne`` then ``Resize`` only). Here
  the resize runs on the uint8 frames (OpenCV bilinear, half-pixel centres, no antialiasing, as
  torch's ``interpolate``) so that uint8 travels: the same pixels up to rounding to uint8.

The feature is upstream's ``forward_features`` with mean pooling: ``fc_norm(mean(tokens))`` for a
fine-tuned model (a classifier artifact or an ``--encoder-only`` one), ``mean(norm(tokens))``
for a pre-trained encoder. One video gives an array (views or segments, D) in float32.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .decode import MAX_PIXELS, VideoError, decode_frames, read_views
from .model import ModelError
from .protocol import normalize_views, protocol_for
from ..tracing import inference_function


@dataclass(frozen=True)
class Sampling:
    """How a video becomes model inputs: the dataset's views, or strided segments."""

    num_frames: int
    img_size: int
    dataset: Optional[str] = None      # views: the dataset whose protocol applies
    views: Optional[str] = None        # views: CLIPSxCROPS override
    stride: Optional[int] = None       # segments: frames between segment starts

    @property
    def label(self) -> str:
        """``"views 5x3"`` or ``"segments 4x32 stride 4"``: what the header records."""
        if self.stride is not None:
            return f"segments {self.num_frames}x{self.img_size} stride {self.stride}"
        return f"views {self.protocol().views_label}"

    def protocol(self):
        """The dataset's view protocol (views only)."""
        return protocol_for(self.dataset, self.num_frames, self.img_size, self.views)


def segment_starts(count: int, num_frames: int, stride: int) -> range:
    """Upstream V2's segment starts: ``range(0, count - num_frames + 1, stride)``."""
    return range(0, count - num_frames + 1, stride)


def read_inputs(path: str, sampling: Sampling, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 model inputs of the video at ``path``: views (V, T, S, S, 3) or, with a stride,
    its resized frames (N, S, S, 3) from which ``segment_clips`` cuts the segments."""
    if sampling.stride is None:
        return read_views(path, sampling.protocol(), max_pixels)
    import cv2

    size, frames, stride = sampling.img_size, sampling.num_frames, sampling.stride

    def keep(index: int) -> bool:  # in some segment [k * stride, k * stride + T)
        return index % stride < frames

    def squash(rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] == (size, size):
            return rgb
        return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)

    kept, count = decode_frames(path, keep, squash, max_pixels=max_pixels)
    if count < frames:
        raise VideoError(path, f"has {count} frames; a {frames}-frame segment needs at least "
                               f"{frames}", "drop --stride to use the dataset's views")
    last = segment_starts(count, frames, stride)[-1] + frames
    return np.stack([kept[i] for i in range(last) if i in kept])


def segment_clips(frames_uint8: np.ndarray, sampling: Sampling) -> np.ndarray:
    """The segments (K, T, S, S, 3) of ``read_inputs``'s frames (views pass through)."""
    if sampling.stride is None:
        return frames_uint8
    length, stride = sampling.num_frames, sampling.stride
    if stride >= length:  # only the segments' own frames were kept, in order
        return frames_uint8.reshape(-1, length, *frames_uint8.shape[1:])
    starts = segment_starts(len(frames_uint8), length, stride)
    return np.stack([frames_uint8[s:s + length] for s in starts])


def normalize_inputs(clips_uint8: np.ndarray, sampling: Sampling) -> np.ndarray:
    """float32 model input: ImageNet-normalised views, or [0, 1] segments (upstream V2 TAD)."""
    if sampling.stride is None:
        return normalize_views(clips_uint8)
    return clips_uint8.astype(np.float32) / np.float32(255.0)


# --- the model -------------------------------------------------------------------------------

@dataclass
class FeatureModel:
    """A loaded encoder: ``run(inputs)`` maps float32 (batch, T, S, S, 3) to pooled (batch, D)."""

    name: str
    source: str
    num_frames: int
    img_size: int
    dataset: Optional[str]
    run_batch: Callable
    notes: Tuple[str, ...] = ()  # what loading it changed or assumed (VideoModel.notes)
    path: Optional[str] = None   # the local file or folder the weights came from (VideoModel)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.run_batch(np.ascontiguousarray(inputs, dtype=np.float32)))


def _keras_pooled(model, source: str):
    import tf_models  # noqa: F401  (registers the VideoMAE classes)

    if hasattr(model, "pre_head_norm") and hasattr(model, "backbone"):  # a classifier
        def pooled(video):  # upstream's forward_features: what the head reads
            tokens, _ = model.backbone.encode(video, training=False)
            return model.pre_head_norm(model.backbone.pool(tokens))
        backbone = model.backbone
    elif hasattr(model, "features"):  # a backbone (encoder-only artifact)
        def pooled(video):
            return model(video, training=False)["pooled"]
        backbone = model
    elif hasattr(model, "backbone") and hasattr(model.backbone, "features"):  # a pre-trainer
        def pooled(video):
            return model.backbone(video, training=False)["pooled"]
        backbone = model.backbone
    else:
        raise ModelError(f"{source}: {type(model).__name__} is not a VideoMAE model with "
                         "pooled features")
    frames, size = int(backbone.num_frames), int(backbone.img_size)
    return frames, size, inference_function(pooled, model.variables, frames, size)


def _savedmodel_pooled(path: str, signature):
    import tensorflow as tf

    serving, outputs = signature.serve, signature.outputs
    if signature.takes_raw_frames:
        raise ModelError(signature.raw_frames_refusal(path))
    if "pooled" not in outputs:
        raise ModelError(f"{path}: SavedModel has no 'pooled' output (found {sorted(outputs)}); "
                         "pass the .keras file next to it or convert with --encoder-only")
    shape = list(signature.inputs["video"].shape)
    frames, size = int(shape[1]), int(shape[2])

    def run(inputs):
        return serving(video=tf.constant(inputs))["pooled"].numpy()

    run.keep_alive = signature.keep_alive
    return frames, size, run


def load_feature_model(spec: str, dataset: Optional[str] = None) -> FeatureModel:
    """Load ``spec`` (anything ``tf_models.artifacts.resolve`` takes: a zoo name, a ``.keras``
    file, a ``.weights.h5`` file with its report, a SavedModel folder...) for pooled features.

    A fine-tuned classifier gives its pre-head features ``fc_norm(mean(tokens))``; an
    ``--encoder-only`` artifact its ``pooled`` output; a pre-trained model its encoder's.
    ``dataset`` (for the views' protocol) comes from the caller, the report next to the
    artifact or the zoo name. Raises ModelError (one line).
    """
    from ..artifacts.resolve import PresetError, load_artifact
    from .model import _dataset_from_report, dataset_from_name, model_name

    try:
        resolved, model = load_artifact(spec)
    except (PresetError, OSError) as error:
        raise ModelError(" ".join(str(error).split())[:300]) from None
    local = os.path.exists(spec)
    if resolved.kind == "savedmodel":
        name = os.path.basename(spec.rstrip("/" + os.sep))
        frames, size, run = _savedmodel_pooled(spec, model)
    else:
        name = model_name(resolved, model) if local else spec
        frames, size, run = _keras_pooled(model, spec)
    dataset = dataset or (_dataset_from_report(spec) if local else None) \
        or dataset_from_name(name) or dataset_from_name(spec)
    return FeatureModel(name=name, source=spec, num_frames=frames, img_size=size,
                        dataset=dataset, run_batch=run,
                        notes=tuple(getattr(model, "conversion_notes", ())),
                        path=resolved.path if os.path.exists(resolved.path) else None)


def pooled_features(model: FeatureModel, clips_uint8: np.ndarray, sampling: Sampling,
                    batch_size: int = 16) -> np.ndarray:
    """Pooled features (K, D) float32 of uint8 views or segments, ``batch_size`` at a time."""
    outputs = [model.run(normalize_inputs(clips_uint8[start:start + batch_size], sampling))
               for start in range(0, len(clips_uint8), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def array_bytes(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (how uint8 clips travel between Ray stages; no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def bytes_array(data: bytes) -> np.ndarray:
    """The array ``array_bytes`` wrote."""
    return np.load(io.BytesIO(data), allow_pickle=False)
