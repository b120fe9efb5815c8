"""Reading upstream checkpoint files safely, and writing seeded synthetic ones.

Checkpoints come from the internet, so they are only ever read with
``torch.load(weights_only=True)``; the one class upstream files pickle besides tensors and
plain containers, ``argparse.Namespace`` (the training ``args``), is allow-listed, nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

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
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for a bad file
        text = str(error)
        refused = _refused_global(text)
        if refused:
            raise CheckpointError(
                f"{path}: refused to load: the file asks to import {refused}, which is not on "
                f"the allow-list ({', '.join(_qualname(g) for g in SAFE_GLOBALS)}); "
                f"nothing in it was run") from None
        reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


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
    return Checkpoint(path=path, sha256=sha256_file(path), state_dict=converted,
                      container_key=key, source_dtypes=dtypes, notes=notes)


def random_state_dict(model: torch.nn.Module, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Every tensor of ``model`` random, biases, LayerNorm parameters and mask_token included.

    Zero biases and unit norms (upstream's init) would hide mapping slips, so each kind gets
    a random value on a scale that keeps activations well-conditioned.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        shape = tensor.shape
        noise = torch.randn(shape, generator=generator)
        if name.endswith(("q_bias", "v_bias")):
            value = 0.2 * noise
        elif name.endswith("mask_token"):
            value = 0.5 * noise
        elif tensor.dim() == 1 and ("norm" in name):
            value = (1.0 + 0.2 * noise) if name.endswith("weight") else 0.1 * noise
        elif tensor.dim() == 1:
            value = 0.05 * noise
        else:
            value = 0.02 * noise
        state[name] = value.contiguous()
    return state


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
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**config)
    else:
        model = torch_reference.PretrainVisionTransformer(**config)
    state = {k: v.to(dtype) for k, v in random_state_dict(model, seed).items()}
    del model
    tmp = f"{path}.partial"
    torch.save(upstream_container(entry, state), tmp)
    os.replace(tmp, path)
    return path
