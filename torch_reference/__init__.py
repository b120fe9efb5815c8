"""Upstream VideoMAE in PyTorch, with upstream parameter names: the reference side of parity.

Needs only torch. The size factories upstream registers in timm's model registry are module
functions here (``videomae_vit_base_patch16_224(num_classes=400)``), and importing
``torch_reference.timm_registry`` registers them in timm under those ``videomae_``-prefixed
names (upstream reused ``vit_small_patch16_224`` & co., which would overwrite timm's own image
ViTs in a shared registry)::

    import torch_reference.timm_registry  # noqa: F401  (imports timm)
    timm.create_model("videomae_vit_base_patch16_224", num_classes=400)
    timm.create_model("videomae_pretrain_base_patch16_224", decoder_depth=4)
    timm.create_model("videomae_vit_giant_patch14_224", num_classes=710)   # V2's ViT-g

A conversion never imports timm: it costs about 3 s of every process (timm imports
torchvision, which imports ``torch._dynamo`` and triton) and no tensor here comes from it.
"""

from .features import EncoderFeatures
from .masking import running_cell_mask, tube_mask
from .modeling_finetune import VisionTransformer, sinusoid_table
from .modeling_pretrain import PretrainVisionTransformer

__all__ = ["VisionTransformer", "PretrainVisionTransformer", "EncoderFeatures", "sinusoid_table",
           "tube_mask", "running_cell_mask",
           "SIZES", "DECODER_SIZES"]

# embed dim, depth, heads per size (upstream's factories); ViT-S has 6 heads upstream. ViT-g
# is V2's (OpenGVLab/VideoMAEv2 models/modeling_finetune.py, vit_giant_patch14_224): patch 14,
# MLP hidden int(1408 * 48 / 11) = 6144.
SIZES = {
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
    "large": dict(embed_dim=1024, depth=24, num_heads=16),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16),
    "giant": dict(embed_dim=1408, depth=40, num_heads=16, patch_size=14, mlp_ratio=48 / 11),
}
# decoder width and heads; the depth is a run option (4 for S/B, 12 for L/H in V1's released
# runs, 4 in every V2 pre-training script). V1's ViT-H decoder is 640 wide; V2's
# pretrain_videomae_huge_patch16_224 has 512 (pass decoder_embed_dim=512 for it).
DECODER_SIZES = {
    "small": dict(decoder_embed_dim=192, decoder_num_heads=3),
    "base": dict(decoder_embed_dim=384, decoder_num_heads=6),
    "large": dict(decoder_embed_dim=512, decoder_num_heads=8),
    "huge": dict(decoder_embed_dim=640, decoder_num_heads=8),
    "giant": dict(decoder_embed_dim=512, decoder_num_heads=8),
}

# timm passes its own bookkeeping arguments to every factory (timm_registry)
_TIMM_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _letter(size: str) -> str:
    return "g" if size == "giant" else size[0].upper()  # upstream writes ViT-g in lower case


def _patch(size: str) -> int:
    return SIZES[size].get("patch_size", 16)


def _finetune_factory(size):
    def factory(**kwargs):
        for key in _TIMM_ARGS:
            kwargs.pop(key, None)
        return VisionTransformer(**{**SIZES[size], **kwargs})
    factory.__name__ = f"videomae_vit_{size}_patch{_patch(size)}_224"
    factory.__doc__ = f"Upstream VideoMAE ViT-{_letter(size)} fine-tuned classifier."
    factory.__module__ = __name__
    return factory


def _pretrain_factory(size):
    def factory(**kwargs):
        for key in _TIMM_ARGS:
            kwargs.pop(key, None)
        return PretrainVisionTransformer(**{**SIZES[size], **DECODER_SIZES[size], **kwargs})
    factory.__name__ = f"videomae_pretrain_{size}_patch{_patch(size)}_224"
    factory.__doc__ = f"Upstream VideoMAE ViT-{_letter(size)} masked autoencoder."
    factory.__module__ = __name__
    return factory


FACTORIES = {}  # name -> factory: the functions timm_registry registers
for _size in SIZES:
    for _factory in (_finetune_factory(_size), _pretrain_factory(_size)):
        FACTORIES[_factory.__name__] = globals()[_factory.__name__] = _factory
