"""Inference latency on one clip, in one process so the ratios compare: torch (the reference),
the conversion's float64 reference (once), Keras eager, ``tf.function``, ``tf.function`` with
XLA, and the exported SavedModel.

    python scripts/children/latency.py SIZE MODE OUT_DIR REPEATS

Prints {backend: seconds, best of REPEATS} as JSON.
"""

import json
import sys
import time

import converter  # noqa: F401
import keras
import numpy as np
import tensorflow as tf
import torch
from converter import find_entry
from converter.kinds import build_torch_model, parity_reference
from converter.parity import float64_forward, fused_attention


def best_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(size: str, mode: str, out: str, repeats: str) -> dict:
    entry = find_entry(size, mode, "k400")
    repeats = int(repeats)
    torch.set_grad_enabled(False)
    model_pt = build_torch_model(entry)
    rng = np.random.default_rng(0)
    video = rng.standard_normal((1, 3, entry.num_frames, entry.img_size, entry.img_size),
                                np.float32)
    video_tf = np.ascontiguousarray(video.transpose(0, 2, 3, 4, 1))
    args_pt, args_tf = (torch.from_numpy(video),), (video_tf,)
    if entry.mode == "PT":
        from torch_reference import tube_mask

        mask = tube_mask(entry.num_frames, entry.img_size, mask_ratio=entry.mask_ratio, rng=rng)
        args_pt, args_tf = args_pt + (torch.from_numpy(mask),), args_tf + (mask,)

    results = {"torch": best_seconds(lambda: model_pt(*args_pt), repeats)}
    # the conversion's float64 reference on the same clip, as it runs it (one block cast at a
    # time, fused attention)
    reference = parity_reference(entry, model_pt)
    args64 = tuple(a.double() if a.is_floating_point() else a for a in args_pt)
    with float64_forward(reference), fused_attention(reference):
        start = time.perf_counter()
        reference(*args64)  # once: it is the slowest run here
        results["torch_float64"] = time.perf_counter() - start
    model_pt = reference = None  # freed before the TensorFlow runs
    model = keras.saving.load_model(f"{out}/{entry.name}.keras")
    # a classifier takes the video; a pre-trainer [video, mask] (a second positional argument
    # would be Keras's ``training``)
    inputs = [tf.constant(a) for a in args_tf] if len(args_tf) > 1 else tf.constant(args_tf[0])
    results["keras_eager"] = best_seconds(lambda: model(inputs), repeats)
    graph = tf.function(lambda x: model(x))
    results["tf_function"] = best_seconds(lambda: graph(inputs), repeats)
    xla = tf.function(lambda x: model(x), jit_compile=True)
    results["tf_function_xla"] = best_seconds(lambda: xla(inputs), repeats)
    serving = tf.saved_model.load(f"{out}/{entry.name}").signatures["serving_default"]
    feeds = dict(zip(("video", "mask"), (tf.constant(a) for a in args_tf)))
    results["savedmodel"] = best_seconds(lambda: serving(**feeds), repeats)
    return results


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
