"""The mapping table: one-to-one coverage both ways, the pre-passes, and all-at-once errors."""

import torch
import torch_reference
from converter.synthetic import random_state_dict
from converter.errors import MappingError
from converter.mapping import (PRE_PASSES, RULES, TRANSFORMS, drop_position_table, fuse_qkv_bias,
                               map_tensors, plan_mapping, prepare_state_dict, target_name)
from converter.kinds import build_tf_model, build_torch_model
from converter.zoo import get_entry

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import SMALL_FT, TINY_FT, TINY_PT  # noqa: E402


def _shapes(tensors):
    return {name: tuple(value.shape) for name, value in tensors.items()}


def _random_model_state(entry, seed=0):
    model = build_torch_model(entry)
    state = random_state_dict(model, seed)
    model.load_state_dict(state, strict=True)  # the random dict is a complete upstream dict
    return state


@pytest.fixture(scope="module")
def tiny_tf_model():
    return build_tf_model(get_entry(TINY_FT))


# --- the table -------------------------------------------------------------------------------

@pytest.mark.parametrize("source,expected", [
    ("patch_embed.proj.weight", ("patch_embed.proj.kernel", "conv3d")),
    ("patch_embed.proj.bias", ("patch_embed.proj.bias", "vector")),
    ("blocks.11.attn.qkv.weight", ("blocks.11.attn.qkv.kernel", "linear")),
    ("blocks.0.attn.qkv.bias", ("blocks.0.attn.qkv.bias", "vector")),
    ("blocks.3.norm1.weight", ("blocks.3.norm1.gamma", "vector")),
    ("blocks.3.norm2.bias", ("blocks.3.norm2.beta", "vector")),
    ("blocks.7.mlp.fc2.weight", ("blocks.7.mlp.fc2.kernel", "linear")),
    ("fc_norm.weight", ("fc_norm.gamma", "vector")),
    ("head.weight", ("head.kernel", "linear")),
    ("encoder.blocks.2.attn.proj.weight", ("encoder.blocks.2.attn.proj.kernel", "linear")),
    ("decoder.head.bias", ("decoder.head.bias", "vector")),
    ("encoder_to_decoder.weight", ("encoder_to_decoder.kernel", "linear")),
    ("mask_token", ("mask_token", "vector")),
])
def test_target_name_follows_the_table(source, expected):
    assert target_name(source) == expected


@pytest.mark.parametrize("source", [
    "blocks.0.attn.q_bias",              # only after the fuse pre-pass
    "pos_embed",                         # regenerated, never mapped
    "blocks.x.norm1.weight",             # block index must be a number
    "backbone.blocks.0.norm1.weight",    # prefixes are stripped by the loader, not mapped
    "blocks.0.norm1.weight.extra",       # anchored at the end
    "videomae.encoder.layer.0.attention.attention.query.weight",
])
def test_target_name_rejects_names_outside_the_table(source):
    assert target_name(source) is None


def test_every_rule_kind_is_a_known_transform():
    assert {kind for _, _, kind in RULES} <= set(TRANSFORMS)
    targets = [dst for _, dst, _ in RULES]
    assert len(targets) == len(set(targets)), "two rules write the same target"


# --- coverage on real state dicts ------------------------------------------------------------

@pytest.mark.parametrize("name", [TINY_FT, SMALL_FT])
def test_mapping_is_one_to_one_for_fine_tuned_state_dict(name):
    entry = get_entry(name)
    state = build_torch_model(entry).state_dict()
    variables = build_tf_model(entry).named_variables()
    prepared = prepare_state_dict(state)
    plan = plan_mapping(_shapes(prepared), _shapes(variables), name)

    sources = [step.source for step in plan]
    targets = [step.target for step in plan]
    assert len(sources) == len(set(sources)), "a source tensor is used twice"
    assert len(targets) == len(set(targets)), "a target variable is assigned twice"
    assert set(sources) == set(prepared), "a source tensor is left unused"
    assert set(targets) == set(variables), "a TF variable is left unassigned"
    # every upstream key is either mapped directly or consumed by the q/v bias pre-pass
    depth = entry.dims["depth"]
    fused = {f"blocks.{i}.attn.{b}" for i in range(depth) for b in ("q_bias", "v_bias")}
    assert set(state) == (set(sources) - {f"blocks.{i}.attn.qkv.bias" for i in range(depth)}
                          ) | fused


