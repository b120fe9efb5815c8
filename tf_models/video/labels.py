"""Class names of the zoo's datasets, in the index order of upstream's label files.

Which file holds which dataset's names, and how many, is the zoo table's
(``tf_models.presets.DATASETS``); sources and how each order was confirmed: docs/VIDEO.md
("Class names").
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Tuple

from ..presets import DATASETS, HEAD_MAPS


@functools.lru_cache(maxsize=None)
def class_names(dataset: str) -> Tuple[str, ...]:
    """The ``dataset``'s class names (``k400``, ``ssv2``, ``ucf101``...), index i = class i."""
    labelled = [key for key, facts in DATASETS.items() if facts.labelled]
    if dataset not in labelled:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(labelled)}")
    facts = DATASETS[dataset]
    text = resources.files(__package__).joinpath("labels", facts.class_file).read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != facts.num_classes:
        raise RuntimeError(f"labels/{facts.class_file} holds {len(names)} names, not "
                           f"{facts.num_classes}: the package is damaged; reinstall it")
    return names


@functools.lru_cache(maxsize=None)
def head_rows(source: str, target: str) -> Tuple[int, ...]:
    """For each ``target`` class in index order, the row of a ``source`` head that scores it
    (upstream's label map, ``presets.HEAD_MAPS``): ``head_rows("k710", "k400")``."""
    if (source, target) not in HEAD_MAPS:
        known = ", ".join(f"{s}->{t}" for s, t in HEAD_MAPS)
        raise ValueError(f"no head map from {source} to {target}; known: {known}")
    file_name = HEAD_MAPS[(source, target)]
    rows = json.loads(resources.files(__package__).joinpath("labels", file_name)
                      .read_text("utf-8"))
    size, classes = DATASETS[source].num_classes, DATASETS[target].num_classes
    if (not isinstance(rows, list) or len(rows) != classes
            or not all(isinstance(r, int) and 0 <= r < size for r in rows)):
        raise RuntimeError(f"labels/{file_name} is not {classes} row indices below {size}: the "
                           f"package is damaged; reinstall it")
    return tuple(rows)


def index_names(num_classes: int) -> Tuple[str, ...]:
    """The names of classes that have none: ``class 0`` ... (a model fine-tuned on its own)."""
    return tuple(f"class {index}" for index in range(num_classes))
