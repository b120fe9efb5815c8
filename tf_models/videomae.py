"""The VideoMAE backbone and its classification task as Keras 3 models (channels-last video).

Arranged as keras-hub arranges its models: ``VideoMAEBackbone`` (tubelet embedding, sinusoid
positions, transformer blocks) and tasks built on it (``VideoMAEClassifier`` here,
``VideoMAEPretrainer`` in ``pretrain.py``). Inputs are a video tensor or a dict named like the
SavedModel signature (``{"video": ...}``), so ``fit`` and ``predict`` work as usual.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import keras
from keras import ops

from .hub import load_preset_model
from .layers import (PACKAGE, Block, PatchEmbed, PlainConfig, embed_tokens, layer_norm,
                     named_variables, run_blocks)
from .presets import HEAD_INIT_SCALE

FINAL_NORMS = (None, "norm", "fc_norm")


def video_input(inputs):
    """The video tensor from ``inputs``: a tensor, ``{"video": ...}`` or ``[video, ...]``."""
    if isinstance(inputs, dict):
        if "video" not in inputs:
            raise ValueError(f"expected a dict with a 'video' entry, got keys {sorted(inputs)}")
        return inputs["video"]
    if isinstance(inputs, (list, tuple)):
        return inputs[0]
    return inputs


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEBackbone(PlainConfig, keras.Model):
    """The VideoMAE encoder: ``model(video)`` -> ``{"tokens": (B, N, D), "pooled": (B, D)}``.

    ``final_norm`` says which upstream LayerNorm closes the encoder:
    - ``None`` (as inside a fine-tuned classifier): tokens are the last block's output,
      pooled is their mean;
    - ``"norm"`` (a pre-trained encoder's ``encoder.norm``): tokens are normalised, pooled is
      their mean;
    - ``"fc_norm"`` (features of a fine-tuned checkpoint): tokens are the last block's output,
      pooled = fc_norm(mean(tokens)), upstream's pre-head features.
    ``drop_path_rate`` is the stochastic-depth rate of the last block, rising linearly from 0
    over the blocks, as upstream's fine-tuning sets it.

    VideoMAE V2's options (all off by default, then the model is V1's, variable for variable):
    ``patch_size`` 14 and ``mlp_ratio`` 48/11 (ViT-g), ``init_values`` > 0 (layer scale
    ``gamma_1``/``gamma_2`` in every block), ``cos_attn`` (cosine attention, a learned
    ``attn.scale`` per block), ``use_mean_pooling=False`` (pooled is the first token rather
    than the mean; with ``final_norm="norm"`` that is upstream's ``norm(x[:, 0])``).
    """

    CONFIG = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size",
              "tubelet_size", "mlp_ratio", "in_chans", "final_norm", "drop_path_rate",
              "init_values", "cos_attn", "use_mean_pooling")

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 num_frames: int = 16, img_size: int = 224, patch_size: int = 16,
                 tubelet_size: int = 2, mlp_ratio: float = 4.0, in_chans: int = 3,
                 final_norm: Optional[str] = None, drop_path_rate: float = 0.0,
                 init_values: float = 0.0, cos_attn: bool = False,
                 use_mean_pooling: bool = True, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        if final_norm not in FINAL_NORMS:
            raise ValueError(f"final_norm must be one of {FINAL_NORMS}, not {final_norm!r}")
        if final_norm == "fc_norm" and not use_mean_pooling:
            raise ValueError("final_norm='fc_norm' needs use_mean_pooling: without mean pooling "
                             "upstream has no fc_norm (its `norm` closes the encoder)")
        self.num_patches = (num_frames // tubelet_size) * (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(embed_dim, patch_size, tubelet_size, name="patch_embed")
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = [Block(embed_dim, num_heads, mlp_ratio, rates[i], init_values, cos_attn,
                             name=f"blocks_{i}")
                       for i in range(depth)]
        self.final = layer_norm(final_norm) if final_norm else None
        self.build((None, num_frames, img_size, img_size, in_chans))

    @property
    def SUBLAYERS(self):  # noqa: N802  (the attribute name named_variables reads)
        final = (("final", self.final_norm),) if self.final_norm else ()
        return ("patch_embed", "blocks") + final

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        tokens = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(tokens)
        if self.final is not None:
            self.final.build((None, None, self.embed_dim))

    def encode(self, video_nthwc, visible_ids=None, training=None):
        """Block output before any final norm, and every block's output.

        With ``visible_ids`` (B, M) only those tokens (positions already added) enter the
        blocks, as upstream's pre-training encoder keeps ``x[~mask]``.
        """
        x = embed_tokens(self, video_nthwc)
        if visible_ids is not None:
            x = gather_tokens(x, visible_ids)
        return run_blocks(self.blocks, x, training=training)

    def features(self, x) -> Dict[str, object]:
        """``{"tokens", "pooled"}`` from the last block's output, per ``final_norm``."""
        if self.final_norm == "norm":
            tokens = self.final(x)
            return {"tokens": tokens, "pooled": self.pool(tokens)}
        pooled = self.pool(x)
        if self.final_norm == "fc_norm":
            pooled = self.final(pooled)
        return {"tokens": x, "pooled": pooled}

    def pool(self, tokens):
        """The mean over tokens, or the first token without ``use_mean_pooling``."""
        if self.use_mean_pooling:
            return ops.mean(tokens, axis=1)
        return tokens[:, 0]

    def call_with_hidden_states(self, inputs, training=None):
        """Features and every block's output, for per-block parity."""
        x, hidden = self.encode(video_input(inputs), training=training)
        return self.features(x), hidden

    def call(self, inputs, training=None):
        return self.call_with_hidden_states(inputs, training=training)[0]

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted upstream-like names (``blocks.0.attn.qkv.kernel``, ``norm.gamma``...)."""
        return named_variables(self)

    @classmethod
    def from_preset(cls, preset: str, **overrides):
        """The encoder of any preset (its final norm as stored: ``norm`` for PT, none for FT)."""
        return load_preset_model(cls, preset, **overrides)


def gather_tokens(x, indices):
    """x (B, N, D) gathered along tokens with indices (B, M) -> (B, M, D)."""
    shape = ops.shape(x)
    index = ops.broadcast_to(indices[:, :, None], (shape[0], ops.shape(indices)[1], shape[2]))
    return ops.take_along_axis(x, index, axis=1)


BACKBONE_ARGS = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size",
                 "tubelet_size", "mlp_ratio", "in_chans", "drop_path_rate", "init_values",
                 "cos_attn", "use_mean_pooling")


def make_backbone(backbone, arguments: dict, final_norm: Optional[str], task: str):
    """The task's backbone: the one given, or one built from the backbone keyword arguments."""
    given = {k: arguments.pop(k) for k in BACKBONE_ARGS if k in arguments}
    if backbone is None:
        return VideoMAEBackbone(**given, final_norm=final_norm, name="backbone")
    if given:
        raise ValueError(f"{task}: pass either a backbone or its arguments "
                         f"({', '.join(sorted(given))}), not both")
    if isinstance(backbone, dict):
        backbone = keras.saving.deserialize_keras_object(backbone)
    if backbone.final_norm != final_norm:
        raise ValueError(f"{task} needs a backbone with final_norm={final_norm!r}, "
                         f"got {backbone.final_norm!r}")
    return backbone


class BackboneTask(keras.Model):
    """Shared plumbing of the tasks: the backbone's shape, config and upstream-named variables,
    and ``from_preset`` by what each task declares (as keras-hub's tasks do)."""

    # the backbone a task is built on, and the preprocessor of its raw inputs (none yet)
    backbone_cls = VideoMAEBackbone
    preprocessor_cls = None
    TASK_CONFIG: Tuple[str, ...] = ()
    # the constructor arguments that size new task layers when the preset's model is of
    # another class (or the arguments change); None: the task's layers come only from a
    # preset of its own class
    NEW_TASK_ARGS: Optional[Tuple[str, ...]] = ()
    PRESET_WORDS = "task"  # what a preset of this class is, in an error message

    num_frames = property(lambda self: self.backbone.num_frames)
    img_size = property(lambda self: self.backbone.img_size)
    patch_size = property(lambda self: self.backbone.patch_size)
    tubelet_size = property(lambda self: self.backbone.tubelet_size)
    embed_dim = property(lambda self: self.backbone.embed_dim)
    depth = property(lambda self: self.backbone.depth)
    num_patches = property(lambda self: self.backbone.num_patches)

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
                  "backbone": keras.saving.serialize_keras_object(self.backbone)}
        config.update({key: getattr(self, key) for key in self.TASK_CONFIG})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted upstream-like names -> variables, what the converter maps onto."""
        return named_variables(self)

    @classmethod
    def from_preset(cls, preset: str, **overrides):
        """This task from a zoo name, release folder, artifact path or URL
        (``tf_models.hub.load_preset_model``): the stored model when it is of this class,
        else the stored backbone with new task layers sized by ``NEW_TASK_ARGS``."""
        return load_preset_model(cls, preset, **overrides)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEClassifier(BackboneTask):
    """Upstream's fine-tuned VideoMAE: backbone -> mean over tokens -> fc_norm -> dropout -> head.

    ``VideoMAEClassifier(backbone=..., num_classes=...)`` or, as the converter builds it, from
    the backbone's keyword arguments (``embed_dim``, ``depth``, ``num_heads``, ...).
    Input: float32 video (batch, num_frames, img_size, img_size, 3), normalised as upstream
    (/255, ImageNet mean/std), or ``{"video": ...}``. Output: logits (batch, num_classes).
    A new head is initialised as upstream's fine-tuning does: truncated normal (std 0.02)
    scaled by 0.001, zero bias; ``fc_norm`` starts at gamma 1, beta 0. With a backbone
    without ``use_mean_pooling`` (a VideoMAE V2 option) the head reads ``norm`` of the first
    token instead, as upstream, and there is no ``fc_norm``. ``dropout`` is upstream's head
    dropout (V1 ``fc_drop_rate``, V2 ``head_drop_rate``).
    """

    TASK_CONFIG = ("num_classes", "dropout")
    NEW_TASK_ARGS = ("num_classes",)
    PRESET_WORDS = "fine-tuned (FT) classifier"

    def __init__(self, backbone=None, num_classes: int = 400, dropout: float = 0.0, **kwargs):
        backbone = make_backbone(backbone, kwargs, None, "VideoMAEClassifier")
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = dropout
        # upstream's pre-head LayerNorm: fc_norm after mean pooling, norm on the first token
        self.fc_norm = self.norm = None
        if backbone.use_mean_pooling:
            self.fc_norm = layer_norm("fc_norm")
        else:
            self.norm = layer_norm("norm")
        self.head_dropout = keras.layers.Dropout(dropout, name="head_dropout")
        self.head = keras.layers.Dense(
            num_classes, name="head", bias_initializer="zeros",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02 * HEAD_INIT_SCALE))
        self.pre_head_norm.build((None, backbone.embed_dim))
        self.head.build((None, backbone.embed_dim))
        self.built = True

    @property
    def SUBLAYERS(self):  # noqa: N802  (the attribute name named_variables reads)
        return (("backbone", ""), "fc_norm" if self.fc_norm is not None else "norm", "head")

    @property
    def pre_head_norm(self):
        """The LayerNorm before the head: ``fc_norm``, or ``norm`` without mean pooling."""
        return self.fc_norm if self.fc_norm is not None else self.norm

    def call_with_hidden_states(self, inputs, training=None) -> Tuple[object, List[object]]:
        """Logits and every block's output (batch, N, D), for per-block parity."""
        x, hidden = self.backbone.encode(video_input(inputs), training=training)
        pooled = self.pre_head_norm(self.backbone.pool(x))
        return self.head(self.head_dropout(pooled, training=training)), hidden

    def call(self, inputs, training=None):
        return self.call_with_hidden_states(inputs, training=training)[0]
