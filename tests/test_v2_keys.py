"""torch_reference builds VideoMAE V2's models with upstream's exact tensor names and shapes,
checked against a key list generated from upstream's own factories (tests/data, with its
source and commit)."""

import json
import os

import pytest
import torch

import torch_reference

KEYS_FILE = os.path.join(os.path.dirname(__file__), "data", "videomae_v2_upstream_keys.json")


def _upstream_models():
    with open(KEYS_FILE) as handle:
        return json.load(handle)["models"]


def _reference_factory(upstream_factory: str):
    """torch_reference's registered name for an upstream V2 factory (``videomae_`` in front,
    ``pretrain_videomae_`` becomes ``videomae_pretrain_``)."""
    name = upstream_factory.replace("pretrain_videomae_", "pretrain_")
    return getattr(torch_reference, f"videomae_{name}")


def test_key_list_names_its_upstream_source_and_commit():
    with open(KEYS_FILE) as handle:
        data = json.load(handle)
    assert "OpenGVLab/VideoMAEv2" in data["_source"]
    assert len(data["_upstream_commit"]) == 40
    assert data["_upstream_commit"] in data["_source"]
    labels = [m["label"] for m in data["models"]]
    assert any("giant" in label for label in labels) and len(labels) == len(set(labels))


@pytest.mark.parametrize("model", _upstream_models(), ids=lambda m: m["label"])
def test_reference_state_dict_equals_upstreams_factory(model):
    with torch.device("meta"):
        built = _reference_factory(model["factory"])(**model["kwargs"])
    found = [[name, list(t.shape)] for name, t in built.state_dict().items()]
    expected = model["tensors"]
    missing = sorted({n for n, _ in expected} - {n for n, _ in found})
    unexpected = sorted({n for n, _ in found} - {n for n, _ in expected})
    assert not missing and not unexpected, f"- missing {missing[:5]}, + unexpected {unexpected[:5]}"
    assert found == expected  # shapes, and upstream's order
    assert sum(int(t.numel()) for t in built.state_dict().values()) == model["parameters"]


def test_vit_g_is_about_a_billion_parameters_with_a_6144_wide_mlp():
    by_label = {m["label"]: m for m in _upstream_models()}
    giant = by_label["vit_giant_patch14_224 (K400 head)"]
    assert 1.0e9 < giant["parameters"] < 1.02e9
    shapes = dict((name, shape) for name, shape in giant["tensors"])
    assert shapes["blocks.39.mlp.fc1.weight"] == [6144, 1408]
    assert shapes["patch_embed.proj.weight"] == [1408, 3, 2, 14, 14]
    pretrain = by_label["pretrain_videomae_giant_patch14_224 (decoder_depth=4)"]
    shapes = dict((name, shape) for name, shape in pretrain["tensors"])
    assert shapes["decoder.head.weight"] == [1176, 512]  # 3 * 2 * 14 * 14 pixels per token
    assert shapes["decoder.blocks.0.mlp.fc1.weight"] == [int(512 * 48 / 11), 512]
