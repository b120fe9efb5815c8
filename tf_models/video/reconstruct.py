"""Masked-autoencoder reconstructions: clips in, pictures of what the pre-trained model sees out.

The VideoMAE pre-trained model takes an ImageNet-normalised clip and a tube mask (bool (B, N),
True = masked, tokens in (t, h, w) order) and predicts, for every masked token in ascending
token order, ``tubelet*patch*patch*3`` values (1536 for 2x16x16): the pixels of that patch
normalised by the patch's OWN statistics. Upstream's convention, read from
MCG-NJU/VideoMAE ``engine_for_pretraining.py`` (training targets) and ``run_videomae_vis.py``
(visualisation):

1. un-normalise the clip back to [0, 1]: ``x * std + mean`` with the ImageNet constants;
2. cut it into patches ``b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c``;
3. per patch and per channel, over the ``p0*p1*p2`` pixels:
   ``(x - mean) / (sqrt(unbiased var) + 1e-6)``;
4. flatten ``b n p c -> b n (p c)`` (the channel varies fastest).

To view a prediction, upstream's visualisation multiplies by the same ``std + 1e-6`` and adds
the same mean, taken from the ground-truth clip's own patches (the statistics of each masked
patch itself, which the model never saw). This module does the same.

Everything here is channels-last: one clip is (T, H, W, 3), a batch (B, T, H, W, 3). The
arithmetic is numpy only; PIL draws the pictures, ``decode`` reads video files, and TensorFlow
/ Keras load only in :func:`load_pretrained_model`. Torch-free, like all of ``tf_models``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..artifacts.files import partial_path, remove_dead_partials, replaced_when_written
from ..masking import masked_per_frame, tube_mask
from ..presets import IMAGENET_MEAN, IMAGENET_STD, Preset, get_preset
from .decode import VideoError, decode_sampled
from .protocol import resize_short_side

#: added to the unbiased per-patch standard deviation, as upstream does
PATCH_STD_EPS = 1e-6

#: the mask ratio when the model's preset is unknown (upstream's K400 and SSv2 runs)
DEFAULT_MASK_RATIO = 0.9

__all__ = [
    "PATCH_STD_EPS", "ReconstructionError", "ClipReadError", "PretrainedModel",
    "normalize_clip", "denormalize_clip", "patchify", "unpatchify", "patch_stats",
    "normalize_patches", "masked_targets", "masked_mse", "denormalize_predictions",
    "reconstruct", "write_strip", "write_gif", "read_clip", "run_reconstruction",
    "load_pretrained_model", "reconstruct_clip",
]


class ReconstructionError(ValueError):
    """A model, clip or output that reconstruction cannot use; ``str()`` is one line."""


class ClipReadError(ReconstructionError):
    """A clip file that cannot be read: unknown extension, bad shape or values, bad video."""


# --------------------------------------------------------------------------- helpers

def _to_numpy(x) -> np.ndarray:
    """numpy array from numpy / torch / tensorflow values, without importing either framework."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        return x.cpu().numpy()
    if hasattr(x, "numpy"):  # tf.Tensor / keras tensor
        return np.asarray(x.numpy())
    return np.asarray(x)


def _check_video(video: np.ndarray, name: str, tubelet: int, patch: int) -> None:
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"{name}: expected (B, T, H, W, 3), got shape {tuple(video.shape)}")
    _, t, h, w, _ = video.shape
    if t % tubelet or h % patch or w % patch:
        raise ValueError(f"{name}: T={t}, H={h}, W={w} must be multiples of tubelet={tubelet} "
                         f"and patch={patch}")


def _as_batch(video) -> np.ndarray:
    video = _to_numpy(video)
    return video[None] if video.ndim == 4 else video


def _check_mask(mask, batch: int, num_tokens: int) -> np.ndarray:
    mask = _to_numpy(mask)
    if mask.ndim == 1:
        mask = mask[None]
    mask = mask.reshape(mask.shape[0], -1).astype(bool)
    if mask.shape[0] == 1 and batch > 1:
        mask = np.broadcast_to(mask, (batch, mask.shape[1]))
    if mask.shape != (batch, num_tokens):
        raise ValueError(f"mask: expected bool ({batch}, {num_tokens}) with True = masked, "
                         f"got shape {tuple(mask.shape)}")
    counts = mask.sum(axis=1)
    if counts.size and not np.all(counts == counts[0]):
        raise ValueError(f"mask: every row must mask the same number of tokens, got "
                         f"{sorted(set(counts.tolist()))}")
    return mask


