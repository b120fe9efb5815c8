"""One synthetic ViT-B FT conversion for ``rss_probe``: per phase its sampled peak RSS, the
malloc arenas and threads at its end, and glibc's ``mallinfo2`` at its peak.

    python scripts/children/rss_convert.py OUT_DIR

Environment (set by ``rss_probe``): ``PROBE_ARENA_MAX_EARLY`` / ``PROBE_ARENA_MAX_LATE``
(``mallopt(M_ARENA_MAX)`` before / after the imports), ``PROBE_INTEROP`` (TensorFlow inter-op
threads), ``PROBE_TORCH_THREADS``.
"""

import ctypes
import json
import os
import re
import sys
import threading
import time

libc = ctypes.CDLL(None)
M_ARENA_MAX = -8  # glibc's malloc.h
if os.environ.get("PROBE_ARENA_MAX_EARLY"):  # before the frameworks allocate anything
    libc.mallopt(M_ARENA_MAX, int(os.environ["PROBE_ARENA_MAX_EARLY"]))

from converter import convert, find_entry  # noqa: E402  (after the early mallopt)

PAGE = os.sysconf("SC_PAGE_SIZE")


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]


libc.mallinfo2.restype = MallInfo2


def mallinfo() -> dict:
    m = libc.mallinfo2()
    return {"heap": m.arena / 2**20, "mmapped": m.hblkhd / 2**20, "inuse": m.uordblks / 2**20,
            "free": m.fordblks / 2**20}


def arenas(folder: str) -> int:
    libc.fopen.restype = ctypes.c_void_p
    path = f"{folder}/.mi{os.getpid()}.xml"
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    with open(path) as handle:
        text = handle.read()
    os.remove(path)
    return len(re.findall(r"<heap nr=", text))


def nthreads() -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(r"Threads:\s+(\d+)", handle.read()).group(1))


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20


def configure_late() -> None:
    """The settings that apply after the imports."""
    if os.environ.get("PROBE_ARENA_MAX_LATE"):
        libc.mallopt(M_ARENA_MAX, int(os.environ["PROBE_ARENA_MAX_LATE"]))
    if os.environ.get("PROBE_INTEROP"):
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["PROBE_INTEROP"]))
    if os.environ.get("PROBE_TORCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["PROBE_TORCH_THREADS"]))


def main(out: str) -> dict:
    configure_late()
    current, peaks, running, at_peak, arena_at, threads_at = ["start"], {}, [True], {}, {}, {}

    def on_phase(phase):
        arena_at[current[0]] = arenas(out)
        threads_at[current[0]] = nthreads()
        current[0] = phase

    def sample():
        while running[0]:
            phase, rss = current[0], rss_mb()
            if rss > peaks.get(phase, 0.0):
                peaks[phase] = rss
                if rss > at_peak.get(phase, {}).get("rss", 0) + 16:
                    at_peak[phase] = dict(mallinfo(), rss=rss)
            time.sleep(0.005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    entry = find_entry("B", "FT", "k400")
    started = time.perf_counter()
    result = convert(entry, out, synthetic=True, force=True, progress=False, on_phase=on_phase)
    seconds = time.perf_counter() - started
    running[0] = False
    sampler.join()
    arena_at[current[0]] = arenas(out)
    threads_at[current[0]] = nthreads()
    return {"seconds": result.seconds, "convert_s": seconds, "phase_peak_mb": peaks,
            "at_peak": at_peak, "arenas": arena_at, "threads": threads_at}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
