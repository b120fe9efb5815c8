"""Upstream's train-time clip augmentation in numpy / OpenCV, the same for every frame of a clip.

Written from upstream VideoMAE's ``kinetics.py`` (``_aug_frame``), ``video_transforms.py``
(``random_resized_crop``, ``horizontal_flip``), ``random_erasing.py`` and timm's ``mixup.py``,
with ``run_class_finetuning.py``'s defaults (table ``RECIPE``). Every draw comes from the
generator handed in (see ``sampling.rng_for``), so a clip depends only on its key.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

# run_class_finetuning.py defaults (the fine-tuning recipe of every released entry)
RECIPE = dict(
    crop_scale=(0.08, 1.0),      # kinetics.py _aug_frame: scl
    crop_ratio=(0.75, 4 / 3),    # kinetics.py _aug_frame: asp
    reprob=0.25,                 # --reprob, --remode pixel, --recount 1
    erase_area=(0.02, 1 / 3),    # RandomErasing min_area, max_area
    erase_aspect=0.3,            # RandomErasing min_aspect (max = 1 / min)
    mixup=0.8, cutmix=1.0,       # --mixup, --cutmix (Beta alphas)
    mixup_switch_prob=0.5,       # --mixup_switch_prob
    smoothing=0.1,               # --smoothing
    num_sample=2,                # --num_sample: repeated augmentation
    warmup_epochs=5,             # --warmup_epochs
    # --lr, --min_lr: rates per 256 videos; upstream uses rate * total batch / 256, its batch
    # counting videos (each gives --num_sample clips)
    lr_per_256=1e-3,
    min_lr_per_256=1e-6,
)
CROP_TRIES = 10
ERASE_TRIES = 100  # random_erasing.py _erase_cube (its per-frame _erase tries 10)


def crop_box(height: int, width: int, scale, ratio, rng) -> Tuple[int, int, int, int]:
    """(top, left, h, w) of a random-resized crop: area fraction in ``scale``, aspect ratio
    log-uniform in ``ratio``; after ``CROP_TRIES`` misses, a centre crop with the ratio clamped."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_TRIES):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(frames: np.ndarray, size: int, rng, scale=RECIPE["crop_scale"],
                        ratio=RECIPE["crop_ratio"]) -> np.ndarray:
    """One random crop of uint8 frames (T, H, W, 3), every frame resized to (size, size)."""
    top, left, h, w = crop_box(frames.shape[1], frames.shape[2], scale, ratio, rng)
    return np.stack([cv2.resize(np.ascontiguousarray(f[top:top + h, left:left + w]),
                                (size, size), interpolation=cv2.INTER_LINEAR) for f in frames])


def random_erase(clip: np.ndarray, rng, probability=RECIPE["reprob"],
                 area=RECIPE["erase_area"], min_aspect=RECIPE["erase_aspect"]) -> np.ndarray:
    """Upstream's RandomErasing (mode pixel, one box) on a normalised clip (T, S, S, 3): the same
    box on every frame, filled with standard-normal noise per pixel. Both VideoMAE
    repositories' ``random_erasing.py`` default to ``cube=True`` (``_erase_cube``: one draw
    per clip, up to ``ERASE_TRIES`` box draws, the box on every frame), and their
    ``kinetics.py`` / ``ssv2.py`` pass the clip as (T, C, H, W) without changing it."""
    if rng.uniform() >= probability:
        return clip
    frames, height, width, channels = clip.shape
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    for _ in range(ERASE_TRIES):
        target = rng.uniform(*area) * height * width
        aspect = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if w < width and h < height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            clip = clip.copy()
            clip[:, top:top + h, left:left + w] = rng.standard_normal(
                (frames, h, w, channels)).astype(clip.dtype)
            return clip
    return clip


def smooth_one_hot(labels: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    """timm's one-hot with label smoothing: off = s / C, on = 1 - s + off."""
    off = smoothing / num_classes
    target = np.full((len(labels), num_classes), off, dtype=np.float32)
    target[np.arange(len(labels)), labels] = 1.0 - smoothing + off
    return target


def mix_batch(clips: np.ndarray, labels: np.ndarray, num_classes: int, rng,
              mixup=RECIPE["mixup"], cutmix=RECIPE["cutmix"],
              switch_prob=RECIPE["mixup_switch_prob"], smoothing=RECIPE["smoothing"]):
    """timm's Mixup in batch mode on (B, T, S, S, 3): mix each clip with the batch reversed.

    One draw per batch: cutmix with probability ``switch_prob`` (lam ~ Beta(cutmix), a box of
    area 1 - lam pasted on every frame, lam corrected to the box), else mixup
    (lam ~ Beta(mixup)). Targets: lam * smooth(y) + (1 - lam) * smooth(y reversed).
    Returns (clips, soft targets (B, C), lam).
    """
    target = smooth_one_hot(labels, num_classes, smoothing)
    if mixup <= 0 and cutmix <= 0:
        return clips, target, 1.0
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.uniform() < switch_prob)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    flipped = clips[::-1]
    if use_cutmix:
        height, width = clips.shape[2:4]
        cut = math.sqrt(1 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
        x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
        clips = clips.copy()
        clips[:, :, y0:y1, x0:x1] = flipped[:, :, y0:y1, x0:x1]
        lam = 1.0 - float((y1 - y0) * (x1 - x0)) / (height * width)
    else:
        clips = (clips * np.float32(lam) + flipped * np.float32(1 - lam)).astype(np.float32)
    return clips, target * lam + target[::-1] * (1 - lam), lam
