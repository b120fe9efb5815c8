"""The peer in the benchmark: Google's litert-torch on the same randomised upstream models.

    python scripts/bench.py --peer S,B                      # the main tables and the peer's
    python scripts/bench.py --peer-only --peer S --markdown peer.md

litert-torch (PyPI ``litert-torch``, formerly ai-edge-torch) is a benchmark-only dependency,
never a runtime one: it lives in its own virtual environment (``--peer-venv``, by default under
``~/.cache/videomae-convert/``), created and filled on demand the first time ``--peer`` runs,
because it pins its own torch, jax and LiteRT wheels. That environment gets the same torch and
timm versions as the bench's own and imports the repository's ``torch_reference`` package
(PYTHONPATH), which needs only torch, and timm, which upstream's modeling files import (our
conversion does not import timm).

For each size: one child process in the peer environment reads the synthetic checkpoint that
this project's ``--synthetic`` conversion of the K400 FT entry converts (same seed, same
bytes), builds upstream's model from it and runs ``litert_torch.convert(model.eval(),
(sample,))`` + ``export``: no parity or reload check, one format, batch fixed at 1. Its
whole-process wall time and peak RSS (``os.wait4``) and its convert+export time are recorded.
Our own conversion (every check) runs twice in the same run, with ``--litert`` and without.
Then one process in the bench's environment runs the peer's ``.tflite`` (clip by clip, its
batch is 1), ours and the SavedModel on the parity clips (``make_cases``, batch 2, seed 0),
takes each one's max abs error against the float64 torch reference, and times each on one
clip (median of repeats) against the SavedModel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Optional

PEER_PACKAGE = "litert-torch"
PEER_VERSION = "0.10.0"
DEFAULT_PEER_VENV = os.path.join(os.path.expanduser("~"), ".cache", "videomae-convert",
                                 f"peer-litert-torch-{PEER_VERSION}")
READY_MARKER = "videomae-peer-ready.json"  # written last: a venv without it is incomplete
# written first, into a venv this bench created: only such a venv is ever removed and rebuilt
INSTALLING_MARKER = "videomae-peer-installing"
PEER_PACKAGES = ("litert-torch", "torch", "timm", "ai-edge-litert", "litert-converter",
                 "torchao", "jax", "numpy")  # whose versions the tables report
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILDREN = os.path.join(REPO, "scripts", "children")  # the child programs (bench.run_child)


class PeerError(Exception):
    """The peer could not be installed or run; its message is one line for the user."""


def peer_requirements() -> List[str]:
    """litert-torch plus the bench's own torch and timm versions (local tags such as
    ``+cu130`` dropped: the index serves the plain release), so the torch side is the same;
    timm unpinned where the bench's environment has none (it is an extra of ours)."""
    from importlib.metadata import PackageNotFoundError, version  # not importing torch

    try:
        timm = f"timm=={version('timm').split('+')[0]}"
    except PackageNotFoundError:
        timm = "timm"
    return [f"{PEER_PACKAGE}=={PEER_VERSION}", f"torch=={version('torch').split('+')[0]}",
            timm]


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def _pip_failure(log_lines: List[str]) -> str:
    errors = [line.strip() for line in log_lines if line.startswith("ERROR")]
    return (errors or [line.strip() for line in log_lines if line.strip()] or ["no output"])[0]


def ensure_peer_venv(venv: str, say: Callable[[str], None] = print) -> str:
    """The peer environment's python, creating and filling ``venv`` first if it is not
    complete (no ready marker). Raises PeerError with one line if that fails; a venv this
    call created is removed again then, so no half-installed environment is left behind.
    A folder this bench did not create is never removed or filled."""
    python = venv_python(venv)
    marker = os.path.join(venv, READY_MARKER)
    if os.path.exists(marker):
        return python
    if os.path.exists(venv):
        if not os.path.exists(os.path.join(venv, INSTALLING_MARKER)):
            raise PeerError(f"{venv}: exists but is not a peer environment this benchmark "
                            f"made (no {READY_MARKER}); pass another --peer-venv or remove it")
        say(f"peer: {venv} is an interrupted install (no {READY_MARKER}): rebuilding it")
        shutil.rmtree(venv)
    requirements = peer_requirements()
    say(f"peer: creating a virtual environment for {PEER_PACKAGE} {PEER_VERSION} in {venv}")
    os.makedirs(os.path.dirname(os.path.abspath(venv)), exist_ok=True)
    log_path = venv.rstrip("/") + ".install.log"
    try:
        # no pip of its own (ensurepip costs ~10 s): the bench's pip installs into it
        made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv],
                              capture_output=True, text=True)
        if made.returncode != 0:
            last = (made.stderr.strip().splitlines() or ["no output"])[-1]
            raise PeerError(f"{venv}: could not create a virtual environment: {last}")
        open(os.path.join(venv, INSTALLING_MARKER), "w").close()
        say(f"peer: installing {' '.join(requirements)} (several minutes, a few GB: torch "
            f"comes with its CUDA wheels; pip's log: {log_path})")
        command = [sys.executable, "-m", "pip", "--python", python, "install",
                   "--progress-bar", "off",
                   "--disable-pip-version-check", *requirements]
        lines = _run_logged(command, log_path, say)
        if lines is not None:
            raise PeerError(f"installing {PEER_PACKAGE} into {venv} failed: "
                            f"{_pip_failure(lines)} (full log: {log_path})")
        # the peer's baseline child imports torch, torch_reference (timm) and litert_torch
        check = subprocess.run([python, os.path.join(CHILDREN, "peer_baseline.py")],
                               capture_output=True, text=True, env=repo_env())
        if check.returncode != 0:
            last = (check.stderr.strip().splitlines() or ["no output"])[-1]
            raise PeerError(f"{venv}: {PEER_PACKAGE} installed but does not import: {last}")
        versions = _installed_versions(python)
        with open(marker + ".partial", "w") as handle:
            json.dump({"requirements": requirements, "versions": versions}, handle, indent=2)
        os.replace(marker + ".partial", marker)
        say(f"peer: ready ({', '.join(f'{k} {v}' for k, v in versions.items())})")
        return python
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise


