"""The zoo table (``tf_models/presets.py``) for choices, read before TensorFlow starts.

Importing ``tf_models.presets`` runs ``tf_models/__init__.py``, which imports Keras and
TensorFlow: seconds of start-up and log lines before ``--verbose`` could silence them. The
table module itself is stdlib-only and imports nothing from its package, so this loads that
one file on its own (under a private module name) without importing the package. The
commands that run a model import ``tf_models`` as usual, after ``prepare_environment``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_MODULE = "videomae_cli._zoo_table"


def zoo_table():
    """The ``tf_models.presets`` module: the package's own when already imported, else the
    same file loaded on its own."""
    if "tf_models.presets" in sys.modules:
        return sys.modules["tf_models.presets"]
    if _MODULE not in sys.modules:
        # find_spec of a top-level package locates it without running its __init__
        package = importlib.util.find_spec("tf_models")
        path = os.path.join(list(package.submodule_search_locations)[0], "presets.py")
        spec = importlib.util.spec_from_file_location(_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module  # dataclasses look their module up while it runs
        spec.loader.exec_module(module)
    return sys.modules[_MODULE]


def dataset_choices() -> tuple:
    """The CLI spellings of the zoo's labelled datasets (those a classifier predicts), in table
    order."""
    return tuple(key for key, facts in zoo_table().DATASETS.items() if facts.labelled)


def finetune_bounds(setting: str) -> dict:
    """``click.FloatRange``'s keywords for a recipe setting (``layer_decay``, ``weight_decay``):
    the bounds ``tf_models.layer_decay_optimizer`` also holds it to."""
    return dict(zoo_table().FINETUNE_BOUNDS[setting])
