"""The one checkpoint reader: any supported file or folder in, upstream-named tensors out.

``read_checkpoint(path)`` decides what ``path`` is (a transformers folder or shard index, a
safetensors file, a pickle) and reads it with one small function per format; transformers
names are turned into upstream's by ``hf_format``. ``describe(path)`` gives the same names,
shapes and dtypes as meta tensors without reading tensor data, for fit checks and
``--checkpoint-dir`` matching. A new format is one more reader in ``_read_names``.

Checkpoints come from the internet, so pickles are only ever read with
``torch.load(weights_only=True)``; the one class upstream files pickle besides tensors and
plain containers, ``argparse.Namespace`` (the training ``args``), is allow-listed, nothing else.
What the unpickler accepts is then checked from metadata before any value is read: zip members
stored as ``torch.save`` writes them (``_check_zip_members``), every tensor a plain one within
its own storage (``check_tensors``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from tf_models.artifacts.checksums import sha256_file  # noqa: F401  (re-exported)

from .errors import CheckpointError, type_in_words

# The only globals an upstream VideoMAE checkpoint needs beyond torch's weights-only defaults.
SAFE_GLOBALS = (argparse.Namespace,)
# Where upstream files keep the state dict: pre-training runs under 'model', DeepSpeed
# fine-tuning runs under 'module'; anything else is tried as a raw state dict.
STATE_DICT_KEYS = ("model", "module")
# Prefixes added by wrappers around the model (DDP / DeepSpeed, torch.compile, some forks).
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")


@dataclass
class Checkpoint:
    """A loaded state dict (fp32, wrapper prefixes stripped) and where it came from."""

    path: str
    sha256: str
    state_dict: Dict[str, torch.Tensor]
    container_key: Optional[str]
    source_dtypes: List[str]
    notes: List[str] = field(default_factory=list)
    # 'upstream' (MCG-NJU .pth names) or 'transformers' (renamed to upstream names on load)
    layout: str = "upstream"


def _refused_global(message: str) -> Optional[str]:
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else None


def read_pickle_safely(path: str):
    """``torch.load`` with weights_only and the upstream allow-list; one-line errors."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (.pth)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: file is empty")
    # the zip format can be memory-mapped, so tensors are read from disk as they are used
    mmap = zipfile.is_zipfile(path)
    if mmap:
        _check_zip_members(path)
    else:
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head == b"PK":
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (a truncated or "
                                  f"damaged zip archive: download it again)")
        if head[:1] != b"\x80":  # every pickle of protocol 2 or later starts with PROTO
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (neither a zip "
                                  f"archive nor a pickle: is it a .pth file?)")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for a bad file
        text = str(error)
        refused = _refused_global(text) or _unusual_global(path, mmap)
        if refused:
            raise CheckpointError(
                f"{path}: refused to load: the file asks to import {refused}, which is not on "
                f"the allow-list ({', '.join(_qualname(g) for g in SAFE_GLOBALS)}); "
                f"nothing in it was run") from None
        if "Weights only load failed" in text:
            # never pass on torch's advice to retry with weights_only=False
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
            reason = detail.group(1).strip() if detail else "unsupported pickle content"
            raise CheckpointError(f"{path}: refused to load: the weights-only unpickler cannot "
                                  f"read it ({reason}); nothing in it was run") from None
        reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


# The most pickle a zip checkpoint's data.pkl may hold: it names the tensors and their shapes
# (the tensors are records of their own), a few MB for the largest upstream file with its
# optimizer state; torch reads it whole into memory.
MAX_PICKLE_BYTES = 256 << 20


