"""Encoder features of an upstream model, for checking encoder-only conversions."""

from __future__ import annotations

from typing import Dict, List, Tuple

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
            self, video_ncthw: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], List[torch.Tensor]]:
        hidden: List[torch.Tensor] = []
        if isinstance(self.model, VisionTransformer):
            pooled = self.model.forward_features(video_ncthw, hidden)
            return {"tokens": hidden[-1], "pooled": pooled}, hidden
        tokens_count = self.model.patch_embed.num_patches
        keep_all = torch.zeros(video_ncthw.shape[0], tokens_count, dtype=torch.bool)
        tokens = self.model(video_ncthw, keep_all, hidden)
        return {"tokens": tokens, "pooled": tokens.mean(1)}, hidden

    def forward(self, video_ncthw: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_with_hidden_states(video_ncthw)[0]
