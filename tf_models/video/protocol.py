"""Upstream's test-time view protocol: which frames, how resized, which crops, how normalised.

Written from upstream VideoMAE's ``kinetics.py`` / ``ssv2.py`` (mode ``test``), ``functional.py``
(``resize_clip``) and ``volume_transforms.py`` / ``video_transforms.py`` (``ClipToTensor``,
``Normalize``). numpy and OpenCV only: no TensorFlow, no torch.

Two samplers, parametrised by the model's ``num_frames`` (T) and ``img_size`` (S):

- ``dense`` (K400, UCF101; upstream ``--test_num_segment 5 --test_num_crop 3``): every 4th frame
  of the whole video, padded with the last sampled index to T; clip k starts at
  ``int(k * max((M - T) / (K - 1), 0))`` over the M sampled frames.
- ``segment`` (SSv2; ``--test_num_segment 2 --test_num_crop 3``): ``tick = N / T``, indices
  ``int(tick / 2 + tick * x)`` and ``int(tick * x)``, sorted; view c takes ``[c::2]``.

Then every frame is resized (bilinear on uint8, short side S, long side ``int(S * long / short)``,
untouched when the short side is already S) and cropped C times along the long side at
``int(i * (L - S) / (C - 1))``. Views are ordered clip first, then crop, as upstream lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# the samplers, clips, crops, sampling rates and normalisation of each dataset: the zoo table
from ..presets import DATASETS, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Protocol:
    """One dataset's test-time views for a model taking ``num_frames`` frames of ``img_size``."""

    dataset: str
    sampler: str            # "dense" or "segment"
    num_clips: int          # temporal views
    num_crops: int          # spatial views
    num_frames: int = 16
    img_size: int = 224
    sample_rate: int = 4    # the dense sampler's frame stride
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    @property
    def views_label(self) -> str:
        """``"5x3"``: clips x crops."""
        return f"{self.num_clips}x{self.num_crops}"

    def frame_indices(self, num_decoded: int) -> List[int]:
        """The frame indices upstream reads from a video of ``num_decoded`` frames."""
        if num_decoded < 1:
            raise ValueError("a video with no frames has no views")
        if self.sampler == "dense":
            indices = list(range(0, num_decoded, self.sample_rate))
            while len(indices) < self.num_frames:
                indices.append(indices[-1])
            return indices
        tick = num_decoded / float(self.num_frames)
        indices = ([int(tick / 2.0 + tick * x) for x in range(self.num_frames)]
                   + [int(tick * x) for x in range(self.num_frames)])
        return sorted(indices)

    def clip_starts(self, num_sampled: int) -> List[int]:
        """Start of each temporal clip within the sampled frames (dense sampler)."""
        if self.num_clips == 1:
            # upstream divides by (clips - 1); one clip is taken from the middle instead
            return [int(max((num_sampled - self.num_frames) / 2.0, 0))]
        step = max(1.0 * (num_sampled - self.num_frames) / (self.num_clips - 1), 0)
        return [int(k * step) for k in range(self.num_clips)]

    def crop_starts(self, long_side: int) -> List[int]:
        """Start of each crop along the long side of the resized frames."""
        if self.num_crops == 1:
            # upstream divides by (crops - 1); one crop is the centre one instead
            return [int((long_side - self.img_size) / 2.0)]
        step = 1.0 * (long_side - self.img_size) / (self.num_crops - 1)
        return [int(i * step) for i in range(self.num_crops)]

    def resize_frame(self, frame_hwc: np.ndarray) -> np.ndarray:
        """Upstream's ``resize_clip`` for one uint8 frame: short side to ``img_size``."""
        height, width = frame_hwc.shape[:2]
        return resize_short_side(frame_hwc, height, width, self.img_size)

    def clip_indices(self, num_decoded: int) -> List[List[int]]:
        """The frame indices of each temporal clip, in clip order."""
        indices = self.frame_indices(num_decoded)
        if self.sampler == "dense":
            return [indices[start:start + self.num_frames]
                    for start in self.clip_starts(len(indices))]
        # the sorted indices interleave two samplings: clip c is every other one from c
        return [indices[c::2] for c in range(self.num_clips)]

    def needed_indices(self, num_decoded: int) -> List[int]:
        """The frame indices some view reads (at most clips x T of them, whatever the length:
        what decoding keeps)."""
        return sorted({index for clip in self.clip_indices(num_decoded) for index in clip})

    def views_from_frames(self, resized: Dict[int, np.ndarray], num_decoded: int) -> np.ndarray:
        """uint8 views ``(num_views, num_frames, S, S, 3)`` from resized frames by index (those
        of ``needed_indices`` at least)."""
        clips = [np.stack([resized[i] for i in indices])  # (T, H, W, 3)
                 for indices in self.clip_indices(num_decoded)]
        height, width = clips[0].shape[1:3]
        views = []
        for clip in clips:
            for start in self.crop_starts(max(height, width)):
                end = start + self.img_size
                # upstream crops rows when height >= width (portrait and square), else columns
                views.append(clip[:, start:end] if height >= width else clip[:, :, start:end])
        return np.stack(views)


def resize_short_side(frame_hwc: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """OpenCV INTER_LINEAR resize of a uint8 frame to short side ``size`` (upstream rule)."""
    if (width <= height and width == size) or (height <= width and height == size):
        return frame_hwc
    if width < height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_height, new_width = size, int(size * width / height)
    return cv2.resize(frame_hwc, (new_width, new_height), interpolation=cv2.INTER_LINEAR)


def normalize_views(views_uint8: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 views -> float32 ``(x / 255 - mean) / std`` with upstream's float32 operations
    (pass a protocol's ``mean`` and ``std``; every zoo dataset uses ImageNet's)."""
    scaled = views_uint8.astype(np.float32) / np.float32(255)
    return (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def parse_views(text: str) -> tuple:
    """``"5x3"`` -> (5, 3)."""
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text or "")
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"views {text!r}: expected CLIPSxCROPS with both at least 1, e.g. 5x3")
    return int(match.group(1)), int(match.group(2))


def protocol_for(dataset: str, num_frames: int = 16, img_size: int = 224,
                 views: Optional[str] = None) -> Protocol:
    """Upstream's test protocol for ``dataset`` (``k400``, ``ssv2``, ``ucf101``).

    ``views`` (``"CLIPSxCROPS"``) overrides the number of clips and crops; the segment sampler
    (SSv2) makes exactly two interleaved clips, so it takes 1 or 2 clips.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    facts = DATASETS[dataset]
    test = facts.test
    clips, crops = test.clips, test.crops
    if views is not None:
        clips, crops = parse_views(views)
        if test.sampler == "segment" and clips > 2:
            raise ValueError(f"views {views!r}: {dataset} interleaves two clips from one "
                             "sampling, so it takes 1 or 2 clips (e.g. 2x3)")
    return Protocol(dataset=dataset, sampler=test.sampler, num_clips=clips, num_crops=crops,
                    num_frames=num_frames, img_size=img_size, sample_rate=test.rate,
                    mean=facts.mean, std=facts.std)


def view_order(protocol: Protocol) -> Sequence[tuple]:
    """(clip, crop) of each view, in the order views are produced."""
    return [(clip, crop) for clip in range(protocol.num_clips)
            for crop in range(protocol.num_crops)]