# --------------------------------------------------------------------------- pixel space

def normalize_clip(frames) -> np.ndarray:
    """ImageNet-normalised float32 from uint8 0-255 or float 0-1 frames (last axis = RGB)."""
    frames = _to_numpy(frames)
    if frames.shape[-1] != 3:
        raise ValueError(f"normalize_clip: the last axis must be RGB (3), got {frames.shape}")
    x = frames.astype(np.float32)
    if frames.dtype == np.uint8:
        x = x / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    return ((x - mean) / std).astype(np.float32)


def denormalize_clip(frames) -> np.ndarray:
    """Inverse of :func:`normalize_clip`: float32 in [0, 1]-space (not clipped)."""
    x = _to_numpy(frames).astype(np.float32)
    if x.shape[-1] != 3:
        raise ValueError(f"denormalize_clip: the last axis must be RGB (3), got {x.shape}")
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    return (x * std + mean).astype(np.float32)


# --------------------------------------------------------------------------- patches

def patchify(video_nthwc, tubelet: int = 2, patch: int = 16) -> np.ndarray:
    """(B, T, H, W, 3) -> (B, N, tubelet*patch*patch, 3).

    Tokens in (t, h, w) order and pixels in (p0, p1, p2) order, the channels-last equivalent
    of upstream's ``b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c``.
    """
    video = _to_numpy(video_nthwc)
    _check_video(video, "patchify", tubelet, patch)
    b, t, h, w, c = video.shape
    nt, nh, nw = t // tubelet, h // patch, w // patch
    x = video.reshape(b, nt, tubelet, nh, patch, nw, patch, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)  # b, t, h, w, p0, p1, p2, c
    return np.ascontiguousarray(x).reshape(b, nt * nh * nw, tubelet * patch * patch, c)


def unpatchify(patches, video_shape: tuple[int, int, int] | None = None, tubelet: int = 2,
               patch: int = 16) -> np.ndarray:
    """Exact inverse of :func:`patchify`: (B, N, tubelet*patch*patch, 3) -> (B, T, H, W, 3).

    ``video_shape`` is (T, H, W); without it the frames are taken to be square with
    ``224 // patch`` patches a side when N allows, else the largest square grid dividing N.
    Flattened patches (B, N, P*3) with the channel fastest are accepted as well.
    """
    x = _to_numpy(patches)
    pixels = tubelet * patch * patch
    if x.ndim == 3 and x.shape[-1] == pixels * 3:
        x = x.reshape(x.shape[0], x.shape[1], pixels, 3)
    if x.ndim != 4 or x.shape[2] != pixels:
        raise ValueError(f"unpatchify: expected (B, N, {pixels}, C), got {tuple(x.shape)}")
    b, n, _, c = x.shape
    if video_shape is None:
        nh = 224 // patch
        if n % (nh * nh):
            nh = int(np.sqrt(n))
            while nh > 1 and n % (nh * nh):
                nh -= 1
        nw = nh
        nt = n // (nh * nw)
    else:
        t, h, w = video_shape
        nt, nh, nw = t // tubelet, h // patch, w // patch
        if nt * nh * nw != n or t % tubelet or h % patch or w % patch:
            raise ValueError(f"unpatchify: {n} tokens do not tile a {t}x{h}x{w} clip with "
                             f"tubelet={tubelet}, patch={patch}")
    x = x.reshape(b, nt, nh, nw, tubelet, patch, patch, c)
    x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)  # b, t, p0, h, p1, w, p2, c
    return np.ascontiguousarray(x).reshape(b, nt * tubelet, nh * patch, nw * patch, c)


