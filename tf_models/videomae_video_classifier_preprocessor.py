"""``VideoMAEVideoClassifierPreprocessor``: the classifier's preprocessor (raw frames in)."""

from __future__ import annotations

import keras
from keras_hub.models import Preprocessor
from keras_hub.src.utils.tensor_utils import preprocessing_function

from .layers import PACKAGE
from .videomae_backbone import VideoMAEBackbone
from .videomae_video_converter import VideoMAEVideoConverter


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEVideoClassifierPreprocessor(Preprocessor):
    """``x`` (raw uint8 video ``(batch, frames, H, W, 3)`` or ``{"video": ...}``), labels and
    sample weights -> the normalised video the classifier takes, through ``video_converter``
    (a ``VideoMAEVideoConverter``), as keras-hub's ``ImageClassifierPreprocessor`` does."""

    backbone_cls = VideoMAEBackbone
    video_converter_cls = VideoMAEVideoConverter

    def __init__(self, video_converter=None, **kwargs):
        super().__init__(**kwargs)
        self.video_converter = video_converter

    @preprocessing_function
    def call(self, x, y=None, sample_weight=None):
        if isinstance(x, dict):
            x = x["video"]
        if self.video_converter:
            x = self.video_converter(x)
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
