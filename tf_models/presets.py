"""The zoo table: every fact about a model family, a size, a dataset and a published entry.

One row per fact, torch-free and stdlib-only; everything else reads it: ``from_preset``
(names), ``tf_models.video`` (class names, test protocol, mean/std, names -> datasets),
``converter.zoo`` (which adds only what a conversion needs: upstream files and parity
tolerances) and the CLIs' choices. A VideoMAE V2 entry is one row in ``RELEASES`` (with a
``FAMILIES`` row, a size row for ViT-g and dataset rows for K600 / K710 / HMDB51).

This module imports nothing from its package and nothing outside the standard library, so
``videomae_cli`` can read it before TensorFlow starts (``videomae_cli.zoo_table``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

# Upstream normalisation (datasets/*.py): /255, then ImageNet mean and std. The 0.5 values in
# upstream's `_cfg` are unused metadata.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Model families: the prefix of their published names and where their checkpoints come from.
FAMILIES: Dict[str, dict] = {
    "v1": dict(prefix="TFVideoMAE", title="VideoMAE", upstream="MCG-NJU/VideoMAE"),
}


@dataclass(frozen=True)
class Size:
    """One model size: encoder and decoder shapes (upstream factories; ViT-S has 6 heads
    upstream, not the 16 a transformers config gives it). Decoder depth is the released runs'
    choice (upstream's factory default is 8)."""

    title: str
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_num_heads: int
    decoder_depth: int
    patch_size: int = 16
    mlp_ratio: float = 4.0

    @property
    def dims(self) -> Dict[str, int]:
        """The encoder and decoder shapes as one dict (``embed_dim``, ``depth``, ...)."""
        return dict(embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads,
                    decoder_embed_dim=self.decoder_embed_dim,
                    decoder_num_heads=self.decoder_num_heads, decoder_depth=self.decoder_depth)


SIZES: Dict[str, Size] = {
    "S": Size("ViT-S", 384, 12, 6, decoder_embed_dim=192, decoder_num_heads=3, decoder_depth=4),
    "B": Size("ViT-B", 768, 12, 12, decoder_embed_dim=384, decoder_num_heads=6, decoder_depth=4),
    "L": Size("ViT-L", 1024, 24, 16, decoder_embed_dim=512, decoder_num_heads=8,
              decoder_depth=12),
    "H": Size("ViT-H", 1280, 32, 16, decoder_embed_dim=640, decoder_num_heads=8,
              decoder_depth=12),
    # VideoMAE V2's ViT-g (vit_giant_patch14_224: patch 14, mlp_ratio 48/11 -> hidden 6144);
    # its pre-training decoder is 512 wide, 8 heads, 4 blocks (scripts/pretrain/vit_g_*.sh)
    "g": Size("ViT-g", 1408, 40, 16, decoder_embed_dim=512, decoder_num_heads=8,
              decoder_depth=4, patch_size=14, mlp_ratio=48 / 11),
}
# A tiny test-only size: the same code path in seconds (never published).
TEST_SIZES: Dict[str, Size] = {
    "T": Size("ViT-Tiny (test)", 48, 2, 3, decoder_embed_dim=24, decoder_num_heads=2,
              decoder_depth=1),
}
ALL_SIZES: Dict[str, Size] = {**SIZES, **TEST_SIZES}

# Upstream's fine-tuning recipe (run_class_finetuning.py defaults: drop_path 0.1, layer_decay
# 0.75, fc_drop_rate 0.0, init_scale 0.001, AdamW with weight_decay 0.05; the released ViT-H
# K400 script passes drop_path 0.2 and fc_drop_rate 0.5).
FINETUNE_DEFAULTS: Dict[str, dict] = {
    size: dict(drop_path_rate=0.1, dropout=0.0, layer_decay=0.75, weight_decay=0.05)
    for size in ("S", "B", "L", "T")}
FINETUNE_DEFAULTS["H"] = dict(drop_path_rate=0.2, dropout=0.5, layer_decay=0.75,
                              weight_decay=0.05)
HEAD_INIT_SCALE = 0.001  # upstream multiplies the new head's trunc-normal(0.02) init by this


@dataclass(frozen=True)
class Sampling:
    """Upstream's test-time views of a dataset (``kinetics.py`` / ``ssv2.py``, mode test).

    ``dense``: every ``rate``-th frame of the whole video, ``clips`` clips along it;
    ``segment``: two interleaved samplings of evenly spaced frames (SSv2). ``crops`` spatial
    crops along the long side of each clip.
    """

    sampler: str
    clips: int
    crops: int
    rate: int = 4  # the dense sampler's --sampling_rate

    @property
    def views(self) -> str:
        """``"5x3"``: clips x crops."""
        return f"{self.clips}x{self.crops}"


@dataclass(frozen=True)
class Dataset:
    """One dataset: its spellings, classes, test protocol and normalisation."""

    key: str          # the CLI spelling
    tag: str          # the spelling in asset names
    title: str
    num_classes: int
    class_file: str   # tf_models/video/labels/<file>: names in upstream's index order
    test: Sampling
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    aliases: Tuple[str, ...] = ()  # other names seen in checkpoint file names

    def spellings(self) -> Tuple[str, ...]:
        """Lower-case words that name this dataset in a file name."""
        return (self.key, self.tag.lower()) + self.aliases


# Class-name sources and how each order was confirmed: docs/VIDEO.md ("Class names").
# Test protocols: 5 clips x 3 crops at sampling rate 4 (kinetics.py, also used for UCF101),
# 2 interleaved clips x 3 crops (ssv2.py).
DATASETS: Dict[str, Dataset] = {d.key: d for d in (
    Dataset("k400", "K400", "Kinetics-400", 400, "k400.txt", Sampling("dense", 5, 3),
            aliases=("kinetics",)),
    Dataset("ssv2", "SSv2", "Something-Something V2", 174, "ssv2.txt",
            Sampling("segment", 2, 3)),
    Dataset("ucf101", "UCF", "UCF101", 101, "ucf101.txt", Sampling("dense", 5, 3)),
)}
MODES = ("FT", "PT")


@dataclass(frozen=True)
class Release:
    """One upstream run: a pre-training (its epochs and tube-mask ratio) and the models it
    released (``modes``), with the fine-tuned model's reported accuracy."""

    family: str
    size: str
    dataset: str
    pt_epochs: int
    mask_ratio: float
    top1: Optional[float]
    top5: Optional[float]
    modes: Tuple[str, ...] = MODES


# Upstream MODEL_ZOO.md (V1): pre-training epochs and accuracies; mask ratios from its scripts.
RELEASES: Tuple[Release, ...] = (
    Release("v1", "S", "k400", 1600, 0.9, 79.0, 93.8),
    Release("v1", "B", "k400", 1600, 0.9, 81.5, 95.1),
    Release("v1", "L", "k400", 1600, 0.9, 85.2, 96.8),
    Release("v1", "H", "k400", 1600, 0.9, 86.6, 97.1),
    Release("v1", "S", "ssv2", 2400, 0.9, 66.8, 90.3),
    Release("v1", "B", "ssv2", 2400, 0.9, 70.8, 92.4),
    Release("v1", "B", "ucf101", 3200, 0.75, 91.3, 98.5),
)

# Where the published release lives; ``VIDEOMAE_ZOO_URL`` overrides it (a mirror, a local
# folder served over HTTP, or a file:// URL).
RELEASE_VERSION = "v0.1.0"
DEFAULT_ZOO_URL = ("https://github.com/videomae-convert/videomae-convert/releases/download/"
                   + RELEASE_VERSION)


def preset_name(size: str, dataset: str, mode: str, num_frames: int = 16,
                img_size: int = 224, family: str = "v1") -> str:
    """The published name, ``{prefix}_{size}_{tag}_{frames}x{size}_{mode}``
    (``TFVideoMAE_B_K400_16x224_FT``)."""
    return (f"{FAMILIES[family]['prefix']}_{size}_{DATASETS[dataset].tag}_"
            f"{num_frames}x{img_size}_{mode}")


_PREFIXES = "(?:" + "|".join(re.escape(f["prefix"]) for f in FAMILIES.values()) + ")"
# {prefix}_{size}_{tag}_{frames}x{size}_{mode}, capturing the dataset tag and the mode
_NAME_PATTERN = re.compile(
    _PREFIXES + r"_[A-Za-z]+_(" + "|".join(re.escape(d.tag) for d in DATASETS.values())
    + r")_\d+x\d+_(" + "|".join(MODES) + ")")


def is_zoo_name(text: str) -> bool:
    """Whether ``text`` is spelled like a zoo name (``TFVideoMAE_...``), known or not."""
    return re.fullmatch(_PREFIXES + r"_\w+", text or "") is not None


def dataset_from_name(name: str, mode: Optional[str] = None) -> Optional[str]:
    """The dataset key of a name that contains a published name (``"k400"`` for
    ``weights/TFVideoMAE_S_K400_16x224_FT.keras``), only of ``mode`` when given; else None."""
    for match in _NAME_PATTERN.finditer(name or ""):
        if mode is None or match.group(2) == mode:
            return next(d.key for d in DATASETS.values() if d.tag == match.group(1))
    return None


@dataclass(frozen=True)
class Preset:
    """One zoo entry as a Keras user sees it: what builds the model and what inference needs."""

    name: str
    family: str
    size: str
    mode: str
    dataset: str
    mask_ratio: float
    pt_epochs: int
    top1: Optional[float] = None
    top5: Optional[float] = None
    num_frames: int = 16
    img_size: int = 224
    tubelet_size: int = 2
    test_only: bool = False

    @property
    def facts(self) -> Dataset:
        """The dataset's row."""
        return DATASETS[self.dataset]

    @property
    def dims(self) -> Dict[str, int]:
        """Encoder and decoder shapes of the size."""
        return ALL_SIZES[self.size].dims

    @property
    def patch_size(self) -> int:
        return ALL_SIZES[self.size].patch_size

    @property
    def mlp_ratio(self) -> float:
        return ALL_SIZES[self.size].mlp_ratio

    @property
    def num_classes(self) -> int:
        return self.facts.num_classes

    @property
    def mean(self) -> Tuple[float, float, float]:
        return self.facts.mean

    @property
    def std(self) -> Tuple[float, float, float]:
        return self.facts.std

    @property
    def protocol(self) -> str:
        """Upstream's test views, temporal x spatial: ``"5x3"`` or ``"2x3"``."""
        return self.facts.test.views

    @property
    def eval_views(self) -> str:
        """Upstream's test views with the frames per view: ``"16x5x3"``."""
        return f"{self.num_frames}x{self.protocol}"

    @property
    def num_patches(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.img_size // self.patch_size) ** 2

    @property
    def pixels_per_patch(self) -> int:
        """What the pre-trained decoder predicts per masked patch (RGB x tubelet x patch)."""
        return 3 * self.tubelet_size * self.patch_size ** 2

    def backbone_config(self) -> dict:
        """Keyword arguments of ``VideoMAEBackbone`` (and the shared part of every model)."""
        dims = self.dims
        return dict(embed_dim=dims["embed_dim"], depth=dims["depth"],
                    num_heads=dims["num_heads"], num_frames=self.num_frames,
                    img_size=self.img_size, patch_size=self.patch_size,
                    tubelet_size=self.tubelet_size, mlp_ratio=self.mlp_ratio)

    def model_config(self) -> dict:
        """Plain keyword arguments that build this entry's model on either side."""
        config = self.backbone_config()
        if self.mode == "FT":
            config["num_classes"] = self.num_classes
        else:
            dims = self.dims
            config.update(decoder_embed_dim=dims["decoder_embed_dim"],
                          decoder_depth=dims["decoder_depth"],
                          decoder_num_heads=dims["decoder_num_heads"])
        return config

    def class_names(self) -> Optional[List[str]]:
        """The dataset's class names in index order, where the package ships them."""
        try:
            from .video.labels import class_names
        except ImportError:
            return None
        return list(class_names(self.dataset))


def _presets(release: Release, size: str, **overrides) -> List[Preset]:
    frames = overrides.get("num_frames", 16)
    img = overrides.get("img_size", 224)
    return [Preset(name=preset_name(size, release.dataset, mode, frames, img, release.family),
                   family=release.family, size=size, mode=mode, dataset=release.dataset,
                   mask_ratio=release.mask_ratio, pt_epochs=release.pt_epochs, **overrides)
            for mode in release.modes]


PRESETS: Dict[str, Preset] = {
    p.name: p for release in RELEASES
    for p in _presets(release, release.size, top1=release.top1, top5=release.top5)}

# Tiny test-only presets, one pair per dataset with its first run's pre-training facts:
# 4 frames of 32x32 -> 2 x 2 x 2 = 8 tokens.
TEST_PRESETS: Dict[str, Preset] = {
    p.name: p for dataset in DATASETS
    for p in _presets(next(r for r in RELEASES if r.dataset == dataset), "T", num_frames=4,
                      img_size=32, test_only=True)}


def get_preset(name: str) -> Preset:
    """A preset by its published name (test presets included); KeyError names the choices."""
    if name in PRESETS:
        return PRESETS[name]
    if name in TEST_PRESETS:
        return TEST_PRESETS[name]
    raise KeyError(f"unknown zoo preset {name!r}; known: {', '.join(sorted(PRESETS))}")
