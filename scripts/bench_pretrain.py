"""Seconds per pre-training step of ``VideoMAEMaskedAutoencoder.fit`` on each Keras backend.

    python scripts/bench_pretrain.py --size S --batch 2 --steps 4
    python scripts/bench_pretrain.py --size S --runs jax,jax-uncompiled,tensorflow --markdown

Each run is a fresh process: the pre-trained entry's architecture of --size (random weights:
the time depends on the shapes only), Adam and the mean squared error, ``fit`` on --steps
batches of random clips and one tube mask ratio. Runs: ``jax`` (each step compiled once per
token count, ``count_jit``), ``jax-uncompiled`` (``jit_compile=False``: the steps op by op, as
every JAX pre-training step ran before ``count_jit``), ``tensorflow``, ``torch``. Prints one
JSON object per run: the first step (compiling included) and the median of the others.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RUNS = {"jax": ("jax", "auto"), "jax-uncompiled": ("jax", False),
        "tensorflow": ("tensorflow", "auto"), "torch": ("torch", "auto")}


def child(run: str, size: str, batch: int, steps: int, ratio: float) -> dict:
    """One run in this process (KERAS_BACKEND already set by the parent)."""
    import keras
    import numpy as np

    import tf_models

    preset = tf_models.get_preset(f"TFVideoMAE_{size}_K400_16x224_PT")
    model = tf_models.VideoMAEMaskedAutoencoder(**preset.model_config())
    frames, side, patch = model.num_frames, model.img_size, model.patch_size
    rng = np.random.default_rng(0)
    video = rng.standard_normal((batch * steps, frames, side, side, 3), dtype=np.float32)
    mask = tf_models.tube_mask(frames, side, patch, model.tubelet_size, ratio, batch * steps, rng)
    target = rng.standard_normal((batch * steps, int(mask[0].sum()), model.core.num_outputs),
                                 dtype=np.float32)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse",
                  jit_compile=RUNS[run][1])
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # the step's result on the host: the step is done
            seconds.append(time.perf_counter() - self.start)

    model.fit({"video": video, "mask": mask}, target, batch_size=batch, epochs=1, verbose=0,
              shuffle=False, callbacks=[Timer()])
    return {"run": run, "backend": keras.backend.backend(), "size": size, "batch": batch,
            "mask_ratio": ratio, "jit_compile": bool(model.jit_compile),
            "first_step_s": round(seconds[0], 3),
            "later_step_s": round(statistics.median(seconds[1:]), 3) if steps > 1 else None,
            "steps": len(seconds)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mask-ratio", type=float, default=0.9)
    parser.add_argument("--runs", default="jax,jax-uncompiled,tensorflow",
                        help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batch, args.steps, args.mask_ratio)))
        return
    rows = []
    for run in args.runs.split(","):
        if run not in RUNS:
            parser.error(f"--runs: unknown run {run!r}; choose from {', '.join(RUNS)}")
        env = dict(os.environ, KERAS_BACKEND=RUNS[run][0], TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", run,
                               "--size", args.size, "--batch", str(args.batch),
                               "--steps", str(args.steps), "--mask-ratio", str(args.mask_ratio)],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: run {run} failed: {done.stderr.strip().splitlines()[-1:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.markdown:
        print("\n| run | backend | jit_compile | first step | later steps (median) |")
        print("|---|---|---|---:|---:|")
        for row in rows:
            print(f"| {row['run']} | {row['backend']} | {row['jit_compile']} | "
                  f"{row['first_step_s']:.2f} s | {row['later_step_s']:.2f} s |")


if __name__ == "__main__":
    main()
