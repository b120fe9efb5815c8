"""Upstream torch tensor names -> Keras variable names, as one declarative table.

Read ``RULES`` top to bottom: each rule maps one source pattern to one target pattern with one
transform kind. ``{p}`` stands for a model part prefix ('', 'encoder.' or 'decoder.') and ``{i}``
for a block index. Tensors that are not one-to-one are handled by small named pre-passes:
``drop_position_table`` on the checkpoint, once, before the torch and Keras sides split it
(neither model stores the table), and ``PRE_PASSES`` (``prepare_state_dict``) on the Keras
side's tensors.

``map_tensors`` is the mapping step of a conversion: ``plan_mapping`` checks coverage both
ways on shapes alone (every source tensor used exactly once, every target variable assigned
exactly once, every shape right) and lists every problem at once; ``apply_mapping`` then
streams the tensors into the variables one at a time, freeing each as it is consumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import MappingError


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


# --- pre-passes for tensors that are not one-to-one ----------------------------------------

def fuse_qkv_bias(state_dict: Dict[str, torch.Tensor]) -> None:
    """``attn.q_bias`` + zeros + ``attn.v_bias`` -> ``attn.qkv.bias`` (upstream k has no bias)."""
    for name in [n for n in state_dict if n.endswith("attn.q_bias")]:
        prefix = name[: -len("q_bias")]
        if prefix + "v_bias" not in state_dict:
            continue  # left in place: coverage reports the lone q_bias
        q_bias = state_dict.pop(name)
        v_bias = state_dict.pop(prefix + "v_bias")
        state_dict[prefix + "qkv.bias"] = torch.cat((q_bias, torch.zeros_like(v_bias), v_bias))


def drop_position_table(state_dict: Dict[str, torch.Tensor], notes: List[str]) -> None:
    """Upstream's sinusoid table is regenerated, never stored; a saved copy must match it.

    Runs once on the checkpoint's tensors, before the torch and Keras sides split them."""
    from torch_reference import sinusoid_table

    for name in [n for n in state_dict if n.split(".")[-1] == "pos_embed"]:
        saved = state_dict[name]
        if saved.dim() != 3:
            continue
        expected = sinusoid_table(saved.shape[1], saved.shape[2])
        if torch.allclose(saved.float(), expected, atol=1e-5):
            del state_dict[name]
            notes.append(f"{name}: stored sinusoid table matches the regenerated one; dropped")
        # otherwise left in place: it is a learned embedding and coverage reports it


def take_head_rows(entry, state_dict: Dict[str, torch.Tensor], notes: List[str]) -> None:
    """A mapped-head entry's pass (it declares ``head_from``): its head is the rows of the
    source dataset's head (``head.weight`` / ``head.bias``) through upstream's label map, as
    upstream's ``run_class_finetuning.py`` makes a K400 head of a K710 one. Runs once on the
    checkpoint's tensors, with ``drop_position_table``, before the torch and Keras sides split
    them; a no-op for every other entry."""
    if entry.head_from is None:
        return
    from tf_models.video.labels import head_rows

    rows = torch.tensor(head_rows(entry.head_from, entry.dataset), dtype=torch.long)
    for name in ("head.weight", "head.bias"):
        if name in state_dict:
            state_dict[name] = state_dict[name].index_select(0, rows)
    notes.append(f"head: {len(rows)} {entry.dataset} rows of the {entry.head_from} head "
                 f"through upstream's label map ({entry.head_map})")


PRE_PASSES = (fuse_qkv_bias,)


# --- the source check: names, shapes and dtypes against the entry, before any framework -----

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def tensor_specs(state_dict: Dict[str, torch.Tensor]) -> Dict[str, Tuple[Tuple[int, ...], str]]:
    """{name: (shape, dtype name)} of a state dict: all that the source check reads."""
    return {name: (tuple(t.shape), str(t.dtype).replace("torch.", ""))
            for name, t in state_dict.items()}


def check_source_tensors(found: Dict[str, Tuple[Tuple[int, ...], str]],
                         expected: Dict[str, Tuple[int, ...]], path: str = "checkpoint") -> None:
    """Every expected tensor present once with its shape and a floating-point dtype, nothing
    else; raises MappingError listing every ``- missing``, ``+ unexpected``, ``! shape`` and
    ``! dtype`` problem at once.

    ``expected`` is upstream's names and shapes for the entry (the torch reference built on
    the meta device), so this runs before the torch reference loads the tensors or a
    pre-pass combines them: a dropped, renamed, re-typed or zero-dimensional tensor ends here
    as one line, never in torch's ``load_state_dict`` or forward.
    """
    problems: List[str] = []
    for name, (shape, dtype) in found.items():
        if name not in expected:
            problems.append(f"+ unexpected {name} {tuple(shape)}")
            continue
        if tuple(shape) != tuple(expected[name]):
            problems.append(f"! shape {name}: expected {tuple(expected[name])}, "
                            f"found {tuple(shape)}")
        if dtype not in FLOAT_DTYPES:
            problems.append(f"! dtype {name}: expected floating point, found {dtype}")
    for name, shape in expected.items():
        if name not in found:
            problems.append(f"- missing {name} {tuple(shape)}")
    if problems:
        raise MappingError(path, problems)


# --- plan and apply ------------------------------------------------------------------------

@dataclass(frozen=True)
class Assignment:
    source: str
    target: str
    kind: str


def plan_mapping(source_shapes: Dict[str, Tuple[int, ...]],
                 target_shapes: Dict[str, Tuple[int, ...]],
                 path: str = "checkpoint") -> List[Assignment]:
    """Check coverage both ways on shapes and return the assignments, in target order.

    Raises MappingError listing every ``- missing``, ``+ unexpected`` and shape problem.
    """
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
    if problems:
        raise MappingError(path, problems)
    return [by_target[t] for t in target_shapes]


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


def apply_mapping(plan: Sequence[Assignment], state_dict: Dict[str, torch.Tensor],
                  variables: Dict[str, object], release: bool = True,
                  on_consumed: Optional[Callable[[torch.Tensor], None]] = None) -> None:
    """Assign each planned tensor to its variable; with ``release`` pop it from the dict.

    ``on_consumed(tensor)`` is called once a tensor's values are in its variable (the
    converter hands a memory-mapped checkpoint's pages back there).
    """
    for step in plan:
        tensor = state_dict.pop(step.source) if release else state_dict[step.source]
        array = TRANSFORMS[step.kind].apply(tensor.detach().numpy())
        variables[step.target].assign(np.ascontiguousarray(array, dtype=np.float32))
        del array
        if on_consumed is not None:
            on_consumed(tensor)
        del tensor


def prepare_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Run the pre-passes on a shallow copy (the caller's dict is left as it was)."""
    prepared = dict(state_dict)
    for step in PRE_PASSES:
        step(prepared)
    return prepared


def map_tensors(prepared: Dict[str, torch.Tensor], variables: Dict[str, object],
                path: str = "checkpoint",
                on_consumed: Optional[Callable[[torch.Tensor], None]] = None) -> None:
    """Plan (coverage and shapes both ways, every problem at once in one MappingError naming
    ``path``), then assign each tensor of ``prepared`` (popped as it goes) to its variable.
    Nothing is assigned unless everything maps."""
    plan = plan_mapping({k: tuple(v.shape) for k, v in prepared.items()},
                        {k: tuple(v.shape) for k, v in variables.items()}, path)
    apply_mapping(plan, prepared, variables, on_consumed=on_consumed)
