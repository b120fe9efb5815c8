"""The VideoMAE fine-tuned classifier as a Keras 3 model (channels-last video)."""

from __future__ import annotations

from typing import Dict, List, Tuple

import keras
from keras import ops

from .layers import (PACKAGE, Block, PatchEmbed, PlainConfig, embed_tokens, layer_norm,
                     named_variables, run_blocks)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEClassifier(PlainConfig, keras.Model):
    """Upstream's fine-tuned VideoMAE: tubelets + sinusoid -> blocks -> mean -> fc_norm -> head.

    Input ``video_nthwc``: float32 (batch, num_frames, img_size, img_size, 3), normalised as
    upstream (/255, ImageNet mean/std). Output: logits (batch, num_classes).
    Variables exist as soon as the model is constructed; ``named_variables()`` lists them.
    """

    SUBLAYERS = ("patch_embed", "blocks", "fc_norm", "head")
    CONFIG = ("embed_dim", "depth", "num_heads", "num_classes", "num_frames", "img_size",
              "patch_size", "tubelet_size", "mlp_ratio", "in_chans")

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 num_classes: int = 400, num_frames: int = 16, img_size: int = 224,
                 patch_size: int = 16, tubelet_size: int = 2, mlp_ratio: float = 4.0,
                 in_chans: int = 3, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.num_patches = (num_frames // tubelet_size) * (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(embed_dim, patch_size, tubelet_size, name="patch_embed")
        self.blocks = [Block(embed_dim, num_heads, mlp_ratio, name=f"blocks_{i}")
                       for i in range(depth)]
        self.fc_norm = layer_norm("fc_norm")
        self.head = keras.layers.Dense(num_classes, name="head")
        self.build((None, num_frames, img_size, img_size, in_chans))

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        tokens = (None, self.num_patches, self.embed_dim)
        for block in self.blocks:
            block.build(tokens)
        self.fc_norm.build((None, self.embed_dim))
        self.head.build((None, self.embed_dim))

    def call_with_hidden_states(self, video_nthwc) -> Tuple[object, List[object]]:
        """Logits and every block's output (batch, N, D), for per-block parity."""
        x, hidden = run_blocks(self.blocks, embed_tokens(self, video_nthwc))
        return self.head(self.fc_norm(ops.mean(x, axis=1))), hidden

    def call(self, video_nthwc):
        return self.call_with_hidden_states(video_nthwc)[0]

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted names (``blocks.0.attn.qkv.kernel`` ...) -> variables."""
        return named_variables(self)


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEEncoder(PlainConfig, keras.Model):
    """The VideoMAE encoder alone, for features: ``model(video)`` -> {"tokens", "pooled"}.

    ``final_norm="fc_norm"`` (from a fine-tuned checkpoint): tokens are the last block's
    output and pooled = fc_norm(mean(tokens)), upstream's pre-head features.
    ``final_norm="norm"`` (from a pre-trained checkpoint): tokens = norm(last block output)
    over all tokens (no masking) and pooled = mean(tokens).
    """

    SUBLAYERS = ("patch_embed", "blocks", "final")
    CONFIG = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size",
              "tubelet_size", "mlp_ratio", "in_chans", "final_norm")

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 num_frames: int = 16, img_size: int = 224, patch_size: int = 16,
                 tubelet_size: int = 2, mlp_ratio: float = 4.0, in_chans: int = 3,
                 final_norm: str = "fc_norm", **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        if final_norm not in ("fc_norm", "norm"):
            raise ValueError(f"final_norm must be 'fc_norm' or 'norm', not {final_norm!r}")
        self.num_patches = (num_frames // tubelet_size) * (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(embed_dim, patch_size, tubelet_size, name="patch_embed")
        self.blocks = [Block(embed_dim, num_heads, mlp_ratio, name=f"blocks_{i}")
                       for i in range(depth)]
        self.final = layer_norm(final_norm)
        self.build((None, num_frames, img_size, img_size, in_chans))

    def build(self, input_shape):
        self.patch_embed.build(input_shape)
        tokens = (None, self.num_patches, self.embed_dim)
        for block in self.blocks:
            block.build(tokens)
        self.final.build(tokens)

    def call_with_hidden_states(self, video_nthwc):
        x, hidden = run_blocks(self.blocks, embed_tokens(self, video_nthwc))
        if self.final_norm == "fc_norm":
            outputs = {"tokens": x, "pooled": self.final(ops.mean(x, axis=1))}
        else:
            tokens = self.final(x)
            outputs = {"tokens": tokens, "pooled": ops.mean(tokens, axis=1)}
        return outputs, hidden

    def call(self, video_nthwc):
        return self.call_with_hidden_states(video_nthwc)[0]

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted names; the final norm is named after its upstream module (fc_norm / norm)."""
        found = named_variables(self)
        return {name.replace("final.", f"{self.final_norm}.", 1) if name.startswith("final.")
                else name: variable for name, variable in found.items()}