def _run_logged(command: List[str], log_path: str, say) -> Optional[List[str]]:
    """Run ``command``, its output into ``log_path`` and a short progress line per package
    to ``say``; None on success, else the output's lines."""
    lines, seen = [], set()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        for line in process.stdout:
            log.write(line)
            lines.append(line)
            # one line per package (the resolver's backtracking repeats them), then the end
            name = line.split()[1] if line.startswith("Collecting ") else line
            if line.startswith(("Collecting", "Installing collected", "Successfully")) \
                    and name not in seen:
                seen.add(name)
                say("peer:   " + line.strip()[:120])
        process.wait()
    return None if process.returncode == 0 else lines



def _installed_versions(python: str) -> Dict[str, str]:
    done = subprocess.run([python, os.path.join(CHILDREN, "peer_versions.py"), *PEER_PACKAGES],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def repo_env() -> Dict[str, str]:
    """A child's environment: the repository first on PYTHONPATH (its converter for the
    bench's children, its torch_reference for the peer's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def peer_versions(venv: str) -> Dict[str, str]:
    with open(os.path.join(venv, READY_MARKER)) as handle:
        return json.load(handle)["versions"]


def written_checkpoint(entry, folder: str) -> str:
    """The seeded (seed 0) synthetic upstream file of ``entry``, written into ``folder``
    before any measured process starts: ours and the peer's conversions then both read a file,
    as a user's does after a download, and neither times writing random weights."""
    from converter.synthetic import synthetic_path, write_synthetic_checkpoint

    upstream = entry.upstream
    return write_synthetic_checkpoint(upstream, synthetic_path(upstream, 0, folder), 0)


def bench_peer_size(size: str, out: str, repeats: int, python: str, run_child,
                    ours: Optional[dict] = None, say: Callable[[str], None] = print) -> dict:
    """One size, side by side: our conversion with ``--litert`` (and without, unless the main
    bench just ran it: ``ours``), the peer's convert + export, then errors and latency."""
    from converter import find_entry

    entry = find_entry(size, "FT", "k400")
    os.makedirs(out, exist_ok=True)
    result = {"size": size, "name": entry.name}
    # one file (seed 0) for every conversion of this size, ours and the peer's
    checkpoint = written_checkpoint(entry, out)
    try:
        read = f"checkpoint={checkpoint}"
        if ours is None:
            say(f"peer {size}: our conversion, every check, without --litert ...")
            _, wall, peak = run_child("convert", size, "FT", out, read)
            ours = {"wall_s": wall, "peak_rss_mb": peak}
        result["ours"] = ours
        say(f"peer {size}: our conversion, every check, with --litert ...")
        conv, wall, peak = run_child("convert", size, "FT", out, "litert", read)
        result["ours_litert"] = {"wall_s": wall, "peak_rss_mb": peak,
                                 "convert_s": conv["convert_s"], "phases_s": conv["seconds"],
                                 "phase_peak_mb": conv["phase_peak_mb"]}
        peer_path = os.path.join(out, f"{entry.name}.litert-torch.tflite")
        say(f"peer {size}: litert-torch convert + export (its own process) ...")
        try:
            peer, wall, peak = run_child("peer_convert", json.dumps(entry.model_config()),
                                         checkpoint, peer_path, python=python)
        except RuntimeError as failure:
            result["peer_failed"] = str(failure)
            say(f"peer {size}: litert-torch failed: {failure}")
            return result
        _, _, peer_baseline = run_child("peer_baseline", python=python)
        result["peer"] = dict(peer, wall_s=wall, peak_rss_mb=peak, baseline_mb=peer_baseline)
        result["ours_litert"]["bytes"] = os.path.getsize(os.path.join(out, f"{entry.name}.tflite"))
        say(f"peer {size}: errors against float64 and latency, one process ...")
        evaluated, _, _ = run_child("peer_eval", size, checkpoint, peer_path,
                                    os.path.join(out, f"{entry.name}.tflite"),
                                    os.path.join(out, entry.name), str(repeats))
        result.update(evaluated)
    finally:  # kept by no outcome: it is as large as the model
        os.remove(checkpoint)
    return result


def markdown_peer(results: List[dict], baseline_mb: float, versions: Dict[str, str],
                  weight_bytes: Callable[[str], int]) -> str:
    """The side-by-side tables, ratios from one run."""
    def gb(mb):
        return f"{mb / 1024:.2f} GiB"

    def over(mb, w):
        return f"{(mb - baseline_mb) * 2**20 / w:.2f}"

    lines = ["## Side by side with litert-torch (same run, same random upstream weights)", "",
             f"litert-torch {versions.get('litert-torch', '?')} ("
             + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "litert-torch")
             + "), in its own environment. Its conversion is one "
             "process: read the checkpoint, `litert_torch.convert(model.eval(), (sample,))`, "
             "`export`; no parity or reload check, one `.tflite`, batch fixed at 1. Ours is "
             "`convert(..., checkpoint=FILE)`, every check, with and without `--litert`; "
             "both read the same synthetic upstream file (seed 0), written before either "
             "process starts. W = fp32 weight bytes; baseline = "
             f"a process that only imports ({gb(baseline_mb)}: converter, torch, TensorFlow, "
             "Keras); the peer's own baseline imports torch, torch_reference and litert_torch "
             "in its environment.", "",
             "| entry | peer process wall | peer convert+export | peer peak RSS | "
             "peer (peak - baseline) / W | peer (peak - its own baseline) / W | ours wall | "
             "ours peak | ours (peak - baseline) / W | ours wall / peer wall "
             "| ours --litert wall | ours --litert peak | ours --litert wall / peer wall | "
             ".tflite / W, peer | .tflite / W, ours |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        w = weight_bytes(r["size"])
        ours, lit = r["ours"], r["ours_litert"]
        if "peer" not in r:
            peer_cells = [f"failed: {r['peer_failed']}", "", "", "", ""]
            plain = ratio = tflite = ""
        else:
            p = r["peer"]
            peer_cells = [f"{p['wall_s']:.1f} s", f"{p['convert_export_s']:.1f} s",
                          gb(p["peak_rss_mb"]), over(p["peak_rss_mb"], w),
                          f"{(p['peak_rss_mb'] - p['baseline_mb']) * 2**20 / w:.2f}"]
            plain = f"{ours['wall_s'] / p['wall_s']:.2f}"
            ratio = f"{lit['wall_s'] / p['wall_s']:.2f}"
            tflite = f"{p['bytes'] / w:.3f}"
        lines.append(f"| {r['name']} | " + " | ".join(peer_cells) + " | "
                     f"{ours['wall_s']:.1f} s | {gb(ours['peak_rss_mb'])} | "
                     f"{over(ours['peak_rss_mb'], w)} | {plain} | {lit['wall_s']:.1f} s | "
                     f"{gb(lit['peak_rss_mb'])} | {ratio} | {tflite} | "
                     f"{lit.get('bytes', 0) / w:.3f} |")
    lines += ["", "What `--litert` adds to our conversion (its phases, same run), against the "
              "peer's whole convert + export:", "",
              "| entry | write .tflite | its peak, (peak - baseline) / W | reload .tflite check | "
              "peer convert+export |", "|---|---|---|---|---|"]
    for r in results:
        lit = r["ours_litert"]
        phases, peaks = lit.get("phases_s", {}), lit.get("phase_peak_mb", {})
        peer = f"{r['peer']['convert_export_s']:.1f} s" if "peer" in r else "failed"
        write_peak = peaks.get("write .tflite")
        lines.append(f"| {r['name']} | {phases.get('write .tflite', float('nan')):.1f} s | "
                     + (over(write_peak, weight_bytes(r["size"])) if write_peak else "")
                     + f" | {phases.get('reload litert', float('nan')):.1f} s | {peer} |")
    lines += ["", "Error: max abs difference from upstream's model in float64 on the parity "
              "clips (`make_cases`, batch 2, seed 0; the peer's file clip by clip). Latency: "
              "one clip, median of repeats, one process, LiteRT with all CPU threads; "
              "ratios against the SavedModel at the same batch.", "",
              "| entry | err peer .tflite | err our .tflite | err SavedModel | err torch fp32 | "
              "peer .tflite / SavedModel | our .tflite / SavedModel | "
              "our .tflite batch 2 / SavedModel batch 2 | SavedModel, 1 clip | peer runs batch 2 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "err" not in r:
            continue
        e, lat = r["err"], r["latency_s"]
        lines.append(f"| {r['name']} | {e['peer_tflite']:.1e} | {e['our_tflite']:.1e} | "
                     f"{e['savedmodel']:.1e} | {e['torch_fp32']:.1e} | "
                     f"{lat['peer_tflite'] / lat['savedmodel']:.2f} | "
                     f"{lat['our_tflite'] / lat['savedmodel']:.2f} | "
                     f"{lat['our_tflite_batch2'] / lat['savedmodel_batch2']:.2f} | "
                     f"{lat['savedmodel']:.3f} s | {r['peer_batch2']} |")
    return "\n".join(lines) + "\n"
