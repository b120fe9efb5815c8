"""Upstream torch tensor names -> Keras variable names: the mapping step of a conversion.

The table (``RULES``, read top to bottom, one transform kind per rule) and its coverage plan
live in ``tf_models.weight_names``, torch-free, so ``from_preset`` on a transformers-format
folder reads the same table; they are re-exported here. Tensors that are not one-to-one are
handled by small named pre-passes: ``drop_position_table`` on the checkpoint, once, before
the torch and Keras sides split it (neither model stores the table), and ``PRE_PASSES``
(``prepare_state_dict``) on the Keras side's tensors.

``map_tensors`` is the mapping step of a conversion: ``plan_mapping`` checks coverage both
ways on shapes alone (every source tensor used exactly once, every target variable assigned
exactly once, every shape right) and lists every problem at once; ``apply_mapping`` then
streams the tensors into the variables one at a time, freeing each as it is consumed.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

# the table, its transforms and the coverage plan live in tf_models (one table, read by the
# converter and by from_preset on transformers-format folders)
from tf_models.weight_names import (RULES, TRANSFORMS, Assignment, Transform,  # noqa: F401
                                    plan_assignments, target_name)

from .errors import MappingError


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
        raise MappingError(path, problems, "a checkpoint of another model or an edited one: "
                                           "check --size, --mode and --dataset")


# --- plan and apply ------------------------------------------------------------------------

def plan_mapping(source_shapes: Dict[str, Tuple[int, ...]],
                 target_shapes: Dict[str, Tuple[int, ...]],
                 path: str = "checkpoint") -> List[Assignment]:
    """Check coverage both ways on shapes and return the assignments, in target order.

    Raises MappingError listing every ``- missing``, ``+ unexpected`` and shape problem.
    """
    plan, problems = plan_assignments(source_shapes, target_shapes)
    if problems:
        raise MappingError(path, problems)
    return plan


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
