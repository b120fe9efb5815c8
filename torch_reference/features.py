"""Encoder features of an upstream model, for checking encoder-only conversions."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from .modeling_finetune import VisionTransformer
from .modeling_pretrain import PretrainVisionTransformerEncoder


class EncoderFeatures(nn.Module):
    """{"tokens", "pooled"} from a fine-tuned model or a pre-training encoder (no masking).

    Fine-tuned: tokens = last block output (upstream's ``norm`` is an Identity), pooled =
    ``fc_norm(mean(tokens))``, the features the head sees. Pre-trained encoder: tokens =
    ``norm(last block output)`` over every token, pooled = their mean.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, (VisionTransformer, PretrainVisionTransformerEncoder)):
            raise TypeError(f"expected a VisionTransformer or a pre-training encoder, "
                            f"not {type(model).__name__}")
        self.model = model

    def forward_with_hidden_states(
            self, video_ncthw: torch.Tensor, hidden_states: Optional[list] = None
    ) -> Tuple[Dict[str, torch.Tensor], list]:
        """Features, and every block's output appended to ``hidden_states`` (a new list when
        None). Only the last is needed here, so ``forward`` passes a one-slot keeper."""
        hidden = [] if hidden_states is None else hidden_states
        if isinstance(self.model, VisionTransformer):
            last = _LastState(hidden)
            pooled = self.model.forward_features(video_ncthw, last)
            return {"tokens": last.value, "pooled": pooled}, hidden
        tokens_count = self.model.patch_embed.num_patches
        keep_all = torch.zeros(video_ncthw.shape[0], tokens_count, dtype=torch.bool)
        tokens = self.model(video_ncthw, keep_all, hidden)
        return {"tokens": tokens, "pooled": tokens.mean(1)}, hidden

    def forward(self, video_ncthw: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_with_hidden_states(video_ncthw, _Discard())[0]


class _LastState:
    """Passes each appended state on to ``inner`` and remembers the newest."""

    def __init__(self, inner):
        self.inner = inner
        self.value = None

    def append(self, state):
        self.inner.append(state)
        self.value = state


class _Discard:
    """A hidden-state sink that keeps nothing."""

    def append(self, state):
        pass
