"""The file names of one converted entry, and the report that travels with them.

Per entry ``NAME`` in a folder (what ``videomae-convert`` writes, what a release ships):
  NAME/              SavedModel (a release zips it as ``NAME.savedmodel.zip``)
  NAME.weights.h5    Keras weights
  NAME.keras         Keras model file (config + weights)
  NAME.tflite        LiteRT (``--litert`` only)
  NAME.fp16.tflite   LiteRT with fp16 weights (``--litert-quantize fp16`` only)
  NAME.int8.tflite   LiteRT with int8 weights (``--litert-quantize int8`` only)
  NAME.preset/       keras-hub preset folder (``videomae-export --preset`` only)
  NAME.json          the conversion report
Torch-free and Keras-free: the one place a suffix is written down.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

# ``--litert-quantize`` modes: mode M's file is artifact kind ``litert_M``, ``NAME.M.tflite``
QUANTIZED_MODES = ("fp16", "int8")
# the LiteRT files: fp32, then one per quantised mode
LITERT_KINDS = ("litert",) + tuple(f"litert_{mode}" for mode in QUANTIZED_MODES)
# artifact kind -> suffix after NAME, in the order the paths are listed (report before the
# optional .tflite files, as the converter always listed them)
SUFFIXES = {"savedmodel": "", "weights": ".weights.h5", "keras": ".keras", "report": ".json",
            "litert": ".tflite",
            **{f"litert_{mode}": f".{mode}.tflite" for mode in QUANTIZED_MODES},
            "preset": ".preset"}
OPTIONAL_KINDS = LITERT_KINDS + ("preset",)
# suffixes that name a file (or the preset folder) of an entry (longest first, so
# ``.weights.h5`` wins over ``.h5`` and ``.fp16.tflite`` over ``.tflite``)
_FILE_SUFFIXES = tuple(sorted({".savedmodel.zip", *filter(None, SUFFIXES.values())},
                              key=len, reverse=True))


# the dot-separated words of the suffixes (and of the release's ``.savedmodel.zip``): a NAME
# ending in one (``m.int8``, ``m.keras``) would give artifact paths of another NAME
# (``m.int8.tflite`` is ``m``'s int8 file, the SavedModel folder ``m.keras`` ``m``'s Keras file)
SUFFIX_WORDS = frozenset(word for suffix in (*SUFFIXES.values(), ".savedmodel.zip")
                         for word in suffix.split(".") if word)


def clashing_word(name: str) -> Optional[str]:
    """The suffix word ``name`` ends in (after a dot), or None when its paths are its own."""
    word = name.rsplit(".", 1)[-1].lower() if "." in name else None
    return word if word in SUFFIX_WORDS else None


def quantized_kind(mode: str) -> str:
    """The artifact kind of a ``--litert-quantize`` mode's file (``fp16`` -> ``litert_fp16``)."""
    return LITERT_KINDS[1 + QUANTIZED_MODES.index(mode)]


def quantization_of(kind: str) -> Optional[str]:
    """The ``--litert-quantize`` mode whose file an artifact kind is, else None."""
    mode = kind[len("litert_"):]
    return mode if kind.startswith("litert_") and mode in QUANTIZED_MODES else None


def artifact_paths(folder: str, name: str, litert: bool = False) -> Dict[str, str]:
    """Paths of the artifacts of ``name`` in ``folder``; the optional ones (``.tflite``, the
    ``.preset`` folder) only with ``litert`` (every kind)."""
    return {kind: os.path.join(folder, name + suffix) for kind, suffix in SUFFIXES.items()
            if litert or kind not in OPTIONAL_KINDS}


def entry_name(path: str) -> str:
    """``NAME`` of an artifact path: ``w/NAME.keras``, ``w/NAME.weights.h5``, ``w/NAME/``..."""
    base = os.path.basename(os.fspath(path).rstrip("/" + os.sep))
    for suffix in _FILE_SUFFIXES:
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def report_path(path: str) -> str:
    """The ``NAME.json`` report beside an artifact of ``NAME`` (a file or a SavedModel folder)."""
    stripped = os.fspath(path).rstrip("/" + os.sep)
    return os.path.join(os.path.dirname(stripped), entry_name(stripped) + SUFFIXES["report"])


def kind_of_path(path: str) -> Optional[str]:
    """The artifact kind a path's name says (``keras``, ``weights``, ``litert``, ``report``), or
    ``savedmodel`` for a folder holding ``saved_model.pb``; None otherwise."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "savedmodel" if os.path.isfile(os.path.join(path, "saved_model.pb")) else None
    for kind, suffix in sorted(SUFFIXES.items(), key=lambda item: -len(item[1])):
        if suffix and path.endswith(suffix):
            return kind
    return None
