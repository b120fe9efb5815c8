#!/usr/bin/env python
"""Where a ViT-B FT conversion's peak memory sits, phase by phase, with or without CPU load.

    python scripts/rss_probe.py LABEL BUSY_LOOPS [VAR=VALUE ...]

One synthetic ViT-B FT conversion in a child process (as ``bench.py``), with BUSY_LOOPS
busy-loop processes running beside it (killed however the run ends) and VAR=VALUE set in the
child's environment only: glibc's own (``MALLOC_ARENA_MAX=2``) or the probe's
(``PROBE_ARENA_MAX_EARLY=N`` / ``PROBE_ARENA_MAX_LATE=N``: ``mallopt(M_ARENA_MAX)`` before /
after the imports; ``PROBE_INTEROP=N``: TensorFlow inter-op threads; ``PROBE_TORCH_THREADS=N``).
Prints the peak (``wait4``) over the import baseline in W, and for each phase its sampled peak,
its seconds, the malloc arenas and threads at its end, and glibc's ``mallinfo2`` at its peak
(heap = arena bytes, mmapped = chunks malloc mapped on their own, inuse / free = heap bytes in
use / free). Appends the raw record to ``rss_probe.jsonl`` in the current folder.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

CHILD = r"""
import ctypes, json, os, re, sys, threading, time
libc = ctypes.CDLL(None)
M_ARENA_MAX = -8  # glibc's malloc.h
if os.environ.get("PROBE_ARENA_MAX_EARLY"):
    libc.mallopt(M_ARENA_MAX, int(os.environ["PROBE_ARENA_MAX_EARLY"]))
class MI2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MI2
def mi():
    m = libc.mallinfo2()
    return {"heap": m.arena / 2**20, "mmapped": m.hblkhd / 2**20, "inuse": m.uordblks / 2**20,
            "free": m.fordblks / 2**20}
def arenas():
    libc.fopen.restype = ctypes.c_void_p
    path = f"{sys.argv[1]}/.mi{os.getpid()}.xml"
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp)); libc.fclose(ctypes.c_void_p(fp))
    text = open(path).read(); os.remove(path)
    return len(re.findall(r"<heap nr=", text))
def nthreads():
    return int(re.search(r"Threads:\s+(\d+)", open("/proc/self/status").read()).group(1))
import converter
from converter import convert, find_entry
if os.environ.get("PROBE_ARENA_MAX_LATE"):
    libc.mallopt(M_ARENA_MAX, int(os.environ["PROBE_ARENA_MAX_LATE"]))
if os.environ.get("PROBE_INTEROP"):
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["PROBE_INTEROP"]))
if os.environ.get("PROBE_TORCH_THREADS"):
    import torch
    torch.set_num_threads(int(os.environ["PROBE_TORCH_THREADS"]))
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20
current, peaks, running, at_peak, arena_at, threads_at = ["start"], {}, [True], {}, {}, {}
def on_phase(phase):
    arena_at[current[0]] = arenas(); threads_at[current[0]] = nthreads()
    current[0] = phase
def sample():
    while running[0]:
        p, r = current[0], rss_mb()
        if r > peaks.get(p, 0.0):
            peaks[p] = r
            if r > at_peak.get(p, {}).get("rss", 0) + 16:
                at_peak[p] = dict(mi(), rss=r)
        time.sleep(0.005)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
entry = find_entry("B", "FT", "k400")
started = time.perf_counter()
result = convert(entry, sys.argv[1], synthetic=True, force=True, progress=False,
                 on_phase=on_phase)
seconds = time.perf_counter() - started
running[0] = False
sampler.join()
arena_at[current[0]] = arenas(); threads_at[current[0]] = nthreads()
print(json.dumps({"seconds": result.seconds, "convert_s": seconds, "phase_peak_mb": peaks,
                  "at_peak": at_peak, "arenas": arena_at, "threads": threads_at}))
"""

def main():
    label, nload = sys.argv[1], int(sys.argv[2])
    env_extra = dict(a.split("=", 1) for a in sys.argv[3:])
    _, _, base = bench.run_child(bench.CHILD_BASELINE)
    load_before = os.getloadavg()
    loaders = bench.busy_loops(nload)
    try:
        time.sleep(2 if nload else 0)
        old = dict(os.environ)
        os.environ.update(env_extra)
        try:
            with tempfile.TemporaryDirectory() as out:
                conv, wall, peak_mb = bench.run_child(CHILD, out)
        finally:
            os.environ.clear()
            os.environ.update(old)
        load_after = os.getloadavg()
    finally:
        for p in loaders:
            p.kill()
            p.wait()
    rec = {"label": label, "nload": nload, "env": env_extra, "load_before": load_before,
           "load_after": load_after, "wall_s": wall, "peak_mb": peak_mb, "baseline_mb": base,
           **conv,
           "when": time.strftime("%H:%M:%S", time.gmtime())}
    with open("rss_probe.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    W = bench.fp32_weight_bytes("B", "FT") / 2**20
    print(label, f"peak {peak_mb/1024:.2f} GiB {(peak_mb-base)/W:.2f} W wall {wall:.0f}s "
          f"convert {conv['convert_s']:.0f}s load {load_before} -> {load_after}")
    for p, v in conv["phase_peak_mb"].items():
        ap = conv["at_peak"].get(p, {})
        print(f"  {p:20s} {(v-base)/W:5.2f} W  {conv['seconds'].get(p, 0):5.1f}s  "
              f"arenas {conv['arenas'].get(p)} thr {conv['threads'].get(p)} "
              + " ".join(f"{k}={v:.0f}" for k, v in ap.items()))

if __name__ == "__main__":
    main()