def test_mapping_is_one_to_one_for_pretrained_state_dict():
    entry = get_entry(TINY_PT)
    state = build_torch_model(entry).state_dict()
    variables = build_tf_model(entry).named_variables()
    prepared = prepare_state_dict(state)
    plan = plan_mapping(_shapes(prepared), _shapes(variables), TINY_PT)
    assert {s.source for s in plan} == set(prepared)
    assert {s.target for s in plan} == set(variables)
    assert len(plan) == len(variables)


def test_convert_assigns_every_variable_its_transformed_tensor(tiny_tf_model):
    entry = get_entry(TINY_FT)
    state = _random_model_state(entry, seed=3)
    variables = tiny_tf_model.named_variables()
    map_tensors(prepare_state_dict(state), variables, "tiny")
    prepared = prepare_state_dict(state)
    for source, tensor in prepared.items():
        target, kind = target_name(source)
        value = keras.ops.convert_to_numpy(variables[target])
        np.testing.assert_array_equal(value, TRANSFORMS[kind].apply(tensor.numpy()),
                                      err_msg=f"{source} -> {target}")


def test_convert_leaves_the_callers_state_dict_intact(tiny_tf_model):
    state = _random_model_state(get_entry(TINY_FT), seed=4)
    keys = list(state)
    map_tensors(prepare_state_dict(state), tiny_tf_model.named_variables(), "tiny")
    assert list(state) == keys


# --- the q/v bias pre-pass -------------------------------------------------------------------

def test_q_and_v_bias_fuse_into_qkv_bias_with_zero_key_third(tiny_tf_model):
    entry = get_entry(TINY_FT)
    dim = entry.dims["embed_dim"]
    state = _random_model_state(entry, seed=5)
    prepared = prepare_state_dict(state)
    for i in range(entry.dims["depth"]):
        assert f"blocks.{i}.attn.q_bias" not in prepared
        assert f"blocks.{i}.attn.v_bias" not in prepared
        fused = prepared[f"blocks.{i}.attn.qkv.bias"]
        assert fused.shape == (3 * dim,)
        assert torch.equal(fused[:dim], state[f"blocks.{i}.attn.q_bias"])
        assert torch.count_nonzero(fused[dim:2 * dim]) == 0
        assert torch.equal(fused[2 * dim:], state[f"blocks.{i}.attn.v_bias"])
    # and the TF variable holds exactly that
    variables = tiny_tf_model.named_variables()
    map_tensors(prepare_state_dict(state), variables, "tiny")
    bias = keras.ops.convert_to_numpy(variables["blocks.1.attn.qkv.bias"])
    np.testing.assert_array_equal(bias[:dim], state["blocks.1.attn.q_bias"].numpy())
    np.testing.assert_array_equal(bias[dim:2 * dim], np.zeros(dim, np.float32))
    np.testing.assert_array_equal(bias[2 * dim:], state["blocks.1.attn.v_bias"].numpy())


def test_fuse_qkv_bias_leaves_a_lone_q_bias_for_coverage_to_report(tiny_tf_model):
    state = _random_model_state(get_entry(TINY_FT))
    del state["blocks.0.attn.v_bias"]
    fused = dict(state)
    fuse_qkv_bias(fused)
    assert "blocks.0.attn.q_bias" in fused and "blocks.0.attn.qkv.bias" not in fused
    with pytest.raises(MappingError) as caught:
        map_tensors(prepare_state_dict(state), tiny_tf_model.named_variables(), "lone.pth")
    message = str(caught.value)
    assert "+ unexpected blocks.0.attn.q_bias" in message
    assert "- missing blocks.0.attn.q_bias/v_bias" in message


# --- all problems at once --------------------------------------------------------------------

