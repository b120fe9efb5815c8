"""The model zoo: the one place that states sizes, datasets, classes, mask ratios and sources.

Everything else asks this module. ``ZOO`` holds the 14 published entries; ``TEST_ZOO`` holds a
tiny configuration of the same code path so tests run in seconds (never published).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

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
}
TEST_SIZES: Dict[str, dict] = {
    "T": dict(embed_dim=48, depth=2, num_heads=3,
              decoder_embed_dim=24, decoder_num_heads=2, decoder_depth=1),
}
# every size a model can be built at (the tiny test size included)
ALL_SIZES: Dict[str, dict] = {**SIZES, **TEST_SIZES}
SIZE_NAMES = {"S": "ViT-S", "B": "ViT-B", "L": "ViT-L", "H": "ViT-H", "T": "ViT-Tiny (test)"}

# Per-dataset facts; `key` is the CLI spelling, `tag` the spelling in asset names.
DATASETS: Dict[str, dict] = {
    "k400": dict(tag="K400", title="Kinetics-400", num_classes=400, pt_epochs=1600,
                 mask_ratio=0.9, eval_views="16x5x3"),
    "ssv2": dict(tag="SSv2", title="Something-Something V2", num_classes=174, pt_epochs=2400,
                 mask_ratio=0.9, eval_views="16x2x3"),
    "ucf101": dict(tag="UCF", title="UCF101", num_classes=101, pt_epochs=3200,
                   mask_ratio=0.75, eval_views="16x5x3"),
}
MODES = ("FT", "PT")

# Parity tolerance: the largest max-abs error of the fp32 TF output against a float64 run of the
# torch reference. Measured on synthetic checkpoints, TF's error is within a small factor of
# torch fp32's own error against float64 (~1e-6 on logits for S/B): 1e-5 leaves headroom of
# about 10x over both, while a single wrong tensor moves outputs by 1e-2 or more.
# Deeper models accumulate more rounding, so L and H get 2e-5 / 5e-5 (see docs/PARITY.md).
PARITY_ATOL = {"T": 1e-5, "S": 1e-5, "B": 1e-5, "L": 2e-5, "H": 5e-5}

_GDRIVE = "https://drive.google.com/uc?export=download&id={}"

# (size, dataset) -> (top1, top5, PT drive id, FT drive id, PT hub id, FT hub id)
# Ids from upstream MODEL_ZOO.md; hub ids of the transformers-format copies.
_RELEASES = {
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


@dataclass(frozen=True)
class Entry:
    """One zoo entry: everything needed to build, convert, check and name a model."""

    name: str
    size: str
    mode: str
    dataset: str
    num_classes: int
    mask_ratio: float
    eval_views: str
    top1: Optional[float]
    top5: Optional[float]
    pt_epochs: int
    parity_atol: float
    gdrive_id: Optional[str]
    hub_id: Optional[str]
    num_frames: int = 16
    img_size: int = 224
    patch_size: int = 16
    tubelet_size: int = 2
    dims: Dict[str, int] = field(default_factory=dict)
    test_only: bool = False
    encoder_only: bool = False

    @property
    def source_url(self) -> Optional[str]:
        return _GDRIVE.format(self.gdrive_id) if self.gdrive_id else None

    @property
    def num_patches(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.img_size // self.patch_size) ** 2

    @property
    def pixels_per_patch(self) -> int:
        return 3 * self.tubelet_size * self.patch_size ** 2

    def model_config(self) -> dict:
        """Plain keyword arguments that build either side (torch_reference or tf_models)."""
        config = dict(embed_dim=self.dims["embed_dim"], depth=self.dims["depth"],
                      num_heads=self.dims["num_heads"], num_frames=self.num_frames,
                      img_size=self.img_size, patch_size=self.patch_size,
                      tubelet_size=self.tubelet_size)
        if self.encoder_only:
            return config
        if self.mode == "FT":
            config["num_classes"] = self.num_classes
        else:
            config.update(decoder_embed_dim=self.dims["decoder_embed_dim"],
                          decoder_depth=self.dims["decoder_depth"],
                          decoder_num_heads=self.dims["decoder_num_heads"])
        return config

    def encoder_variant(self) -> "Entry":
        """The encoder-only conversion of this entry: artifacts named ``NAME_encoder``."""
        if self.encoder_only:
            return self
        return dataclasses.replace(self, name=f"{self.name}_encoder", encoder_only=True)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["source_url"] = self.source_url
        data["model_config"] = self.model_config()
        return data


def entry_name(size: str, dataset: str, mode: str, num_frames: int = 16,
               img_size: int = 224) -> str:
    return f"TFVideoMAE_{size}_{DATASETS[dataset]['tag']}_{num_frames}x{img_size}_{mode}"


def _make(size: str, dataset: str, mode: str, **overrides) -> Entry:
    facts = DATASETS[dataset]
    release = _RELEASES.get((size, dataset), (None, None, None, None, None, None))
    top1, top5, pt_drive, ft_drive, pt_hub, ft_hub = release
    dims = ALL_SIZES[size]
    frames = overrides.get("num_frames", 16)
    img = overrides.get("img_size", 224)
    return Entry(
        name=entry_name(size, dataset, mode, frames, img), size=size, mode=mode, dataset=dataset,
        num_classes=facts["num_classes"], mask_ratio=facts["mask_ratio"],
        eval_views=facts["eval_views"], top1=top1, top5=top5, pt_epochs=facts["pt_epochs"],
        parity_atol=PARITY_ATOL[size],
        gdrive_id=pt_drive if mode == "PT" else ft_drive,
        hub_id=pt_hub if mode == "PT" else ft_hub, dims=dict(dims), **overrides)


ZOO: Dict[str, Entry] = {}
for (_size, _dataset) in _RELEASES:
    for _mode in MODES:
        _entry = _make(_size, _dataset, _mode)
        ZOO[_entry.name] = _entry

# Tiny test-only entries: 4 frames of 32x32 -> 2 x 2 x 2 = 8 tokens; same code path, seconds.
TEST_ZOO: Dict[str, Entry] = {}
for _dataset in DATASETS:
    for _mode in MODES:
        _entry = _make("T", _dataset, _mode, num_frames=4, img_size=32, test_only=True)
        TEST_ZOO[_entry.name] = _entry


def size_choices(include_test: bool = True) -> Tuple[str, ...]:
    return tuple(SIZES) + (tuple(TEST_SIZES) if include_test else ())


def find_entry(size: str, mode: str, dataset: str = "k400") -> Entry:
    """The entry for ``--size/--mode/--dataset``; raises KeyError naming what exists."""
    for entry in list(ZOO.values()) + list(TEST_ZOO.values()):
        if (entry.size, entry.mode, entry.dataset) == (size, mode, dataset):
            return entry
    available = sorted(f"{e.size}/{e.dataset}" for e in ZOO.values() if e.mode == mode)
    raise KeyError(f"no zoo entry for size {size}, mode {mode}, dataset {dataset}; "
                   f"{mode} entries exist for: {', '.join(available)}")


def get_entry(name: str) -> Entry:
    """Look an entry up by its published name (test entries included)."""
    if name in ZOO:
        return ZOO[name]
    if name in TEST_ZOO:
        return TEST_ZOO[name]
    raise KeyError(f"unknown zoo entry {name!r}")
