"""transformers-format VideoMAE names (hub ids ``MCG-NJU/videomae-*``) -> upstream names.

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

Names and shapes only (no tensor library): ``plan_renames`` says which source tensor becomes
which upstream tensor; the converter (``converter.hf_format``, torch) and ``from_preset``
(``tf_models.transformers_format``, numpy) each apply it to their own arrays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .presets import ALL_SIZES, Size

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
    # upstream's name so the position-table pre-pass checks and drops it
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
QKV_ORDER = ("query", "key", "value")


def is_hf_state_dict(state_dict: Dict[str, object]) -> bool:
    """True when the keys are transformers' VideoMAE names rather than upstream's."""
    return any(key.startswith(TELLTALE_PREFIXES) or any(p in key for p in TELLTALE_PARTS)
               for key in state_dict)


def config_problems(config: Dict[str, object]) -> List[str]:
    """What in a transformers ``config.json`` the renaming reads and cannot use: the
    ``architectures`` not a list of class names, a head count not an integer,
    ``use_mean_pooling`` not a boolean (each where present); empty when there is nothing."""
    problems = []
    architectures = config.get("architectures")
    if architectures is not None and not (isinstance(architectures, list) and
                                          all(isinstance(a, str) for a in architectures)):
        problems.append(f"architectures is {architectures!r}, expected a list of class names")
    for key in ("num_attention_heads", "decoder_num_attention_heads"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{key} is {value!r}, expected an integer")
    pooling = config.get("use_mean_pooling")
    if pooling is not None and not isinstance(pooling, bool):
        problems.append(f"use_mean_pooling is {pooling!r}, expected true or false")
    return problems


def is_pretraining_layout(state_dict: Dict[str, object], config: Optional[dict] = None) -> bool:
    """Whether a transformers state dict is the masked autoencoder (upstream prefix ``encoder.``).

    The decoder side decides; without one, the config's architecture; without that, a
    classifier means fine-tuned and a final ``videomae.layernorm`` (which only models without
    mean pooling have) means a pre-trained encoder.
    """
    state_dict = with_videomae_prefix(state_dict)
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


@dataclass
class RenamePlan:
    """Which transformers tensor becomes which upstream tensor (names only).

    ``copies``: upstream name -> source name; ``qkv``: fused ``attn.qkv.weight`` name ->
    its three source names in q, k, v order; ``key_biases``: source names that must be all
    zeros and are dropped; ``problems``: unknown tensors, duplicated spellings, incomplete or
    mismatched q/k/v triples, every one at once.
    """

    pretraining: bool
    copies: Dict[str, str] = field(default_factory=dict)
    qkv: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)
    key_biases: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    @property
    def layout(self) -> str:
        """The transformers class the tensors come from, in words."""
        return ("pre-training (VideoMAEForPreTraining)" if self.pretraining
                else "classification (VideoMAEForVideoClassification)")


def plan_renames(shapes: Dict[str, Tuple[int, ...]],
                 config: Optional[dict] = None) -> RenamePlan:
    """The renaming of a transformers state dict, from its names and shapes.

    ``config`` (a config.json as a dict) only settles the layout of a bare encoder. A bare
    ``VideoMAEModel`` (saved without the ``videomae.`` prefix) is read as if it had one.
    """
    bare = _bare_names(shapes)
    plan = RenamePlan(pretraining=is_pretraining_layout(shapes, config))
    enc = "encoder." if plan.pretraining else ""
    parts: Dict[str, Dict[str, str]] = {}
    unknown: List[str] = []
    for name in shapes:
        rule = _rename(f"videomae.{name}" if name in bare else name, enc)
        if rule is None:
            unknown.append(name)
            continue
        target, kind = rule
        if kind == "qkv":
            fused, part = target.split(":")
            parts.setdefault(fused, {})[part] = name
        elif kind == "key_bias":
            plan.key_biases.append(name)
        elif target in plan.copies:
            plan.problems.append(f"{name} and {plan.copies[target]} both give {target}")
        else:
            plan.copies[target] = name
    for fused, found in sorted(parts.items()):
        missing = [p for p in QKV_ORDER if p not in found]
        if missing:
            plan.problems.append(f"{fused} lacks its {'/'.join(missing)} third")
            continue
        triple = tuple(found[p] for p in QKV_ORDER)
        same = {tuple(shapes[n]) for n in triple}
        if len(same) != 1 or not all(same):
            plan.problems.append(f"{fused}: query/key/value shapes differ ({sorted(same)})")
            continue
        plan.qkv[fused] = triple
    if unknown:
        plan.problems.insert(0, f"{len(unknown)} tensor(s) with no upstream name: "
                                f"{', '.join(sorted(unknown)[:12])}"
                                f"{' ...' if len(unknown) > 12 else ''}")
    return plan


def upstream_size_for(width: int, heads: int, decoder: bool = False) -> Optional[Size]:
    """The upstream size of this (decoder) width whose head count differs from ``heads``, or
    None. transformers' converter gave ViT-S 16 heads; upstream ViT-S has 6, and the upstream
    count is what a converted model uses."""
    width_key, heads_key = (("decoder_embed_dim", "decoder_num_heads") if decoder
                            else ("embed_dim", "num_heads"))
    for size in ALL_SIZES.values():
        dims = size.dims
        if dims[width_key] == width and dims[heads_key] != heads:
            return size
    return None


def _bare_names(names) -> set:
    """A bare ``VideoMAEModel`` saves without the ``videomae.`` prefix: the names to prefix."""
    if any(key.startswith("videomae.") for key in names):
        return set()
    if not any(key.startswith("embeddings.patch_embeddings.") for key in names):
        return set()
    return {key for key in names if key.startswith(("embeddings.", "encoder.layer.",
                                                    "layernorm."))}


def with_videomae_prefix(state_dict: Dict[str, object]) -> Dict[str, object]:
    """``state_dict`` with a bare ``VideoMAEModel``'s keys given the ``videomae.`` prefix."""
    bare = _bare_names(state_dict)
    if not bare:
        return state_dict
    return {(f"videomae.{key}" if key in bare else key): value
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
