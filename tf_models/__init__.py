"""VideoMAE in Keras 3 (``keras.ops`` only, any backend); importing this registers the classes.

    import tf_models
    model = tf_models.VideoMAEClassifier.from_preset("TFVideoMAE_B_K400_16x224_FT")
    backbone = tf_models.VideoMAEBackbone.from_preset("TFVideoMAE_B_K400_16x224_PT")

Never imports torch.
"""

from .finetune import layer_decay_optimizer, layer_ids
from .hub import PresetError, resolve_preset
from .layers import (Attention, Block, Mlp, PatchEmbed, named_variables, sinusoid_positions,
                     sinusoid_table)
from .masking import tube_mask
from .presets import PRESETS, Preset, get_preset
from .pretrain import PretrainDecoder, VideoMAEPretrainer
from .videomae import VideoMAEBackbone, VideoMAEClassifier

__all__ = ["VideoMAEBackbone", "VideoMAEClassifier", "VideoMAEPretrainer", "PretrainDecoder",
           "PRESETS", "Preset", "get_preset", "resolve_preset", "PresetError",
           "layer_decay_optimizer", "layer_ids", "sinusoid_positions",
           "PatchEmbed", "Attention", "Mlp", "Block",
           "named_variables", "sinusoid_table", "tube_mask"]
