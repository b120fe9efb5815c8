#!/usr/bin/env python
"""Where a ViT-B FT conversion's peak memory sits, phase by phase, with or without CPU load.

    python scripts/rss_probe.py LABEL BUSY_LOOPS [VAR=VALUE ...]

One synthetic ViT-B FT conversion in a child process (``scripts/children/rss_convert.py``),
with BUSY_LOOPS busy-loop processes running beside it (killed however the run ends) and
VAR=VALUE set in the child's environment only: glibc's own (``MALLOC_ARENA_MAX=2``) or the
probe's (``PROBE_ARENA_MAX_EARLY=N`` / ``PROBE_ARENA_MAX_LATE=N``: ``mallopt(M_ARENA_MAX)``
before / after the imports; ``PROBE_INTEROP=N``: TensorFlow inter-op threads;
``PROBE_TORCH_THREADS=N``). Prints the peak (``wait4``) over the import baseline in W, and for
each phase its sampled peak, its seconds, the malloc arenas and threads at its end, and glibc's
``mallinfo2`` at its peak (heap = arena bytes, mmapped = chunks malloc mapped on their own,
inuse / free = heap bytes in use / free). Appends the raw record to ``rss_probe.jsonl`` in the
current folder.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

def main():
    label, nload = sys.argv[1], int(sys.argv[2])
    env_extra = dict(a.split("=", 1) for a in sys.argv[3:])
    _, _, base = bench.run_child("baseline")
    load_before = os.getloadavg()
    loaders = bench.busy_loops(nload)
    try:
        time.sleep(2 if nload else 0)
        old = dict(os.environ)
        os.environ.update(env_extra)
        try:
            with tempfile.TemporaryDirectory() as out:
                conv, wall, peak_mb = bench.run_child("rss_convert", out)
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
