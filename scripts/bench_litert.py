#!/usr/bin/env python
"""LiteRT and Keras int8: sizes, error against the float64 reference, latency; one run.

    python scripts/bench_litert.py --sizes S,B --out bench-litert/ [--markdown table.md]

For each size: converts the synthetic K400 FT entry (``converter.convert``, every check on),
then writes the model as LiteRT fp32 (what ``--litert`` ships), fp16 and dynamic-range int8,
and quantises a copy with Keras's own ``model.quantize("int8")``. Each is run on the same two
clips as the torch reference in float64 (upstream's architecture, every weight random), and
timed on one clip against the converted SavedModel in the same process (median of repeats).
Ratios from one run are what to compare; absolute times depend on the machine's load.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import click

import converter
from converter.synthetic import synthetic_path
from converter.checkpoint import read_checkpoint
from converter.synthetic import write_synthetic_checkpoint
from converter.kinds import build_torch_model
from converter.zoo import find_entry


def float64_reference(entry, clips, folder):
    import torch

    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, folder), 0)
    model = build_torch_model(entry)
    model.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    model = model.double()
    video = torch.from_numpy(clips.transpose(0, 4, 1, 2, 3).copy()).double()
    with torch.inference_mode():
        return model(video).numpy()


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, files in os.walk(path) for name in files)


def median_seconds(fn, repeats):
    fn()  # warm-up: graph tracing, interpreter allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_size(size: str, out: str, repeats: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from converter.litert import litert_bytes, make_interpreter, run_litert

    entry = find_entry(size, "FT", "k400")
    result = converter.convert(entry, out, synthetic=True, seed=0, force=True, progress=False)
    model = keras.saving.load_model(result.paths["keras"], compile=False)
    rng = np.random.default_rng(0)
    clips = rng.random((2, 16, 224, 224, 3), dtype=np.float32) * 4 - 2
    reference = float64_reference(entry, clips, out)
    weights = os.path.getsize(result.paths["weights"])
    serving = tf.saved_model.load(result.paths["savedmodel"]).signatures["serving_default"]
    one = tf.constant(clips[:1])
    rows = {}

    def error(found):
        return float(np.max(np.abs(np.asarray(found, dtype=np.float64) - reference)))

    saved = serving(video=tf.constant(clips))["logits"].numpy()
    rows["SavedModel fp32"] = {"bytes": folder_bytes(result.paths["savedmodel"]),
                               "err": error(saved),
                               "latency": median_seconds(lambda: serving(video=one), repeats)}
    for label, optimization in (("LiteRT fp32", None), ("LiteRT fp16", "fp16"),
                                ("LiteRT int8 (dynamic range)", "int8")):
        path = os.path.join(out, f"{entry.name}.{optimization or 'fp32'}.tflite")
        with open(path, "wb") as handle:
            handle.write(litert_bytes(model, entry, optimization))
        interpreter = make_interpreter(path, num_threads=os.cpu_count())
        found = run_litert(interpreter, clips)[0]
        clip = clips[:1]
        rows[label] = {"bytes": os.path.getsize(path), "err": error(found),
                       "latency": median_seconds(lambda: run_litert(interpreter, clip),
                                                 repeats)}
    quantised = keras.saving.load_model(result.paths["keras"], compile=False)
    try:
        quantised.quantize("int8")
        graph = tf.function(lambda v: quantised(v, training=False))
        path = os.path.join(out, f"{entry.name}.int8.weights.h5")
        quantised.save_weights(path)
        rows["Keras int8 (model.quantize)"] = {
            "bytes": os.path.getsize(path), "err": error(graph(tf.constant(clips))),
            "latency": median_seconds(lambda: graph(one), repeats)}
    except Exception as failure:  # report, do not hide, what Keras could not do
        rows["Keras int8 (model.quantize)"] = {"failed": f"{type(failure).__name__}: "
                                                         f"{str(failure).splitlines()[0]}"}
    torch_err = float(result.parity.torch_err_vs_f64) if result.parity else None
    return {"entry": entry.name, "weights_bytes": weights, "rows": rows,
            "torch_fp32_err": torch_err}


def markdown(results) -> str:
    lines = ["| entry | format | size / fp32 weights | max abs error vs float64 | "
             "latency, 1 clip (s) | latency / SavedModel |", "|---|---|---|---|---|---|"]
    for r in results:
        base = r["rows"]["SavedModel fp32"]["latency"]
        for label, row in r["rows"].items():
            if "failed" in row:
                lines.append(f"| {r['entry']} | {label} | failed: {row['failed']} | | | |")
                continue
            size = f"{row['bytes'] / r['weights_bytes']:.3f}" if row.get("bytes") else "-"
            lines.append(f"| {r['entry']} | {label} | {size} | {row['err']:.1e} | "
                         f"{row['latency']:.3f} | {row['latency'] / base:.2f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--sizes", default="S,B")
@click.option("--out", "out_dir", default="bench-litert")
@click.option("--repeats", default=5, type=int)
@click.option("--markdown", "md_path", default=None)
def main(sizes, out_dir, repeats, md_path):
    os.makedirs(out_dir, exist_ok=True)
    results = [bench_size(size, os.path.join(out_dir, size), repeats)
               for size in sizes.split(",")]
    with open(os.path.join(out_dir, "litert.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    table = markdown(results)
    sys.stdout.write(table)
    if md_path:
        with open(md_path, "w") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
