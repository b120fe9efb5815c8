"""Class names of the zoo's datasets, in the index order of upstream's label files.

Sources and how each order was confirmed: docs/VIDEO.md ("Class names").
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Tuple

NUM_CLASSES = {"k400": 400, "ssv2": 174, "ucf101": 101}


@functools.lru_cache(maxsize=None)
def class_names(dataset: str) -> Tuple[str, ...]:
    """The ``dataset``'s class names (``k400``, ``ssv2``, ``ucf101``), index i = class i."""
    if dataset not in NUM_CLASSES:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(NUM_CLASSES)}")
    text = resources.files(__package__).joinpath("labels", f"{dataset}.txt").read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != NUM_CLASSES[dataset]:
        raise RuntimeError(f"labels/{dataset}.txt holds {len(names)} names, not "
                           f"{NUM_CLASSES[dataset]}: the package is damaged; reinstall it")
    return names
