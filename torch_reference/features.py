"""Encoder features of an upstream model, for checking encoder-only conversions."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .modeling_finetune import VisionTransformer
from .modeling_pretrain import PretrainVisionTransformerEncoder


class EncoderFeatures(nn.Module):
    """{"tokens", "pooled"} from a fine-tuned model or a pre-training encoder (no masking).

    Fine-tuned: tokens = last block output (upstream's ``norm`` is an Identity), pooled =
    ``fc_norm(mean(tokens))``, the features the head sees; without mean pooling (V2's
    ``use_mean_pooling=False``) tokens = ``norm(last block output)`` and pooled = its first
    token, again what the head sees. Pre-trained encoder: tokens = ``norm(last block
    output)`` over every token, pooled = their mean.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, (VisionTransformer, PretrainVisionTransformerEncoder)):
            raise TypeError(f"expected a VisionTransformer or a pre-training encoder, "
                            f"not {type(model).__name__}")
        self.model = model

    def forward_with_hidden_states(
            self, video_ncthw: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], List[torch.Tensor]]:
        hidden: List[torch.Tensor] = []
        return self._features(video_ncthw, hidden), hidden

    def forward(self, video_ncthw: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self._features(video_ncthw, None)

    def _features(self, video_ncthw: torch.Tensor,
                  hidden: Optional[List[torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """The features; every block's output is appended to ``hidden`` unless it is None
        (then no state outlives the block after it)."""
        if isinstance(self.model, VisionTransformer):
            last = _LastState(hidden)
            pooled = self.model.forward_features(video_ncthw, last)
            if self.model.fc_norm is None:  # upstream's norm on the first token only
                return {"tokens": self.model.norm(last.value), "pooled": pooled}
            return {"tokens": last.value, "pooled": pooled}
        tokens_count = self.model.patch_embed.num_patches
        keep_all = torch.zeros(video_ncthw.shape[0], tokens_count, dtype=torch.bool)
        tokens = self.model(video_ncthw, keep_all, hidden)
        return {"tokens": tokens, "pooled": tokens.mean(1)}


class _LastState:
    """Remembers the newest appended state (the tokens), passing each on to ``inner``."""

    def __init__(self, inner: Optional[list]):
        self.inner = inner
        self.value = None

    def append(self, state):
        if self.inner is not None:
            self.inner.append(state)
        self.value = state