def patch_stats(patches) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch, per-channel ``(mean, std + 1e-6)`` over the pixel axis, each (..., 1, 3).

    The std is the unbiased one (``ddof=1``), as upstream's ``var(unbiased=True)``. Computed in
    float64.
    """
    x = _to_numpy(patches).astype(np.float64)
    mean = x.mean(axis=-2, keepdims=True)
    scale = np.sqrt(x.var(axis=-2, ddof=1, keepdims=True)) + PATCH_STD_EPS
    return mean, scale


def normalize_patches(patches) -> np.ndarray:
    """Upstream's pixel targets: (B, N, P, 3) [0,1]-space patches -> (B, N, P*3) float32.

    Each patch minus its per-channel mean, over its unbiased std + 1e-6, then flattened with
    the channel fastest (``b n p c -> b n (p c)``).
    """
    x = _to_numpy(patches).astype(np.float64)
    mean, scale = patch_stats(x)
    normed = (x - mean) / scale
    return normed.reshape(*normed.shape[:-2], -1).astype(np.float32)


def masked_targets(video01, mask, tubelet: int = 2, patch: int = 16) -> np.ndarray:
    """The training targets of the masked tokens: (B, n_masked, P*3), ascending token order.

    ``video01`` is the clip in [0, 1]-space (B, T, H, W, 3). A perfect predictor outputs
    exactly this.
    """
    video = _as_batch(video01)
    targets = normalize_patches(patchify(video, tubelet, patch))
    mask = _check_mask(mask, targets.shape[0], targets.shape[1])
    return targets[mask].reshape(targets.shape[0], -1, targets.shape[-1])


def masked_mse(predictions, video01, mask, tubelet: int = 2, patch: int = 16) -> float:
    """Upstream's pre-training loss (MSE to the normalised pixel targets of the masked tokens)."""
    pred = _to_numpy(predictions).astype(np.float64)
    target = masked_targets(video01, mask, tubelet, patch).astype(np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"masked_mse: predictions {tuple(pred.shape)} vs targets "
                         f"{tuple(target.shape)}")
    return float(np.mean((pred - target) ** 2))


def denormalize_predictions(pred, video01, mask, tubelet: int = 2,
                            patch: int = 16) -> np.ndarray:
    """Predicted masked patches back in [0,1]-space pixels: (B, n_masked, P, 3) float32.

    ``pred`` is the model output (B, n_masked, P*3) in upstream's ``(p c)`` layout;
    ``video01`` the ground-truth clip in [0, 1]-space (B, T, H, W, 3); ``mask`` bool (B, N).
    As upstream's visualisation, each masked patch is scaled by the ground-truth patch's own
    ``std + 1e-6`` and shifted by its mean. Values are not clipped.
    """
    video = _as_batch(video01)
    patches = patchify(video, tubelet, patch)
    b, n, p, c = patches.shape
    mask = _check_mask(mask, b, n)
    n_masked = int(mask[0].sum()) if b else 0
    pred = _to_numpy(pred)
    if pred.ndim == 2 and b == 1:
        pred = pred[None]
    if pred.shape[:2] != (b, n_masked) or int(np.prod(pred.shape[2:])) != p * c:
        raise ValueError(f"predictions: expected ({b}, {n_masked}, {p * c}) for {n_masked} "
                         f"masked tokens, got {tuple(pred.shape)}")
    pred = pred.astype(np.float64).reshape(b, n_masked, p, c)
    mean, scale = patch_stats(patches)
    mean = mean[mask].reshape(b, n_masked, 1, c)
    scale = scale[mask].reshape(b, n_masked, 1, c)
    return (pred * scale + mean).astype(np.float32)


