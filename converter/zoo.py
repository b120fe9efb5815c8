"""The model zoo as the converter sees it: every published entry with its upstream files and
parity tolerance.

Sizes, datasets, classes, protocols and accuracies come from ``tf_models.presets``, the one
torch-free table; an ``Entry`` is a preset plus what only a conversion needs, and reads the
preset's facts through (``entry.dims`` is ``entry.preset.dims``); its upstream file is
``upstream.py``'s (stdlib-only, for ``--list``). ``ZOO`` holds the published
entries (V1's 14, VideoMAE V2's 14); ``TEST_ZOO`` holds tiny configurations of the same code
paths so tests run in seconds (never published).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from tf_models.presets import (ALL_SIZES, DATASETS, FAMILIES, MODES, PRESETS,  # noqa: F401
                               SIZES, TEST_PRESETS, TEST_SIZES, Preset, preset_name)

from .upstream import V2_REQUEST_FORM, source_url, upstream_file

# Parity tolerance: the largest max-abs error of the fp32 TF output against a float64 run of the
# torch reference. Measured on synthetic checkpoints, TF's error is within a small factor of
# torch fp32's own error against float64 (~1e-6 on logits for S/B): 1e-5 leaves headroom of
# about 10x over both, while a single wrong tensor moves outputs by 1e-2 or more.
# Deeper models accumulate more rounding, so L and H get 2e-5 / 5e-5 (see docs/PARITY.md).
# ViT-g (40 blocks of width 1408) gets 1e-4 until a full-size run measures it (docs/PARITY.md).
# the name an --encoder-only conversion's artifacts take: NAME + this (``conversion_entry``)
ENCODER_SUFFIX = "_encoder"
PARITY_ATOL = {"T": 1e-5, "Tg": 1e-5, "S": 1e-5, "B": 1e-5, "L": 2e-5, "H": 5e-5, "g": 1e-4}

# How upstream stored each kind of file, per (family, recipe): (container key, dtype).
# Fine-tuning ran under DeepSpeed, which keeps the weights under 'module'; V2's DeepSpeed
# config enables fp16 (utils.create_ds_config), so its fine-tuned and distilled files are fp16
# (the distilled files are half their fp32 size). Pre-training saved 'model' in fp32 with its
# 'epoch' and argparse 'args' (utils.save_model).
FILE_LAYOUTS: Dict[Tuple[str, str], Tuple[str, str]] = {
    ("v1", "PT"): ("model", "float32"),
    ("v1", "FT"): ("module", "float32"),
    ("v2", "PT"): ("model", "float32"),
    ("v2", "FT"): ("module", "float16"),
    ("v2", "DL"): ("module", "float16"),
}

# the report's ``entry`` object (``NAME.json``): these keys, then ``model_config``
_REPORTED = ("name", "family", "size", "mode", "recipe", "dataset", "stage", "head_from",
             "num_classes", "mask_ratio", "eval_views", "top1", "top5", "pt_epochs",
             "parity_atol", "gdrive_id", "hub_id", "num_frames", "img_size", "patch_size",
             "tubelet_size", "dims", "test_only", "encoder_only", "raw_frames", "source_url")


@dataclass(frozen=True)
class Entry:
    """One conversion: a zoo preset plus its upstream file and parity tolerance.

    Every fact of the preset reads through (``entry.size``, ``entry.dims``,
    ``entry.num_patches``...); ``encoder_only`` converts the encoder alone, as ``NAME_encoder``;
    ``raw_frames`` puts the preprocessing inside the SavedModel and ``.tflite`` (they take
    uint8 frames at the entry's size; same names, the report's entry says it).
    """

    preset: Preset
    parity_atol: float
    gdrive_id: Optional[str] = None
    hub_id: Optional[str] = None
    encoder_only: bool = False
    raw_frames: bool = False
    url: Optional[str] = None        # a direct download link (V2's distilled files)
    upstream_run: Optional[str] = None  # upstream's run name of a file without a link

    def __getattr__(self, name: str):
        # called only for names an Entry lacks: the preset's facts
        if name.startswith("__") or name == "preset":
            raise AttributeError(name)
        return getattr(self.preset, name)

    @property
    def name(self) -> str:
        return self.preset.name + (ENCODER_SUFFIX if self.encoder_only else "")

    @property
    def source_url(self) -> Optional[str]:
        """Where the upstream file downloads from, or None (a local file is needed)."""
        return source_url(self.gdrive_id, self.url)

    @property
    def access(self) -> Optional[str]:
        """How to get an upstream file that has no download link, as a clause, or None."""
        if self.upstream_run is None:
            return None
        return (f"upstream shares its {ALL_SIZES[self.size].title} files only through the "
                f"download request form linked from {FAMILIES[self.family]['upstream']} "
                f"docs/MODEL_ZOO.md ({V2_REQUEST_FORM}): request the link, download "
                f"{self.upstream_run} and pass --checkpoint PATH")

    @property
    def file_layout(self) -> Tuple[str, str]:
        """(container key, dtype) of upstream's file for this entry."""
        return FILE_LAYOUTS[(self.family, self.recipe)]

    @property
    def upstream(self) -> "Entry":
        """The entry whose upstream file this one converts, as a whole model: itself, or for
        a mapped head (``head_from``) the entry of the head whose rows it takes."""
        plain = not (self.encoder_only or self.raw_frames)
        base = self if plain else dataclasses.replace(self, encoder_only=False, raw_frames=False)
        if self.head_from is None:
            return base
        return get_entry(preset_name(self.size, self.head_from, self.recipe, self.num_frames,
                                     self.img_size, self.family))

    def model_config(self) -> dict:
        """Plain keyword arguments that build either side (torch_reference or tf_models):
        the preset's, without the head or decoder for an encoder-only entry."""
        if self.encoder_only:
            return self.preset.backbone_config()
        return self.preset.model_config()

    def encoder_variant(self) -> "Entry":
        """The encoder-only conversion of this entry: artifacts named ``NAME_encoder``."""
        return dataclasses.replace(self, encoder_only=True)

    def raw_frames_variant(self) -> "Entry":
        """This entry with the preprocessing inside its SavedModel and ``.tflite``."""
        return dataclasses.replace(self, raw_frames=True)

    def to_dict(self) -> dict:
        """The report's ``entry`` object."""
        data = {key: getattr(self, key) for key in _REPORTED}
        data["model_config"] = self.model_config()
        return data


