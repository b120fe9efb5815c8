"""VideoMAE in Keras 3 (``keras.ops`` only): importing this registers the classes for loading.

    import tf_models, keras
    model = keras.saving.load_model("TFVideoMAE_B_K400_16x224_FT.keras")
"""

from .layers import (Attention, Block, Mlp, PatchEmbed, named_variables, sinusoid_positions,
                     sinusoid_table)
from .masking import tube_mask
from .pretrain import PretrainDecoder, PretrainEncoder, VideoMAEPretrainer
from .videomae import VideoMAEClassifier, VideoMAEEncoder

__all__ = ["VideoMAEClassifier", "VideoMAEEncoder", "VideoMAEPretrainer", "PretrainEncoder",
           "PretrainDecoder", "sinusoid_positions",
           "PatchEmbed", "Attention", "Mlp", "Block",
           "named_variables", "sinusoid_table", "tube_mask"]
