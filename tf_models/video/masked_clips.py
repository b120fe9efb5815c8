"""Batches for continuing pre-training: a new tube mask for every clip every time it is used.

Upstream draws the masks in its data pipeline, per sample per load (V1 ``datasets.py``'s
``DataAugmentationForVideoMAE`` calls ``TubeMaskingGenerator``; V2's
``DataAugmentationForVideoMAEv2`` also draws the decoder's ``RunningCellMaskingGenerator``
mask where ``--decoder_mask_ratio`` is above 0, else decodes the encoder's masked tokens), so
every epoch trains on other masked positions. Mask arrays handed to ``fit`` keep theirs for
every epoch. :class:`MaskedClips` is a ``keras.utils.PyDataset`` (any backend) whose batches
are the pre-trainer's inputs and targets, with masks that are a function of (seed, epoch,
clip): new each epoch, reproducible given the seed. ``keras`` loads with ``..pretrain``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..masking import running_cell_mask, tube_mask
from ..pretrain import EpochBatches
from .reconstruct import DEFAULT_MASK_RATIO, masked_targets, normalize_clip

__all__ = ["MaskedClips"]

# stream tags: the clip order and the masks of an epoch come from separate random streams
_ORDER, _MASKS = 0, 1


class MaskedClips(EpochBatches):
    """``({"video", "mask"[, "decode_mask"]}, targets)`` batches of ``clips01`` for
    ``model.fit``, a tube mask (and V2's running-cell decode mask) drawn anew for every clip
    in every epoch, as upstream pre-trains.

    ``clips01``: clips (T, H, W, 3) in [0, 1] (uint8 0-255 too), as an array (N, T, H, W, 3)
    or anything with ``len`` and ``[index]`` giving one clip (a list, a loader of your own);
    T, H and W are the model's. ``model``: the pre-trainer, which gives the frames, size,
    patch and tubelet, and through its zoo preset (``model.preset``) the pre-training mask
    ratio (upstream's 0.9 where it has none) and V2's running-cell decoder mask ratio (none:
    the decoder gets the masked tokens, as V1). ``mask_ratio`` / ``decoder_mask_ratio``
    replace them (``decoder_mask_ratio=0``: no decode mask). With a decode mask the targets
    are the decoded tokens' (``masked_targets(clips01, ~decode_mask)``), else the masked
    ones'. ``seed``: the same seed gives the same batches epoch by epoch (None: a random one,
    kept in ``self.seed``). ``shuffle``: a new order of the clips every epoch (Keras's
    ``fit(shuffle=True)``, its default, also shuffles the order of the batches, with Python's
    ``random``). ``epoch``: the epoch whose batches ``[index]`` gives; the pre-trainer's
    ``fit`` sets it as Keras's epochs begin, counting on from its value
    (``pretrain.EpochBatches``), so a second ``fit`` trains on other masks too, and a
    ``validation_data`` one keeps its masks (leave ``steps_per_epoch`` out: with it Keras
    reads one iterator on across its epochs). ``kwargs``: ``PyDataset``'s (``workers``,
    ``use_multiprocessing``, ``max_queue_size``).
    """

    def __init__(self, clips01, model, batch_size: int = 8, seed: Optional[int] = None,
                 shuffle: bool = True, mask_ratio: Optional[float] = None,
                 decoder_mask_ratio: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        preset = getattr(model, "preset", None)
        if mask_ratio is None:
            ratio = getattr(preset, "mask_ratio", None)
            mask_ratio = DEFAULT_MASK_RATIO if ratio is None else ratio
        if decoder_mask_ratio is None:
            decoder_mask_ratio = getattr(preset, "decoder_mask_ratio", None)
        self.geometry = dict(num_frames=model.num_frames, img_size=model.img_size,
                             patch_size=model.patch_size, tubelet_size=model.tubelet_size)
        self.clips01 = clips01
        self.batch_size = int(batch_size)
        self.seed = int(np.random.SeedSequence().entropy if seed is None else seed)
        self.shuffle = shuffle
        self.mask_ratio = mask_ratio
        self.decoder_mask_ratio = decoder_mask_ratio or None
        self.epoch = 0
        self._check(clips01)
        self.masks(0)  # a ratio the masks refuse, refused now and not at the first step

    def _check(self, clips01) -> None:
        expected = (self.geometry["num_frames"], self.geometry["img_size"],
                    self.geometry["img_size"], 3)
        if self.batch_size < 1:
            raise ValueError(f"MaskedClips: batch_size must be at least 1, got "
                             f"{self.batch_size}")
        if len(clips01) == 0:
            raise ValueError("MaskedClips: no clips; give an array (N, T, H, W, 3) or a list "
                             "of clips with at least one")
        shape = tuple(np.shape(clips01[0]))
        if shape != expected:
            raise ValueError(f"MaskedClips: the model takes clips {expected} (frames, size, "
                             f"size, RGB), the first clip is {shape}; read them with "
                             f"read_clip(path, model.num_frames, model.img_size)")

    def __len__(self) -> int:
        return math.ceil(len(self.clips01) / self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The clip indices of ``epoch`` in the order its batches take them."""
        count = len(self.clips01)
        if not self.shuffle:
            return np.arange(count)
        return np.random.default_rng((self.seed, epoch, _ORDER)).permutation(count)

    def masks(self, epoch: int, clip: int = 0):
        """(mask (1, N), decode mask (1, N) or None) of clip number ``clip`` in ``epoch``."""
        rng = np.random.default_rng((self.seed, epoch, _MASKS, clip))
        mask = tube_mask(mask_ratio=self.mask_ratio, rng=rng, **self.geometry)
        decode_mask = None
        if self.decoder_mask_ratio:
            decode_mask = running_cell_mask(mask_ratio=self.decoder_mask_ratio, rng=rng,
                                            **self.geometry)
        return mask, decode_mask

    def batch(self, epoch: int, index: int):
        """Batch ``index`` of ``epoch``: what ``fit`` gets for it in that epoch."""
        ids = self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        if isinstance(self.clips01, np.ndarray):
            clips = self.clips01[ids]
        else:
            clips = np.stack([np.asarray(self.clips01[int(i)]) for i in ids])
        clips = clips / np.float32(255) if clips.dtype == np.uint8 else clips
        clips = clips.astype(np.float32, copy=False)
        drawn = [self.masks(epoch, int(i)) for i in ids]
        mask = np.concatenate([m for m, _ in drawn])
        inputs = {"video": normalize_clip(clips), "mask": mask}
        patch = dict(tubelet=self.geometry["tubelet_size"], patch=self.geometry["patch_size"])
        if self.decoder_mask_ratio:
            inputs["decode_mask"] = np.concatenate([d for _, d in drawn])
            targets = masked_targets(clips, ~inputs["decode_mask"], **patch)
        else:
            targets = masked_targets(clips, mask, **patch)
        return inputs, targets.astype(np.float32)
