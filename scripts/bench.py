#!/usr/bin/env python
"""Benchmark conversions and inference; writes docs/BENCHMARKS.md-ready tables and JSON.

    python scripts/bench.py --sizes S,B --out bench/            # FT entries, synthetic weights
    python scripts/bench.py --sizes S --modes FT,PT --markdown docs/BENCHMARKS.md
    python scripts/bench.py --sizes B --convert-only --load 2   # peak memory under CPU load
    python scripts/bench.py --sizes TFVideoMAEv2_g_Hybrid_16x224_PT --convert-only  # by name

Every measurement runs in a child process, a module in ``scripts/children/`` (run by
``run_child``). For each size: the entry's seeded synthetic upstream file is written first,
then one child process converts that file through ``converter.convert`` (as a user converts a
download) and reports its phase times; ``os.wait4`` gives the child's own peak RSS.
A second child measures the baseline RSS after the imports. A third measures inference latency
on one clip: torch (the reference), Keras eager, ``tf.function`` and
``tf.function(jit_compile=True)`` (XLA), and the exported SavedModel, all in the same process
so the ratios are comparable. Floors are measured in the same run: one torch forward + one TF
forward + writing the artifact bytes to disk (see ``floors``). The convert child also samples
its resident memory every 5 ms and reports the peak of each conversion phase. Two more children
give the memory floor: the peak RSS of running the model on the parity inputs and nothing else,
in torch and through the converted SavedModel.

``--peer S,B`` adds Google's litert-torch side by side on the same random upstream weights
(installed on demand into its own virtual environment; see ``scripts/bench_peer.py``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import click

import bench_peer  # a sibling script: scripts/ is on the path when this one runs
from bench_peer import repo_env

# the child programs: modules in scripts/children/, each run as its own process (peak RSS)
CHILDREN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "children")


def run_child(child: str, *args: str, python: str = sys.executable) -> tuple:
    """Run ``scripts/children/CHILD.py ARGS`` in a fresh Python (``python``: another
    environment's, for the peer), the repository's packages first on its path; returns (last
    stdout line as JSON, seconds, peak MB)."""
    started = time.perf_counter()
    command = [python, os.path.join(CHILDREN, f"{child}.py"), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=repo_env())
        # wait4 on the child's pid: its own peak RSS, not the maximum over all children
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"child failed: {stderr.strip().splitlines()[-1:]}")
    return json.loads(stdout.strip().splitlines()[-1]), seconds, usage.ru_maxrss / 1024.0


def disk_write_seconds(num_bytes: int, folder: str) -> float:
    """Time to write ``num_bytes`` to a file in ``folder`` the way a conversion writes its
    artifacts: into the page cache, no fsync (an fsync'd figure swings with the write-back
    the previous conversions left, 0.5-2.3 s for ViT-B's 1 GB on this machine)."""
    block = os.urandom(1 << 20)
    path = os.path.join(folder, "floor.bin")
    start = time.perf_counter()
    with open(path, "wb") as handle:
        left = num_bytes
        while left > 0:
            handle.write(block[: min(left, len(block))])
            left -= len(block)
        handle.flush()
    seconds = time.perf_counter() - start
    os.remove(path)
    return seconds


def busy_loops(count: int) -> list:
    """``count`` busy-loop processes: the artificial CPU load of ``--load``."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def bench_entry(size: str, mode: str, out: str, repeats: int, convert_only: bool = False,
                load: int = 0) -> dict:
    # the upstream file is written before the measured process, as a download would be
    checkpoint = bench_peer.written_checkpoint(entry_of(size, mode), out)
    loaders = busy_loops(load)
    try:
        load_before = os.getloadavg()
        conv, wall, peak_mb = run_child("convert", size, mode, out, f"checkpoint={checkpoint}")
        load_after = os.getloadavg()
    finally:
        for loader in loaders:
            loader.kill()
            loader.wait()
        os.remove(checkpoint)
    from converter.record import ConversionRecord

    report = ConversionRecord.load(conv["report"])
    weight_bytes = {kind: a.bytes for kind, a in report.artifacts.items()}  # on disk
    loadavg = {"before": load_before, "after": load_after, "busy_loops": load}
    if convert_only:
        return {"size": size, "mode": mode, "name": report.name, "wall_s": wall,
                "convert_s": conv["convert_s"], "phase_peak_mb": conv["phase_peak_mb"],
                "peak_rss_mb": peak_mb, "phases_s": conv["seconds"],
                "artifact_bytes": weight_bytes, "loadavg": loadavg}
    latency, _, _ = run_child("latency", size, mode, out, str(repeats))
    _, _, floor_torch_mb = run_child("floor", "torch", size, mode)
    _, _, floor_tf_mb = run_child("floor", "tf", size, mode, out)
    _, _, floor_both_mb = run_child("floor", "both", size, mode, out)
    params = report.entry["model_config"]
    return {"size": size, "mode": mode, "name": report.name, "wall_s": wall,
            "convert_s": conv["convert_s"], "phase_peak_mb": conv["phase_peak_mb"],
            "peak_rss_mb": peak_mb, "phases_s": conv["seconds"], "artifact_bytes": weight_bytes,
            "parity": {"tf_err_vs_f64": report.parity.tf_err_vs_f64,
                       "torch_err_vs_f64": report.parity.torch_err_vs_f64},
            "latency_s": latency, "config": params,
            "inference_peak_mb": {"torch": floor_torch_mb, "savedmodel": floor_tf_mb,
                                  "both": floor_both_mb}, "loadavg": loadavg}


def entry_of(size: str, mode: str):
    """The entry a size letter (its K400 entry of ``mode``) or a zoo name means."""
    from converter import find_entry, get_entry
    from tf_models.presets import is_zoo_name

    return get_entry(size) if is_zoo_name(size) else find_entry(size, mode, "k400")


def fp32_weight_bytes(size: str, mode: str) -> int:
    from converter.kinds import build_torch_model

    model = build_torch_model(entry_of(size, mode), device="meta")
    return sum(t.numel() for t in model.state_dict().values()) * 4


def _modes_of(size: str, modes: str) -> list:
    """The modes to run ``size`` in: every one of ``modes`` for a size letter, the entry's own
    for a zoo name."""
    from converter import get_entry
    from tf_models.presets import is_zoo_name

    return [get_entry(size).mode] if is_zoo_name(size) else modes.split(",")


def floors(r: dict) -> dict:
    """The issue's floor (one torch forward + one TF forward + writing the artifact bytes),
    the same at batch 2 (issue 23's "batch-2 floor"), and the work the checks themselves
    require at the measured speeds (docs/PARITY.md): torch fp32 on the ``PARITY_CLIPS``
    clips and float64 on one, TF on them in memory and on one through the reloaded
    SavedModel (``.weights.h5`` and ``.keras`` are proven by bytes and variables), plus the
    writes."""
    from converter.parity import PARITY_CLIPS

    lat, write = r["latency_s"], r["write_s"]
    torch32, tf32 = lat["torch"], lat["savedmodel"]
    return {"floor": torch32 + tf32 + write,
            "floor_batch": 2 * torch32 + 2 * tf32 + write,
            "required": (PARITY_CLIPS * torch32 + lat["torch_float64"]
                         + (PARITY_CLIPS + 1) * tf32 + write)}


def markdown(results: list, baseline_mb: float, machine: str) -> str:
    from converter.parity import PARITY_CLIPS

    def over(mb: float, w: int) -> float:
        return (mb - baseline_mb) * 2**20 / w

    lines = ["# Benchmark run", "", f"Machine: {machine}.", "",
             f"Synthetic checkpoints (every tensor random), parity batch {PARITY_CLIPS}; "
             "each conversion in "
             "its own process. Peak RSS is the conversion process's own (`wait4`); the "
             f"baseline (a process that only imports) peaks at {baseline_mb / 1024:.2f} GiB. "
             "W = fp32 weight bytes.",
             "", "## Conversion", "",
             "| entry | W | process wall | convert() | peak RSS | (peak - baseline) / W | "
             "SavedModel / W | .weights.h5 / W | .keras / W |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        w = r["weight_bytes"]
        sizes = r["artifact_bytes"]
        lines.append(f"| {r['name']} | {w / 1e6:.0f} MB | {r['wall_s']:.0f} s | "
                     f"{r['convert_s']:.0f} s | {r['peak_rss_mb'] / 1024:.2f} GiB | "
                     f"{over(r['peak_rss_mb'], w):.2f} | "
                     f"{sizes['savedmodel'] / w:.3f} | {sizes['weights'] / w:.3f} | "
                     f"{sizes['keras'] / w:.3f} |")
    phases = list(results[0]["phases_s"]) if results else []
    lines += ["", "## Peak resident memory in each phase, (peak - baseline) / W", "",
              "| entry | " + " | ".join(phases) + " |", "|---" * (len(phases) + 1) + "|"]
    for r in results:
        peaks = r["phase_peak_mb"]
        lines.append(f"| {r['name']} | " + " | ".join(
            f"{over(peaks[p], r['weight_bytes']):.2f}" if p in peaks else "" for p in phases)
            + " |")
    lines += ["", "## Phases (seconds)", ""]
    lines += ["| entry | " + " | ".join(phases) + " |", "|---" * (len(phases) + 1) + "|"]
    for r in results:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r['phases_s'].get(p, 0):.1f}"
                                                     for p in phases) + " |")
    lines += ["", "One-minute load average before / after each conversion: " + "; ".join(
        f"{r['name']} {r['loadavg']['before'][0]:.2f} / {r['loadavg']['after'][0]:.2f}"
        + (f" ({r['loadavg']['busy_loops']} busy loops)" if r["loadavg"]["busy_loops"] else "")
        for r in results) + "."]
    if results and "latency_s" not in results[0]:  # --convert-only
        return "\n".join(lines) + "\n"
    lines += ["", "## Peak memory against one inference (same run), (peak - baseline) / W", "",
              "Each inference figure is a process that only builds the model (torch) or loads "
              "the converted SavedModel (TF) and runs it on the conversion's parity inputs, "
              "one clip at a time: the least any tool that runs the model on them needs. "
              "'Both in turn' runs torch, frees it, then the SavedModel, in one process, as "
              "a conversion must.", "",
              "| entry | conversion | torch inference | SavedModel inference | "
              "both in turn, one process | conversion - both in turn |",
              "|---|---|---|---|---|---|"]
    for r in results:
        w, floor = r["weight_bytes"], r["inference_peak_mb"]
        lines.append(f"| {r['name']} | {over(r['peak_rss_mb'], w):.2f} | "
                     f"{over(floor['torch'], w):.2f} | {over(floor['savedmodel'], w):.2f} | "
                     f"{over(floor['both'], w):.2f} | "
                     f"{(r['peak_rss_mb'] - floor['both']) * 2**20 / w:+.2f} |")
    lines += ["", "## Conversion time against its floor (same run, fine-tuned entries)", "",
              "The floor is one torch forward + one TF forward + writing the artifact bytes; "
              "'required' is the work the checks cannot skip at the same speeds: torch fp32 "
              f"on {PARITY_CLIPS} clip(s) and float64 on 1, TF on {PARITY_CLIPS} in memory "
              "and 1 through the reloaded SavedModel, plus the writes. Pre-trained "
              "entries are left out: their parity inputs (two mask ratios) cost more than the "
              "one-clip latency measured here.", "",
              "| entry | torch fwd | TF fwd (SavedModel) | write artifact bytes | floor | "
              "floor at batch 2 | required by the checks | convert() | convert() / floor | "
              "convert() / floor at batch 2 | required / floor |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in results if r["mode"] == "FT"):
        f = floors(r)
        lines.append(f"| {r['name']} | {r['latency_s']['torch']:.2f} s | "
                     f"{r['latency_s']['savedmodel']:.2f} s | {r['write_s']:.2f} s | "
                     f"{f['floor']:.1f} s | {f['floor_batch']:.1f} s | {f['required']:.1f} s | "
                     f"{r['convert_s']:.1f} s | {r['convert_s'] / f['floor']:.1f} | "
                     f"{r['convert_s'] / f['floor_batch']:.1f} | "
                     f"{f['required'] / f['floor']:.1f} |")
    lines += ["", "## Inference latency, one clip (seconds, best of repeats)", "",
              "| entry | torch | torch float64 (once) | Keras eager | tf.function | "
              "tf.function XLA | SavedModel | SavedModel / torch |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lat = r["latency_s"]
        lines.append(f"| {r['name']} | {lat['torch']:.2f} | {lat['torch_float64']:.2f} | "
                     f"{lat['keras_eager']:.2f} | "
                     f"{lat['tf_function']:.2f} | {lat['tf_function_xla']:.2f} | "
                     f"{lat['savedmodel']:.2f} | {lat['savedmodel'] / lat['torch']:.2f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--sizes", default="S,B", show_default=True,
              help="Size letters (each size's K400 entry in each of --modes) or zoo names "
                   "(e.g. TFVideoMAEv2_g_K710-K400_16x224_FT, --modes ignored).")
@click.option("--modes", default="FT", show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Latency repeats (best taken).")
@click.option("--out", "out_dir", default=None, help="Keep artifacts here (default: temp).")
@click.option("--json", "json_path", default=None, help="Write raw results here.")
@click.option("--markdown", "md_path", default=None, help="Write the tables here.")
@click.option("--peer", "peer_sizes", default=None,
              help="Also run litert-torch side by side on these sizes (e.g. S,B); see "
                   "scripts/bench_peer.py. Installs it into --peer-venv on first use.")
@click.option("--peer-venv", default=None,
              help="The peer's own virtual environment, created on demand "
                   "[default: ~/.cache/videomae-convert/peer-litert-torch-VERSION].")
@click.option("--peer-only", is_flag=True, help="With --peer: skip the main tables.")
@click.option("--convert-only", is_flag=True,
              help="Only the conversions: no latency or inference-floor children.")
@click.option("--load", default=0, show_default=True,
              help="Busy-loop processes kept running during each conversion (memory under load).")
def main(sizes, modes, repeats, out_dir, json_path, md_path, peer_sizes, peer_venv,
         peer_only, convert_only, load):
    """Measure conversion time, peak memory, artifact sizes and inference latency."""
    if peer_only and not peer_sizes:
        raise click.UsageError("--peer-only needs --peer SIZES")
    peer_python = None
    if peer_sizes:  # first: an install that cannot succeed should not wait for the bench
        peer_venv = peer_venv or bench_peer.DEFAULT_PEER_VENV
        try:
            peer_python = bench_peer.ensure_peer_venv(
                peer_venv, lambda line: click.echo(line, err=True))
        except bench_peer.PeerError as failure:
            raise click.ClickException(str(failure))
    baseline, _, baseline_mb = run_child("baseline")
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
               f"Python {platform.python_version()}")
    results, peer_results = [], []
    with tempfile.TemporaryDirectory() as scratch:
        out = out_dir or scratch
        for size in ([] if peer_only else sizes.split(",")):
            for mode in _modes_of(size, modes):
                click.echo(f"benchmarking {size} {mode} ...", err=True)
                result = bench_entry(size, mode, out, repeats, convert_only, load)
                result["weight_bytes"] = fp32_weight_bytes(size, mode)
                if not convert_only:
                    result["write_s"] = disk_write_seconds(
                        sum(result["artifact_bytes"].values()), out)
                results.append(result)
                click.echo(json.dumps(result), err=True)
        for size in (peer_sizes.split(",") if peer_sizes else []):
            # our conversion without --litert, from the main bench when it just ran it
            ours = next(({"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
                         for r in results if r["size"] == size and r["mode"] == "FT"), None)
            result = bench_peer.bench_peer_size(
                size, os.path.join(out, f"peer-{size}"), repeats, peer_python, run_child,
                ours, say=lambda line: click.echo(line, err=True))
            peer_results.append(result)
            click.echo(json.dumps(result), err=True)
    if peer_only:
        text = f"# Benchmark run\n\nMachine: {machine}.\n"
    else:
        text = markdown(results, baseline_mb, machine)
    if peer_sizes:
        versions = bench_peer.peer_versions(peer_venv)
        text += "\n" + bench_peer.markdown_peer(
            peer_results, baseline_mb, versions, lambda size: fp32_weight_bytes(size, "FT"))
    click.echo(text)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump({"baseline_mb": baseline_mb, "machine": machine, "results": results,
                       **({"peer": peer_results} if peer_sizes else {})}, handle, indent=2)
    if md_path:
        with open(md_path, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
