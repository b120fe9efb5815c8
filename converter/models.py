"""Build either side of a zoo entry from the same plain config."""

from __future__ import annotations

import torch_reference
import tf_models

from .zoo import Entry


def build_torch_model(entry: Entry):
    """The upstream reference for ``entry`` (eval mode, fp32)."""
    config = entry.model_config()
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**config)
    else:
        model = torch_reference.PretrainVisionTransformer(**config)
    return model.eval()


def tf_model_class(entry: Entry):
    return tf_models.VideoMAEClassifier if entry.mode == "FT" else tf_models.VideoMAEPretrainer


def build_tf_model(entry: Entry):
    """The Keras model for ``entry``, variables created (unassigned)."""
    return tf_model_class(entry)(**entry.model_config(), name=entry.name)
