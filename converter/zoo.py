"""The model zoo as the converter sees it: every published entry with its upstream source and
parity tolerance.

Sizes, datasets, classes and mask ratios come from ``tf_models.presets``, the one torch-free
table; everything in ``converter`` asks this module. ``ZOO`` holds the 14 published entries;
``TEST_ZOO`` holds a tiny configuration of the same code path so tests run in seconds (never
published).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

# The zoo's facts live in one torch-free table that Keras users read too (tf_models.presets);
# this module adds what only a conversion needs: upstream sources and parity tolerances.
from tf_models.presets import (ALL_SIZES, DATASETS, MODES, PRESETS, RELEASES,  # noqa: F401
                               SIZE_NAMES, SIZES, TEST_PRESETS, TEST_SIZES, Preset,
                               preset_name)

# Parity tolerance: the largest max-abs error of the fp32 TF output against a float64 run of the
# torch reference. Measured on synthetic checkpoints, TF's error is within a small factor of
# torch fp32's own error against float64 (~1e-6 on logits for S/B): 1e-5 leaves headroom of
# about 10x over both, while a single wrong tensor moves outputs by 1e-2 or more.
# Deeper models accumulate more rounding, so L and H get 2e-5 / 5e-5 (see docs/PARITY.md).
PARITY_ATOL = {"T": 1e-5, "S": 1e-5, "B": 1e-5, "L": 2e-5, "H": 5e-5}

_GDRIVE = "https://drive.google.com/uc?export=download&id={}"


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
        """Plain keyword arguments that build either side (torch_reference or tf_models):
        the preset's, without the head or decoder for an encoder-only entry."""
        preset = PRESETS.get(self.name.removesuffix("_encoder")) or \
            TEST_PRESETS[self.name.removesuffix("_encoder")]
        return preset.backbone_config() if self.encoder_only else preset.model_config()

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
    return preset_name(size, dataset, mode, num_frames, img_size)


def _entry(preset: Preset) -> Entry:
    """The conversion entry of a preset: its facts plus upstream source and tolerance."""
    facts = DATASETS[preset.dataset]
    release = RELEASES.get((preset.size, preset.dataset), (None, None, None, None, None, None))
    top1, top5, pt_drive, ft_drive, pt_hub, ft_hub = release
    pretrained = preset.mode == "PT"
    return Entry(
        name=preset.name, size=preset.size, mode=preset.mode, dataset=preset.dataset,
        num_classes=preset.num_classes, mask_ratio=preset.mask_ratio,
        eval_views=facts["eval_views"], top1=top1, top5=top5, pt_epochs=facts["pt_epochs"],
        parity_atol=PARITY_ATOL[preset.size],
        gdrive_id=pt_drive if pretrained else ft_drive, hub_id=pt_hub if pretrained else ft_hub,
        num_frames=preset.num_frames, img_size=preset.img_size, patch_size=preset.patch_size,
        tubelet_size=preset.tubelet_size, dims=dict(preset.dims), test_only=preset.test_only)


ZOO: Dict[str, Entry] = {name: _entry(preset) for name, preset in PRESETS.items()}
# Tiny test-only entries: 4 frames of 32x32 -> 2 x 2 x 2 = 8 tokens; same code path, seconds.
TEST_ZOO: Dict[str, Entry] = {name: _entry(preset) for name, preset in TEST_PRESETS.items()}


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
