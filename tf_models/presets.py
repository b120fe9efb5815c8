"""The zoo's facts that a Keras user needs, torch-free: sizes, datasets, presets, asset names.

This is the one table both sides read: ``converter.zoo`` builds its conversion entries from it
(adding upstream sources and parity tolerances), and ``from_preset`` resolves names with it.
Nothing here imports keras, tensorflow or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# Encoder and decoder shapes per size letter (upstream factories; ViT-S has 6 heads upstream,
# not the 16 a transformers config gives it). Decoder depth is the released runs' choice.
SIZES: Dict[str, dict] = {
    "S": dict(embed_dim=384, depth=12, num_heads=6,
              decoder_embed_dim=192, decoder_num_heads=3, decoder_depth=4),
    "B": dict(embed_dim=768, depth=12, num_heads=12,
              decoder_embed_dim=384, decoder_num_heads=6, decoder_depth=4),
    "L": dict(embed_dim=1024, depth=24, num_heads=16,
              decoder_embed_dim=512, decoder_num_heads=8, decoder_depth=12),
    "H": dict(embed_dim=1280, depth=32, num_heads=16,
              decoder_embed_dim=640, decoder_num_heads=8, decoder_depth=12),
    # VideoMAE V2's ViT-g (vit_giant_patch14_224; patch 14 and mlp_ratio 48/11 are per entry);
    # its pre-training decoder is 512 wide, 8 heads, 4 blocks (scripts/pretrain/vit_g_*.sh)
    "g": dict(embed_dim=1408, depth=40, num_heads=16,
              decoder_embed_dim=512, decoder_num_heads=8, decoder_depth=4),
}
# A tiny test-only size: the same code path in seconds (never published).
TEST_SIZES: Dict[str, dict] = {
    "T": dict(embed_dim=48, depth=2, num_heads=3,
              decoder_embed_dim=24, decoder_num_heads=2, decoder_depth=1),
}
ALL_SIZES: Dict[str, dict] = {**SIZES, **TEST_SIZES}
SIZE_NAMES = {"S": "ViT-S", "B": "ViT-B", "L": "ViT-L", "H": "ViT-H", "g": "ViT-g",
              "T": "ViT-Tiny (test)"}

# Upstream's fine-tuning recipe (run_class_finetuning.py defaults: drop_path 0.1, layer_decay
# 0.75, fc_drop_rate 0.0, init_scale 0.001, AdamW with weight_decay 0.05; the released ViT-H
# K400 script passes drop_path 0.2 and fc_drop_rate 0.5).
FINETUNE_DEFAULTS: Dict[str, dict] = {
    size: dict(drop_path_rate=0.1, dropout=0.0, layer_decay=0.75, weight_decay=0.05)
    for size in ("S", "B", "L", "T")}
FINETUNE_DEFAULTS["H"] = dict(drop_path_rate=0.2, dropout=0.5, layer_decay=0.75,
                              weight_decay=0.05)
HEAD_INIT_SCALE = 0.001  # upstream multiplies the new head's trunc-normal(0.02) init by this

# Per-dataset facts; `key` is the CLI spelling, `tag` the spelling in asset names. `protocol`
# is upstream's test-time sampling: 5 temporal clips x 3 crops (kinetics.py, also used for
# UCF101) or 2 interleaved views x 3 crops (ssv2.py).
DATASETS: Dict[str, dict] = {
    "k400": dict(tag="K400", title="Kinetics-400", num_classes=400, pt_epochs=1600,
                 mask_ratio=0.9, eval_views="16x5x3", protocol="5x3"),
    "ssv2": dict(tag="SSv2", title="Something-Something V2", num_classes=174, pt_epochs=2400,
                 mask_ratio=0.9, eval_views="16x2x3", protocol="2x3"),
    "ucf101": dict(tag="UCF", title="UCF101", num_classes=101, pt_epochs=3200,
                   mask_ratio=0.75, eval_views="16x5x3", protocol="5x3"),
}
MODES = ("FT", "PT")

# Upstream normalisation (datasets/*.py): /255, then ImageNet mean and std. The 0.5 values in
# upstream's `_cfg` are unused metadata.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (size, dataset) -> (top1, top5, PT drive id, FT drive id, PT hub id, FT hub id)
# Ids from upstream MODEL_ZOO.md; hub ids of the transformers-format copies.
RELEASES: Dict[Tuple[str, str], tuple] = {
    ("S", "k400"): (79.0, 93.8, "1nU-H1u3eJ-VuyCveU7v-WIOcAVxs5Hww",
                    "1ygjLRm1kvs9mwGsP3lLxUExhRo6TWnrx",
                    None, "MCG-NJU/videomae-small-finetuned-kinetics"),
    ("B", "k400"): (81.5, 95.1, "1tEhLyskjb755TJ65ptsrafUG2llSwQE1",
                    "1MzwteHH-1yuMnFb8vRBQDvngV1Zl-d3z",
                    "MCG-NJU/videomae-base", "MCG-NJU/videomae-base-finetuned-kinetics"),
    ("L", "k400"): (85.2, 96.8, "1qLOXWb_MGEvaI7tvuAe94CV7S2HXRwT3",
                    "1jX1CiqxSkCfc94y8FRW1YGHy-GNvHCuD",
                    "MCG-NJU/videomae-large", "MCG-NJU/videomae-large-finetuned-kinetics"),
    ("H", "k400"): (86.6, 97.1, "1AJQR1Rsi2N1pDn9tLyJ8DQrUREiBA1bO",
                    "104ouJZxSVPSAm0LwJXd6IzjdA_RGLqZi",
                    None, "MCG-NJU/videomae-huge-finetuned-kinetics"),
    ("S", "ssv2"): (66.8, 90.3, "1p_I1aaONOeUvRmRQw1UT3-L2H8XJClHu",
                    "1ajlMrT06jiiM-5YjNI2X_UFyzsuYbbtZ",
                    None, "MCG-NJU/videomae-small-finetuned-ssv2"),
    ("B", "ssv2"): (70.8, 92.4, "1I18dY_7rSalGL8fPWV82c0-foRUDzJJk",
                    "1dt_59tBIyzdZd5Ecr22lTtzs_64MOZkT",
                    "MCG-NJU/videomae-base-ssv2", "MCG-NJU/videomae-base-finetuned-ssv2"),
    ("B", "ucf101"): (91.3, 98.5, "1BHev4meNgKM0o_8DMRbuzAsKSP3IpQ3o",
                      "1MSyon6fPpKz7oqD6WDGPFK4k_Rbyb6fw", None, None),
}

# Where the published release lives; ``VIDEOMAE_ZOO_URL`` overrides it (a mirror, a local
# folder served over HTTP, or a file:// URL).
RELEASE_VERSION = "v0.1.0"
DEFAULT_ZOO_URL = ("https://github.com/videomae-convert/videomae-convert/releases/download/"
                   + RELEASE_VERSION)


def preset_name(size: str, dataset: str, mode: str, num_frames: int = 16,
                img_size: int = 224) -> str:
    """The published name, ``TFVideoMAE_{size}_{tag}_{frames}x{size}_{mode}``."""
    return f"TFVideoMAE_{size}_{DATASETS[dataset]['tag']}_{num_frames}x{img_size}_{mode}"


@dataclass(frozen=True)
class Preset:
    """One zoo entry as a Keras user sees it: what builds the model and what inference needs."""

    name: str
    size: str
    mode: str
    dataset: str
    num_classes: int
    mask_ratio: float
    num_frames: int = 16
    img_size: int = 224
    patch_size: int = 16
    tubelet_size: int = 2
    dims: Dict[str, int] = field(default_factory=dict)
    test_only: bool = False
    mean: Tuple[float, float, float] = MEAN
    std: Tuple[float, float, float] = STD

    @property
    def protocol(self) -> str:
        """Upstream's test views, temporal x spatial: ``"5x3"`` or ``"2x3"``."""
        return DATASETS[self.dataset]["protocol"]

    @property
    def num_patches(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.img_size // self.patch_size) ** 2

    def backbone_config(self) -> dict:
        """Keyword arguments of ``VideoMAEBackbone`` (and the shared part of every model)."""
        return dict(embed_dim=self.dims["embed_dim"], depth=self.dims["depth"],
                    num_heads=self.dims["num_heads"], num_frames=self.num_frames,
                    img_size=self.img_size, patch_size=self.patch_size,
                    tubelet_size=self.tubelet_size)

    def model_config(self) -> dict:
        """Plain keyword arguments that build this entry's model on either side."""
        config = self.backbone_config()
        if self.mode == "FT":
            config["num_classes"] = self.num_classes
        else:
            config.update(decoder_embed_dim=self.dims["decoder_embed_dim"],
                          decoder_depth=self.dims["decoder_depth"],
                          decoder_num_heads=self.dims["decoder_num_heads"])
        return config

    def class_names(self) -> Optional[List[str]]:
        """The dataset's class names in index order, where the package ships them."""
        try:
            from .video.labels import class_names
        except ImportError:
            return None
        return list(class_names(self.dataset))


def _make(size: str, dataset: str, mode: str, **overrides) -> Preset:
    facts = DATASETS[dataset]
    frames = overrides.get("num_frames", 16)
    img = overrides.get("img_size", 224)
    return Preset(name=preset_name(size, dataset, mode, frames, img), size=size, mode=mode,
                  dataset=dataset, num_classes=facts["num_classes"],
                  mask_ratio=facts["mask_ratio"], dims=dict(ALL_SIZES[size]), **overrides)


PRESETS: Dict[str, Preset] = {}
for (_size, _dataset) in RELEASES:
    for _mode in MODES:
        _preset = _make(_size, _dataset, _mode)
        PRESETS[_preset.name] = _preset

# Tiny test-only presets: 4 frames of 32x32 -> 2 x 2 x 2 = 8 tokens.
TEST_PRESETS: Dict[str, Preset] = {}
for _dataset in DATASETS:
    for _mode in MODES:
        _preset = _make("T", _dataset, _mode, num_frames=4, img_size=32, test_only=True)
        TEST_PRESETS[_preset.name] = _preset


def get_preset(name: str) -> Preset:
    """A preset by its published name (test presets included); KeyError names the choices."""
    if name in PRESETS:
        return PRESETS[name]
    if name in TEST_PRESETS:
        return TEST_PRESETS[name]
    raise KeyError(f"unknown zoo preset {name!r}; known: {', '.join(sorted(PRESETS))}")
