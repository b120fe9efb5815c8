"""Upstream's train-time frame sampling and the per-sample random streams that drive it.

Written from upstream VideoMAE's ``kinetics.py`` and ``ssv2.py`` (mode ``train``):

- ``dense`` (Kinetics, UCF101): a window of ``T * rate`` frames ending at a random frame
  ``end`` in ``[T * rate, N)``, ``T`` indices ``linspace(end - T * rate, end, T)`` clipped to
  ``end - 1``; a video of ``N <= T * rate`` frames takes ``linspace(0, N, N // rate)`` padded
  with ``N`` to ``T`` indices, all clipped to ``N - 1``.
- ``segment`` (SSv2): ``T`` equal segments of ``N // T`` frames, one random frame in each;
  a video shorter than ``T`` frames takes ``T`` sorted random frames (or frame 0).

Every random choice comes from a numpy generator keyed by (seed, purpose, epoch, position),
never from a global state, so a sample is the same whichever thread, process or device count
makes it, and a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import List

import numpy as np

# purposes: separate streams so adding a draw to one never shifts another
ORDER, SAMPLE, MIX = 0, 1, 2


def rng_for(seed: int, purpose: int, *key: int) -> np.random.Generator:
    """A generator keyed by (seed, purpose, *key): independent of every other key."""
    return np.random.default_rng([int(seed), int(purpose), *(int(k) for k in key)])


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The order in which an epoch visits the ``count`` videos (upstream: a shuffled sampler)."""
    return rng_for(seed, ORDER, epoch).permutation(count)


def dense_indices(num_frames_video: int, num_frames: int, rate: int,
                  rng: np.random.Generator) -> List[int]:
    """Kinetics train sampling: ``num_frames`` indices over a random window of ``T * rate``."""
    length = num_frames * rate
    if num_frames_video <= length:
        spread = np.linspace(0, num_frames_video, num=num_frames_video // rate)
        padded = np.concatenate([spread, np.full(num_frames - len(spread), num_frames_video)])
        return [int(i) for i in np.clip(padded, 0, num_frames_video - 1).astype(np.int64)]
    end = int(rng.integers(length, num_frames_video))
    start = end - length
    picked = np.linspace(start, end, num=num_frames)
    return [int(i) for i in np.clip(picked, start, end - 1).astype(np.int64)]


def segment_indices(num_frames_video: int, num_frames: int,
                    rng: np.random.Generator) -> List[int]:
    """SSv2 train sampling: one random frame in each of ``num_frames`` equal segments."""
    duration = num_frames_video // num_frames
    if duration > 0:
        offsets = rng.integers(0, duration, size=num_frames)
        return [int(i) for i in np.arange(num_frames) * duration + offsets]
    if num_frames_video > num_frames:
        return [int(i) for i in np.sort(rng.integers(0, num_frames_video, size=num_frames))]
    return [0] * num_frames


def train_indices(sampler: str, num_frames_video: int, num_frames: int, rate: int,
                  rng: np.random.Generator) -> List[int]:
    """The frames one training clip reads, by sampler (``dense`` or ``segment``)."""
    if sampler == "dense":
        return dense_indices(num_frames_video, num_frames, rate, rng)
    if sampler == "segment":
        return segment_indices(num_frames_video, num_frames, rng)
    raise ValueError(f"sampler {sampler!r}: expected 'dense' or 'segment'")