def test_mapping_rejects_missing_and_unexpected_keys_all_at_once(tiny_tf_model):
    state = _random_model_state(get_entry(TINY_FT))
    del state["blocks.0.mlp.fc1.weight"]
    del state["head.bias"]
    state["blocks.0.attn.extra_scale"] = torch.ones(3)
    with pytest.raises(MappingError) as caught:
        map_tensors(prepare_state_dict(state), tiny_tf_model.named_variables(), "broken.pth")
    error = caught.value
    message = str(error)
    assert len(error.problems) == 3, error.problems
    assert "- missing blocks.0.mlp.fc1.weight" in message
    assert "- missing head.bias" in message
    assert "+ unexpected blocks.0.attn.extra_scale (3,)" in message
    assert message.startswith("broken.pth: 3 tensor(s) do not map")
    assert "\n" not in message
    assert error.exit_code == 2


def test_mapping_rejects_wrong_shape_alongside_other_problems(tiny_tf_model):
    state = _random_model_state(get_entry(TINY_FT))
    state["head.weight"] = torch.zeros(174, 48)        # an SSv2 head on a K400 model
    state["blocks.1.mlp.fc2.weight"] = torch.zeros(192, 48)  # transposed
    del state["fc_norm.bias"]
    with pytest.raises(MappingError) as caught:
        map_tensors(prepare_state_dict(state), tiny_tf_model.named_variables(), "shapes.pth")
    problems = caught.value.problems
    message = str(caught.value)
    assert len(problems) == 3, problems
    assert "! shape head.weight: expected (400, 48), found (174, 48)" in message
    assert "! shape blocks.1.mlp.fc2.weight: expected (48, 192), found (192, 48)" in message
    assert "- missing fc_norm.bias" in message
    # a shape problem is not also reported as a missing target
    assert not any(p.startswith("- missing head") for p in problems)


def test_mapping_failure_assigns_nothing(tiny_tf_model):
    variables = tiny_tf_model.named_variables()
    before = {k: keras.ops.convert_to_numpy(v).copy() for k, v in variables.items()}
    state = _random_model_state(get_entry(TINY_FT), seed=9)
    del state["head.weight"]
    with pytest.raises(MappingError):
        map_tensors(prepare_state_dict(state), variables, "partial.pth")
    for name, value in variables.items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(value), before[name],
                                      err_msg=f"{name} was assigned although mapping failed")


def test_mapping_rejects_a_fine_tuned_checkpoint_for_the_wrong_size():
    state = _random_model_state(get_entry(TINY_FT))
    small_variables = _shapes(build_tf_model(get_entry(SMALL_FT)).named_variables())
    prepared = prepare_state_dict(state)
    with pytest.raises(MappingError) as caught:
        plan_mapping(_shapes(prepared), small_variables, "tiny-as-small.pth")
    message = str(caught.value)
    assert "- missing blocks.11.attn.q_bias/v_bias" in message
    assert "! shape patch_embed.proj.weight" in message


# --- the stored position table ---------------------------------------------------------------

def test_stored_sinusoid_pos_embed_is_dropped(tiny_tf_model):
    entry = get_entry(TINY_FT)
    state = _random_model_state(entry)
    state["pos_embed"] = torch_reference.sinusoid_table(entry.num_patches, entry.dims["embed_dim"])
    notes = []
    drop_position_table(state, notes)  # on the checkpoint, as api.convert does, once
    assert "pos_embed" not in state
    assert any("pos_embed" in note and "dropped" in note for note in notes)
    map_tensors(prepare_state_dict(state), tiny_tf_model.named_variables(), "with_table.pth")


def test_stored_pos_embed_that_differs_is_reported(tiny_tf_model):
    entry = get_entry(TINY_FT)
    state = _random_model_state(entry)
    table = torch_reference.sinusoid_table(entry.num_patches, entry.dims["embed_dim"])
    state["pos_embed"] = table + 1e-3  # a learned embedding, not upstream's fixed table
    notes = []
    drop_position_table(state, notes)
    assert "pos_embed" in state and notes == []
    with pytest.raises(MappingError) as caught:
        map_tensors(prepare_state_dict(state), tiny_tf_model.named_variables(), "learned.pth")
    assert caught.value.problems == [f"+ unexpected pos_embed (1, {entry.num_patches}, 48)"]


def test_the_position_table_pre_pass_runs_once_on_the_checkpoint_not_on_the_mapping_side():
    # api.convert drops a stored table before the torch and Keras sides split the checkpoint;
    # the Keras side's pre-passes must not look for it again
    assert drop_position_table not in PRE_PASSES
    assert fuse_qkv_bias in PRE_PASSES
