"""Checks of what the models are given, made where the values are at hand (numpy arrays, eager
tensors) and each one ValueError line: raw frames (uint8, or integers of any width) where a
model takes normalised ones (they would be read as normalised values: outputs, wrong ones, and
no error), and pre-training masks whose rows hide different token counts (the model reads the
count from the first row: the other rows' outputs would belong to other tokens, and no error).
Symbolic and traced inputs pass: there the values are not known (the JAX pre-trainer's steps
check each batch on the host instead, ``pretrain.token_counts``). And masks with another
number of rows than the video has clips, or a batch of no clips, where the shapes say so.
``fit``'s ``validation_data`` gets the checks ``x`` gets (``validation_inputs``), before the
first training step rather than after a whole epoch."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional, Tuple

import keras
import numpy as np
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

NORMALISE_HINT = ("normalise them ((x / 255 - mean) / std with the dataset's mean and std: "
                  "tf_models.video.normalize_views)")
# how the pre-trainer's mask lines start (pretrain.token_counts has no model at hand)
PRETRAINER = "VideoMAEMaskedAutoencoder:"
# what a line about fit's validation_data says after the model's name
VALIDATION_DATA = " validation_data:"


def first_video(inputs):
    """The video of ``inputs`` as a model's call or ``predict`` gets it: a tensor,
    ``{"video": ...}`` or ``[video, ...]``; None if there is none to look at."""
    if isinstance(inputs, dict):
        return inputs.get("video")
    if isinstance(inputs, (list, tuple)):
        return inputs[0] if inputs else None
    return inputs


@dataclass(frozen=True)
class ListedArray:
    """The shape and dtype of the array a (nested) Python list becomes, read from its first
    element at each level: nothing is copied (the list may hold a whole data set)."""

    shape: Tuple[int, ...]
    dtype: Optional[str]

    @classmethod
    def of(cls, values: list) -> "ListedArray":
        shape, item = [], values
        while isinstance(item, list):
            shape.append(len(item))
            if not item:
                return cls(tuple(shape), None)
            item = item[0]
        inner = getattr(item, "shape", None)
        dtype = getattr(item, "dtype", None)
        if dtype is None and isinstance(item, (bool, int, float)):
            # as keras-hub reads Python numbers (pipeline_model._convert_to_numpy)
            dtype = ("bool" if isinstance(item, bool) else
                     "int32" if isinstance(item, int) else "float32")
        return cls(tuple(shape) + (tuple(inner) if inner is not None else ()), dtype)


def fed_video(x):
    """The video of ``x`` as a keras-hub task's ``predict`` / ``fit`` / ``evaluate`` feed it
    (``PipelineModel``, following ``tf.data.Dataset.from_tensor_slices``: a dict or tuple is
    structure, a list one array): ``x["video"]``, a tuple's first entry, and a list as the
    array it becomes (``ListedArray``: its shape and dtype); None if there is none. A direct
    call reads a list as structure instead (``first_video``)."""
    video = first_video(x) if isinstance(x, (dict, tuple)) else x
    return ListedArray.of(video) if isinstance(video, list) else video


def validation_inputs(fit, args: tuple, kwargs: dict):
    """The inputs (``x``) of the ``validation_data`` that ``fit(x, y, *args, **kwargs)`` gets,
    ``fit`` being the parent's bound method (keras-hub's ``PipelineModel.fit``, whose
    positional order is not Keras's: ``batch_size, sample_weight, validation_data``): a
    tuple's or list's first entry, as Keras unpacks one (``(x, y[, sample_weight])``), or the
    value itself; None for none, or where ``fit`` will refuse the arguments itself. Datasets
    and generators come back as they are, and the checks pass them, as they pass ``x``."""
    try:
        data = inspect.signature(fit).bind(None, None, *args, **kwargs).arguments.get(
            "validation_data")
    except TypeError:  # arguments fit does not take: its own error, where it is called
        return None
    if isinstance(data, (tuple, list)):  # keras.utils.unpack_x_y_sample_weight's reading
        return data[0] if 1 <= len(data) <= 3 else None
    return data


def raw_frames_dtype(video) -> Optional[str]:
    """The dtype of ``video`` (``"uint8"``, ``"int64"``...) where it holds integers, raw frames
    (normalised ones are floats); else None. Any backend, numpy."""
    dtype = getattr(video, "dtype", None)
    if dtype is None:
        return None
    try:
        name = keras.backend.standardize_dtype(dtype)
    except ValueError:  # not a dtype Keras knows: none of ours
        name = str(dtype)
    return name if "int" in name else None


def is_raw_frames(video) -> bool:
    """Whether ``video`` holds raw frames: uint8, or integers of any width (by its dtype)."""
    return raw_frames_dtype(video) is not None


def refuse_raw_frames(video, who: str, fix: str = NORMALISE_HINT) -> None:
    """One ValueError if ``video`` is raw frames (integers: uint8, or int32 / int64 from a list
    or another reader): ``who`` (its name and a colon, as the line starts) takes normalised
    float32 ones."""
    dtype = raw_frames_dtype(video)
    if dtype is not None:
        raise ValueError(f"{who} takes normalised float32 frames, and got {dtype} ones; {fix}")


def host_values(x) -> Optional[np.ndarray]:
    """``x`` as a numpy array where its values exist (numpy, an eager tensor of any backend);
    None for Keras placeholders, TensorFlow graph tensors and JAX tracers."""
    if x is None or isinstance(x, keras.KerasTensor) or in_symbolic_scope():
        return None
    if isinstance(x, np.ndarray):
        return x
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if isinstance(x, tf.Tensor) and not hasattr(x, "numpy"):  # a graph tensor
            return None
    elif backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    try:
        return keras.ops.convert_to_numpy(x)
    except Exception:  # anything else whose values cannot be read here is not ours to check
        return None


def leading_size(x) -> Optional[int]:
    """The first (batch) dimension of ``x`` where its shape states one as a number, else None
    (also for a symbolic dimension: JAX's shape polymorphism, as ``model.export`` traces the
    model with, refuses to turn one into a number)."""
    shape = getattr(x, "shape", None)
    if shape is None or getattr(shape, "rank", 0) is None or not len(shape):
        return None
    return int(shape[0]) if isinstance(shape[0], (int, np.integer)) else None


def refuse_no_clips(video, who: str) -> None:
    """One ValueError if ``video``'s shape states a batch of no clips (TensorFlow's Conv3D
    would fail deep inside, Keras's ``predict`` with an UnboundLocalError); ``who`` (its name
    and a colon) starts the line. The static shape only: no cost per call."""
    if leading_size(video) == 0:
        raise ValueError(f"{who} takes a batch of at least one clip, shaped (batch, frames, "
                         f"height, width, 3); got shape {tuple(video.shape)}, no clips. Skip "
                         f"empty batches, or add a batch axis to one clip (clip[None])")


def refuse_labels_out_of_range(labels, who: str, num_classes: Optional[int]) -> None:
    """One ValueError if ``labels`` are class indices (integers, one per clip: shape
    ``(batch,)`` or ``(batch, 1)``) of which one is not in ``[0, num_classes)``. TensorFlow
    and PyTorch fail deep inside the loss on such a label; JAX's gather clamps it and trains
    on a wrong target without a word. One-hot labels and datasets pass unchecked."""
    if not num_classes:
        return
    values = host_values(labels)
    if values is None or not np.issubdtype(values.dtype, np.integer) or not values.size \
            or not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{who} takes class indices 0 to {num_classes - 1} as labels (its "
                         f"{num_classes} classes); got {bad}. Map your labels to 0 ... "
                         f"{num_classes - 1}, or build it with num_classes= your class count")


def clip_shape(video, who: str, frames: int, channels: int, any_channels: bool):
    """``video``'s shape where it states 5 dimensions whose frames, height and width are
    known, else None; one ValueError for another number of dimensions (one clip without its
    batch axis...) or, unless ``any_channels`` (a preprocessor's input), another channel
    count: keras-hub's pipeline or a graph would fail deep inside (on JAX, leaving the
    model's variables purged by Keras's trainer)."""
    shape = getattr(video, "shape", None)
    rank = None if shape is None or getattr(shape, "rank", 0) is None else len(shape)
    if rank is None:
        return None
    if rank != 5 or (not any_channels and shape[4] not in (None, channels)):
        fix = ("add a batch axis to one clip (clip[None])" if rank == 4 else
               "pass a batch of clips, 5 dimensions" if rank != 5 else
               f"give each frame {channels} channels")
        raise ValueError(f"{who} takes clips shaped (batch, {frames}, height, width, "
                         f"{channels}); got shape {tuple(shape)}: {fix}")
    return None if None in tuple(shape[1:4]) else tuple(shape)


def refuse_other_clip_size(shape, who: str, frames: int, size: Optional[int],
                           resized: str) -> None:
    """One ValueError where ``shape`` (``clip_shape``'s) has another frame count than
    ``frames``, or frames of another size than ``size`` (None: any size, a preprocessor
    resizes them); ``resized`` says which sizes the model takes, and why."""
    got = tuple(int(d) for d in shape[1:4])
    if got[0] != frames or (size is not None and got[1:] != (size, size)):
        raise ValueError(
            f"{who} takes clips of {frames} frames, {resized}, shaped (batch, "
            f"{frames}, height, width, 3); got {tuple(shape)}. Sample {frames} frames per "
            f"clip (tf_models.video.read_views takes upstream's views of a video file)")


def mask_rows_match(video, mask, name: str, who: str = PRETRAINER) -> None:
    """One ValueError if a (batch, tokens) mask has another number of rows than ``video`` has
    clips, where both shapes state them (the backends would fail deep inside instead); ``who``
    starts the line."""
    clips, rows = leading_size(video), leading_size(mask)
    if clips is not None and rows is not None and rows != clips:
        raise ValueError(
            f"{who} '{name}' must have one row per clip, {clips}; got "
            f"{rows}. Make one mask per clip (tf_models.tube_mask(..., batch_size={clips}))")


def per_row_count(mask, keep: bool, name: str, tokens: Optional[int] = None,
                  who: str = PRETRAINER) -> Optional[int]:
    """The count of True (``keep`` False) or False (``keep`` True) entries per row of a
    (batch, tokens) mask, where its values are at hand; one ValueError if rows differ, or if
    a row is not ``tokens`` long (``who`` starts the line)."""
    values = host_values(mask)
    if values is None or values.ndim != 2 or not len(values):
        return None
    if tokens is not None and values.shape[1] != tokens:
        raise ValueError(
            f"{who} '{name}' must be (batch, {tokens}) bool, one entry per "
            f"token of this model's clips; got shape {tuple(values.shape)}. Make the masks for "
            f"this model's frame count and size (tf_models.tube_mask)")
    counts = np.count_nonzero(np.logical_not(values) if keep else values, axis=1)
    if (counts != counts[0]).any():
        which = "keeps (False)" if keep else "hides (True)"
        raise ValueError(
            f"{who} every row of '{name}' must be the same count of "
            f"tokens it {which}, as upstream's masks (tf_models.tube_mask); got counts "
            f"{sorted(set(counts.tolist()))} in one batch. Batch clips whose masks share a "
            f"count, or one mask ratio per batch")
    return int(counts[0])
