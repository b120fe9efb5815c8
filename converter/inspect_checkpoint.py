"""What an upstream-named state dict holds (size, mode, dataset, decoder); does it fit an entry.

Everything is read from tensor shapes and names, so this works on any loaded checkpoint (and on
meta tensors). Widths and class counts come from the zoo, never retyped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import CheckpointError
from .zoo import ALL_SIZES, DATASETS, SIZES, Entry, entries_of, find_entry

PATCH_EMBED_KEYS = ("patch_embed.proj.weight", "encoder.patch_embed.proj.weight")
# Keys that only a pre-training (masked autoencoder) checkpoint has.
PRETRAINING_PREFIXES = ("encoder.", "decoder.", "encoder_to_decoder.")
PRETRAINING_KEYS = ("mask_token",)
ENCODER_ONLY_REASON = ("no decoder.* keys; the upstream ViT-H PT file is known to lack its "
                       "decoder, MCG-NJU/VideoMAE#89")

_MODE_WORDS = {"FT": "fine-tuned (FT)", "PT": "pre-trained (PT)"}
_MODE_BARE = {"FT": "fine-tuned", "PT": "pre-trained"}


@dataclass(frozen=True)
class CheckpointInfo:
    """What a state dict holds, inferred from its names and shapes (None where unknown)."""

    embed_dim: Optional[int]
    size: Optional[str]
    mode: str
    depth: int
    num_classes: Optional[int]
    dataset: Optional[str]
    has_decoder: bool
    decoder_embed_dim: Optional[int]
    decoder_depth: int
    patch: Optional[Tuple[int, int, int]] = None  # the patch embedding's kernel (T, H, W)

    def describe(self) -> str:
        size = ALL_SIZES[self.size].title if self.size in ALL_SIZES \
            else f"unknown size (embed dim {self.embed_dim})"
        text = f"{size}, {_MODE_WORDS[self.mode]}, {self.depth} blocks"
        if self.mode == "FT" and self.num_classes is not None:
            text += f", {self.num_classes}-class head ({self.dataset or 'no zoo dataset'})"
        if self.mode == "PT":
            text += (f", decoder {self.decoder_depth} blocks" if self.has_decoder
                     else ", encoder only")
        return text


def size_for_width(width: int) -> Optional[str]:
    """The size letter whose encoder width is ``width`` (test sizes included), or None."""
    for letter, size in ALL_SIZES.items():
        if size.embed_dim == width:
            return letter
    return None


def dataset_for_classes(num_classes: int) -> Optional[str]:
    """The zoo dataset with ``num_classes`` classes, or None."""
    for key, facts in DATASETS.items():
        if facts.labelled and facts.num_classes == num_classes:
            return key
    return None


def _count_blocks(state_dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    indices = {int(m.group(1)) for m in map(pattern.match, state_dict) if m}
    return max(indices) + 1 if indices else 0


def _shape(value) -> Tuple[int, ...]:
    return tuple(getattr(value, "shape", value))


def infer_widths(state_dict) -> Tuple[Optional[int], Optional[int]]:
    """(encoder width, decoder width) from the patch embedding and the decoder's norm (or
    ``mask_token``); None where the tensor is absent or has no dimension to read. Values may
    be tensors or plain shapes."""
    encoder = None
    for key in PATCH_EMBED_KEYS:
        if key in state_dict and _shape(state_dict[key]):
            encoder = int(_shape(state_dict[key])[0])
            break
    decoder = None
    if "decoder.norm.weight" in state_dict and _shape(state_dict["decoder.norm.weight"]):
        decoder = int(_shape(state_dict["decoder.norm.weight"])[0])
    elif "mask_token" in state_dict and _shape(state_dict["mask_token"]):
        decoder = int(_shape(state_dict["mask_token"])[-1])
    return encoder, decoder


def infer_checkpoint(state_dict) -> CheckpointInfo:
    """Size from the patch embedding width, mode from the key names, dataset from the head's
    class count, and whether a pre-training checkpoint carries its decoder. Values may be
    tensors or plain shapes (``describe`` gives shapes without reading any tensor)."""
    pretraining = any(k.startswith(PRETRAINING_PREFIXES) or k in PRETRAINING_KEYS
                      for k in state_dict)
    mode = "PT" if pretraining else "FT"
    prefix = "encoder." if pretraining else ""
    width, decoder_width = infer_widths(state_dict)
    patch = next((_shape(state_dict[k])[2:] for k in PATCH_EMBED_KEYS if k in state_dict), ())
    num_classes = None
    if "head.weight" in state_dict and _shape(state_dict["head.weight"]):
        num_classes = int(_shape(state_dict["head.weight"])[0])
    return CheckpointInfo(
        embed_dim=width, size=size_for_width(width) if width is not None else None, mode=mode,
        depth=_count_blocks(state_dict, prefix), num_classes=num_classes,
        dataset=dataset_for_classes(num_classes) if num_classes is not None else None,
        has_decoder=any(k.startswith("decoder.") for k in state_dict),
        decoder_embed_dim=decoder_width, decoder_depth=_count_blocks(state_dict, "decoder."),
        patch=tuple(int(n) for n in patch) if len(patch) == 3 else None)


def check_fits(entry: Entry, state_dict, path: str, encoder_only: Optional[bool] = None,
               requested: Optional[Entry] = None) -> CheckpointInfo:
    """Raise CheckpointError (one line) unless ``state_dict`` is a checkpoint for ``entry``;
    ``requested``: the entry asked for, whose upstream file ``entry``'s is (a mapped head's
    source), which the flags suggested start from (default ``entry``).

    The line names the file, each thing found against what the entry expects, and the flags
    that would select the right entry, e.g. ``ckpt.pth: checkpoint is ViT-B (embed dim 768),
    not ViT-S: use --size B``; ``--family`` and the entry's name too where the family asked
    for would select another (a V1 K400 file for a V2 entry). Several mismatches are combined
    into that one line. A pre-training checkpoint without decoder tensors is refused unless
    ``encoder_only`` (default: the entry's own ``encoder_only``). Returns the inferred
    CheckpointInfo when everything fits.
    """
    if encoder_only is None:
        encoder_only = bool(getattr(entry, "encoder_only", False))
    requested = requested or entry
    info = infer_checkpoint(state_dict)
    if info.embed_dim is None:
        for key in PATCH_EMBED_KEYS:
            if key in state_dict:
                raise CheckpointError(f"{path}: ! shape {key}: expected a 5-D patch embedding "
                                      f"(D, 3, T, P, P), found {_shape(state_dict[key])}")
        keys = ", ".join(sorted(state_dict)[:6]) or "none"
        raise CheckpointError(f"{path}: not a VideoMAE checkpoint: no patch_embed.proj.weight "
                              f"(first keys: {keys})")
    parts: List[str] = []
    flags: List[Tuple[str, str]] = []
    dims = entry.dims
    expected_size = ALL_SIZES[entry.size].title
    if info.size is None:
        known = ", ".join(f"{k} {size.embed_dim}" for k, size in SIZES.items())
        parts.append(f"checkpoint has embed dim {info.embed_dim}, which is no zoo size "
                     f"({known}), not {expected_size} ({dims['embed_dim']})")
    elif info.size != entry.size:
        parts.append(f"checkpoint is {ALL_SIZES[info.size].title} (embed dim {info.embed_dim}), "
                     f"not {expected_size}")
        flags.append(("--size", info.size))
    patch = (entry.tubelet_size, entry.patch_size, entry.patch_size)
    foreign = info.size == entry.size and info.patch not in (None, patch)
    if foreign:
        # no zoo entry has another patch for the same width (V2's ViT-g alone has 14 pixels),
        # so no flag would help
        parts.append(f"checkpoint's patches are {'x'.join(map(str, info.patch))} (frames x "
                     f"pixels), {expected_size}'s are {'x'.join(map(str, patch))}: a model "
                     "no zoo entry converts")
    if info.mode != entry.mode:
        parts.append(f"checkpoint is {_MODE_WORDS[info.mode]}, not {_MODE_BARE[entry.mode]}")
        flags.append(("--mode", info.mode))
    if info.mode == "FT" and info.num_classes is not None \
            and info.num_classes != entry.num_classes:
        expected = f"{entry.num_classes} ({entry.dataset})"
        if info.dataset is None:
            known = ", ".join(f"{f.num_classes} {k}" for k, f in DATASETS.items()
                              if f.labelled)
            parts.append(f"head has {info.num_classes} classes, which is no zoo dataset "
                         f"({known}), not {expected}")
        else:
            if requested.head_from:
                expected = (f"{entry.num_classes} ({entry.dataset}: {requested.name} takes its "
                            f"{requested.dataset} rows from a {entry.dataset} head)")
            parts.append(f"head has {info.num_classes} classes ({info.dataset}), not {expected}")
            flags.append(("--dataset", info.dataset))
    if not parts:
        parts.extend(_depth_problems(entry, info))
    if info.mode == "PT" and not info.has_decoder and not encoder_only:
        parts.append(f"pre-trained checkpoint holds the encoder only ({ENCODER_ONLY_REASON})")
        flags.append(("--encoder-only", ""))
    if not parts:
        return info
    message = f"{path}: {'; '.join(parts)}"
    if flags and not foreign:
        message += _suggestion(requested, entry, info, flags)
    raise CheckpointError(message)


def _suggestion(requested: Entry, entry: Entry, info: CheckpointInfo,
                flags: List[Tuple[str, str]]) -> str:
    """': use FLAGS' that select the entry the file fits, or ': convert it with
    --encoder-only'; the flags read from the file, with a note, where no one entry fits."""
    if flags == [("--encoder-only", "")]:
        return ": convert it with --encoder-only"
    target = _fitting_entry(requested, info)
    if target is None or target.name == requested.name:
        return (": use " + " ".join(f"{flag} {value}".strip() for flag, value in flags)
                + _no_entry_note(entry, dict(flags)))
    return ": use " + _flags_for(requested, target, ("--encoder-only", "") in flags)


def _fitting_entry(requested: Entry, info: CheckpointInfo) -> Optional[Entry]:
    """The one zoo entry whose upstream file is what ``info`` describes (size, mode, and a
    fine-tuned head's dataset), nearest the request: the requested dataset first (a K710
    head for a K400 request: the K710toK400 entry), then its family, then a head of its own
    over a mapped one; None where none, or several equally near, fit."""
    if info.size is None or (info.mode == "FT" and info.dataset is None):
        return None
    fits = [e for e in entries_of(info.size) if e.size == info.size and e.mode == info.mode
            and (info.mode == "PT" or e.upstream.dataset == info.dataset)]
    if not fits:
        return None

    def distance(e: Entry) -> tuple:
        return (e.dataset != requested.dataset, e.family != requested.family,
                e.head_from is not None)

    nearest = min(map(distance, fits))
    best = [e for e in fits if distance(e) == nearest]
    return best[0] if len(best) == 1 else None


def _flags_for(requested: Entry, target: Entry, encoder_flag: bool) -> str:
    """The flags that turn the request into ``target``: those of size, mode and dataset that
    differ, and ``--family`` with the entry's name where the families differ (the V2 family's
    K400 entry takes a K710 file: a V1 K400 file needs ``--family v1``)."""
    flags = [f"{flag} {new}" for flag, old, new in (
        ("--size", requested.size, target.size), ("--mode", requested.mode, target.mode),
        ("--dataset", requested.dataset, target.dataset)) if old != new]
    if encoder_flag:
        flags.append("--encoder-only")
    if target.family != requested.family:
        return " ".join([f"--family {target.family}"] + flags) + f" ({target.name})"
    return " ".join(flags)


def _depth_problems(entry: Entry, info: CheckpointInfo) -> List[str]:
    """Block counts against the entry (only meaningful once size and mode agree)."""
    problems = []
    title = ALL_SIZES[entry.size].title
    depth = entry.dims["depth"]
    if info.depth != depth:
        problems.append(f"encoder has {info.depth} blocks, {title} has {depth}")
    if info.mode == "PT" and info.has_decoder:
        decoder_depth = entry.dims["decoder_depth"]
        if info.decoder_depth != decoder_depth:
            problems.append(f"decoder has {info.decoder_depth} blocks, the zoo's "
                            f"{title} PT decoder has {decoder_depth}")
        decoder_width = entry.dims["decoder_embed_dim"]
        if info.decoder_embed_dim not in (None, decoder_width):
            problems.append(f"decoder width is {info.decoder_embed_dim}, the zoo's "
                            f"{title} PT decoder has {decoder_width}")
    return problems


def _no_entry_note(entry: Entry, flags: Dict[str, str]) -> str:
    """' (no zoo entry ...)' when the suggested flags select nothing."""
    size = flags.get("--size", entry.size)
    mode = flags.get("--mode", entry.mode)
    dataset = flags.get("--dataset", entry.dataset)
    try:  # any family: a ViT-g file is V2's
        find_entry(size, mode, dataset, family=None)
    except KeyError as error:
        several = str(error).strip("'\"")
        if "pass --name" in several:  # e.g. ViT-g K400: fine-tuned directly or after K710
            return f" ({several.split(' fits ', 1)[1]})"
        return f" (but the zoo has no {size}/{mode}/{dataset} entry)"
    return ""
