"""The peer in the benchmark: Google's litert-torch on the same randomised upstream models.

    python scripts/bench.py --peer S,B                      # the main tables and the peer's
    python scripts/bench.py --peer-only --peer S --markdown peer.md

litert-torch (PyPI ``litert-torch``, formerly ai-edge-torch) is a benchmark-only dependency,
never a runtime one: it lives in its own virtual environment (``--peer-venv``, by default under
``~/.cache/videomae-convert/``), created and filled on demand the first time ``--peer`` runs,
because it pins its own torch, jax and LiteRT wheels. That environment gets the same torch and
timm versions as the bench's own and imports the repository's ``torch_reference`` package
(PYTHONPATH), which needs only torch and timm.

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


class PeerError(Exception):
    """The peer could not be installed or run; its message is one line for the user."""


def peer_requirements() -> List[str]:
    """litert-torch plus the bench's own torch and timm versions (local tags such as
    ``+cu130`` dropped: the index serves the plain release), so the torch side is the same."""
    from importlib.metadata import version  # not importing torch: seconds saved

    return [f"{PEER_PACKAGE}=={PEER_VERSION}", f"torch=={version('torch').split('+')[0]}",
            f"timm=={version('timm').split('+')[0]}"]


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
        check = subprocess.run([python, "-c", "import torch, timm, litert_torch, "
                                "torch_reference; print(torch.__version__)"],
                               capture_output=True, text=True, env=peer_env())
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
    code = ("import json, importlib.metadata as m\n"
            f"names = {list(PEER_PACKAGES)!r}\n"
            "found = {}\n"
            "for n in names:\n"
            "    try: found[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(found))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def peer_env() -> Dict[str, str]:
    """The peer child's environment: the repository on PYTHONPATH for torch_reference."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def peer_versions(venv: str) -> Dict[str, str]:
    with open(os.path.join(venv, READY_MARKER)) as handle:
        return json.load(handle)["versions"]


# runs in the peer's environment: read the synthetic checkpoint, build upstream's model, convert
# and export; the times of the imports and the load are in the process wall, not in convert_s
CHILD_PEER = r"""
import json, sys, time
import torch, torch_reference
import litert_torch

config, checkpoint, path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
state = torch.load(checkpoint, map_location="cpu", weights_only=True)["module"]
with torch.device("meta"):
    model = torch_reference.VisionTransformer(**config)
model.load_state_dict(state, strict=True, assign=True)
del state
sample = torch.randn(1, 3, config["num_frames"], config["img_size"], config["img_size"])
started = time.perf_counter()
edge = litert_torch.convert(model.eval(), (sample,))
converted = time.perf_counter()
edge.export(path + ".partial")
import os
os.replace(path + ".partial", path)
done = time.perf_counter()
print(json.dumps({"convert_s": converted - started, "export_s": done - converted,
                  "convert_export_s": done - started, "bytes": os.path.getsize(path),
                  "torch": torch.__version__, "litert_torch": litert_torch.__version__}))
"""

# the peer environment's own baseline: a process that only imports what the peer child imports
CHILD_PEER_BASELINE = r"""
import torch, torch_reference, litert_torch
print("{}")
"""

# runs in the bench's environment, one process: the float64 reference and torch fp32 on the
# parity clips, then the three files on the same clips, then latency on one clip (median)
CHILD_EVAL = r"""
import json, os, statistics, sys, time
import numpy as np
import converter, torch
from converter import find_entry
from converter.checkpoint import read_checkpoint
from converter.kinds import build_torch_model
from converter.parity import make_cases

size, checkpoint, peer_path, ours_path, saved_path, repeats = sys.argv[1:7]
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
from converter.litert import make_interpreter, run_litert

def error(found):
    return float(np.max(np.abs(np.asarray(found, dtype=np.float64) - reference)))

# each of fns timed in turn within each repeat (round robin), so a change of the machine's
# load during the run falls on all of them alike; the median of each
def median_seconds(fns):
    for fn in fns.values():
        fn()  # warm-up: tracing, interpreter allocation
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(found) for name, found in times.items()}

video_tf = np.ascontiguousarray(video.transpose(0, 2, 3, 4, 1))
results = {"err": {"torch_fp32": error(fp32)}, "latency_s": {}, "runtime": {}}
threads = os.cpu_count()

# the peer's file: torch layout (N, C, T, H, W), batch fixed at 1, so clip by clip
peer = make_interpreter(peer_path, num_threads=threads)
results["runtime"]["interpreter"] = type(peer).__module__
peer_input = peer.get_input_details()[0]
results["peer_input_shape"] = [int(d) for d in peer_input["shape"]]
results["peer_input_signature"] = [int(d) for d in peer_input["shape_signature"]]
try:
    run_litert(peer, video)  # the whole batch, if its batch can be resized
    results["peer_batch2"] = "yes"
except Exception as failure:
    results["peer_batch2"] = f"no: {type(failure).__name__}: {str(failure).splitlines()[0][:160]}"
peer = make_interpreter(peer_path, num_threads=threads)
found = np.concatenate([run_litert(peer, video[i:i + 1])[0] for i in range(len(video))])
results["err"]["peer_tflite"] = error(found)

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
    "savedmodel_batch2": lambda: serving(video=feeds2)})
print(json.dumps(results))
"""


