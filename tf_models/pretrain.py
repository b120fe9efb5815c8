"""The VideoMAE pre-training model (masked autoencoder) as a Keras 3 model.

Inputs: ``video_nthwc`` float32 (B, T, H, W, 3) and ``mask`` bool (B, N), True = masked, with
the same number of masked tokens in every row (positions may differ per row). Output:
(B, n_masked, 3 * tubelet * patch**2), the normalised pixels of the masked patches in
ascending token order, as upstream. No Python-side assumption about batch or mask count, so a
traced function serves any batch size and mask ratio.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import keras
from keras import ops

from .layers import (PACKAGE, Block, PatchEmbed, PlainConfig, embed_tokens, layer_norm,
                     named_variables, run_blocks, sinusoid_positions)


def visible_first_order(mask):
    """Token indices per row: visible tokens ascending, then masked tokens ascending."""
    tokens = ops.shape(mask)[1]
    key = ops.cast(mask, "int32") * tokens + ops.arange(tokens, dtype="int32")[None, :]
    return ops.argsort(key, axis=-1)  # keys are unique, so stability does not matter


def gather_tokens(x, indices):
    """x (B, N, D) gathered along tokens with indices (B, M) -> (B, M, D)."""
    shape = ops.shape(x)
    index = ops.broadcast_to(indices[:, :, None], (shape[0], ops.shape(indices)[1], shape[2]))
    return ops.take_along_axis(x, index, axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PretrainEncoder(PlainConfig, keras.layers.Layer):
    """Patch embedding + sinusoid -> visible tokens only -> blocks -> ``norm``."""

    SUBLAYERS = ("patch_embed", "blocks", "norm")
    CONFIG = ("embed_dim", "depth", "num_heads", "num_patches", "patch_size", "tubelet_size",
              "mlp_ratio")

    def __init__(self, embed_dim: int, depth: int, num_heads: int, num_patches: int,
                 patch_size: int = 16, tubelet_size: int = 2, mlp_ratio: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.patch_embed = PatchEmbed(embed_dim, patch_size, tubelet_size, name="patch_embed")
        self.blocks = [Block(embed_dim, num_heads, mlp_ratio, name=f"blocks_{i}")
                       for i in range(depth)]
        self.norm = layer_norm("norm")

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        tokens = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(tokens)
        self.norm.build(tokens)

    def call(self, video_nthwc, visible_ids, return_hidden_states: bool = False):
        """Encoded visible tokens; with ``return_hidden_states`` also every block's output
        (returned, not appended to an argument: Keras copies nested call arguments)."""
        x = gather_tokens(embed_tokens(self, video_nthwc), visible_ids)
        x, hidden = run_blocks(self.blocks, x)
        x = self.norm(x)
        return (x, hidden) if return_hidden_states else x

@keras.saving.register_keras_serializable(package=PACKAGE)
class PretrainDecoder(PlainConfig, keras.layers.Layer):
    """Blocks -> ``norm`` -> ``head`` applied to the last ``n_masked`` tokens."""

    SUBLAYERS = ("blocks", "norm", "head")
    CONFIG = ("embed_dim", "depth", "num_heads", "num_outputs", "mlp_ratio")

    def __init__(self, embed_dim: int, depth: int, num_heads: int, num_outputs: int,
                 mlp_ratio: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.blocks = [Block(embed_dim, num_heads, mlp_ratio, name=f"blocks_{i}")
                       for i in range(depth)]
        self.norm = layer_norm("norm")
        self.head = keras.layers.Dense(num_outputs, name="head")

    def build(self, input_shape):
        tokens = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(tokens)
        self.norm.build(tokens)
        self.head.build(tokens)

    def call(self, x, n_masked, return_hidden_states: bool = False):
        x, hidden = run_blocks(self.blocks, x)
        tokens = ops.shape(x)[1]
        x = ops.slice(x, (0, tokens - n_masked, 0),
                      (ops.shape(x)[0], n_masked, self.embed_dim))
        x = self.head(self.norm(x))
        return (x, hidden) if return_hidden_states else x

@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEPretrainer(PlainConfig, keras.Model):
    """Upstream's VideoMAE masked autoencoder: ``model(video_nthwc, mask)`` -> masked pixels."""

    SUBLAYERS = ("encoder", "encoder_to_decoder", "decoder")
    CONFIG = ("embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
              "decoder_num_heads", "num_frames", "img_size", "patch_size", "tubelet_size",
              "mlp_ratio", "in_chans")
    OWN_VARIABLES = ("mask_token",)

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 decoder_embed_dim: int = 384, decoder_depth: int = 4,
                 decoder_num_heads: int = 6, num_frames: int = 16, img_size: int = 224,
                 patch_size: int = 16, tubelet_size: int = 2, mlp_ratio: float = 4.0,
                 in_chans: int = 3, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.num_patches = (num_frames // tubelet_size) * (img_size // patch_size) ** 2
        self.encoder = PretrainEncoder(embed_dim, depth, num_heads, self.num_patches,
                                       patch_size, tubelet_size, mlp_ratio, name="encoder")
        # upstream's projection into the decoder width has no bias
        self.encoder_to_decoder = keras.layers.Dense(decoder_embed_dim, use_bias=False,
                                                     name="encoder_to_decoder")
        self.decoder = PretrainDecoder(decoder_embed_dim, decoder_depth, decoder_num_heads,
                                       in_chans * tubelet_size * patch_size ** 2, mlp_ratio,
                                       name="decoder")
        self.build((None, num_frames, img_size, img_size, in_chans))

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.encoder_to_decoder.build((None, None, self.embed_dim))
        self.decoder.build((None, None, self.decoder_embed_dim))
        self.mask_token = self.add_weight(shape=(1, 1, self.decoder_embed_dim),
                                          initializer="zeros", name="mask_token")

    def call_with_hidden_states(self, video_nthwc, mask) -> Tuple[object, List[object]]:
        """Predictions and the outputs of every encoder block, then every decoder block."""
        order = visible_first_order(mask)
        batch = ops.shape(order)[0]
        n_masked = ops.sum(ops.cast(mask[0], "int32"))
        n_visible = self.num_patches - n_masked
        visible_ids = ops.slice(order, (0, 0), (batch, n_visible))
        encoded, hidden = self.encoder(video_nthwc, visible_ids, return_hidden_states=True)
        x_vis = self.encoder_to_decoder(encoded)
        tokens = ops.concatenate(
            [x_vis, ops.broadcast_to(ops.cast(self.mask_token, x_vis.dtype),
                                     (batch, n_masked, self.decoder_embed_dim))], axis=1)
        pos = ops.broadcast_to(sinusoid_positions(self.num_patches, self.decoder_embed_dim,
                                                  x_vis.dtype),
                               (batch, self.num_patches, self.decoder_embed_dim))
        x = tokens + gather_tokens(pos, order)
        out, decoder_hidden = self.decoder(x, n_masked, return_hidden_states=True)
        return out, list(hidden) + list(decoder_hidden)

    def call(self, video_nthwc, mask):
        return self.call_with_hidden_states(video_nthwc, mask)[0]

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted names (``encoder.blocks.0.attn.qkv.kernel``, ``mask_token`` ...) -> variables."""
        return named_variables(self)
