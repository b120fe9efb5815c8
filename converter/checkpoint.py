"""Reading upstream checkpoint files safely, and writing seeded synthetic ones.

Checkpoints come from the internet, so they are only ever read with
``torch.load(weights_only=True)``; the one class upstream files pickle besides tensors and
plain containers, ``argparse.Namespace`` (the training ``args``), is allow-listed, nothing else.
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
from typing import Dict, List, Optional, Tuple

import torch

from .errors import CheckpointError
from .zoo import Entry

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
    # a transformers config.json, when one came with the weights
    config: Optional[dict] = None


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


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
    if not mmap:
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


def load_checkpoint(path: str) -> Checkpoint:
    """Load an upstream ``.pth`` safely: find the state dict, strip wrappers, upcast to fp32.

    Raises CheckpointError with one line naming the file and the problem.
    """
    path = os.fspath(path)
    raw = read_pickle_safely(path)
    state_dict, key = find_state_dict(raw, path)
    state_dict = strip_wrapper_prefixes(state_dict)
    converted, dtypes, notes = upcast_checked(state_dict, path)
    return Checkpoint(path=path, sha256=sha256_file(path), state_dict=converted,
                      container_key=key, source_dtypes=dtypes, notes=notes)


def upcast_checked(state_dict: Dict[str, torch.Tensor], path: str
                   ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """Every entry a tensor, floats upcast to fp32 and finite; returns (tensors, dtypes, notes)."""
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in state_dict.values()
                     if isinstance(t, torch.Tensor)})
    converted: Dict[str, torch.Tensor] = {}
    notes = []
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: entry {name} is a {type(tensor).__name__}, "
                                  f"not a tensor")
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            tensor = tensor.float()  # fp16 / bf16 DeepSpeed weights upcast exactly
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or Inf values")
        converted[name] = tensor
    if any(d in ("float16", "bfloat16") for d in dtypes):
        notes.append(f"weights stored as {'/'.join(dtypes)}, upcast to float32")
    return converted, dtypes, notes


def random_state_dict(model: torch.nn.Module, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Every tensor of ``model`` random, biases, LayerNorm parameters and mask_token included.

    Zero biases and unit norms (upstream's init) would hide mapping slips, so each kind gets
    a random value on a scale that keeps activations well-conditioned. Only names and shapes
    are read, so ``model`` may live on the meta device.
    """
    generator = torch.Generator().manual_seed(seed)
    return {name: random_tensor(name, tuple(tensor.shape), generator)
            for name, tensor in model.state_dict().items()}


def random_tensor(name: str, shape: Tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """One random tensor, scaled for the kind of parameter ``name`` is."""
    noise = torch.randn(shape, generator=generator)
    if name.endswith(("q_bias", "v_bias")):
        return noise.mul_(0.2)
    if name.endswith("mask_token"):
        return noise.mul_(0.5)
    if len(shape) == 1 and "norm" in name:
        return noise.mul_(0.2).add_(1.0) if name.endswith("weight") else noise.mul_(0.1)
    if len(shape) == 1:
        return noise.mul_(0.05)
    return noise.mul_(0.02)


def upstream_container(entry: Entry, state_dict: Dict[str, torch.Tensor]) -> dict:
    """Wrap a state dict the way upstream saved it: FT under DeepSpeed's 'module', PT under
    'model' with the training epoch and its argparse ``args``."""
    if entry.mode == "FT":
        return {"module": state_dict, "buffer_names": [], "optimizer": None,
                "lr_scheduler": None, "global_steps": 0, "dp_world_size": 1,
                "mp_world_size": 1, "epoch": "best"}
    args = argparse.Namespace(
        model=f"pretrain_videomae_{entry.size.lower()}_patch16_224",
        decoder_depth=entry.dims["decoder_depth"], mask_type="tube",
        mask_ratio=entry.mask_ratio, num_frames=entry.num_frames, input_size=entry.img_size,
        epochs=entry.pt_epochs + 1)
    return {"model": state_dict, "epoch": entry.pt_epochs - 1, "args": args}


def write_synthetic_checkpoint(entry: Entry, path: str, seed: int = 0,
                               dtype: torch.dtype = torch.float32) -> str:
    """Write a seeded random checkpoint for ``entry`` in upstream's file layout; returns path."""
    import torch_reference

    config = entry.model_config()
    with torch.device("meta"):  # names and shapes only
        if entry.mode == "FT":
            model = torch_reference.VisionTransformer(**config)
        else:
            model = torch_reference.PretrainVisionTransformer(**config)
    state = {k: v.to(dtype) for k, v in random_state_dict(model, seed).items()}
    tmp = f"{path}.partial"
    torch.save(upstream_container(entry, state), tmp)
    os.replace(tmp, path)
    return path


# --- other sources: safetensors files, transformers-format folders ------------------------

# Weights files of a transformers folder, most preferred first (safetensors cannot run code).
TRANSFORMERS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json",
                        "pytorch_model.bin", "pytorch_model.bin.index.json")


