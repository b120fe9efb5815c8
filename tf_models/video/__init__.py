"""Upstream VideoMAE's test-time video pipeline, class names, prediction and evaluation.

torch-free. ``protocol`` and ``decode`` use only numpy, OpenCV and PyAV (importing them still
runs the ``tf_models`` package's ``__init__``, which registers the Keras classes, so Keras and
TensorFlow load too: about 6 s and 0.9 GB per process on a 2-core machine; Ray's decoding
workers get their code by value instead, ``ray_decode``); ``model``,
``predict`` and ``evaluate`` run converted models with TensorFlow / Keras; ``reconstruct``
turns a pre-trained model's pixel predictions back into pictures (``videomae-reconstruct``);
``masked_clips`` batches clips for continuing pre-training, new masks every epoch.

    from tf_models.video import load_video_model, classify_video
    model = load_video_model("weights/TFVideoMAE_S_K400_16x224_FT.keras")
    print(classify_video(model, "clip.mp4")["top_k"])
"""

from ..presets import IMAGENET_MEAN as MEAN
from ..presets import IMAGENET_STD as STD
from .decode import VideoError, decode_frames, read_views
from .labels import class_names
from .protocol import Protocol, normalize_views, protocol_for

__all__ = ["Protocol", "protocol_for", "normalize_views", "MEAN", "STD", "VideoError",
           "decode_frames", "read_views", "class_names", "load_video_model", "classify_video"]


def __getattr__(name):
    # the TensorFlow side loads only when asked for
    if name == "load_video_model":
        from .model import load_video_model
        return load_video_model
    if name == "classify_video":
        from .predict import classify_video
        return classify_video
    raise AttributeError(name)