def _check_zip_members(path: str) -> None:
    """Refuse, from the zip directory alone, what ``torch.save`` never writes: a compressed
    member (memory-mapped, its compressed bytes would be read as tensor values) and a pickle
    too large to be a checkpoint's (read whole into memory, a zip bomb's way in)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (a damaged zip "
                              f"archive: {error}; download it again)") from None
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1:
            how = (f"compressed (zip method {member.compress_type})"
                   if member.compress_type != zipfile.ZIP_STORED else "encrypted")
            raise CheckpointError(
                f"{path}: member {member.filename} is {how}, expected every member stored "
                f"as torch.save writes them: the file was re-packed; use the original "
                f"download or save it again with torch.save")
        if member.filename.endswith("data.pkl") and member.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(
                f"{path}: {member.filename} declares {member.file_size} bytes of pickle, "
                f"expected at most {MAX_PICKLE_BYTES >> 20} MiB (a checkpoint's pickle holds "
                f"names and shapes, not tensors): not a checkpoint torch.save wrote")


# Globals torch's weights-only unpickler accepts in ordinary checkpoints (module prefixes).
_USUAL_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "argparse.Namespace",
                          "builtins.set", "builtins.frozenset", "numpy.")


def _unusual_global(path: str, is_zip: bool) -> Optional[str]:
    """The first import a pickle asks for beyond ordinary checkpoint content, found by reading
    its opcodes with ``pickletools`` (which parses and never executes anything)."""
    import pickletools

    try:
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                data = archive.read(name)
        else:
            with open(path, "rb") as handle:
                data = handle.read(64 << 20)  # a raw pickle's globals come before its tensors
        strings: List[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                found = str(arg).replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found = f"{strings[-2]}.{strings[-1]}"
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if not found.startswith(_USUAL_GLOBAL_PREFIXES):
                return found
    except Exception:  # a truncated or odd pickle: no name to give
        return None
    return None


def _qualname(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def find_state_dict(obj, path: str):
    """The state dict inside a loaded checkpoint: under 'model', 'module', or the top level."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key], key
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    keys = ", ".join(sorted(map(str, obj))[:8])
    raise CheckpointError(f"{path}: no state dict under 'model' or 'module' and the top level "
                          f"is not one (keys: {keys})")


# dtypes a checkpoint's tensor may have: the floating-point ones weights are stored in (upcast
# to fp32) and the plain integer, bool and complex ones, which the converter's name, shape and
# dtype check reports with every other problem; any other (quantized, float8, ...) is refused
READABLE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64,
                   torch.complex64, torch.complex128, torch.int8, torch.int16, torch.int32,
                   torch.int64, torch.uint8, torch.bool)


def check_tensors(state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """Every key a string and every value a plain dense CPU tensor of a readable dtype that
    lies within its own storage, judged from metadata alone: no tensor value is read.

    ``torch.load`` rebuilds a tensor from the size, stride and offset the pickle declares and
    checks only the furthest element it reaches; a stride of 0 lets a 4-byte storage declare
    billions of elements, which the first read (a NaN scan, an upcast) would allocate. A
    tensor ``torch.save`` wrote holds no more elements than its storage from its offset.
    """
    for name, tensor in state_dict.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: state dict key {name!r} is {type_in_words(name)}, "
                                  f"expected tensor names (strings): not a model's state dict")
        problem = _tensor_problem(tensor)
        if problem:
            raise CheckpointError(f"{path}: entry {name} {problem}")


def _tensor_problem(tensor) -> Optional[str]:
    """Why ``tensor`` cannot be read as a weight (from its metadata), or None."""
    if not isinstance(tensor, torch.Tensor):
        return f"is {type_in_words(tensor)}, not a tensor"
    if tensor.is_nested:
        return "is a nested tensor, expected a plain (dense) tensor"
    if tensor.layout != torch.strided:
        return f"is a {str(tensor.layout).replace('torch.', '')} tensor, expected a dense one"
    if tensor.device.type != "cpu":  # meta: a shape with no values in the file
        return f"is a {tensor.device.type} tensor with no data in the file, expected values"
    if tensor.dtype not in READABLE_DTYPES:
        return (f"has dtype {str(tensor.dtype).replace('torch.', '')}, expected float16, "
                f"bfloat16, float32 or float64")
    shape, strides = tuple(tensor.shape), tensor.stride()
    offset, numel = tensor.storage_offset(), tensor.numel()
    capacity = tensor.untyped_storage().nbytes() // tensor.element_size()
    reach = offset + sum((n - 1) * s for n, s in zip(shape, strides)) + 1
    if numel and (min(strides, default=0) < 0 or reach > capacity
                  or offset + numel > capacity):
        return (f"declares shape {shape} ({numel} elements, strides {strides}, offset "
                f"{offset}) over a storage of {capacity} element(s), expected a tensor within "
                f"its storage as torch.save writes one: the file is damaged or crafted; "
                f"download it again from its source")
    return None


