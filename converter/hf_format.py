"""transformers-format VideoMAE state dicts (hub ids ``MCG-NJU/videomae-*``) -> upstream names,
as torch tensors.

The names (the two rename tables, the layout test, the q/k/v triples) are
``tf_models.transformers_names``, torch-free, shared with ``from_preset`` on a
transformers-format folder; this module applies that plan to torch tensors: it concatenates
each q/k/v triple into ``attn.qkv.weight`` and checks that a ``key.bias`` is all zeros.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

# the tables and the layout test are tf_models' (re-exported for the converter's callers)
from tf_models.transformers_names import (LAYER_RULES, TELLTALE_PARTS,  # noqa: F401
                                          TELLTALE_PREFIXES, TOP_RULES, is_hf_state_dict,
                                          is_pretraining_layout, plan_renames,
                                          upstream_size_for)

from .errors import CheckpointError
from .inspect_checkpoint import infer_widths


def hf_to_upstream(state_dict: Dict[str, torch.Tensor], config: Optional[dict] = None,
                   path: str = "checkpoint") -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Rename a transformers-format VideoMAE state dict to upstream names.

    Returns (upstream state dict, notes). ``config`` (a config.json as a dict) is optional: it
    only settles the layout of a bare encoder and lets head counts be compared with upstream's.
    Raises CheckpointError (one line, naming ``path``) for unknown tensors, an incomplete
    q/k/v triple, a duplicated bias spelling or a non-zero key bias.
    """
    plan = plan_renames({k: tuple(v.shape) for k, v in state_dict.items()}, config)
    problems = list(plan.problems)
    for name in plan.key_biases:
        tensor = state_dict[name]
        # (describe's meta tensors hold no values to check)
        if not tensor.is_meta and tensor.float().abs().max().item() != 0.0:
            problems.append(f"{name} is not zero (max |x| "
                            f"{tensor.float().abs().max().item():.3g}; upstream VideoMAE "
                            f"has no key bias)")
    if problems:
        raise CheckpointError(f"{path}: transformers-format checkpoint: {'; '.join(problems)}")
    renamed: Dict[str, torch.Tensor] = {target: state_dict[source]
                                        for target, source in plan.copies.items()}
    for fused, triple in plan.qkv.items():
        renamed[fused] = torch.cat([state_dict[name] for name in triple], dim=0)
    notes = [f"transformers-format {plan.layout} checkpoint: {len(state_dict)} tensors renamed "
             f"to upstream names, {len(plan.qkv)} query/key/value triples fused into qkv"]
    if plan.key_biases:
        notes.append(f"{len(plan.key_biases)} all-zero key bias(es) dropped: upstream's key "
                     f"bias is fixed at zero")
    notes.extend(head_count_notes(renamed, config))
    return renamed, notes


def head_count_notes(state_dict: Dict[str, torch.Tensor], config: Optional[dict]) -> List[str]:
    """Notes where a config.json's head counts differ from upstream's for the weights' width.

    transformers' converter gave ViT-S 16 heads; upstream ViT-S has 6, and the upstream count
    is what the converted model uses.
    """
    if not config:
        return []
    notes = []
    widths = infer_widths(state_dict)
    checks = (("num_attention_heads", "", widths[0], False),
              ("decoder_num_attention_heads", " decoder", widths[1], True))
    for config_key, part, width, decoder in checks:
        said = config.get(config_key)
        if said is None or width is None:
            continue
        size = upstream_size_for(width, said, decoder)
        if size is not None:
            heads = size.dims["decoder_num_heads" if decoder else "num_heads"]
            notes.append(f"config says {said}{part} heads; upstream {size.title}{part} has "
                         f"{heads}: using {heads}")
    return notes
