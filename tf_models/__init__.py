"""VideoMAE in Keras 3 as a keras-hub model family (``keras.ops`` only, any backend); importing
this registers the classes with Keras and keras-hub.

    import tf_models
    model = tf_models.VideoMAEVideoClassifier.from_preset("TFVideoMAE_B_K400_16x224_FT")
    backbone = tf_models.VideoMAEBackbone.from_preset("TFVideoMAE_B_K400_16x224_PT")
    backbone = keras_hub.models.Backbone.from_preset("./a_preset_folder")

Never imports torch.
"""

from .finetune import layer_decay_optimizer, layer_ids
from .hub import PresetError, resolve_preset
from .layers import (Attention, Block, Mlp, PatchEmbed, named_variables, sinusoid_positions,
                     sinusoid_table)
from .masking import running_cell_mask, tube_mask
from .presets import PRESETS, Preset, get_preset
from .pretrain import (PretrainDecoder, pretraining_optimizer, static_token_counts,
                       token_counts)
from .video_classifier import VideoClassifier
from .videomae_backbone import VideoMAEBackbone
from .videomae_masked_autoencoder import VideoMAEMaskedAutoencoder
from .videomae_video_classifier import VideoMAEVideoClassifier
from .videomae_video_classifier_preprocessor import VideoMAEVideoClassifierPreprocessor
from .videomae_video_converter import VideoMAEVideoConverter
from . import legacy  # noqa: F401,E402  (old class names, for deserialisation only)

__all__ = ["VideoMAEBackbone", "VideoClassifier", "VideoMAEVideoClassifier",
           "VideoMAEVideoClassifierPreprocessor", "VideoMAEVideoConverter",
           "VideoMAEMaskedAutoencoder", "PretrainDecoder", "static_token_counts", "token_counts",
           "PRESETS", "Preset", "get_preset", "resolve_preset", "PresetError",
           "layer_decay_optimizer", "layer_ids", "pretraining_optimizer", "sinusoid_positions",
           "PatchEmbed", "Attention", "Mlp", "Block",
           "named_variables", "sinusoid_table", "tube_mask", "running_cell_mask"]
