"""Tube masks for the pre-trained models, numpy only (no torch needed at inference).

The same semantics as ``torch_reference.masking.tube_mask`` (the two leaf packages cannot
import each other; a test keeps them identical).
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