def reconstruct(video_nthwc_normalised, mask, predictions, tubelet: int = 2, patch: int = 16,
                mask_value: float = 0.5) -> dict[str, np.ndarray]:
    """Original, masked and reconstructed clips, each (B, T, H, W, 3) float32 in [0, 1].

    ``video_nthwc_normalised`` is the ImageNet-normalised model input ((T, H, W, 3) is taken
    as a batch of one); ``mask`` bool (B, N), True = masked; ``predictions`` the model output
    (B, n_masked, P*3). ``masked`` shows the visible patches with the masked ones filled with
    ``mask_value`` (0.5 = grey; upstream's visualisation uses 0 = black). ``reconstruction``
    keeps the visible patches of the original and puts the de-normalised predictions in the
    masked ones.
    """
    video = _as_batch(video_nthwc_normalised)
    _check_video(video, "reconstruct", tubelet, patch)
    original = denormalize_clip(video)
    patches = patchify(original, tubelet, patch)
    b, n, p, c = patches.shape
    mask = _check_mask(mask, b, n)
    predicted = denormalize_predictions(predictions, original, mask, tubelet, patch)

    shape = original.shape[1:4]
    rec = patches.copy()
    rec[mask] = predicted.reshape(-1, p, c)
    masked = patches.copy()
    masked[mask] = np.float32(mask_value)
    return {
        "original": np.clip(original, 0.0, 1.0),
        "masked": np.clip(unpatchify(masked, shape, tubelet, patch), 0.0, 1.0),
        "reconstruction": np.clip(unpatchify(rec, shape, tubelet, patch), 0.0, 1.0),
    }


# --------------------------------------------------------------------------- pictures

def _one_clip(video, index: int) -> np.ndarray:
    x = _to_numpy(video)
    if x.ndim == 5:
        x = x[index]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected a clip (T, H, W, 3) or a batch (B, T, H, W, 3), got "
                         f"{tuple(_to_numpy(video).shape)}")
    return x


