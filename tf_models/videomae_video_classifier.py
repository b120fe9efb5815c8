"""``VideoMAEVideoClassifier``: upstream's fine-tuned VideoMAE as a keras-hub video task."""

from __future__ import annotations

from typing import List, Tuple

import keras

from .hub import load_preset_model
from .kerashub_presets import keras_hub_loads
from .layers import (PACKAGE, check_model_options, check_model_sizes, freeze_if_built_frozen,
                     layer_norm, refuse_unknown_args)
from .presets import HEAD_INIT_SCALE
from .transformers_format import is_transformers_preset, load_transformers_preset
from .video_classifier import VideoClassifier
from .videomae import TASK_BACKBONE_ARGS, BackboneTask, make_backbone
from .videomae_backbone import VideoMAEBackbone, video_input
from .videomae_video_classifier_preprocessor import VideoMAEVideoClassifierPreprocessor


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEVideoClassifier(VideoClassifier, BackboneTask):
    """Upstream's fine-tuned VideoMAE: backbone -> mean over tokens -> fc_norm -> dropout -> head.

    ``VideoMAEVideoClassifier(backbone=..., num_classes=..., preprocessor=...)`` or, as the
    converter builds it, from the backbone's keyword arguments (``embed_dim``, ``depth``,
    ``num_heads``, ...). With a ``VideoMAEVideoClassifierPreprocessor``, ``predict`` and
    ``fit`` take raw uint8 frames (batch, frames, height, width, 3); calling the model
    directly takes float32 video normalised as upstream (/255, ImageNet mean/std), or
    ``{"video": ...}``. Output: logits (batch, num_classes).
    A new head is initialised as upstream's fine-tuning does: truncated normal (std 0.02)
    scaled by 0.001, zero bias; ``fc_norm`` starts at gamma 1, beta 0. With a backbone
    without ``use_mean_pooling`` (a VideoMAE V2 option) the head reads ``norm`` of the first
    token instead, as upstream, and there is no ``fc_norm``. ``dropout`` is upstream's head
    dropout (V1 ``fc_drop_rate``, V2 ``head_drop_rate``).
    """

    backbone_cls = VideoMAEBackbone
    preprocessor_cls = VideoMAEVideoClassifierPreprocessor
    TASK_CONFIG = ("num_classes", "dropout")
    NEW_TASK_ARGS = ("num_classes",)
    PRESET_WORDS = "fine-tuned (FT) classifier"

    def __init__(self, backbone=None, num_classes: int = 400, preprocessor=None,
                 dropout: float = 0.0, head_dtype=None, **kwargs):
        # before anything is built (a config from a file: unknown keys, options of any type)
        refuse_unknown_args(kwargs, VideoMAEVideoClassifier, TASK_BACKBONE_ARGS)
        check_model_options(dict(kwargs, dropout=dropout, head_dtype=head_dtype))
        check_model_sizes({"num_classes": num_classes})
        backbone = make_backbone(backbone, kwargs, None, "VideoMAEVideoClassifier")
        kwargs.pop("dtype", None)
        head_dtype = head_dtype or backbone.dtype_policy
        # === Layers === upstream's pre-head LayerNorm: fc_norm after mean pooling, norm on
        # the first token
        self.backbone = backbone
        self.preprocessor = preprocessor
        pre_head_norm = layer_norm("fc_norm" if backbone.use_mean_pooling else "norm",
                                   dtype=head_dtype)
        head_dropout = keras.layers.Dropout(dropout, dtype=head_dtype, name="head_dropout")
        head = keras.layers.Dense(
            num_classes, name="head", bias_initializer="zeros", dtype=head_dtype,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02 * HEAD_INIT_SCALE))

        # === Functional model ===
        inputs = backbone.input
        pooled = backbone(inputs)["pooled"]
        outputs = head(head_dropout(pre_head_norm(pooled)))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        freeze_if_built_frozen(self)

        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout
        self.fc_norm = pre_head_norm if backbone.use_mean_pooling else None
        self.norm = None if backbone.use_mean_pooling else pre_head_norm
        self.head_dropout, self.head = head_dropout, head

    @property
    def SUBLAYERS(self):  # noqa: N802  (the attribute name named_variables reads)
        return (("backbone", ""), "fc_norm" if self.fc_norm is not None else "norm", "head")

    @property
    def pre_head_norm(self):
        """The LayerNorm before the head: ``fc_norm``, or ``norm`` without mean pooling."""
        return self.fc_norm if self.fc_norm is not None else self.norm

    def get_config(self):
        return self.task_config(super().get_config())

    def call(self, inputs, training=None, mask=None):
        # the functional input is the video alone: {"video": x} or [x] would reach Keras's
        # functional call with its structure warning. Unwrapped here, not in __call__: every
        # route ends here (calls, predict, nesting in another functional model, and the
        # trainers' steps on JAX, which call this directly through ``stateless_call``)
        return super().call(video_input(inputs), training=training, mask=mask)

    def call_with_hidden_states(self, inputs, training=None) -> Tuple[object, List[object]]:
        """Logits and every block's output (batch, N, D), for per-block parity."""
        x, hidden = self.backbone.encode(video_input(inputs), training=training)
        pooled = self.pre_head_norm(self.backbone.pool(x))
        return self.head(self.head_dropout(pooled, training=training)), hidden

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True, **kwargs):
        """A classifier from a keras-hub preset folder or handle (``hf://``, ``kaggle://``),
        through keras-hub's ``Task.from_preset``, or from a zoo name, release folder,
        artifact path or URL (``tf_models.hub``, SHA256-verified), or from a
        transformers-format VideoMAE folder or ``hf://`` repository (converted on the fly,
        ``tf_models.transformers_format``; its ``preprocessor_config.json``, where it describes
        what ``VideoMAEVideoConverter`` does, gives the preprocessor).

        From a pre-trained (PT) preset, pass ``num_classes``: the backbone carries the
        pre-trained encoder and ``fc_norm`` and the head are new.
        """
        if is_transformers_preset(preset, kwargs.get("offline")):  # model_type videomae
            return load_transformers_preset(cls, preset, load_weights=load_weights, **kwargs)
        if keras_hub_loads(cls, preset, kwargs):  # VideoClassifier.from_preset: checked, safe mode
            return super().from_preset(preset, load_weights=load_weights, **kwargs)
        return load_preset_model(cls, preset, load_weights=load_weights, **kwargs)
