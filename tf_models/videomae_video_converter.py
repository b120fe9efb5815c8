"""``VideoMAEVideoConverter``: raw uint8 frames -> the normalised video VideoMAE takes."""

from __future__ import annotations

from typing import Sequence

import keras
from keras_hub.layers import VideoConverter
from keras_hub.src.layers.preprocessing.preprocessing_layer import PreprocessingLayer
from keras_hub.src.utils.tensor_utils import preprocessing_function

from .layers import PACKAGE
from .presets import IMAGENET_MEAN, IMAGENET_STD
from .videomae_backbone import VideoMAEBackbone


def resize_and_crop(video, size: int):
    """(B, T, H, W, C) -> (B, T, size, size, C) float32: bilinear resize of the short side to
    ``size`` (long side ``int(size * long / short)``, as ``tf_models.video``'s
    ``resize_short_side``), then the centre crop. Frames already ``size`` square pass through."""
    import tensorflow as tf

    shape = tf.shape(video)
    batch, frames, height, width, channels = (shape[i] for i in range(5))

    def resized():
        short = tf.minimum(height, width)
        new_h = tf.where(height == short, size, (size * height) // short)
        new_w = tf.where(width == short, size, (size * width) // short)
        flat = tf.reshape(tf.cast(video, tf.float32), (-1, height, width, channels))
        flat = tf.image.resize(flat, tf.stack([new_h, new_w]), method="bilinear")
        top, left = (new_h - size) // 2, (new_w - size) // 2
        flat = flat[:, top:top + size, left:left + size]
        return tf.reshape(flat, (batch, frames, size, size, channels))

    same = tf.logical_and(tf.equal(height, size), tf.equal(width, size))
    return tf.cond(same, lambda: tf.cast(video, tf.float32), resized)


def normalize_frames(video, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD):
    """uint8 (or float 0..255) frames -> float32 ``(x / 255 - mean) / std`` in TensorFlow,
    upstream's float32 operations (``tf_models.video.normalize_views`` is the numpy twin);
    the converter layer and the raw-frames SavedModel / LiteRT exports run this."""
    import tensorflow as tf

    scaled = tf.cast(video, tf.float32) / tf.constant(255.0, tf.float32)
    return (scaled - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEVideoConverter(VideoConverter):
    """uint8 (or float 0..255) frames ``(batch, frames, H, W, 3)`` -> float32
    ``(x / 255 - mean) / std`` at ``image_size``, upstream's normalisation in float32.

    Frames at ``image_size`` pass through unresized, so the output equals upstream's
    normalisation bit for bit; other sizes are resized on the short side (bilinear, no
    antialiasing) and centre-cropped (OpenCV's INTER_LINEAR in ``tf_models.video`` differs
    from TensorFlow's bilinear by up to a few grey levels on downscaled frames).
    Runs in TensorFlow on every backend, as keras-hub's preprocessing does (also in
    ``tf.data``).
    """

    backbone_cls = VideoMAEBackbone

    def __init__(self, image_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, **kwargs):
        for key in ("scale", "offset"):
            kwargs.pop(key, None)
        if isinstance(image_size, (list, tuple)):
            image_size = int(image_size[0])
        # VideoConverter's own __init__ would add an ImageConverter we do not use (and
        # keras-hub would save it to the preset as image_converter.json)
        PreprocessingLayer.__init__(self, **kwargs)
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    @preprocessing_function
    def call(self, inputs):
        return normalize_frames(resize_and_crop(inputs, self.image_size), self.mean, self.std)

    def get_config(self):
        config = PreprocessingLayer.get_config(self)
        config.update({"image_size": self.image_size, "mean": list(self.mean),
                       "std": list(self.std)})
        return config