def _to_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    return (np.clip(x.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _three_clips(original, masked, reconstruction, index: int):
    clips = [_to_uint8(_one_clip(v, index)) for v in (original, masked, reconstruction)]
    if not clips[0].shape == clips[1].shape == clips[2].shape:
        raise ValueError(f"original / masked / reconstruction shapes differ: "
                         f"{[c.shape for c in clips]}")
    return clips


def _default_frames(num_frames: int, count: int = 8) -> list[int]:
    step = max(1, num_frames // count)
    return list(range(0, num_frames, step))[:count]


def write_strip(path, original, masked, reconstruction, frames=None, index: int = 0,
                gap: int = 2, background: int = 255) -> Path:
    """PNG with three rows (original / masked / reconstruction) of a few frames of one clip.

    Clips are (T, H, W, 3) or batches (B, T, H, W, 3) (``index`` picks the clip), float in
    [0, 1] or uint8. ``frames`` lists the frame indices (default up to 8 evenly spaced).
    The image is ``len(frames)*W + (len(frames)-1)*gap`` wide and ``3*H + 2*gap`` high.
    """
    from PIL import Image

    rows = _three_clips(original, masked, reconstruction, index)
    t, h, w, _ = rows[0].shape
    frames = _default_frames(t) if frames is None else [int(f) for f in frames]
    if not frames or any(f < -t or f >= t for f in frames):
        raise ValueError(f"write_strip: frames {frames} out of range for a {t}-frame clip")
    k = len(frames)
    canvas = np.full((3 * h + 2 * gap, k * w + (k - 1) * gap, 3), background, dtype=np.uint8)
    for r, clip in enumerate(rows):
        for i, f in enumerate(frames):
            y, x = r * (h + gap), i * (w + gap)
            canvas[y:y + h, x:x + w] = clip[f]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas, "RGB").save(path, format="PNG")
    return path


def write_gif(path, original, masked, reconstruction, index: int = 0, fps: float = 8.0,
              gap: int = 2, background: int = 255, loop: int = 0) -> Path:
    """Animated GIF: original | masked | reconstruction side by side, one GIF frame per frame.

    Each GIF frame is ``3*W + 2*gap`` wide and H high; ``fps`` frames a second.
    """
    from PIL import Image

    cols = _three_clips(original, masked, reconstruction, index)
    t, h, w, _ = cols[0].shape
    images = []
    for f in range(t):
        canvas = np.full((h, 3 * w + 2 * gap, 3), background, dtype=np.uint8)
        for i, clip in enumerate(cols):
            canvas[:, i * (w + gap):i * (w + gap) + w] = clip[f]
        images.append(Image.fromarray(canvas, "RGB"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = max(1, int(round(1000.0 / fps)))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration, loop=loop, optimize=False, disposal=1)
    return path


# --------------------------------------------------------------------------- reading clips

def _video_frames(path: str, num_frames: int, img_size: int, sampling_rate: int) -> np.ndarray:
    """The sampled frames of a video file as uint8 (num_frames, H', W', 3), short side already
    ``img_size``: only those frames are kept while decoding, whatever the video's length."""
    def indices_for(count: int) -> np.ndarray:
        return _sample_indices(count, num_frames, sampling_rate)

    try:
        kept, count = decode_sampled(path, indices_for, transform=lambda frame: resize_short_side(
            frame, frame.shape[0], frame.shape[1], img_size))
    except VideoError as error:
        raise ClipReadError(f"{error} (a clip is a video file or a .npy array of frames "
                            f"(T, H, W, 3))") from None
    return np.stack([kept[index] for index in indices_for(count)])


def _npy_frames(path: str) -> np.ndarray:
    """The array of a ``.npy`` clip, refused in one line where numpy cannot read one."""
    if not Path(path).is_file():
        raise ClipReadError(f"{path}: no such file")
    hint = "save frames (T, H, W, 3), uint8 or float, with numpy.save"
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(np.lib.format.MAGIC_PREFIX))
        if magic != np.lib.format.MAGIC_PREFIX:
            found = "a zip archive (.npz?)" if magic.startswith(b"PK") else "another kind of file"
            raise ClipReadError(f"{path}: is not a .npy array (no NumPy header: {found}); {hint}")
        frames = np.load(path, allow_pickle=False)  # never unpickle what a clip file holds
    except (ValueError, OSError, EOFError) as error:
        if isinstance(error, ClipReadError):
            raise
        # an object array, a file cut short, an unreadable file: numpy's words, on one line
        reason = " ".join(str(getattr(error, "strerror", None) or error).split())[:160]
        raise ClipReadError(f"{path}: cannot read it as a .npy array "
                            f"({reason or type(error).__name__}); {hint}") from None
    return frames


def _sample_indices(total: int, num_frames: int, sampling_rate: int) -> np.ndarray:
    """Centred window of ``num_frames`` frames every ``sampling_rate`` frames.

    Short clips use a smaller stride (a clip of exactly ``num_frames`` frames is taken
    whole); clips shorter than ``num_frames`` repeat their last frame.
    """
    stride = max(1, min(int(sampling_rate), total // num_frames))
    span = (num_frames - 1) * stride + 1
    start = max(0, (total - span) // 2)
    idx = start + np.arange(num_frames) * stride
    return np.minimum(idx, total - 1)


def read_clip(path, num_frames: int = 16, img_size: int = 224,
              sampling_rate: int = 4) -> np.ndarray:
    """One clip as float32 (num_frames, img_size, img_size, 3) in [0, 1].

    ``.npy`` files hold frames (T, H, W, 3), uint8 0-255 or float 0-1 (grey (T, H, W) frames
    are repeated into 3 channels, RGBA (T, H, W, 4) loses its alpha); any other file is
    decoded as a video (``decode.decode_sampled``, PyAV), keeping only the frames it samples.
    Frames are taken every ``sampling_rate`` frames from a window centred in the clip (a
    smaller stride for short clips), the short side resized to ``img_size`` (upstream's
    bilinear ``resize_clip`` rule, ``protocol.resize_short_side``), then centre-cropped.
    Raises ClipReadError (one line) for a file it cannot read or frames it cannot use.
    """
    path = os.fspath(path)
    from_npy = Path(path).suffix.lower() == ".npy"
    if from_npy:
        frames = _npy_frames(path)
    else:  # already sampled while decoding
        frames = _video_frames(path, num_frames, img_size, sampling_rate)

    if frames.ndim == 3 and frames.shape[-1] != 3:  # grey frames (T, H, W)
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or 0 in frames.shape[:3]:
        raise ClipReadError(f"{path}: expected frames (T, H, W, 3) with T, H and W at least 1, "
                            f"got shape {frames.shape}")
    frames = frames[..., :3]
    if frames.dtype == np.uint8:
        pass
    elif np.issubdtype(frames.dtype, np.floating):
        lo, hi = float(np.nanmin(frames)), float(np.nanmax(frames))
        if not np.isfinite(frames).all() or lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ClipReadError(f"{path}: float frames must lie in [0, 1], got [{lo}, {hi}] "
                                f"(store uint8 0-255 or divide by 255)")
        frames = np.clip(frames, 0.0, 1.0).astype(np.float32)
    else:
        raise ClipReadError(f"{path}: frames must be uint8 (0-255) or float (0-1), got "
                            f"{frames.dtype}")

    if from_npy:
        frames = frames[_sample_indices(frames.shape[0], num_frames, sampling_rate)]
    _, h, w, _ = frames.shape
    frames = np.stack([resize_short_side(np.ascontiguousarray(f), h, w, img_size)
                       for f in frames])
    _, h, w, _ = frames.shape
    top, left = (h - img_size) // 2, (w - img_size) // 2
    frames = frames[:, top:top + img_size, left:left + img_size]
    out = frames.astype(np.float32)
    if frames.dtype == np.uint8:
        out /= np.float32(255.0)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0))


# --------------------------------------------------------------------------- end to end

def run_reconstruction(predict_fn, clip01, mask_ratio: float = 0.9, seed: int | None = 0,
                       tubelet: int = 2, patch: int = 16, mask=None,
                       mask_value: float = 0.5) -> dict[str, np.ndarray]:
    """Mask a clip, run ``predict_fn`` on it and return :func:`reconstruct`'s dict.

    ``clip01`` is (T, H, W, 3) or (B, T, H, W, 3) in [0, 1] (uint8 accepted).
    ``predict_fn(video, mask)`` gets the ImageNet-normalised float32 batch (B, T, H, W, 3) and
    the bool tube mask (B, N), True = masked, and returns (B, n_masked, P*3) predictions
    (numpy, torch or tensorflow). A tube mask is drawn with ``mask_ratio`` and
    ``numpy.random.default_rng(seed)`` unless ``mask`` is given. The dict also carries
    ``mask`` and ``predictions`` (numpy) next to original / masked / reconstruction.
    """
    clip = _as_batch(clip01)
    _check_video(clip, "run_reconstruction", tubelet, patch)
    b, t, h, w, _ = clip.shape
    if mask is None:
        if h != w:
            raise ValueError(f"run_reconstruction: tube masks need square frames, got {h}x{w}; "
                             f"pass mask= explicitly")
        mask = tube_mask(num_frames=t, img_size=h, patch_size=patch, tubelet_size=tubelet,
                         mask_ratio=mask_ratio, batch_size=b, rng=np.random.default_rng(seed))
    mask = _check_mask(mask, b, (t // tubelet) * (h // patch) * (w // patch))
    video = normalize_clip(clip)
    predictions = _to_numpy(predict_fn(video, mask))
    out = reconstruct(video, mask, predictions, tubelet, patch, mask_value=mask_value)
    out["mask"] = mask
    out["predictions"] = predictions
    return out


# --------------------------------------------------------------------------- converted models

@dataclass
class PretrainedModel:
    """A converted pre-trained (PT) model as reconstruction uses it: ``predict(video_nthwc,
    mask) -> pixels`` (numpy) and the clip geometry it takes."""

    predict: Callable
    num_frames: int
    img_size: int
    patch_size: int
    tubelet_size: int
    preset: Optional[Preset] = None  # the zoo preset, where the artifact is a zoo entry's

    @property
    def mask_ratio(self) -> float:
        """The preset's pre-training mask ratio, else upstream's 0.9."""
        return self.preset.mask_ratio if self.preset is not None else DEFAULT_MASK_RATIO


def _preset_named(name: str) -> Optional[Preset]:
    try:
        return get_preset(name)
    except KeyError:
        return None


def _load_pretrained_savedmodel(path: str) -> PretrainedModel:
    import tensorflow as tf

    from ..artifacts.resolve import PresetError, load_savedmodel

    try:
        signature = load_savedmodel(path)
    except PresetError as error:
        raise ReconstructionError(str(error)) from None
    loaded, serving, specs = signature.keep_alive, signature.serve, signature.inputs
    if signature.takes_raw_frames:
        raise ReconstructionError(signature.raw_frames_refusal(path))
    if "mask" not in specs:
        raise ReconstructionError(f"{path}: SavedModel takes no mask: a classifier or an "
                                  f"encoder, not a pre-trained (PT) masked autoencoder; convert "
                                  f"a PT checkpoint with --mode PT, without --encoder-only")
    _, frames, size, _, _ = specs["video"].shape
    # the patch embedding's Conv3D kernel (tubelet, patch, patch, 3, dim) is its only 5-D one
    kernel = next(v for v in loaded.model_variables if len(v.shape) == 5)
    tubelet, patch = int(kernel.shape[0]), int(kernel.shape[1])

    def predict(video, mask):
        outputs = serving(video=tf.constant(video), mask=tf.constant(mask))
        # "pixels"; a SavedModel converted before that name was given calls it "logits"
        return outputs.get("pixels", outputs.get("logits")).numpy()
    predict.keep_alive = loaded  # the signature needs its object graph alive
    return PretrainedModel(predict, int(frames), int(size), patch, tubelet,
                           _preset_named(os.path.basename(path.rstrip("/" + os.sep))))


def load_pretrained_model(spec: str) -> PretrainedModel:
    """A converted PT model from ``spec``: a SavedModel folder, or anything
    ``VideoMAEMaskedAutoencoder.from_preset`` takes (a ``.keras`` / ``.weights.h5`` file, a zoo
    name, a release URL). Raises ReconstructionError (one line) for anything else."""
    spec = os.fspath(spec)
    if os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "saved_model.pb")):
        return _load_pretrained_savedmodel(spec)
    import keras

    from ..hub import PresetError
    from ..pretrain import VideoMAEMaskedAutoencoder

    try:
        model = VideoMAEMaskedAutoencoder.from_preset(spec)
    except PresetError as error:
        raise ReconstructionError(str(error)) from None

    def predict(video, mask):
        return keras.ops.convert_to_numpy(model({"video": video, "mask": mask}))
    return PretrainedModel(predict, model.num_frames, model.img_size, model.patch_size,
                           model.tubelet_size, getattr(model, "preset", None))


def reconstruct_clip(model_path: str, clip_path: str, out_path: str,
                     mask_ratio: Optional[float] = None, seed: int = 0,
                     sampling_rate: int = 4,
                     on_phase: Optional[Callable[[str], None]] = None) -> dict:
    """Run a converted PT model on a clip and write original / masked / reconstruction.

    ``out_path`` ending in ``.gif`` writes an animation, anything else a PNG strip, whole or
    not at all. The mask ratio defaults to the model's preset's (0.9 when it has none).
    ``on_phase(name)`` is called before the image is written (``run_stoppably``'s check).
    Returns :func:`run_reconstruction`'s dict plus ``mask_ratio`` and ``path``.
    """
    model = load_pretrained_model(model_path)
    mask_ratio = model.mask_ratio if mask_ratio is None else mask_ratio
    masked, per_frame = masked_per_frame(model.img_size, model.patch_size, mask_ratio)
    if not 0 < masked < per_frame:
        raise ReconstructionError(
            f"--mask-ratio {mask_ratio:g}: masks {max(masked, 0)} of the {per_frame} patches "
            f"of each frame; a reconstruction needs masked and visible patches: use a ratio "
            f"from {math.ceil(1e4 / per_frame) / 1e4:g} to "
            f"{math.floor(1e4 * (per_frame - 1) / per_frame) / 1e4:g}")
    clip = read_clip(clip_path, num_frames=model.num_frames, img_size=model.img_size,
                     sampling_rate=sampling_rate)
    result = run_reconstruction(model.predict, clip, mask_ratio=mask_ratio, seed=seed,
                                tubelet=model.tubelet_size, patch=model.patch_size)
    if on_phase is not None:
        on_phase("write")
    writer = write_gif if out_path.lower().endswith(".gif") else write_strip
    try:
        remove_dead_partials(out_path)  # killed runs' (SIGKILL: nothing cleaned up after them)
        # this run's own file: another run writing the same --out at once writes its own
        with replaced_when_written(partial_path(out_path), out_path) as tmp:
            # a stop signal too: no half-written image, and the partial file removed
            writer(tmp, result["original"], result["masked"], result["reconstruction"])
    except OSError as error:
        raise ReconstructionError(f"{out_path}: cannot write it ({error.strerror or error}); "
                                  f"choose another --out") from None
    result["mask_ratio"] = mask_ratio
    result["path"] = out_path
    return result
