"""keras-hub preset folders and handles: telling them apart from zoo names and artifacts, and
writing one for a converted model with keras-hub's own ``save_to_preset``."""

from __future__ import annotations

import os

# keras-hub's handle schemes (keras_hub/src/utils/preset_utils.py: KAGGLE_PREFIX, HF_PREFIX,
# MODELSCOPE_PREFIX)
HANDLE_PREFIXES = ("kaggle://", "hf://", "modelscope://")
# the two files every keras-hub preset folder has (preset_utils: CONFIG_FILE, METADATA_FILE)
PRESET_FILES = ("config.json", "metadata.json")


def is_kerashub_preset(preset) -> bool:
    """True for a keras-hub handle or a local folder holding keras-hub's config and metadata."""
    preset = str(preset)
    if preset.startswith(HANDLE_PREFIXES):
        return True
    return os.path.isdir(preset) and all(os.path.isfile(os.path.join(preset, name))
                                         for name in PRESET_FILES)


def save_kerashub_preset(task, preset_dir: str) -> str:
    """``task`` (with its preprocessor) saved by keras-hub's ``save_to_preset`` into
    ``preset_dir``: config.json, metadata.json, model.weights.h5, task.json,
    task.weights.h5, preprocessor.json. Returns ``preset_dir``."""
    task.save_to_preset(preset_dir)
    return preset_dir
