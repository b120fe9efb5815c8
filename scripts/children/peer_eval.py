"""Runs in the bench's environment, one process: the float64 reference and torch fp32 on the
parity clips, then the peer's ``.tflite``, ours and the SavedModel on the same clips (max abs
error against float64), then latency on one clip (median of repeats, round robin).

    python scripts/children/peer_eval.py SIZE CHECKPOINT PEER_TFLITE OUR_TFLITE SAVEDMODEL REPEATS
"""

import json
import os
import statistics
import sys
import time

import converter  # noqa: F401
import numpy as np
import torch
from converter import find_entry
from converter.checkpoint import read_checkpoint
from converter.kinds import build_torch_model
from converter.litert import make_interpreter, run_litert
from converter.parity import make_cases


def median_seconds(fns: dict, repeats: int) -> dict:
    """Each of ``fns`` timed in turn within each repeat (round robin), so a change of the
    machine's load during the run falls on all of them alike; the median of each."""
    for fn in fns.values():
        fn()  # warm-up: tracing, interpreter allocation
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(found) for name, found in times.items()}


def peer_errors(results: dict, peer_path: str, video: np.ndarray, error, threads: int):
    """The peer's file: torch layout (N, C, T, H, W), batch fixed at 1, so clip by clip;
    whether it takes the whole batch is recorded. Returns a fresh interpreter of it."""
    peer = make_interpreter(peer_path, num_threads=threads)
    results["runtime"]["interpreter"] = type(peer).__module__
    peer_input = peer.get_input_details()[0]
    results["peer_input_shape"] = [int(d) for d in peer_input["shape"]]
    results["peer_input_signature"] = [int(d) for d in peer_input["shape_signature"]]
    try:
        run_litert(peer, video)  # the whole batch, if its batch can be resized
        results["peer_batch2"] = "yes"
    except Exception as failure:
        first = str(failure).splitlines()[0][:160]
        results["peer_batch2"] = f"no: {type(failure).__name__}: {first}"
    peer = make_interpreter(peer_path, num_threads=threads)
    found = np.concatenate([run_litert(peer, video[i:i + 1])[0] for i in range(len(video))])
    results["err"]["peer_tflite"] = error(found)
    return peer


def main(size, checkpoint, peer_path, ours_path, saved_path, repeats) -> dict:
    repeats = int(repeats)
    entry = find_entry(size, "FT", "k400")
    video = make_cases(entry, batch=2, seed=0)[0].video_ncthw  # (2, 3, T, H, W), float32
    model = build_torch_model(entry)
    model.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    torch.set_grad_enabled(False)
    fp32 = model(torch.from_numpy(video)).numpy()
    reference = model.double()(torch.from_numpy(video).double()).numpy()
    del model
    import tensorflow as tf

    def error(found):
        return float(np.max(np.abs(np.asarray(found, dtype=np.float64) - reference)))

    video_tf = np.ascontiguousarray(video.transpose(0, 2, 3, 4, 1))
    results = {"err": {"torch_fp32": error(fp32)}, "latency_s": {}, "runtime": {}}
    threads = os.cpu_count()
    peer = peer_errors(results, peer_path, video, error, threads)
    ours = make_interpreter(ours_path, num_threads=threads)
    results["err"]["our_tflite"] = error(run_litert(ours, video_tf)[0])
    serving = tf.saved_model.load(saved_path).signatures["serving_default"]
    results["err"]["savedmodel"] = error(serving(video=tf.constant(video_tf))["logits"].numpy())

    one, one_tf, two_tf = video[:1], video_tf[:1], video_tf
    # one interpreter per batch size: resizing one in turn would time its reallocation too
    ours2 = make_interpreter(ours_path, num_threads=threads)
    feeds1, feeds2 = tf.constant(one_tf), tf.constant(two_tf)
    results["latency_s"] = median_seconds({
        "peer_tflite": lambda: run_litert(peer, one),
        "our_tflite": lambda: run_litert(ours, one_tf),
        "savedmodel": lambda: serving(video=feeds1),
        "our_tflite_batch2": lambda: run_litert(ours2, two_tf),
        "savedmodel_batch2": lambda: serving(video=feeds2)}, repeats)
    return results


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
