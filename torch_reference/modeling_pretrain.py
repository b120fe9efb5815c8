"""The upstream VideoMAE pre-training model (masked autoencoder), with upstream parameter names.

State dict keys: ``encoder.*``, ``decoder.*``, ``encoder_to_decoder.weight`` and ``mask_token``,
so an official pre-trained state dict loads with ``load_state_dict(strict=True)``.

V2 (OpenGVLab/VideoMAEv2 ``models/modeling_pretrain.py``) adds the block options of
``modeling_finetune`` (shared by encoder and decoder: ``mlp_ratio``, ``init_values``,
``cos_attn``) and dual masking: ``forward(video, mask, decode_mask)``.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from .modeling_finetune import LAYER_NORM_EPS, Block, PatchEmbed, sinusoid_table


class PretrainVisionTransformerEncoder(nn.Module):
    """Patch embedding + sinusoid -> visible tokens only -> blocks -> ``norm``."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, init_values=0.0, num_frames=16,
                 tubelet_size=2, cos_attn=False, **_ignored):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, num_frames,
                                      tubelet_size)
        self.pos_embed = sinusoid_table(self.patch_embed.num_patches, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values, cos_attn)
            for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        # upstream builds the encoder with num_classes=0, so its head is an Identity (no keys)
        self.head = nn.Identity()

    def forward(self, video_ncthw: torch.Tensor, mask: torch.Tensor,
                hidden_states: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        x = self.patch_embed(video_ncthw)
        x = x + self.pos_embed.to(device=x.device, dtype=x.dtype)
        batch, _, dim = x.shape
        # every row masks the same number of tokens, so the visible ones reshape evenly
        x = x[~mask].reshape(batch, -1, dim)
        for block in self.blocks:
            x = block(x)
            if hidden_states is not None:
                hidden_states.append(x)
        return self.head(self.norm(x))


class PretrainVisionTransformerDecoder(nn.Module):
    """Blocks -> ``norm`` -> ``head`` (3 * tubelet * patch**2 pixels) on the last tokens."""

    def __init__(self, patch_size=16, num_classes=1536, embed_dim=384, depth=4, num_heads=6,
                 mlp_ratio=4.0, qkv_bias=True, init_values=0.0, cos_attn=False):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values, cos_attn)
            for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor, return_token_num: int,
                hidden_states: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
            if hidden_states is not None:
                hidden_states.append(x)
        return self.head(self.norm(x[:, -return_token_num:]))


class PretrainVisionTransformer(nn.Module):
    """Upstream's VideoMAE masked autoencoder (V1, and V2 with its options).

    ``forward(video_ncthw, mask, decode_mask=None)`` with mask (B, N) bool, True = masked, the
    same count per row. Without ``decode_mask`` (V1) the decoder predicts every masked token.
    With it (V2's dual masking; upstream's ``decode_masked_pos``, True = left out of the
    decoder) the decoder's mask tokens sit at the positions where ``decode_mask`` is False,
    whatever the encoder mask says there (upstream's loss then keeps only the encoder-masked
    ones), again the same count per row.
    Returns (B, n_decoded, 3 * tubelet * patch**2): predicted (normalised) pixels of those
    tokens in ascending token order.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12,
                 num_heads=12, decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6,
                 mlp_ratio=4.0, qkv_bias=True, init_values=0.0, num_frames=16, tubelet_size=2,
                 cos_attn=False, **_ignored):
        super().__init__()
        self.encoder = PretrainVisionTransformerEncoder(
            img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
            init_values, num_frames, tubelet_size, cos_attn)
        self.decoder = PretrainVisionTransformerDecoder(
            patch_size, in_chans * tubelet_size * patch_size ** 2, decoder_embed_dim,
            decoder_depth, decoder_num_heads, mlp_ratio, qkv_bias, init_values, cos_attn)
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.pos_embed = sinusoid_table(self.encoder.patch_embed.num_patches, decoder_embed_dim)

    def decoder_input(self, video_ncthw: torch.Tensor, mask: torch.Tensor,
                      hidden_states: Optional[List[torch.Tensor]] = None,
                      decode_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encoded visible tokens + their positions, then mask tokens + theirs (ascending order):
        at the masked positions, or where ``decode_mask`` is False when one is given."""
        decoded = mask if decode_mask is None else ~decode_mask
        x_vis = self.encoder_to_decoder(self.encoder(video_ncthw, mask, hidden_states))
        batch, _, dim = x_vis.shape
        pos = self.pos_embed.to(device=x_vis.device, dtype=x_vis.dtype).expand(batch, -1, -1)
        pos_vis = pos[~mask].reshape(batch, -1, dim)
        pos_decoded = pos[decoded].reshape(batch, -1, dim)
        return torch.cat([x_vis + pos_vis, self.mask_token + pos_decoded], dim=1)

    def forward_with_hidden_states(
            self, video_ncthw: torch.Tensor, mask: torch.Tensor,
            decode_mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Predictions and the outputs of every encoder block, then every decoder block."""
        hidden: List[torch.Tensor] = []
        x = self.decoder_input(video_ncthw, mask, hidden, decode_mask)
        return self.decoder(x, _decoded_count(mask, decode_mask), hidden), hidden

    def forward(self, video_ncthw: torch.Tensor, mask: torch.Tensor,
                decode_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.decoder_input(video_ncthw, mask, decode_mask=decode_mask)
        return self.decoder(x, _decoded_count(mask, decode_mask))


def _decoded_count(mask: torch.Tensor, decode_mask: Optional[torch.Tensor]) -> int:
    """How many tokens the decoder predicts: the masked ones, or those ``decode_mask`` keeps."""
    return int(mask[0].sum()) if decode_mask is None else int((~decode_mask[0]).sum())
