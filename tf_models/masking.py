"""Tube masks for the pre-trained models and V2's running-cell decoder masks, numpy only (no
torch needed at inference).

The same semantics as ``torch_reference.masking``'s ``tube_mask`` and ``running_cell_mask``
(the two leaf packages cannot import each other; tests keep them identical).
"""

from __future__ import annotations

import numpy as np


def masked_per_frame(img_size: int, patch_size: int, mask_ratio: float):
    """(patches a tube mask masks in each frame, patches per frame): ``int(ratio * count)``."""
    per_frame = (img_size // patch_size) ** 2
    return int(mask_ratio * per_frame), per_frame


def tube_mask(num_frames: int = 16, img_size: int = 224, patch_size: int = 16,
              tubelet_size: int = 2, mask_ratio: float = 0.9, batch_size: int = 1,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Random tube masks, bool (batch, N) with True = masked, N in (t, h, w) token order:
    one spatial mask of ``int(mask_ratio * patches_per_frame)`` patches per row, repeated
    over every temporal slot, so every row masks the same number of tokens. ``mask_ratio``
    from 0 (no token masked) up to, not including, 1; ValueError outside."""
    if not 0 <= mask_ratio < 1:  # a negative int(ratio * count) would slice from the end
        raise ValueError(f"tube_mask: mask_ratio must be at least 0 and below 1 (1 would hide "
                         f"every token from the encoder); got {mask_ratio}. Upstream "
                         f"pre-trains with 0.9")
    rng = np.random.default_rng() if rng is None else rng
    n_masked, per_frame = masked_per_frame(img_size, patch_size, mask_ratio)
    slots = num_frames // tubelet_size
    masks = np.zeros((batch_size, slots, per_frame), dtype=bool)
    for row in range(batch_size):
        masks[row, :, rng.permutation(per_frame)[:n_masked]] = True
    return masks.reshape(batch_size, slots * per_frame)


def running_cell_mask(num_frames: int = 16, img_size: int = 224, patch_size: int = 16,
                      tubelet_size: int = 2, mask_ratio: float = 0.5, batch_size: int = 1,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """VideoMAE V2's decoder masks (upstream's ``RunningCellMaskingGenerator``), bool
    (batch, N), True = left out of the decoder, N in (t, h, w) token order.

    A 2x2 cell with ``int(4 * mask_ratio)`` left-out places, tiled over each temporal slot's
    patch grid; from one slot to the next the cell's places move on by one. Each row starts
    at one of the 4 places at random, so every row leaves out the same number of tokens. The
    patch grid's side must be even; ValueError otherwise, or where no place or every place
    would be left out."""
    side = img_size // patch_size
    left_out = int(4 * mask_ratio)
    if not 0 < left_out < 4 or side % 2:
        raise ValueError(f"running_cell_mask: needs 0 < 4 * mask_ratio < 4 and an even patch "
                         f"grid; got mask_ratio {mask_ratio} and a {side}x{side} grid. "
                         f"Upstream pre-trains V2 with 0.5")
    rng = np.random.default_rng() if rng is None else rng
    slots = num_frames // tubelet_size
    places = np.arange(4) < left_out  # the cell's left-out places first, in (h, w) order
    masks = np.empty((batch_size, slots, side * side), dtype=bool)
    for row in range(batch_size):
        start = int(rng.integers(4))
        for slot in range(slots):  # the cell moves on before each slot is drawn
            cell = np.roll(places, -(start + slot + 1)).reshape(2, 2)
            masks[row, slot] = np.tile(cell, (side // 2, side // 2)).reshape(-1)
    return masks.reshape(batch_size, slots * side * side)
