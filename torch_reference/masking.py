"""Upstream's tube masking: one random spatial mask repeated over every temporal slot."""

from __future__ import annotations

import numpy as np


def tube_mask(num_frames: int = 16, img_size: int = 224, patch_size: int = 16,
              tubelet_size: int = 2, mask_ratio: float = 0.9, batch_size: int = 1,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Random tube masks, bool (batch, N) with True = masked, N in (t, h, w) token order.

    Each row draws its own spatial mask of ``int(mask_ratio * patches_per_frame)`` masked
    patches (as upstream's ``TubeMaskingGenerator``) and repeats it over the temporal slots,
    so every row masks the same number of tokens. ``mask_ratio`` from 0 (no token masked)
    up to, not including, 1; ValueError outside.
    """
    if not 0 <= mask_ratio < 1:  # a negative int(ratio * count) would slice from the end
        raise ValueError(f"tube_mask: mask_ratio must be at least 0 and below 1 (1 would hide "
                         f"every token from the encoder); got {mask_ratio}. Upstream "
                         f"pre-trains with 0.9")
    rng = np.random.default_rng() if rng is None else rng
    per_frame = (img_size // patch_size) ** 2
    slots = num_frames // tubelet_size
    n_masked = int(mask_ratio * per_frame)
    masks = np.zeros((batch_size, slots, per_frame), dtype=bool)
    for row in range(batch_size):
        masks[row, :, rng.permutation(per_frame)[:n_masked]] = True
    return masks.reshape(batch_size, slots * per_frame)


def running_cell_mask(num_frames: int = 16, img_size: int = 224, patch_size: int = 16,
                      tubelet_size: int = 2, mask_ratio: float = 0.5, batch_size: int = 1,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """VideoMAE V2's decoder masks (``RunningCellMaskingGenerator``, dataset/
    masking_generator.py), bool (batch, N), True = masked (left out of the decoder).

    A 2x2 cell holds ``int(4 * mask_ratio)`` masked places; it is tiled over each temporal
    slot's patch grid and shifted one place per slot (the cell's pointer runs before each
    slot is drawn). Each row picks one of the 4 starting pointers, so every row masks the
    same number of tokens. The grid's height and width must be even.
    """
    rng = np.random.default_rng() if rng is None else rng
    side = img_size // patch_size
    slots = num_frames // tubelet_size
    n_masked = int(4 * mask_ratio)
    if not 0 < n_masked < 4 or side % 2:
        raise ValueError(f"running-cell masking needs 0 < 4 * ratio < 4 and an even patch "
                         f"grid; got ratio {mask_ratio}, grid {side}x{side}")
    queue = np.arange(4) < n_masked  # the masked places first
    masks = np.empty((batch_size, slots, side * side), dtype=bool)
    for row in range(batch_size):
        start = int(rng.integers(4))
        for slot in range(slots):
            cell = queue[(np.arange(4) + start + slot + 1) % 4].reshape(2, 2)
            masks[row, slot] = np.tile(cell, (side // 2, side // 2)).reshape(-1)
    return masks.reshape(batch_size, slots * side * side)
