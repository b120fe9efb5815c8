"""Build either side of a zoo entry from the same plain config."""

from __future__ import annotations

import torch_reference
import tf_models
from torch_reference.modeling_pretrain import PretrainVisionTransformerEncoder

from .zoo import Entry


def build_torch_model(entry: Entry, device: str = "cpu"):
    """The upstream reference for ``entry`` (eval mode, fp32), shaped like its checkpoint.

    ``device="meta"`` builds it without allocating or initialising any weight; load it with
    ``load_state_dict(state, strict=True, assign=True)`` to adopt the checkpoint's tensors.
    Encoder-only entries get the full fine-tuned model (its checkpoint has a head) or the
    pre-training encoder alone (its checkpoint may lack the decoder); wrap the result with
    ``parity_reference`` for their feature outputs.
    """
    import torch

    with torch.device(device):
        return _build_torch_model(entry)


def _build_torch_model(entry: Entry):
    config = entry.model_config()
    if entry.mode == "FT":
        if entry.encoder_only:
            config["num_classes"] = entry.num_classes
        model = torch_reference.VisionTransformer(**config)
    elif entry.encoder_only:
        model = PretrainVisionTransformerEncoder(**config)
    else:
        model = torch_reference.PretrainVisionTransformer(**config)
    return model.eval()


def parity_reference(entry: Entry, model):
    """What the Keras model is compared with: the model, or its encoder features."""
    return torch_reference.EncoderFeatures(model) if entry.encoder_only else model


def tf_model_class(entry: Entry):
    if entry.encoder_only:
        return tf_models.VideoMAEBackbone
    return tf_models.VideoMAEClassifier if entry.mode == "FT" else tf_models.VideoMAEPretrainer


def build_tf_model(entry: Entry):
    """The Keras model for ``entry``, variables created (unassigned)."""
    config = entry.model_config()
    if entry.encoder_only:
        config["final_norm"] = "fc_norm" if entry.mode == "FT" else "norm"
    return tf_model_class(entry)(**config, name=entry.name)
