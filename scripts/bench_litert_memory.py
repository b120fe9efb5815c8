#!/usr/bin/env python
"""What ``--litert`` costs a conversion: peak memory over the import baseline, and seconds.

    python scripts/bench_litert_memory.py --sizes S,B [--code DIR] [--label NAME] [--no-litert]
    python scripts/bench_litert_memory.py --sizes TFVideoMAEv2_g_K710-K400_16x224_FT

For each size (a letter: its K400 FT entry; or a zoo name), one synthetic conversion with every
check and ``--litert`` (``scripts/children/convert.py``) in a fresh process, after a process
that only imports (``scripts/children/baseline.py``: converter, tf_models, torch_reference,
torch, TensorFlow, Keras). Prints the process's peak (``wait4``) over the baseline in W (fp32
weight bytes), the sampled peak of the ``write .tflite`` and ``reload litert`` phases, and
their seconds; ``--no-litert`` converts without ``--litert`` (the plain conversion's peak,
issue 23 item 4); ``--quantize fp16,int8`` adds ``--litert-quantize`` files (and their phases
to the output). ``--code DIR`` runs another checkout's converter and children (the "before"
figures: a ``git archive`` of an earlier commit). Appends each record to
``litert_memory.jsonl`` in the current folder.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import click

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(code: str, child: str, *args: str) -> tuple:
    """(last stdout line as JSON, seconds, the child's own peak MB) of CHILD in ``code``."""
    env = dict(os.environ, PYTHONPATH=code)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, os.path.join(code, "scripts", "children",
                                                                 f"{child}.py"), *args],
                                   stdout=out, stderr=err, env=env, cwd=code)
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{child} failed: {err.read().strip().splitlines()[-3:]}")
        last = out.read().strip().splitlines()[-1]
    return json.loads(last), time.perf_counter() - started, usage.ru_maxrss / 1024.0


def weight_mb(size: str) -> float:
    """fp32 MB of the K400 FT entry of a size letter, or of a zoo name's entry."""
    from bench import entry_of  # a sibling script: scripts/ is on the path when this one runs
    from converter.kinds import build_torch_model

    model = build_torch_model(entry_of(size, "FT"), device="meta")
    return sum(t.numel() for t in model.state_dict().values()) * 4 / 2**20


@click.command()
@click.option("--sizes", default="S")
@click.option("--code", default=HERE, help="checkout whose converter runs [default: this one]")
@click.option("--label", default="after")
@click.option("--litert/--no-litert", default=True,
              help="convert with --litert [default] or without (the plain conversion's peak)")
@click.option("--quantize", default="", help="--litert-quantize modes, comma-separated")
def main(sizes, code, label, litert, quantize):
    modes = [m for m in quantize.split(",") if m]
    _, _, base = run_child(code, "baseline")
    for size in sizes.split(","):
        w = weight_mb(size)
        with tempfile.TemporaryDirectory() as out:
            result, wall, peak = run_child(code, "convert", size, "FT", out,
                                            *(["litert"] if litert else []), *modes)
            with open(result["report"]) as handle:
                report = json.load(handle)
        phases = result["phase_peak_mb"]
        record = {"label": label, "litert": litert, "quantize": modes, "size": size, "W_mb": w,
                  "baseline_mb": base, "peak_mb": peak,
                  "peak_w": (peak - base) / w, "wall_s": wall, "convert_s": result["convert_s"],
                  "phase_w": {p: (v - base) / w for p, v in phases.items()},
                  "peak_phase": result.get("peak_phase"),
                  "seconds": result["seconds"], "load": os.getloadavg(),
                  "artifact_bytes": report["artifact_bytes"],
                  "litert_checks": {k: v for k, v in report["reload_checks"].items()
                                    if k.startswith("litert")},
                  "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
        with open("litert_memory.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"{label} {size}: W {w:.0f} MB, baseline {base:.0f} MB, peak {peak:.0f} MB = "
              f"{record['peak_w']:.2f} W over the baseline, reached in {record['peak_phase']}; "
              f"process {wall:.1f} s, convert() {result['convert_s']:.1f} s")
        # with --litert its two phases; without, the phase where the peak was
        shown = ((("write .tflite", "reload litert")
                  + tuple(p for m in modes for p in (f"write .{m}.tflite", f"reload litert_{m}")))
                 if litert or modes else (max(record["phase_w"], key=record["phase_w"].get),))
        for phase in shown:
            print(f"  {phase:19s} {record['phase_w'].get(phase, float('nan')):6.2f} W "
                  f"{result['seconds'].get(phase, float('nan')):6.1f} s")


if __name__ == "__main__":
    main()