def bench_peer_size(size: str, out: str, repeats: int, python: str, run_child,
                    convert_code: str, ours: Optional[dict] = None,
                    say: Callable[[str], None] = print) -> dict:
    """One size, side by side: our conversion with ``--litert`` (and without, unless the main
    bench just ran it: ``ours``), the peer's convert + export, then errors and latency."""
    from converter import find_entry
    from converter.synthetic import synthetic_path
    from converter.synthetic import write_synthetic_checkpoint

    entry = find_entry(size, "FT", "k400")
    os.makedirs(out, exist_ok=True)
    result = {"size": size, "name": entry.name}
    if ours is None:
        say(f"peer {size}: our conversion, every check, without --litert ...")
        _, wall, peak = run_child(convert_code, size, "FT", out)
        ours = {"wall_s": wall, "peak_rss_mb": peak}
    result["ours"] = ours
    say(f"peer {size}: our conversion, every check, with --litert ...")
    conv, wall, peak = run_child(convert_code, size, "FT", out, "litert")
    result["ours_litert"] = {"wall_s": wall, "peak_rss_mb": peak, "convert_s": conv["convert_s"],
                             "phases_s": conv["seconds"], "phase_peak_mb": conv["phase_peak_mb"]}
    # the bytes our --synthetic conversion converted (same entry, seed 0), for the peer to read
    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, out), 0)
    peer_path = os.path.join(out, f"{entry.name}.litert-torch.tflite")
    say(f"peer {size}: litert-torch convert + export (its own process) ...")
    try:
        peer, wall, peak = run_child(CHILD_PEER, json.dumps(entry.model_config()), checkpoint,
                                     peer_path, python=python, env=peer_env())
    except RuntimeError as failure:
        result["peer_failed"] = str(failure)
        say(f"peer {size}: litert-torch failed: {failure}")
        return result
    _, _, peer_baseline = run_child(CHILD_PEER_BASELINE, python=python, env=peer_env())
    result["peer"] = dict(peer, wall_s=wall, peak_rss_mb=peak, baseline_mb=peer_baseline)
    result["ours_litert"]["bytes"] = os.path.getsize(os.path.join(out, f"{entry.name}.tflite"))
    say(f"peer {size}: errors against float64 and latency, one process ...")
    evaluated, _, _ = run_child(CHILD_EVAL, size, checkpoint, peer_path,
                                os.path.join(out, f"{entry.name}.tflite"),
                                os.path.join(out, entry.name), str(repeats))
    result.update(evaluated)
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
             "`convert(..., synthetic=True)`, every check, with and without `--litert` "
             "(it writes the synthetic checkpoint first). W = fp32 weight bytes; baseline = "
             f"a process that only imports ({gb(baseline_mb)}: converter, torch, TensorFlow, "
             "Keras); the peer's own baseline imports torch, torch_reference and litert_torch "
             "in its environment.", "",
             "| entry | peer process wall | peer convert+export | peer peak RSS | "
             "peer (peak - baseline) / W | peer (peak - its own baseline) / W | ours wall | "
             "ours peak | ours (peak - baseline) / W "
             "| ours --litert wall | ours --litert peak | ours --litert wall / peer wall | "
             ".tflite / W, peer | .tflite / W, ours |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        w = weight_bytes(r["size"])
        ours, lit = r["ours"], r["ours_litert"]
        if "peer" not in r:
            peer_cells = [f"failed: {r['peer_failed']}", "", "", "", ""]
            ratio = tflite = ""
        else:
            p = r["peer"]
            peer_cells = [f"{p['wall_s']:.1f} s", f"{p['convert_export_s']:.1f} s",
                          gb(p["peak_rss_mb"]), over(p["peak_rss_mb"], w),
                          f"{(p['peak_rss_mb'] - p['baseline_mb']) * 2**20 / w:.2f}"]
            ratio = f"{lit['wall_s'] / p['wall_s']:.2f}"
            tflite = f"{p['bytes'] / w:.3f}"
        lines.append(f"| {r['name']} | " + " | ".join(peer_cells) + " | "
                     f"{ours['wall_s']:.1f} s | {gb(ours['peak_rss_mb'])} | "
                     f"{over(ours['peak_rss_mb'], w)} | {lit['wall_s']:.1f} s | "
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
