"""transformers-format VideoMAE state dicts (hub ids ``MCG-NJU/videomae-*``) -> upstream names.

transformers renamed every upstream tensor and split the fused ``qkv.weight`` into
``query``/``key``/``value``. Reading its files back means one rename per tensor, read from the
two tables below top to bottom, plus one non one-to-one step: the three projection weights
of a layer are concatenated back into ``attn.qkv.weight`` (q, k, v order).

The q/v biases come in two spellings: ``attention.attention.q_bias``/``v_bias`` (transformers
v4, how every published copy is saved) and ``attention.attention.query.bias``/``value.bias``
(later versions use plain Linear biases). A ``key.bias`` may then be present: upstream's key
bias is fixed at zero, so it must be all zeros and is dropped.

Names on each side (verified against transformers' ``modeling_videomae.py`` and its
``convert_videomae_to_pytorch.py``)::

    videomae.embeddings.patch_embeddings.projection   {enc}patch_embed.proj
    videomae.encoder.layer.N.<layer>                   {enc}blocks.N.<layer>
    videomae.layernorm                                 {enc}norm   (pre-training only)
    fc_norm / classifier                               fc_norm / head
    decoder.decoder_layers.N.<layer>                   decoder.blocks.N.<layer>
    decoder.norm / decoder.head                        decoder.norm / decoder.head
    encoder_to_decoder / mask_token                    the same

where ``{enc}`` is ``encoder.`` for a pre-training (masked autoencoder) checkpoint and empty
for a fine-tuned classifier.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

import torch

from .errors import CheckpointError
from .inspect_checkpoint import infer_widths
from .zoo import ALL_SIZES

# Any of these at the start of a key marks the transformers layout (timm-style telltale test).
TELLTALE_PREFIXES = ("videomae.", "embeddings.patch_embeddings.", "decoder.decoder_layers.")
TELLTALE_PARTS = (".attention.attention.", ".layernorm_before.")

# Kinds of rule: 'copy' renames; 'qkv' is one third of attn.qkv.weight (concatenated later);
# 'key_bias' must be all zeros and is dropped (upstream's key has no bias).
# Inside one transformer layer: transformers name -> upstream name, relative to the layer.
LAYER_RULES: Tuple[Tuple[str, str, str], ...] = (
    (r"layernorm_before\.(weight|bias)",          "norm1.{0}",        "copy"),
    (r"attention\.attention\.(query|key|value)\.weight", "attn.qkv.weight:{0}", "qkv"),
    (r"attention\.attention\.q_bias",             "attn.q_bias",      "copy"),  # v4 spelling
    (r"attention\.attention\.v_bias",             "attn.v_bias",      "copy"),
    (r"attention\.attention\.query\.bias",        "attn.q_bias",      "copy"),  # later spelling
    (r"attention\.attention\.value\.bias",        "attn.v_bias",      "copy"),
    (r"attention\.attention\.key\.bias",          "",                 "key_bias"),
    (r"attention\.output\.dense\.(weight|bias)",  "attn.proj.{0}",    "copy"),
    (r"layernorm_after\.(weight|bias)",           "norm2.{0}",        "copy"),
    (r"intermediate\.dense\.(weight|bias)",       "mlp.fc1.{0}",      "copy"),
    (r"output\.dense\.(weight|bias)",             "mlp.fc2.{0}",      "copy"),
)

# Whole keys: transformers name -> upstream name; '{layer}' is resolved with LAYER_RULES.
TOP_RULES: Tuple[Tuple[str, str], ...] = (
    (r"videomae\.embeddings\.patch_embeddings\.projection\.(weight|bias)",
     "{enc}patch_embed.proj.{0}"),
    # the sinusoid tables are plain attributes, normally never saved; if one was, it keeps
    # upstream's name so the mapping's position-table pre-pass checks and drops it
    (r"videomae\.embeddings\.position_embeddings",  "{enc}pos_embed"),
    (r"videomae\.encoder\.layer\.(\d+)\.(.+)",      "{enc}blocks.{0}.{layer}"),
    (r"videomae\.layernorm\.(weight|bias)",          "{enc}norm.{0}"),
    (r"fc_norm\.(weight|bias)",                      "fc_norm.{0}"),
    (r"classifier\.(weight|bias)",                   "head.{0}"),
    (r"decoder\.decoder_layers\.(\d+)\.(.+)",        "decoder.blocks.{0}.{layer}"),
    (r"decoder\.norm\.(weight|bias)",                "decoder.norm.{0}"),
    (r"decoder\.head\.(weight|bias)",                "decoder.head.{0}"),
    (r"encoder_to_decoder\.weight",                  "encoder_to_decoder.weight"),
    (r"mask_token",                                  "mask_token"),
    (r"position_embeddings",                         "pos_embed"),
)

_LAYER = tuple((re.compile(src + r"\Z"), dst, kind) for src, dst, kind in LAYER_RULES)
_TOP = tuple((re.compile(src + r"\Z"), dst) for src, dst in TOP_RULES)
_QKV_ORDER = ("query", "key", "value")


def is_hf_state_dict(state_dict: Dict[str, object]) -> bool:
    """True when the keys are transformers' VideoMAE names rather than upstream's."""
    return any(key.startswith(TELLTALE_PREFIXES) or any(p in key for p in TELLTALE_PARTS)
               for key in state_dict)


def is_pretraining_layout(state_dict: Dict[str, object], config: Optional[dict] = None) -> bool:
    """Whether a transformers state dict is the masked autoencoder (upstream prefix ``encoder.``).

    The decoder side decides; without one, the config's architecture; without that, a
    classifier means fine-tuned and a final ``videomae.layernorm`` (which only models without
    mean pooling have) means a pre-trained encoder.
    """
    if any(key.startswith(("decoder.", "encoder_to_decoder.")) or key == "mask_token"
           for key in state_dict):
        return True
    architectures = (config or {}).get("architectures") or []
    if "VideoMAEForPreTraining" in architectures:
        return True
    if any(key.startswith(("classifier.", "fc_norm.")) for key in state_dict):
        return False
    if config is not None and config.get("use_mean_pooling") is False:
        return True
    return any(key.startswith("videomae.layernorm.") for key in state_dict)


def hf_to_upstream(state_dict: Dict[str, torch.Tensor], config: Optional[dict] = None,
                   path: str = "checkpoint") -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Rename a transformers-format VideoMAE state dict to upstream names.

    Returns (upstream state dict, notes). ``config`` (a config.json as a dict) is optional: it
    only settles the layout of a bare encoder and lets head counts be compared with upstream's.
    Raises CheckpointError (one line, naming ``path``) for unknown tensors, an incomplete
    q/k/v triple, a duplicated bias spelling or a non-zero key bias.
    """
    state_dict = _with_videomae_prefix(state_dict)
    pretraining = is_pretraining_layout(state_dict, config)
    enc = "encoder." if pretraining else ""
    renamed: Dict[str, torch.Tensor] = {}
    sources: Dict[str, str] = {}
    qkv_parts: Dict[str, Dict[str, torch.Tensor]] = {}
    unknown: List[str] = []
    problems: List[str] = []
    zero_key_biases = 0
    for name, tensor in state_dict.items():
        rule = _rename(name, enc)
        if rule is None:
            unknown.append(name)
            continue
        target, kind = rule
        if kind == "qkv":
            fused, part = target.split(":")
            qkv_parts.setdefault(fused, {})[part] = tensor
            continue
        if kind == "key_bias":
            # (describe's meta tensors hold no values to check)
            if not tensor.is_meta and tensor.float().abs().max().item() != 0.0:
                problems.append(f"{name} is not zero (max |x| "
                                f"{tensor.float().abs().max().item():.3g}; upstream VideoMAE "
                                f"has no key bias)")
            zero_key_biases += 1
            continue
        if target in renamed:
            problems.append(f"{name} and {sources[target]} both give {target}")
            continue
        renamed[target] = tensor
        sources[target] = name
    for fused, parts in sorted(qkv_parts.items()):
        missing = [p for p in _QKV_ORDER if p not in parts]
        if missing:
            problems.append(f"{fused} lacks its {'/'.join(missing)} third")
            continue
        shapes = {tuple(parts[p].shape) for p in _QKV_ORDER}
        if len(shapes) != 1 or not all(shapes):
            problems.append(f"{fused}: query/key/value shapes differ ({sorted(shapes)})")
            continue
        renamed[fused] = torch.cat([parts[p] for p in _QKV_ORDER], dim=0)
    if unknown:
        problems.insert(0, f"{len(unknown)} tensor(s) with no upstream name: "
                           f"{', '.join(sorted(unknown)[:12])}"
                           f"{' ...' if len(unknown) > 12 else ''}")
    if problems:
        raise CheckpointError(f"{path}: transformers-format checkpoint: {'; '.join(problems)}")
    layout = "pre-training (VideoMAEForPreTraining)" if pretraining else \
        "classification (VideoMAEForVideoClassification)"
    notes = [f"transformers-format {layout} checkpoint: {len(state_dict)} tensors renamed to "
             f"upstream names, {len(qkv_parts)} query/key/value triples fused into qkv"]
    if zero_key_biases:
        notes.append(f"{zero_key_biases} all-zero key bias(es) dropped: upstream's key bias is "
                     f"fixed at zero")
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
    checks = (("num_attention_heads", "embed_dim", "num_heads", "", widths[0]),
              ("decoder_num_attention_heads", "decoder_embed_dim", "decoder_num_heads",
               " decoder", widths[1]))
    for config_key, width_key, heads_key, part, width in checks:
        said = config.get(config_key)
        if said is None or width is None:
            continue
        for size in ALL_SIZES.values():
            dims = size.dims
            if dims[width_key] == width and dims[heads_key] != said:
                notes.append(f"config says {said}{part} heads; upstream {size.title}"
                             f"{part} has {dims[heads_key]}: using {dims[heads_key]}")
                break
    return notes


def _with_videomae_prefix(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A bare ``VideoMAEModel`` saves without the ``videomae.`` prefix; put it back."""
    if any(key.startswith("videomae.") for key in state_dict):
        return state_dict
    if not any(key.startswith("embeddings.patch_embeddings.") for key in state_dict):
        return state_dict
    bare = ("embeddings.", "encoder.layer.", "layernorm.")
    return {(f"videomae.{key}" if key.startswith(bare) else key): value
            for key, value in state_dict.items()}


def _rename(name: str, enc: str) -> Optional[Tuple[str, str]]:
    """(upstream name, kind) for one transformers name, or None."""
    for regex, template in _TOP:
        found = regex.match(name)
        if not found:
            continue
        groups = found.groups()
        if "{layer}" not in template:
            return template.format(*groups, enc=enc), "copy"
        index, inner = groups
        layer = _rename_layer(inner)
        if layer is None:
            return None
        target, kind = layer
        return template.format(index, enc=enc, layer=target), kind
    return None


def _rename_layer(inner: str) -> Optional[Tuple[str, str]]:
    for regex, template, kind in _LAYER:
        found = regex.match(inner)
        if found:
            return template.format(*found.groups()), kind
    return None
