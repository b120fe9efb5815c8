"""One synthetic conversion, its resident memory sampled every 5 ms by phase.

    python scripts/children/convert.py SIZE MODE OUT_DIR [litert] [fp16] [int8] [checkpoint=PATH]

SIZE is a size letter (the K400 entry of that size and MODE) or a zoo name (MODE ignored);
``fp16`` / ``int8`` add ``--litert-quantize`` modes (and so ``--litert``). ``checkpoint=PATH``
converts that file (written beforehand, as a user's download is) instead of writing the
seeded synthetic checkpoint inside the measured process.

Prints {"seconds", "convert_s", "phase_peak_mb", "high_water_mb", "peak_phase", "report"} as
JSON: ``phase_peak_mb`` sampled every 5 ms; ``high_water_mb`` the exact ``VmHWM`` when each
phase ended, so ``peak_phase`` is the phase that holds the process's peak.
"""

import json
import os
import sys
import threading
import time

from videomae_cli.lifetime import claim_process, framework_imports

# the process as videomae-convert's console script runs it: the frameworks imported without
# the collector's repeated passes, the exit without its last ones (videomae_cli/lifetime.py)
claim_process()
with framework_imports():
    from converter import convert, find_entry, get_entry
    from tf_models.artifacts.names import QUANTIZED_MODES
    from tf_models.presets import is_zoo_name

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20


def high_water_mb() -> float:
    """The process's peak resident memory so far (``VmHWM``: exact, where the 5 ms samples
    can miss a short spike)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(size: str, mode: str, out: str, *flags: str) -> dict:
    # resident memory sampled every 5 ms, attributed to the phase running at the time; and
    # the exact high-water mark when each phase ends: the phase where it last rose holds
    # the process's peak
    current, peaks, running, high_water = ["start"], {}, [True], {}

    def on_phase(phase):
        high_water[current[0]] = high_water_mb()
        current[0] = phase

    def sample():
        while running[0]:
            peaks[current[0]] = max(peaks.get(current[0], 0.0), rss_mb())
            time.sleep(0.005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    entry = get_entry(size) if is_zoo_name(size) else find_entry(size, mode, "k400")
    started = time.perf_counter()
    files = [f.split("=", 1)[1] for f in flags if f.startswith("checkpoint=")]
    source = {"checkpoint": files[0]} if files else {"synthetic": True}
    result = convert(entry, out, **source, force=True, progress=False,
                     on_phase=on_phase, litert="litert" in flags,
                     litert_quantize=[f for f in flags if f in QUANTIZED_MODES])
    seconds = time.perf_counter() - started
    high_water[current[0]] = high_water_mb()
    running[0] = False
    sampler.join()
    return {"seconds": result.seconds, "convert_s": seconds, "phase_peak_mb": peaks,
            "high_water_mb": high_water, "peak_phase": _where_it_last_rose(high_water),
            "report": os.path.join(out, entry.name + ".json")}


def _where_it_last_rose(high_water: dict) -> str:
    """The first phase (they are in the order they ran) after which the high-water mark, which
    only rises, stood at its highest."""
    return max(high_water, key=high_water.get)


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
