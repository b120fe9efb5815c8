"""Classifying one video: upstream's views through a converted model, merged as upstream does."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..presets import DATASETS
from .decode import MAX_PIXELS, read_views
from .labels import class_names
from .protocol import Protocol, normalize_views, protocol_for

DEFAULT_BATCH = 16  # views per model call


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64 (upstream's merge uses scipy's, in float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def merge_views(view_logits: np.ndarray) -> np.ndarray:
    """Upstream's merge for one video: softmax per view, then the mean over its views."""
    return softmax(view_logits).mean(axis=0)


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest probabilities, largest first (upstream: ``argsort(-p)[:k]``)."""
    return np.argsort(-probs, kind="stable")[:k]


def model_protocol(model, views: Optional[str] = None) -> Protocol:
    """The view protocol of ``model``'s dataset at its frames and size, ``views`` overriding."""
    return protocol_for(model.dataset, model.num_frames, model.img_size, views)


def run_views(model, views_uint8: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Per-view logits (V, classes) of uint8 views, normalised with the mean and std of the
    model's dataset and run ``batch_size`` at a time."""
    facts = DATASETS[model.dataset]
    outputs = []
    for start in range(0, len(views_uint8), batch_size):
        outputs.append(model.run(normalize_views(views_uint8[start:start + batch_size],
                                                 facts.mean, facts.std)))
    return np.concatenate(outputs)


def describe_prediction(model, video: str, protocol: Protocol, view_logits: np.ndarray,
                        k: int = 5) -> dict:
    """The record ``videomae-predict --json`` prints for one video."""
    probs = merge_views(view_logits)
    names = model.labels or class_names(model.dataset)
    best = top_k(probs, k)
    return {
        "video": video,
        "model": model.name,
        "dataset": model.dataset,
        "views": protocol.views_label,
        "top_k": [{"index": int(i), "label": names[i], "prob": float(probs[i])} for i in best],
        "probs": [float(p) for p in probs],
        "view_logits": [[float(x) for x in row] for row in view_logits],
    }


def classify_video(model, video: str, views: Optional[str] = None, k: int = 5,
                   batch_size: int = DEFAULT_BATCH, max_pixels: int = MAX_PIXELS) -> dict:
    """Classify the video file ``video`` with ``model`` (a VideoModel) under upstream's protocol.

    Raises tf_models.video.VideoError (one line) for a file that cannot be read as a video,
    ValueError for a ``k`` or ``batch_size`` below 1 (``k=-1`` would list every class but the
    least likely one, as a slice does).
    """
    for name, value in (("k", k), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"classify_video: {name} must be at least 1, got {value}")
    protocol = model_protocol(model, views)
    views_uint8 = read_views(video, protocol, max_pixels=max_pixels)
    view_logits = run_views(model, views_uint8, batch_size)
    return describe_prediction(model, video, protocol, view_logits, k)
