"""Upstream's test-time data pipeline and result merge, as an independent reference.

Follows upstream VideoMAE's code path step by step (``kinetics.py`` / ``ssv2.py``
``loadvideo_decord`` + ``__getitem__`` in mode ``test``, ``functional.resize_clip``,
``volume_transforms.ClipToTensor``, ``functional.normalize``, ``engine_for_finetuning.merge``)
with one substitution: the whole video is decoded into a list with PyAV instead of decord's
``VideoReader`` + ``get_batch``. Everything after decoding is upstream's own arithmetic in
upstream's order: a list of indices, a batch of uint8 frames, an OpenCV resize of the whole
batch, the crop of one (temporal, spatial) view, a float64 buffer cast to a float32 tensor,
``/255`` and in-place ``sub_(mean).div_(std)`` in torch, channels-first.

Used by the tests to check the TensorFlow side's views and merged scores; it shares no code
with ``tf_models.video``.
"""

from __future__ import annotations

import numpy as np
import torch

KINETICS_LIKE = ("k400", "ucf101")
# VideoMAE V2 reads these through the same VideoClsDataset (dataset/build.py) with its
# scripts' --sampling_rate: 4, but 2 for HMDB51 (scripts/finetune/vit_g_k710_it_hmdb51_ft.sh)
KINETICS_LIKE += ("k600", "k710", "hmdb51")
SAMPLING_RATE = {"hmdb51": 2}


def decode_all_frames(path):
    """Every frame of the first video stream as RGB uint8 (H, W, 3), like ``VideoReader``."""
    import av

    with av.open(path) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def upstream_indices(dataset, num_decoded, clip_len=16, frame_sample_rate=4, num_segment=16,
                     test_num_segment=2):
    """``loadvideo_decord``'s ``all_index`` in test mode."""
    if dataset in KINETICS_LIKE:
        all_index = [x for x in range(0, num_decoded, frame_sample_rate)]
        while len(all_index) < clip_len:
            all_index.append(all_index[-1])
        return all_index
    tick = num_decoded / float(num_segment)
    all_index = list(np.array([int(tick / 2.0 + tick * x) for x in range(num_segment)]
                              + [int(tick * x) for x in range(num_segment)]))
    while len(all_index) < (num_segment * test_num_segment):
        all_index.append(all_index[-1])
    return list(np.sort(np.array(all_index)))


def upstream_resize_clip(clip, size):
    """``functional.resize_clip(clip, size, 'bilinear')`` for numpy frames."""
    import cv2

    im_h, im_w, _ = clip[0].shape
    if (im_w <= im_h and im_w == size) or (im_h <= im_w and im_h == size):
        return clip
    if im_w < im_h:
        ow, oh = size, int(size * im_h / im_w)
    else:
        oh, ow = size, int(size * im_w / im_h)
    return [cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR) for img in clip]


def clip_to_tensor_normalized(buffer):
    """``ClipToTensor()`` then ``Normalize(ImageNet)``: (T, H, W, C) uint8 -> (C, T, H, W)."""
    channels, frames = buffer.shape[3], buffer.shape[0]
    np_clip = np.zeros([channels, frames, buffer.shape[1], buffer.shape[2]])
    for index, img in enumerate(buffer):
        np_clip[:, index, :, :] = img.transpose(2, 0, 1)
    tensor = torch.from_numpy(np_clip).float()
    tensor = torch.div(tensor, 255)
    mean = torch.as_tensor([0.485, 0.456, 0.406], dtype=tensor.dtype)
    std = torch.as_tensor([0.229, 0.224, 0.225], dtype=tensor.dtype)
    return tensor.clone().sub_(mean[:, None, None, None]).div_(std[:, None, None, None])


def upstream_test_views(path, dataset, clip_len=16, short_side_size=224, test_num_segment=None,
                        test_num_crop=3):
    """Every test view of one video, in (chunk_nb, split_nb) order.

    Returns (uint8 views (V, T, S, S, 3), normalised float32 views (V, C, T, S, S) as torch).
    """
    if test_num_segment is None:
        test_num_segment = 5 if dataset in KINETICS_LIKE else 2
    frames = decode_all_frames(path)
    all_index = upstream_indices(dataset, len(frames), clip_len=clip_len,
                                 frame_sample_rate=SAMPLING_RATE.get(dataset, 4),
                                 num_segment=clip_len, test_num_segment=test_num_segment)
    buffer = np.stack([frames[i] for i in all_index])  # vr.get_batch(all_index).asnumpy()
    buffer = upstream_resize_clip(buffer, short_side_size)
    if isinstance(buffer, list):
        buffer = np.stack(buffer, 0)
    raw, normalised = [], []
    for chunk_nb in range(test_num_segment):
        for split_nb in range(test_num_crop):
            spatial_step = 1.0 * (max(buffer.shape[1], buffer.shape[2]) - short_side_size) \
                / (test_num_crop - 1)
            spatial_start = int(split_nb * spatial_step)
            if dataset in KINETICS_LIKE:
                temporal_step = max(1.0 * (buffer.shape[0] - clip_len)
                                    / (test_num_segment - 1), 0)
                temporal_start = int(chunk_nb * temporal_step)
                frames_slice = slice(temporal_start, temporal_start + clip_len)
            else:
                frames_slice = slice(chunk_nb, None, 2)
            if buffer.shape[1] >= buffer.shape[2]:
                view = buffer[frames_slice, spatial_start:spatial_start + short_side_size, :, :]
            else:
                view = buffer[frames_slice, :, spatial_start:spatial_start + short_side_size, :]
            raw.append(view)
            normalised.append(clip_to_tensor_normalized(view))
    return np.stack(raw), torch.stack(normalised)


def _softmax(logits):
    # scipy.special.softmax, which upstream's merge calls, in float64
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits)
    exp = np.exp(shifted)
    return exp / exp.sum()


def upstream_merge(lines):
    """``engine_for_finetuning.merge`` over ``(video, logits, label, chunk_nb, split_nb)`` rows.

    Returns (top1 %, top5 %). Like upstream: softmax per view, a repeated (chunk, split) of a
    video is dropped, mean over a video's views, argmax for top-1, ``argsort(-p)[:5]`` for top-5.
    """
    feats, labels, positions = {}, {}, {}
    for name, logits, label, chunk_nb, split_nb in lines:
        data = _softmax(logits)
        if name not in feats:
            feats[name], labels[name], positions[name] = [], 0, []
        key = str(chunk_nb) + str(split_nb)  # upstream concatenates the two strings
        if key in positions[name]:
            continue
        feats[name].append(data)
        positions[name].append(key)
        labels[name] = label
    top1, top5 = [], []
    for name in feats:
        feat = np.mean(feats[name], axis=0)
        pred = np.argmax(feat)
        top1.append((int(pred) == int(labels[name])) * 1.0)
        top5.append((int(labels[name]) in np.argsort(-feat)[:5]) * 1.0)
    return float(np.mean(top1) * 100), float(np.mean(top5) * 100)
