"""RandAugment ``rand-m7-n4-mstd0.5-inc1`` on uint8 clips, one draw per clip for all its frames.

Facts from timm's ``auto_augment.py`` as upstream VideoMAE uses it (``rand_augment.py``,
``kinetics.py``: ``create_random_augment(..., auto_augment="rand-m7-n4-mstd0.5-inc1",
interpolation="bicubic")``): 4 operations drawn with replacement from the "increasing" list
``OPS``, each applied with probability 0.5 at magnitude ~ N(7, 0.5) clipped to [0, 10] (out of
10), signed operations flipping sign with probability 0.5, geometric ones filled with grey 128.
The pixel operations follow PIL's definitions, written here in numpy / OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

MAGNITUDE, NUM_OPS, MAGNITUDE_STD, OP_PROB, MAX_LEVEL = 7, 4, 0.5, 0.5, 10.0
FILL = (128, 128, 128)


def _signed(value, rng):
    return -value if rng.uniform() < 0.5 else value


def _affine(clip, matrix):
    height, width = clip.shape[1:3]
    return np.stack([cv2.warpAffine(f, matrix, (width, height), flags=cv2.INTER_CUBIC
                                    | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=FILL) for f in clip])


def _blend(degenerate, clip, factor):
    out = degenerate.astype(np.float32) + factor * (clip.astype(np.float32)
                                                    - degenerate.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _gray(clip):
    # PIL's L: (299 R + 587 G + 114 B) / 1000
    return (clip.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))[..., None]


def auto_contrast(clip, level, rng):
    low = clip.min(axis=(1, 2), keepdims=True).astype(np.float32)
    high = clip.max(axis=(1, 2), keepdims=True).astype(np.float32)
    scale = np.where(high > low, 255.0 / np.maximum(high - low, 1), 1.0)
    out = np.where(high > low, (clip - low) * scale, clip)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def equalize(clip, level, rng):
    return np.stack([np.stack([cv2.equalizeHist(np.ascontiguousarray(f[..., c]))
                               for c in range(3)], axis=-1) for f in clip])


def invert(clip, level, rng):
    return 255 - clip


def rotate(clip, level, rng):
    angle = _signed(level / MAX_LEVEL * 30.0, rng)
    height, width = clip.shape[1:3]
    # PIL rotates counter-clockwise about the centre; OpenCV's positive angle does the same
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
    height, width = clip.shape[1:3]
    return np.stack([cv2.warpAffine(f, matrix, (width, height), flags=cv2.INTER_CUBIC,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=FILL)
                     for f in clip])


def posterize(clip, level, rng):
    bits = 4 - int(level / MAX_LEVEL * 4)
    if bits >= 8:
        return clip
    return clip & np.uint8((0xFF << (8 - bits)) & 0xFF)


def solarize(clip, level, rng):
    threshold = 256 - int(level / MAX_LEVEL * 256)
    return np.where(clip >= threshold, 255 - clip, clip).astype(np.uint8)


def solarize_add(clip, level, rng):
    add = int(level / MAX_LEVEL * 110)
    return np.where(clip < 128, np.minimum(clip.astype(np.int32) + add, 255),
                    clip).astype(np.uint8)


def _enhance_factor(level, rng):
    return 1.0 + _signed(level / MAX_LEVEL * 0.9, rng)


def color(clip, level, rng):
    return _blend(np.repeat(_gray(clip), 3, axis=-1), clip, _enhance_factor(level, rng))


def contrast(clip, level, rng):
    means = np.floor(_gray(clip).mean(axis=(1, 2, 3), keepdims=True) + 0.5)
    return _blend(np.broadcast_to(means, clip.shape), clip, _enhance_factor(level, rng))


def brightness(clip, level, rng):
    return _blend(np.zeros_like(clip), clip, _enhance_factor(level, rng))


def sharpness(clip, level, rng):
    kernel = np.float32([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0
    smooth = np.stack([cv2.filter2D(f, -1, kernel) for f in clip])
    smooth[:, 0], smooth[:, -1], smooth[:, :, 0], smooth[:, :, -1] = (
        clip[:, 0], clip[:, -1], clip[:, :, 0], clip[:, :, -1])  # PIL keeps the border
    return _blend(smooth, clip, _enhance_factor(level, rng))


def shear_x(clip, level, rng):
    return _affine(clip, np.float32([[1, _signed(level / MAX_LEVEL * 0.3, rng), 0], [0, 1, 0]]))


def shear_y(clip, level, rng):
    return _affine(clip, np.float32([[1, 0, 0], [_signed(level / MAX_LEVEL * 0.3, rng), 1, 0]]))


def translate_x(clip, level, rng):
    pixels = _signed(level / MAX_LEVEL * 0.45, rng) * clip.shape[2]
    return _affine(clip, np.float32([[1, 0, pixels], [0, 1, 0]]))


def translate_y(clip, level, rng):
    pixels = _signed(level / MAX_LEVEL * 0.45, rng) * clip.shape[1]
    return _affine(clip, np.float32([[1, 0, 0], [0, 1, pixels]]))


# timm's _RAND_INCREASING_TRANSFORMS, in its order
OPS = {"AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert,
       "Rotate": rotate, "PosterizeIncreasing": posterize, "SolarizeIncreasing": solarize,
       "SolarizeAdd": solarize_add, "ColorIncreasing": color,
       "ContrastIncreasing": contrast, "BrightnessIncreasing": brightness,
       "SharpnessIncreasing": sharpness, "ShearX": shear_x, "ShearY": shear_y,
       "TranslateXRel": translate_x, "TranslateYRel": translate_y}
_NAMES = list(OPS)


def rand_augment(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rand-m7-n4-mstd0.5-inc1`` on a uint8 clip (T, H, W, 3): the same ops on every frame."""
    for choice in rng.integers(0, len(_NAMES), size=NUM_OPS):
        if rng.uniform() >= OP_PROB:
            continue
        level = float(np.clip(rng.normal(MAGNITUDE, MAGNITUDE_STD), 0, MAX_LEVEL))
        clip = OPS[_NAMES[int(choice)]](np.ascontiguousarray(clip), level, rng)
    return clip
