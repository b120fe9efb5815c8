"""Upstream tensor names -> Keras variable names, as one declarative table (torch-free).

Read ``RULES`` top to bottom: each rule maps one source pattern to one target pattern with one
transform kind. ``{p}`` stands for a model part prefix ('', 'encoder.' or 'decoder.') and ``{i}``
for a block index. ``plan_assignments`` checks coverage both ways on shapes alone (every source
tensor used exactly once, every target variable assigned exactly once, every shape right) and
lists every problem at once.

Both loaders read this one table: the converter (``converter.mapping``, torch tensors from an
upstream checkpoint) and ``from_preset`` on a transformers-format folder
(``tf_models.transformers_format``, numpy arrays from safetensors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np


# --- transforms: one per tensor kind, each with its shape change --------------------------

def _vector(array: np.ndarray) -> np.ndarray:
    # vector: (n,) -> (n,)   biases, LayerNorm gamma/beta; also mask_token (1, 1, D) as is
    return array


def _linear(array: np.ndarray) -> np.ndarray:
    # linear: (out, in) -> (in, out)   torch Linear.weight to Keras Dense.kernel
    return array.T


def _conv3d(array: np.ndarray) -> np.ndarray:
    # conv3d: (O, I, T, H, W) -> (T, H, W, I, O)   torch Conv3d.weight to Keras Conv3D.kernel
    return array.transpose(2, 3, 4, 1, 0)


@dataclass(frozen=True)
class Transform:
    apply: Callable[[np.ndarray], np.ndarray]
    shape: Callable[[Tuple[int, ...]], Tuple[int, ...]]


TRANSFORMS: Dict[str, Transform] = {
    "vector": Transform(_vector, lambda s: tuple(s)),
    "linear": Transform(_linear, lambda s: (s[1], s[0]) if len(s) == 2 else ("not 2-D",)),
    "conv3d": Transform(_conv3d,
                        lambda s: (s[2], s[3], s[4], s[1], s[0]) if len(s) == 5 else ("not 5-D",)),
}


# --- the table -----------------------------------------------------------------------------

RULES: Tuple[Tuple[str, str, str], ...] = (
    # source (upstream torch)                target (tf_models)                     kind
    ("{p}patch_embed.proj.weight",           "{p}patch_embed.proj.kernel",          "conv3d"),
    ("{p}patch_embed.proj.bias",             "{p}patch_embed.proj.bias",            "vector"),
    ("{p}blocks.{i}.norm1.weight",           "{p}blocks.{i}.norm1.gamma",           "vector"),
    ("{p}blocks.{i}.norm1.bias",             "{p}blocks.{i}.norm1.beta",            "vector"),
    ("{p}blocks.{i}.attn.qkv.weight",        "{p}blocks.{i}.attn.qkv.kernel",       "linear"),
    ("{p}blocks.{i}.attn.qkv.bias",          "{p}blocks.{i}.attn.qkv.bias",         "vector"),
    ("{p}blocks.{i}.attn.proj.weight",       "{p}blocks.{i}.attn.proj.kernel",      "linear"),
    ("{p}blocks.{i}.attn.proj.bias",         "{p}blocks.{i}.attn.proj.bias",        "vector"),
    ("{p}blocks.{i}.norm2.weight",           "{p}blocks.{i}.norm2.gamma",           "vector"),
    ("{p}blocks.{i}.norm2.bias",             "{p}blocks.{i}.norm2.beta",            "vector"),
    ("{p}blocks.{i}.mlp.fc1.weight",         "{p}blocks.{i}.mlp.fc1.kernel",        "linear"),
    ("{p}blocks.{i}.mlp.fc1.bias",           "{p}blocks.{i}.mlp.fc1.bias",          "vector"),
    ("{p}blocks.{i}.mlp.fc2.weight",         "{p}blocks.{i}.mlp.fc2.kernel",        "linear"),
    ("{p}blocks.{i}.mlp.fc2.bias",           "{p}blocks.{i}.mlp.fc2.bias",          "vector"),
    # VideoMAE V2 options: layer scale (init_values > 0), cosine attention's per-head log
    # logit scale (heads, 1, 1), kept in its own shape
    ("{p}blocks.{i}.gamma_1",                "{p}blocks.{i}.gamma_1",               "vector"),
    ("{p}blocks.{i}.gamma_2",                "{p}blocks.{i}.gamma_2",               "vector"),
    ("{p}blocks.{i}.attn.scale",             "{p}blocks.{i}.attn.scale",            "vector"),
    # a pre-trained encoder's norm, the decoder's, and a V2 classifier's without mean pooling
    ("{p}norm.weight",                       "{p}norm.gamma",                       "vector"),
    ("{p}norm.bias",                         "{p}norm.beta",                        "vector"),
    ("{p}head.weight",                       "{p}head.kernel",                      "linear"),
    ("{p}head.bias",                         "{p}head.bias",                        "vector"),
    ("fc_norm.weight",                       "fc_norm.gamma",                       "vector"),
    ("fc_norm.bias",                         "fc_norm.beta",                        "vector"),
    ("encoder_to_decoder.weight",            "encoder_to_decoder.kernel",           "linear"),
    ("mask_token",                           "mask_token",                          "vector"),
)

_PLACEHOLDERS = {"p": r"(?P<p>(?:encoder\.|decoder\.)?)", "i": r"(?P<i>\d+)"}


def _compile(pattern: str) -> "re.Pattern[str]":
    parts = re.split(r"(\{p\}|\{i\})", pattern)
    regex = "".join(_PLACEHOLDERS[part[1]] if part in ("{p}", "{i}") else re.escape(part)
                    for part in parts)
    return re.compile(regex + r"\Z")


_COMPILED = tuple((_compile(src), dst, kind) for src, dst, kind in RULES)


def target_name(source: str) -> Optional[Tuple[str, str]]:
    """(target name, transform kind) of a source tensor name, or None when no rule matches."""
    for regex, dst, kind in _COMPILED:
        found = regex.match(source)
        if found:
            return dst.format(**found.groupdict()), kind
    return None


# --- the plan: coverage both ways, on shapes alone -----------------------------------------

@dataclass(frozen=True)
class Assignment:
    source: str
    target: str
    kind: str


def plan_assignments(source_shapes: Dict[str, Tuple[int, ...]],
                     target_shapes: Dict[str, Tuple[int, ...]]
                     ) -> Tuple[List[Assignment], List[str]]:
    """(assignments in target order, problems): every ``- missing``, ``+ unexpected``,
    ``+ duplicate`` and ``! shape`` problem at once; the assignments are complete only when
    there is no problem."""
    problems: List[str] = []
    by_target: Dict[str, Assignment] = {}
    for source, shape in source_shapes.items():
        match = target_name(source)
        if match is None or match[0] not in target_shapes:
            problems.append(f"+ unexpected {source} {tuple(shape)}")
            continue
        target, kind = match
        if target in by_target:
            problems.append(f"+ duplicate {source} (also {by_target[target].source}) -> {target}")
            continue
        expected = tuple(target_shapes[target])
        found = tuple(TRANSFORMS[kind].shape(tuple(shape)))
        if found != expected:
            problems.append(f"! shape {source}: expected {_torch_shape(kind, expected)}, "
                            f"found {tuple(shape)}")
            continue
        by_target[target] = Assignment(source, target, kind)
    for target, shape in target_shapes.items():
        if target not in by_target and not any(p.startswith("! shape") and
                                               _maps_to(p, target) for p in problems):
            problems.append(f"- missing {_source_hint(target)} (for {target} {tuple(shape)})")
    return [by_target[t] for t in target_shapes if t in by_target], problems


def _maps_to(problem: str, target: str) -> bool:
    source = problem.split(" ")[2].rstrip(":")
    match = target_name(source)
    return bool(match) and match[0] == target


def _torch_shape(kind: str, target_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The source shape that would produce ``target_shape`` under ``kind``."""
    if kind == "linear":
        return (target_shape[1], target_shape[0])
    if kind == "conv3d":
        t, h, w, i, o = target_shape
        return (o, i, t, h, w)
    return tuple(target_shape)


def _source_hint(target: str) -> str:
    """The upstream name that would fill ``target`` (inverse of the table), for messages."""
    for src, dst, _ in RULES:
        regex = _compile(dst)
        found = regex.match(target)
        if found:
            name = src.format(**found.groupdict())
            return name.replace("attn.qkv.bias", "attn.q_bias/v_bias")
    return target