def strip_encoder_prefix(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A pre-training state dict's encoder as a stand-alone backbone: drop the decoder side
    (``decoder.*``, ``encoder_to_decoder``, ``mask_token``) and strip ``encoder.``.

    Not applied by any loader; it is for an explicit encoder-only conversion.
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


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file (plain tensors only: nothing in it can run); one-line errors."""
    from safetensors.torch import load_file

    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: file is empty")
    try:
        return load_file(path, device="cpu")
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
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, expected an object")
    return data


def _read_weights_file(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """(state dict, container key) of one weights file, safetensors or a pickle read safely."""
    if is_safetensors_file(path):
        return read_safetensors(path), None
    raw = read_pickle_safely(path)
    return find_state_dict(raw, path)


def _read_sharded(index_path: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """A transformers sharded checkpoint: the index names a file per tensor."""
    index = read_json(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: no weight_map in the shard index")
    state_dict: Dict[str, torch.Tensor] = {}
    for shard_path in _shard_paths(index_path, weight_map):
        part, _ = _read_weights_file(shard_path)
        state_dict.update(part)
    missing = sorted(set(weight_map) - set(state_dict))
    if missing:
        raise CheckpointError(f"{index_path}: {len(missing)} tensor(s) named in the index are in "
                              f"no shard: {', '.join(missing[:8])}")
    return state_dict, _shards_sha256(index_path, weight_map)


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
    """The sha256 that ``load_any_checkpoint(path)`` reports, without reading any tensor:
    of the file, or of the weights file a transformers folder would be read from."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or folder")
    weights = _pick_weights(path)[0] if os.path.isdir(path) else path
    if weights.endswith(".index.json"):
        weight_map = read_json(weights).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{weights}: no weight_map in the shard index")
        return _shards_sha256(weights, weight_map)
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


def load_any_checkpoint(path: str) -> Checkpoint:
    """Load a checkpoint in any supported form, returned with upstream names, fp32, checked.

    - an upstream ``.pth`` (exactly what ``load_checkpoint`` does);
    - a ``.safetensors`` file or a ``pytorch_model.bin`` (upstream or transformers names);
    - a transformers folder (``config.json`` + ``model.safetensors`` and/or
      ``pytorch_model.bin``, safetensors preferred; sharded ``*.index.json`` too).

    transformers-format tensors are renamed to upstream names (``layout='transformers'``);
    ``encoder.`` prefixes are kept (see ``strip_encoder_prefix``). One-line CheckpointErrors.
    """
    from .hf_format import hf_to_upstream, is_hf_state_dict

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or folder")
    notes: List[str] = []
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    weights = path
    if os.path.isdir(path):
        weights, notes = _pick_weights(path)
    if weights.endswith(".index.json"):
        state_dict, digest = _read_sharded(weights)
        key = None
        notes.append("sharded checkpoint: sha256 is over the shards' own sha256 lines")
    else:
        state_dict, key = _read_weights_file(weights)
        digest = sha256_file(weights)
    state_dict = strip_wrapper_prefixes(state_dict)
    layout, config = "upstream", None
    if is_hf_state_dict(state_dict):
        config_path = os.path.join(folder, "config.json")
        config = read_json(config_path) if os.path.isfile(config_path) else None
        state_dict, renamed = hf_to_upstream(state_dict, config, path=weights)
        notes.extend(renamed)
        layout = "transformers"
    if weights != path:
        notes.insert(0, f"read {os.path.basename(weights)} from {path}")
    converted, dtypes, upcast = upcast_checked(state_dict, weights)
    return Checkpoint(path=path, sha256=digest, state_dict=converted, container_key=key,
                      source_dtypes=dtypes, notes=notes + upcast, layout=layout, config=config)

