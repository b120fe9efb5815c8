"""The memory floor of each framework on a conversion's parity inputs, one clip at a time
(for PT entries: at the entry's mask ratio and at 0.5), as a conversion runs them.

    python scripts/children/floor.py torch SIZE MODE
    python scripts/children/floor.py tf SIZE MODE OUT_DIR     # the converted SavedModel
    python scripts/children/floor.py both SIZE MODE OUT_DIR

``both`` runs torch, frees it, then the SavedModel, in one process, one model alive at a
time, as a conversion does: what the two frameworks' own pools and caches keep after the torch
run counts too. Prints {} (the parent reads the child's peak RSS).
"""

import gc
import sys

import converter  # noqa: F401
import torch
from converter import find_entry
from converter.api import release_freed_memory
from converter.kinds import build_torch_model
from converter.parity import make_cases


def run_torch(entry) -> None:
    """Build the torch model and run it on each parity input."""
    model = build_torch_model(entry)
    with torch.inference_mode():
        for case in make_cases(entry, batch=1, seed=0):
            args = (torch.from_numpy(case.video_ncthw),)
            if case.mask is not None:
                args += (torch.from_numpy(case.mask),)
            model(*args)


def run_savedmodel(entry, out: str) -> None:
    """Load the converted SavedModel and run it on each parity input."""
    import tensorflow as tf

    serving = tf.saved_model.load(f"{out}/{entry.name}").signatures["serving_default"]
    for case in make_cases(entry, batch=1, seed=0):
        feeds = {"video": tf.constant(case.video_nthwc)}
        if case.mask is not None:
            feeds["mask"] = tf.constant(case.mask)
        serving(**feeds)


def main(which: str, size: str, mode: str, out: str = "") -> None:
    entry = find_entry(size, mode, "k400")
    if which in ("torch", "both"):
        run_torch(entry)
    if which == "both":
        gc.collect()
        release_freed_memory()
    if which in ("tf", "both"):
        run_savedmodel(entry, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
    print("{}")
