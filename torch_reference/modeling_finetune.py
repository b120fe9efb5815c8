"""The upstream VideoMAE fine-tuning model (V1 and V2), rewritten from the papers' architecture.

Parameter names are exactly upstream's (``patch_embed.proj``, ``blocks.N.attn.q_bias``,
``fc_norm``, ``head`` ...), so an official fine-tuned state dict loads with
``load_state_dict(strict=True)``. Only inference is modelled: dropout and drop-path have no
parameters and are left out.

V2 (OpenGVLab/VideoMAEv2 ``models/modeling_finetune.py``) is V1 plus options, all keyword
arguments here, off by default (then the model is V1's, tensor for tensor):
``patch_size`` (14 for ViT-g), ``mlp_ratio`` (48/11 for ViT-g), ``init_values > 0`` (layer
scale ``gamma_1``/``gamma_2``), ``cos_attn`` (cosine attention with a learned per-head
``attn.scale``) and ``use_mean_pooling=False`` (``norm`` on the first token, no ``fc_norm``).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6  # upstream uses partial(nn.LayerNorm, eps=1e-6) everywhere
# V2's cosine attention clamps its log logit scale at this literal ("log(1 / 0.01) = 4.6052")
COS_ATTN_MAX_LOG_SCALE = 4.6052


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """Upstream's fixed position table (1, num_positions, dim): float64 maths, fp32 result."""
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    exponents = 2.0 * (np.arange(dim) // 2) / dim
    angles = positions / np.power(10000.0, exponents)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.from_numpy(angles.astype(np.float32))[None]


class PatchEmbed(nn.Module):
    """Tubelet embedding: (B, C, T, H, W) -> (B, N, D) tokens in (t, h, w) order."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, num_frames=16,
                 tubelet_size=2):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.num_patches = (img_size // patch_size) ** 2 * (num_frames // tubelet_size)
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video_ncthw: torch.Tensor) -> torch.Tensor:
        return self.proj(video_ncthw).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()  # exact erf GELU, not the tanh approximation
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention; ``cos_attn`` is V2's cosine attention (upstream's
    ``CosAttention``): unit-length q and k, logits times ``exp(min(scale, 4.6052))`` with a
    learned per-head ``scale`` of shape (heads, 1, 1), initialised at log(10)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, cos_attn: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.cos_attn = cos_attn
        if cos_attn:
            # upstream's name: ``attn.scale`` (kept out of weight decay by that name)
            self.scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        else:
            self.scale = (dim // num_heads) ** -0.5
        # upstream keeps the fused projection bias-free and learns only q and v biases;
        # the key bias is fixed at zero
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.proj = nn.Linear(dim, dim)
        # False: upstream's explicit softmax(q k^T) v, the reference for float32. True: torch's
        # fused kernel (same maths, no tokens x tokens matrix in memory, about 2x faster in
        # float64); the converter turns it on for its float64 run only (``fused_attention``)
        self.fused = False

    def forward(self, x):
        batch, tokens, dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if self.cos_attn:
            x = self._cosine(F.normalize(qkv[0], dim=-1), F.normalize(qkv[1], dim=-1), qkv[2])
        elif self.fused:
            x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
        else:
            q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
            x = attn @ v
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(x)

    def _cosine(self, q, k, v):
        logit_scale = torch.clamp(self.scale, max=COS_ATTN_MAX_LOG_SCALE).exp()
        if self.fused:
            return F.scaled_dot_product_attention(q * logit_scale, k, v, scale=1.0)
        # upstream's order: cosine similarities first, then the per-head scale
        attn = ((q @ k.transpose(-2, -1)) * logit_scale).softmax(dim=-1)
        return attn @ v


class Block(nn.Module):
    """Pre-norm transformer block. ``init_values > 0`` adds upstream's layer scale gammas."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 init_values: float = 0.0, cos_attn: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, cos_attn=cos_attn)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if init_values and init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = None
            self.gamma_2 = None

    def forward(self, x):
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Upstream's fine-tuned VideoMAE classifier (V1, and V2 with its options).

    With ``use_mean_pooling`` (every released model): mean over tokens -> ``fc_norm`` ->
    ``head``, and ``norm`` is an Identity (no ``norm.*`` key). Without (V2's ``--use_cls``):
    ``norm`` on the first token -> ``head``, and there is no ``fc_norm``. ``num_classes=0``
    leaves the head an Identity (no ``head.*`` key), as upstream.

    Input ``video_ncthw``: (B, 3, T, H, W). Output: logits (B, num_classes).
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=400, embed_dim=768,
                 depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, init_values=0.0,
                 num_frames=16, tubelet_size=2, cos_attn=False, use_mean_pooling=True,
                 **_ignored):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, num_frames,
                                      tubelet_size)
        # a plain tensor attribute as upstream: never in a state dict, regenerated here
        self.pos_embed = sinusoid_table(self.patch_embed.num_patches, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values, cos_attn)
            for _ in range(depth))
        # with mean pooling upstream's `norm` is an Identity, so there is no norm.* key
        self.norm = nn.Identity() if use_mean_pooling else nn.LayerNorm(embed_dim,
                                                                         eps=LAYER_NORM_EPS)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS) if use_mean_pooling else None
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, video_ncthw: torch.Tensor,
                         hidden_states: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """Pooled, normalised features (B, D); appends each block's output to ``hidden_states``."""
        x = self.patch_embed(video_ncthw)
        x = x + self.pos_embed.to(device=x.device, dtype=x.dtype)
        for block in self.blocks:
            x = block(x)
            if hidden_states is not None:
                hidden_states.append(x)
        if self.fc_norm is None:
            return self.norm(x[:, 0])
        x = self.norm(x)
        return self.fc_norm(x.mean(1))

    def forward_with_hidden_states(self, video_ncthw) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        hidden: List[torch.Tensor] = []
        logits = self.head(self.forward_features(video_ncthw, hidden))
        return logits, hidden

    def forward(self, video_ncthw: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(video_ncthw))
