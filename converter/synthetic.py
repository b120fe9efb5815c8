"""Seeded synthetic checkpoints in upstream's exact file layout: a test and demo aid.

``--synthetic`` converts one of these instead of a downloaded file, so the whole real path (the
reader included) runs without network access; the tests build their checkpoints here too.
Every tensor is random (biases, LayerNorm parameters and ``mask_token`` included), so a
mapping slip cannot hide behind upstream's zero or unit initialisation.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, Optional, Tuple

import torch

from .zoo import Entry


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
    if name.endswith(("gamma_1", "gamma_2")):
        # V2 layer scale: branches weighted well away from 0 and 1, some negative channels
        return noise.mul_(0.3).add_(0.3)
    if name.endswith("attn.scale"):
        # V2 cosine attention's log logit scale (heads, 1, 1): around upstream's log(10), so
        # attention is sharp enough for a wrong q/k path to show
        return noise.mul_(0.5).add_(2.3)
    if name.endswith(("q_bias", "v_bias")):
        return noise.mul_(0.2)
    if name.endswith("mask_token"):
        return noise.mul_(0.5)
    if len(shape) == 1 and "norm" in name:
        return noise.mul_(0.2).add_(1.0) if name.endswith("weight") else noise.mul_(0.1)
    if len(shape) == 1:
        return noise.mul_(0.05)
    return noise.mul_(0.02)


_FACTORY_SIZES = {"S": "small", "B": "base", "L": "large", "H": "huge", "g": "giant"}


def upstream_container(entry: Entry, state_dict: Dict[str, torch.Tensor]) -> dict:
    """Wrap a state dict the way upstream saved it (``entry.file_layout``): under DeepSpeed's
    'module' (fine-tuned and distilled files), or under 'model' with the training epoch and
    its argparse ``args`` (pre-training; V2's with its decoder masking)."""
    key, _ = entry.file_layout
    if key == "module":
        return {"module": state_dict, "buffer_names": [], "optimizer": None,
                "lr_scheduler": None, "global_steps": 0, "dp_world_size": 1,
                "mp_world_size": 1, "epoch": "best"}
    size = _FACTORY_SIZES.get(entry.size, entry.size.lower())
    args = argparse.Namespace(
        model=f"pretrain_videomae_{size}_patch{entry.patch_size}_224",
        decoder_depth=entry.dims["decoder_depth"], mask_type="tube",
        mask_ratio=entry.mask_ratio, num_frames=entry.num_frames, input_size=entry.img_size,
        epochs=entry.pt_epochs + 1)
    if entry.decoder_mask_ratio:
        args.decoder_mask_type = "run_cell"
        args.decoder_mask_ratio = entry.decoder_mask_ratio
    return {key: state_dict, "epoch": entry.pt_epochs - 1, "args": args}


def synthetic_path(entry: Entry, seed: int, folder: str) -> str:
    """Where ``--synthetic`` writes ``entry``'s checkpoint of ``seed`` in ``folder``: the same
    name for the same entry and seed, so a benchmark or test can write the very bytes a
    ``--synthetic`` conversion converts."""
    return os.path.join(folder, f"{entry.name}.synthetic-seed{seed}.pth")


def write_synthetic_checkpoint(entry: Entry, path: str, seed: int = 0,
                               dtype: Optional[torch.dtype] = None) -> str:
    """Write a seeded random checkpoint for ``entry`` in upstream's file layout (container and
    dtype: ``entry.file_layout``, V2's fine-tuned and distilled files fp16; ``dtype``
    overrides); returns path."""
    import torch_reference

    config = entry.model_config()
    with torch.device("meta"):  # names and shapes only
        if entry.mode == "FT":
            model = torch_reference.VisionTransformer(**config)
        else:
            model = torch_reference.PretrainVisionTransformer(**config)
    dtype = dtype or getattr(torch, entry.file_layout[1])
    state = {k: v.to(dtype) for k, v in random_state_dict(model, seed).items()}
    tmp = f"{path}.partial"
    torch.save(upstream_container(entry, state), tmp)
    os.replace(tmp, path)
    return path
