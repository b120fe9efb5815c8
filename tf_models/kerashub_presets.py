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


def preprocessor_for(preset):
    """The classifier preprocessor of a zoo row (``tf_models.presets.Preset``): its frame size
    and its dataset's mean and std, from the zoo table."""
    from .videomae_video_classifier_preprocessor import VideoMAEVideoClassifierPreprocessor
    from .videomae_video_converter import VideoMAEVideoConverter

    converter = VideoMAEVideoConverter(image_size=preset.img_size, mean=preset.mean,
                                       std=preset.std)
    return VideoMAEVideoClassifierPreprocessor(video_converter=converter)


def save_zoo_preset(model, preset, preset_dir: str) -> str:
    """A converted model of zoo row ``preset`` as a keras-hub preset folder: a classifier
    gets its preprocessor (raw uint8 frames in); a pre-trainer is saved as it is."""
    from .videomae_video_classifier import VideoMAEVideoClassifier

    if isinstance(model, VideoMAEVideoClassifier) and model.preprocessor is None:
        model.preprocessor = preprocessor_for(preset)
    return save_kerashub_preset(model, preset_dir)
