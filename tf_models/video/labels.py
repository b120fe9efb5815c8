"""Class names of the zoo's datasets, in the index order of upstream's label files.

Which file holds which dataset's names, and how many, is the zoo table's
(``tf_models.presets.DATASETS``); sources and how each order was confirmed: docs/VIDEO.md
("Class names").
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Tuple

from ..presets import DATASETS


@functools.lru_cache(maxsize=None)
def class_names(dataset: str) -> Tuple[str, ...]:
    """The ``dataset``'s class names (``k400``, ``ssv2``, ``ucf101``), index i = class i."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    facts = DATASETS[dataset]
    text = resources.files(__package__).joinpath("labels", facts.class_file).read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != facts.num_classes:
        raise RuntimeError(f"labels/{facts.class_file} holds {len(names)} names, not "
                           f"{facts.num_classes}: the package is damaged; reinstall it")
    return names