def _entry(preset: Preset) -> Entry:
    """The conversion entry of a preset: the preset plus upstream files and tolerance."""
    return Entry(preset=preset, parity_atol=PARITY_ATOL[preset.size], **upstream_file(preset))


ZOO: Dict[str, Entry] = {name: _entry(preset) for name, preset in PRESETS.items()}
# Tiny test-only entries: 4 frames of 32x32 -> 2 x 2 x 2 = 8 tokens; same code path, seconds.
TEST_ZOO: Dict[str, Entry] = {name: _entry(preset) for name, preset in TEST_PRESETS.items()}


def entries_of(size: str) -> List[Entry]:
    """The published entries, and the test-only tiny ones when ``size`` is a test size (as
    ``--all`` selects them)."""
    return list(ZOO.values()) + (list(TEST_ZOO.values()) if size in TEST_SIZES else [])


def find_entry(size: str, mode: str, dataset: str = "k400",
               family: Optional[str] = "v1") -> Entry:
    """The entry for ``--size/--mode/--dataset`` and ``family`` ("v1", the default, or "v2";
    None: V1's entry where it has one, else V2's, as ``--family`` left out). Raises KeyError
    naming what exists, or the names to choose from when several entries fit (V2's ViT-g K400
    models, fine-tuned directly or after K710)."""
    pool = list(ZOO.values()) + list(TEST_ZOO.values())
    fits = [e for e in pool if (e.size, e.mode, e.dataset) == (size, mode, dataset)
            and (family is None or e.family == family)]
    if family is None and any(e.family == "v1" for e in fits):
        fits = [e for e in fits if e.family == "v1"]
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise KeyError(f"size {size}, mode {mode}, dataset {dataset} fits "
                       f"{', '.join(e.name for e in fits)}: pass --name NAME")
    available = sorted({f"{e.size}/{e.dataset}" for e in entries_of(size)
                        if e.mode == mode and (family is None or e.family == family)})
    which = f"{family} " if family else ""
    raise KeyError(f"no zoo entry for size {size}, mode {mode}, dataset {dataset}"
                   f"{' in ' + family if family else ''}; {which}{mode} entries exist for: "
                   f"{', '.join(available)}")


def conversion_entry(name: str) -> Entry:
    """The entry a conversion named ``name`` is of: ``get_entry``'s, or for ``NAME_encoder``
    (``ENCODER_SUFFIX``) NAME's encoder-only variant. KeyError as ``get_entry``."""
    if name.endswith(ENCODER_SUFFIX):
        return get_entry(name[: -len(ENCODER_SUFFIX)]).encoder_variant()
    return get_entry(name)


def get_entry(name: str) -> Entry:
    """Look an entry up by its published name (test entries included); the KeyError names
    the closest known names."""
    if name in ZOO:
        return ZOO[name]
    if name in TEST_ZOO:
        return TEST_ZOO[name]
    import difflib

    close = difflib.get_close_matches(name, list(ZOO) + list(TEST_ZOO), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise KeyError(f"unknown zoo entry {name!r}{hint}; videomae-convert --list lists them")