def strip_wrapper_prefixes(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop prefixes that every key shares and that wrappers add (``module.``, ``_orig_mod.``)."""
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
                changed = True
    return state_dict


def upcast_checked(state_dict: Dict[str, torch.Tensor], path: str
                   ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """Floats upcast to fp32 and finite; returns (tensors, dtypes, notes). Reads every value:
    the tensors must have passed ``check_tensors``."""
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in state_dict.values()})
    converted: Dict[str, torch.Tensor] = {}
    notes = []
    for name, tensor in state_dict.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            tensor = tensor.float()  # fp16 / bf16 DeepSpeed weights upcast exactly
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or Inf values")
        converted[name] = tensor
    if any(d in ("float16", "bfloat16") for d in dtypes):
        notes.append(f"weights stored as {'/'.join(dtypes)}, upcast to float32")
    return converted, dtypes, notes


# --- other sources: safetensors files, transformers-format folders ------------------------

# VideoMAE V2's encoder-only Hub repositories (OpenGVLab/VideoMAEv2-Base, -Large, -Huge, -giant):
# custom code whose config.json says ``model_type: VideoMAEv2_<Size>`` and nests upstream's
# VisionTransformer arguments under ``model_config``; the wrapper keeps that VisionTransformer
# as its ``model`` attribute, so every tensor name carries a ``model.`` prefix.
HUB_V2_MODEL_TYPE = "VideoMAEv2"
HUB_V2_PREFIX = "model."
# model_config keys that are no constructor arguments here (training-only or spelled by class)
HUB_V2_DROPPED = ("qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate", "norm_layer",
                  "layer_norm_eps", "use_learnable_pos_emb", "with_cp", "qkv_bias")

# Weights files of a transformers folder, most preferred first (safetensors cannot run code).
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json",
                        "pytorch_model.bin", "pytorch_model.bin.index.json")


def strip_encoder_prefix(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A pre-training state dict's encoder as a stand-alone backbone: drop the decoder side
    (``decoder.*``, ``encoder_to_decoder``, ``mask_token``) and strip ``encoder.``.

    Not applied by the reader; the features kind (``--encoder-only``) applies it.
    """
    encoder = {name[len("encoder."):]: tensor for name, tensor in state_dict.items()
               if name.startswith("encoder.")}
    if not encoder:
        raise CheckpointError("state dict has no encoder.* tensors: not a pre-training "
                              "checkpoint, so there is no encoder to take out")
    return encoder


def is_safetensors_file(path: str) -> bool:
    """True for a ``.safetensors`` name, or a file whose header reads like one."""
    if path.endswith(".safetensors"):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    # 8-byte little-endian header length, then the JSON header itself
    return (len(head) == 9 and head[8:9] == b"{"
            and 0 < struct.unpack("<Q", head[:8])[0] < os.path.getsize(path))


def _require_file(path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: file is empty")


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file (plain tensors only: nothing in it can run); one-line errors."""
    from safetensors.torch import load_file

    _require_file(path)
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # SafetensorError, OSError, ...
        text = str(error).strip().splitlines()
        reason = text[0] if text else type(error).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


# safetensors header dtype names -> torch dtypes
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                      "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                      "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool, "C64": torch.complex64}


def safetensors_shapes(path: str) -> Dict[str, torch.Tensor]:
    """A ``.safetensors`` file's tensors as meta tensors, from its header alone."""
    from safetensors import safe_open

    _require_file(path)
    try:
        with safe_open(path, framework="pt") as handle:
            found = {}
            for name in handle.keys():
                piece = handle.get_slice(name)
                dtype = SAFETENSORS_DTYPES.get(piece.get_dtype(), torch.uint8)
                found[name] = torch.empty(piece.get_shape(), dtype=dtype, device="meta")
            return found
    except Exception as error:  # SafetensorError, OSError, ...
        text = str(error).strip().splitlines()
        reason = text[0] if text else type(error).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable JSON file ({error})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not a readable JSON file (nested too deeply), expected "
                              f"a config or index a few levels deep") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, expected an object")
    return data


def _read_weights_file(path: str, shapes_only: bool = False
                       ) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """(state dict, container key) of one weights file, safetensors or a pickle read safely;
    with ``shapes_only`` meta tensors (see ``describe``)."""
    if is_safetensors_file(path):
        if shapes_only:
            return safetensors_shapes(path), None
        state_dict = read_safetensors(path)
        check_tensors(state_dict, path)
        return state_dict, None
    state_dict, key = find_state_dict(read_pickle_safely(path), path)
    check_tensors(state_dict, path)
    return (_on_meta(state_dict) if shapes_only else state_dict), key


def _read_sharded(index_path: str, shapes_only: bool = False) -> Dict[str, torch.Tensor]:
    """A transformers sharded checkpoint: the index names a file per tensor, and each
    tensor is read from that one shard (a copy in another would silently win or lose)."""
    weight_map = read_weight_map(index_path)
    state_dict: Dict[str, torch.Tensor] = {}
    for shard_path in _shard_paths(index_path, weight_map):
        part, _ = _read_weights_file(shard_path, shapes_only)
        shard = os.path.basename(shard_path)
        for name in part:
            listed = weight_map.get(name)
            if listed != shard:
                raise CheckpointError(
                    f"{shard_path}: holds {name}, which {os.path.basename(index_path)} "
                    f"{f'places in {listed}' if listed else 'does not list'}; each tensor "
                    f"is in the one shard the index names (re-save or download it again)")
        state_dict.update(part)
    missing = sorted(set(weight_map) - set(state_dict))
    if missing:
        raise CheckpointError(f"{index_path}: {len(missing)} tensor(s) named in the index are in "
                              f"no shard: {', '.join(missing[:8])}")
    return state_dict


def read_weight_map(index_path: str) -> Dict[str, str]:
    """A shard index's ``weight_map``: tensor name -> shard file name, both strings."""
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: no weight_map in the shard index")
    for name, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CheckpointError(f"{index_path}: weight_map maps {name} to {shard!r} "
                                  f"({type_in_words(shard)}), expected a shard file name: the "
                                  f"index is damaged, download it again")
    return weight_map


def _shard_paths(index_path: str, weight_map: Dict[str, str]) -> List[str]:
    folder = os.path.dirname(index_path)
    paths = []
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard:
            raise CheckpointError(f"{index_path}: shard name {shard!r} leaves the folder")
        paths.append(os.path.join(folder, shard))
    return paths


def _shards_sha256(index_path: str, weight_map: Dict[str, str]) -> str:
    """One digest for a sharded checkpoint: sha256 over its shards' ``sha256sum`` lines."""
    lines = "".join(f"{sha256_file(p)}  {os.path.basename(p)}\n"
                    for p in _shard_paths(index_path, weight_map))
    return hashlib.sha256(lines.encode()).hexdigest()


def checkpoint_sha256(path: str) -> str:
    """The sha256 that ``read_checkpoint(path)`` reports, without reading any tensor:
    of the file, or of the weights file a transformers folder would be read from."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or folder")
    weights = _pick_weights(path)[0] if os.path.isdir(path) else path
    if weights.endswith(".index.json"):
        return _shards_sha256(weights, read_weight_map(weights))
    return sha256_file(weights)


def _pick_weights(folder: str) -> Tuple[str, List[str]]:
    present = [name for name in TRANSFORMERS_WEIGHTS
               if os.path.isfile(os.path.join(folder, name))]
    if not present:
        found = ", ".join(sorted(os.listdir(folder))[:10]) or "nothing"
        raise CheckpointError(f"{folder}: folder has no {' or '.join(TRANSFORMERS_WEIGHTS[::2])} "
                              f"(found: {found})")
    notes = []
    if len(present) > 1:
        notes.append(f"{', '.join(present)} present: read {present[0]}")
    return os.path.join(folder, present[0]), notes


def read_checkpoint(path: str, check: Optional[Callable[[Dict[str, torch.Tensor]], None]] = None
                    ) -> Checkpoint:
    """Read a checkpoint in any supported form: upstream names, fp32, every value checked.

    - an upstream ``.pth`` (state dict under ``model``, ``module`` or at the top level;
      wrapper prefixes stripped), read with the weights-only unpickler;
    - a ``.safetensors`` file or a ``pytorch_model.bin`` (upstream or transformers names);
    - a transformers folder (``config.json`` + ``model.safetensors`` and/or
      ``pytorch_model.bin``, safetensors preferred; sharded ``*.index.json`` too).

    transformers-format tensors are renamed to upstream names (``layout='transformers'``);
    ``encoder.`` prefixes are kept (see ``strip_encoder_prefix``). One-line CheckpointErrors.

    Every tensor is checked from its metadata (``check_tensors``) as it is read; ``check``,
    when given, is then called with the state dict (upstream names, dtypes as stored) before
    any value is read for the upcast and the NaN scan: the caller's own check of names and
    shapes against what it expects, so a file of another model (or one that declares huge
    tensors) stops there. It may delete entries it has settled.
    """
    path = os.fspath(path)
    weights, state_dict, key, notes = _read_names(path, shapes_only=False)
    if weights.endswith(".index.json"):
        digest = _shards_sha256(weights, read_weight_map(weights))
    else:
        digest = sha256_file(weights)
    state_dict, layout = _upstream_names(state_dict, path, weights, notes)
    if check is not None:
        check(state_dict)
    converted, dtypes, upcast = upcast_checked(state_dict, weights)
    return Checkpoint(path=path, sha256=digest, state_dict=converted, container_key=key,
                      source_dtypes=dtypes, notes=notes + upcast, layout=layout)


def describe(path: str) -> Checkpoint:
    """What ``read_checkpoint(path)`` would give, as tensors on the meta device (names,
    shapes, dtypes), without reading tensor data where the format allows: a zip ``.pth`` is
    memory-mapped and never touched, a safetensors file is read from its header. No sha256
    (empty), no upcast, no NaN scan: for fit checks and ``--checkpoint-dir`` matching.
    """
    path = os.fspath(path)
    weights, state_dict, key, notes = _read_names(path, shapes_only=True)
    state_dict, layout = _upstream_names(state_dict, path, weights, notes)
    return Checkpoint(path=path, sha256="", state_dict=state_dict, container_key=key,
                      source_dtypes=sorted({str(t.dtype).replace("torch.", "")
                                            for t in state_dict.values()}),
                      notes=notes, layout=layout)


def _read_names(path: str, shapes_only: bool):
    """(weights file, state dict, container key, notes) of any supported checkpoint: the one
    dispatch by what ``path`` is (a transformers folder, a shard index, a weights file)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or folder")
    notes: List[str] = []
    weights = path
    if os.path.isdir(path):
        weights, notes = _pick_weights(path)
    if weights.endswith(".index.json"):
        state_dict = _read_sharded(weights, shapes_only)
        key = None
        notes.append("sharded checkpoint: sha256 is over the shards' own sha256 lines")
    else:
        state_dict, key = _read_weights_file(weights, shapes_only)
    if weights != path:
        notes.insert(0, f"read {os.path.basename(weights)} from {path}")
    return weights, strip_wrapper_prefixes(state_dict), key, notes


def repository_config(path: str) -> Optional[str]:
    """The ``config.json`` that comes with ``path``: a folder's own, or the one beside a
    weights file under a Hub repository's name (``model.safetensors``, ``pytorch_model.bin``,
    a shard index); None for any other file, whose folder (a downloads folder, a training
    run's) may hold another tool's config.json, and when there is none."""
    if os.path.isdir(path):
        folder = path
    elif os.path.basename(path) in TRANSFORMERS_WEIGHTS or path.endswith(".index.json"):
        folder = os.path.dirname(path)
    else:
        return None
    config_path = os.path.join(folder, "config.json")
    return config_path if os.path.isfile(config_path) else None


def hub_v2_config(path: str) -> Optional[dict]:
    """The ``config.json`` of ``path`` (``repository_config``) when it is a VideoMAE V2 Hub
    repository's (``model_type`` ``VideoMAEv2_*``), else None."""
    config_path = repository_config(path)
    if config_path is None:
        return None
    config = read_json(config_path)
    if not str(config.get("model_type", "")).startswith(HUB_V2_MODEL_TYPE):
        return None
    if not isinstance(config.get("model_config"), dict):
        raise CheckpointError(f"{config_path}: model_type {config['model_type']} but no "
                              f"model_config object (expected upstream's VisionTransformer "
                              f"arguments nested there)")
    return config


def read_transformers_config(config_path: str) -> dict:
    """A transformers ``config.json``, with the keys the renaming reads of the right types."""
    from tf_models.transformers_names import config_problems

    config = read_json(config_path)
    problems = config_problems(config)
    if problems:
        raise CheckpointError(f"{config_path}: {'; '.join(problems)}: not a transformers "
                              f"VideoMAE config as saved; fix or remove it")
    return config


def hub_v2_model_kwargs(config: dict) -> dict:
    """torch_reference / tf_models keyword arguments from a V2 Hub ``config.json``: its
    ``model_config`` without the training-only and class-valued entries."""
    return {key: value for key, value in config["model_config"].items()
            if key not in HUB_V2_DROPPED}


def _upstream_names(state_dict: Dict[str, torch.Tensor], path: str, weights: str,
                    notes: List[str]) -> Tuple[Dict[str, torch.Tensor], str]:
    """The state dict under upstream's names, and the layout it was found in."""
    from .hf_format import hf_to_upstream, is_hf_state_dict

    hub_v2 = hub_v2_config(path)
    if hub_v2 is not None:
        if not state_dict or not all(k.startswith(HUB_V2_PREFIX) for k in state_dict):
            first = ", ".join(sorted(state_dict)[:4]) or "none"
            raise CheckpointError(f"{weights}: model_type {hub_v2['model_type']}: expected "
                                  f"every tensor under '{HUB_V2_PREFIX}', found {first}")
        notes.append(f"VideoMAE V2 Hub repository (model_type {hub_v2['model_type']}): "
                     f"'{HUB_V2_PREFIX}' prefix stripped")
        return {k[len(HUB_V2_PREFIX):]: v for k, v in state_dict.items()}, "upstream"
    if not is_hf_state_dict(state_dict):
        return state_dict, "upstream"
    config_path = repository_config(path)
    config = read_transformers_config(config_path) if config_path else None
    state_dict, renamed = hf_to_upstream(state_dict, config, path=weights)
    notes.extend(renamed)
    return state_dict, "transformers"


def _on_meta(state_dict) -> Dict[str, torch.Tensor]:
    """Each tensor (checked by ``check_tensors``) as a meta tensor of its shape and dtype (no
    data is read)."""
    return {name: torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
            for name, tensor in state_dict.items()}
