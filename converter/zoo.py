"""The model zoo as the converter sees it: every published entry with its upstream files and
parity tolerance.

Sizes, datasets, classes, protocols and accuracies come from ``tf_models.presets``, the one
torch-free table; an ``Entry`` is a preset plus what only a conversion needs, and reads the
preset's facts through (``entry.dims`` is ``entry.preset.dims``). ``ZOO`` holds the 14
published entries; ``TEST_ZOO`` holds a tiny configuration of the same code path so tests run
in seconds (never published).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from tf_models.presets import (ALL_SIZES, DATASETS, FAMILIES, MODES, PRESETS,  # noqa: F401
                               SIZES, TEST_PRESETS, TEST_SIZES, Preset)

# Parity tolerance: the largest max-abs error of the fp32 TF output against a float64 run of the
# torch reference. Measured on synthetic checkpoints, TF's error is within a small factor of
# torch fp32's own error against float64 (~1e-6 on logits for S/B): 1e-5 leaves headroom of
# about 10x over both, while a single wrong tensor moves outputs by 1e-2 or more.
# Deeper models accumulate more rounding, so L and H get 2e-5 / 5e-5 (see docs/PARITY.md).
PARITY_ATOL = {"T": 1e-5, "S": 1e-5, "B": 1e-5, "L": 2e-5, "H": 5e-5}

# Upstream files per (family, size, dataset): (PT drive id, FT drive id, PT hub id, FT hub id).
# Drive ids from upstream MODEL_ZOO.md; hub ids of the transformers-format copies.
UPSTREAM_FILES: Dict[Tuple[str, str, str], tuple] = {
    ("v1", "S", "k400"): ("1nU-H1u3eJ-VuyCveU7v-WIOcAVxs5Hww", "1ygjLRm1kvs9mwGsP3lLxUExhRo6TWnrx",
                          None, "MCG-NJU/videomae-small-finetuned-kinetics"),
    ("v1", "B", "k400"): ("1tEhLyskjb755TJ65ptsrafUG2llSwQE1", "1MzwteHH-1yuMnFb8vRBQDvngV1Zl-d3z",
                          "MCG-NJU/videomae-base", "MCG-NJU/videomae-base-finetuned-kinetics"),
    ("v1", "L", "k400"): ("1qLOXWb_MGEvaI7tvuAe94CV7S2HXRwT3", "1jX1CiqxSkCfc94y8FRW1YGHy-GNvHCuD",
                          "MCG-NJU/videomae-large", "MCG-NJU/videomae-large-finetuned-kinetics"),
    ("v1", "H", "k400"): ("1AJQR1Rsi2N1pDn9tLyJ8DQrUREiBA1bO", "104ouJZxSVPSAm0LwJXd6IzjdA_RGLqZi",
                          None, "MCG-NJU/videomae-huge-finetuned-kinetics"),
    ("v1", "S", "ssv2"): ("1p_I1aaONOeUvRmRQw1UT3-L2H8XJClHu", "1ajlMrT06jiiM-5YjNI2X_UFyzsuYbbtZ",
                          None, "MCG-NJU/videomae-small-finetuned-ssv2"),
    ("v1", "B", "ssv2"): ("1I18dY_7rSalGL8fPWV82c0-foRUDzJJk", "1dt_59tBIyzdZd5Ecr22lTtzs_64MOZkT",
                          "MCG-NJU/videomae-base-ssv2", "MCG-NJU/videomae-base-finetuned-ssv2"),
    ("v1", "B", "ucf101"): ("1BHev4meNgKM0o_8DMRbuzAsKSP3IpQ3o",
                            "1MSyon6fPpKz7oqD6WDGPFK4k_Rbyb6fw", None, None),
}

_GDRIVE = "https://drive.google.com/uc?export=download&id={}"

# the report's ``entry`` object (``NAME.json``): these keys, then ``model_config``
_REPORTED = ("name", "family", "size", "mode", "dataset", "num_classes", "mask_ratio",
             "eval_views", "top1", "top5", "pt_epochs", "parity_atol", "gdrive_id", "hub_id",
             "num_frames", "img_size", "patch_size", "tubelet_size", "dims", "test_only",
             "encoder_only", "source_url")


@dataclass(frozen=True)
class Entry:
    """One conversion: a zoo preset plus its upstream file and parity tolerance.

    Every fact of the preset reads through (``entry.size``, ``entry.dims``,
    ``entry.num_patches``...); ``encoder_only`` converts the encoder alone, as ``NAME_encoder``.
    """

    preset: Preset
    parity_atol: float
    gdrive_id: Optional[str] = None
    hub_id: Optional[str] = None
    encoder_only: bool = False

    def __getattr__(self, name: str):
        # called only for names an Entry lacks: the preset's facts
        if name.startswith("__") or name == "preset":
            raise AttributeError(name)
        return getattr(self.preset, name)

    @property
    def name(self) -> str:
        return self.preset.name + ("_encoder" if self.encoder_only else "")

    @property
    def source_url(self) -> Optional[str]:
        return _GDRIVE.format(self.gdrive_id) if self.gdrive_id else None

    def model_config(self) -> dict:
        """Plain keyword arguments that build either side (torch_reference or tf_models):
        the preset's, without the head or decoder for an encoder-only entry."""
        if self.encoder_only:
            return self.preset.backbone_config()
        return self.preset.model_config()

    def encoder_variant(self) -> "Entry":
        """The encoder-only conversion of this entry: artifacts named ``NAME_encoder``."""
        return dataclasses.replace(self, encoder_only=True)

    def to_dict(self) -> dict:
        """The report's ``entry`` object."""
        data = {key: getattr(self, key) for key in _REPORTED}
        data["model_config"] = self.model_config()
        return data


