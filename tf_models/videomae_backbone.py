"""``VideoMAEBackbone``: the VideoMAE encoder as a functional ``keras_hub.models.Backbone``."""

from __future__ import annotations

from typing import Dict, Optional

import keras
from keras import ops
from keras_hub.models import Backbone

from .hub import load_preset_model
from .input_checks import first_video, refuse_no_clips, refuse_raw_frames
from .kerashub_presets import keras_hub_loads, load_checked
from .layers import (PACKAGE, Block, PatchEmbed, check_model_options, check_model_sizes,
                     freeze_if_built_frozen, layer_norm, named_variables, refuse_unknown_args,
                     run_blocks, sinusoid_positions)
from .transformers_format import is_transformers_preset, load_transformers_preset


def video_input(inputs):
    """The video tensor from ``inputs``: a tensor, ``{"video": ...}`` or ``[video, ...]``
    (``input_checks.first_video``), a dict without it one clear error."""
    if isinstance(inputs, dict) and "video" not in inputs:
        raise ValueError(f"expected a dict with a 'video' entry, got keys {sorted(inputs)}")
    return first_video(inputs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SinusoidPositions(keras.layers.Layer):
    """Adds upstream's fixed sinusoid table to (B, N, D) tokens; no variables (upstream never
    saves the table, so neither do we)."""

    def __init__(self, num_positions: int, **kwargs):
        super().__init__(**kwargs)
        self.num_positions = num_positions

    def call(self, x):
        return x + sinusoid_positions(self.num_positions, ops.shape(x)[-1], x.dtype)

    def get_config(self):
        return {**super().get_config(), "num_positions": self.num_positions}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenPooling(keras.layers.Layer):
    """(B, N, D) -> (B, D): the mean over tokens, or the first token."""

    def __init__(self, use_mean_pooling: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.use_mean_pooling = use_mean_pooling

    def call(self, tokens):
        return ops.mean(tokens, axis=1) if self.use_mean_pooling else tokens[:, 0]

    def get_config(self):
        return {**super().get_config(), "use_mean_pooling": self.use_mean_pooling}


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEBackbone(Backbone):
    """The VideoMAE encoder: ``model(video)`` -> ``{"tokens": (B, N, D), "pooled": (B, D)}``.

    A functional keras-hub ``Backbone``: input ``video`` (batch, num_frames, img_size,
    img_size, in_chans) float32, normalised as upstream (/255, ImageNet mean/std; a task's
    preprocessor does this from raw uint8 frames), or ``{"video": ...}``.

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
                 use_mean_pooling: bool = True, dtype=None, **kwargs):
        # before anything is built: a config from a file may ask for a billion tokens, or
        # give options of any type (checked only when used, or never)
        refuse_unknown_args(kwargs, VideoMAEBackbone)
        check_model_options(dict(mlp_ratio=mlp_ratio, final_norm=final_norm,
                                 drop_path_rate=drop_path_rate, init_values=init_values,
                                 cos_attn=cos_attn, use_mean_pooling=use_mean_pooling,
                                 dtype=dtype, **kwargs))
        if final_norm == "fc_norm" and not use_mean_pooling:
            raise ValueError("final_norm='fc_norm' needs use_mean_pooling: without mean pooling "
                             "upstream has no fc_norm (its `norm` closes the encoder)")
        check_model_sizes(dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                         num_frames=num_frames, img_size=img_size, patch_size=patch_size,
                         tubelet_size=tubelet_size, in_chans=in_chans))
        num_patches = (num_frames // tubelet_size) * (img_size // patch_size) ** 2
        # === Layers === (named after upstream's modules: the converter maps onto these)
        patch_embed = PatchEmbed(embed_dim, patch_size, tubelet_size, dtype=dtype,
                                 name="patch_embed")
        positions = SinusoidPositions(num_patches, dtype=dtype, name="positions")
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        blocks = [Block(embed_dim, num_heads, mlp_ratio, rates[i], init_values, cos_attn,
                        dtype=dtype, name=f"blocks_{i}")
                  for i in range(depth)]
        final = layer_norm(final_norm, dtype=dtype) if final_norm else None
        pooling = TokenPooling(use_mean_pooling, dtype=dtype, name="pooling")

        # === Functional model ===
        video = keras.Input(shape=(num_frames, img_size, img_size, in_chans), name="video")
        x = positions(patch_embed(video))
        x, _ = run_blocks(blocks, x)
        if final_norm == "norm":
            x = final(x)
        pooled = pooling(x)
        if final_norm == "fc_norm":
            pooled = final(pooled)
        super().__init__(inputs=video, outputs={"tokens": x, "pooled": pooled}, dtype=dtype,
                         **kwargs)
        freeze_if_built_frozen(self)

        # === Config ===
        self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
        self.num_frames, self.img_size, self.patch_size = num_frames, img_size, patch_size
        self.tubelet_size, self.mlp_ratio, self.in_chans = tubelet_size, mlp_ratio, in_chans
        self.final_norm, self.drop_path_rate = final_norm, drop_path_rate
        self.init_values, self.cos_attn = init_values, cos_attn
        self.use_mean_pooling = use_mean_pooling
        self.num_patches = num_patches
        self.patch_embed, self.positions, self.pooling = patch_embed, positions, pooling
        self.blocks, self.final = blocks, final

    def __call__(self, *args, **kwargs):
        self._check_video(first_video(args[0] if args else kwargs.get("inputs")))
        return super().__call__(*args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_video(first_video(x))
        return super().predict(x, *args, **kwargs)

    def _check_video(self, video) -> None:
        # it runs no preprocessor: raw frames would be read as normalised values
        refuse_no_clips(video, f"{self.name}:")
        refuse_raw_frames(video, f"{self.name}:")

    def call(self, inputs, training=None, mask=None):
        # the functional input is the video alone: {"video": x} or [x] would reach Keras's
        # functional call with its input-structure warning (as VideoMAEVideoClassifier.call)
        return super().call(video_input(inputs), training=training, mask=mask)

    @property
    def SUBLAYERS(self):  # noqa: N802  (the attribute name named_variables reads)
        final = (("final", self.final_norm),) if self.final_norm else ()
        return ("patch_embed", "blocks") + final

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self.CONFIG})
        return config

    def encode(self, video_nthwc, visible_ids=None, training=None):
        """Block output before any final norm, and every block's output.

        With ``visible_ids`` (B, M) only those tokens (positions already added) enter the
        blocks, as upstream's pre-training encoder keeps ``x[~mask]``.
        """
        x = self.positions(self.patch_embed(video_nthwc))
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
        return self.pooling(tokens)

    def call_with_hidden_states(self, inputs, training=None):
        """Features and every block's output, for per-block parity."""
        x, hidden = self.encode(video_input(inputs), training=training)
        return self.features(x), hidden

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted upstream-like names (``blocks.0.attn.qkv.kernel``, ``norm.gamma``...)."""
        return named_variables(self)

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True, **kwargs):
        """The encoder of a keras-hub preset folder or handle (``hf://``, ``kaggle://``), or of
        a zoo name, release folder, artifact or URL (its final norm as stored: ``norm`` for
        PT, none for FT; resolved with SHA256 verification by ``tf_models.hub``), or of a
        transformers-format VideoMAE folder or ``hf://`` repository (converted on the fly,
        ``tf_models.transformers_format``)."""
        if is_transformers_preset(preset, kwargs.get("offline")):  # model_type videomae
            return load_transformers_preset(cls, preset, load_weights=load_weights, **kwargs)
        if keras_hub_loads(cls, preset, kwargs):
            parent = super()
            return load_checked(
                lambda path: parent.from_preset(path, load_weights=load_weights, **kwargs),
                preset, load_weights)
        return load_preset_model(cls, preset, load_weights=load_weights, **kwargs)


def gather_tokens(x, indices):
    """x (B, N, D) gathered along tokens with indices (B, M) -> (B, M, D)."""
    shape = ops.shape(x)
    index = ops.broadcast_to(indices[:, :, None], (shape[0], ops.shape(indices)[1], shape[2]))
    return ops.take_along_axis(x, index, axis=1)