def _entry(preset: Preset) -> Entry:
    """The conversion entry of a preset: the preset plus upstream files and tolerance."""
    files = UPSTREAM_FILES.get((preset.family, preset.size, preset.dataset),
                               (None, None, None, None))
    pt_drive, ft_drive, pt_hub, ft_hub = files
    pretrained = preset.mode == "PT"
    return Entry(preset=preset, parity_atol=PARITY_ATOL[preset.size],
                 gdrive_id=pt_drive if pretrained else ft_drive,
                 hub_id=pt_hub if pretrained else ft_hub)


ZOO: Dict[str, Entry] = {name: _entry(preset) for name, preset in PRESETS.items()}
# Tiny test-only entries: 4 frames of 32x32 -> 2 x 2 x 2 = 8 tokens; same code path, seconds.
TEST_ZOO: Dict[str, Entry] = {name: _entry(preset) for name, preset in TEST_PRESETS.items()}


def size_choices(include_test: bool = True) -> Tuple[str, ...]:
    """The ``--size`` choices: the published sizes, then the test-only ones."""
    return tuple(SIZES) + (tuple(TEST_SIZES) if include_test else ())


def find_entry(size: str, mode: str, dataset: str = "k400", family: str = "v1") -> Entry:
    """The entry for ``--size/--mode/--dataset``; raises KeyError naming what exists."""
    for entry in list(ZOO.values()) + list(TEST_ZOO.values()):
        if (entry.family, entry.size, entry.mode, entry.dataset) == (family, size, mode,
                                                                      dataset):
            return entry
    available = sorted(f"{e.size}/{e.dataset}" for e in ZOO.values()
                       if e.mode == mode and e.family == family)
    raise KeyError(f"no zoo entry for size {size}, mode {mode}, dataset {dataset}; "
                   f"{mode} entries exist for: {', '.join(available)}")


def get_entry(name: str) -> Entry:
    """Look an entry up by its published name (test entries included)."""
    if name in ZOO:
        return ZOO[name]
    if name in TEST_ZOO:
        return TEST_ZOO[name]
    raise KeyError(f"unknown zoo entry {name!r}")
