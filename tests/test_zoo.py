"""The zoo: V1's 14 published entries with upstream's facts, and a reference that matches them
(VideoMAE V2's entries: tests/test_v2_zoo.py)."""

import re

import torch
import timm
import torch_reference
from converter.zoo import PARITY_ATOL, TEST_ZOO, ZOO, find_entry, get_entry

V1 = {name: entry for name, entry in ZOO.items() if entry.family == "v1"}

import pytest  # noqa: E402

NAME = re.compile(r"TFVideoMAE_(S|B|L|H)_(K400|SSv2|UCF)_16x224_(PT|FT)")
CLASSES = {"k400": 400, "ssv2": 174, "ucf101": 101}
MASK_RATIO = {"k400": 0.9, "ssv2": 0.9, "ucf101": 0.75}
TAG = {"k400": "K400", "ssv2": "SSv2", "ucf101": "UCF"}
# SPEC.md: fine-tuned parameter counts, 400 classes (millions)
PARAMS_M = {"S": 22.0, "B": 86.5, "L": 304.3, "H": 632.1}
DIMS = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "H": (1280, 32, 16)}
DECODER = {"S": (192, 3, 4), "B": (384, 6, 4), "L": (512, 8, 12), "H": (640, 8, 12)}


def test_zoo_has_the_fourteen_published_v1_entries():
    assert len(V1) == 14
    expected = {(s, d) for s in "SBLH" for d in ["k400"]} | {("S", "ssv2"), ("B", "ssv2"),
                                                              ("B", "ucf101")}
    assert {(e.size, e.dataset) for e in V1.values()} == expected
    for size, dataset in expected:
        for mode in ("PT", "FT"):
            entry = find_entry(size, mode, dataset)
            assert entry.name == f"TFVideoMAE_{size}_{TAG[dataset]}_16x224_{mode}"


@pytest.mark.parametrize("name", sorted(V1))
def test_entry_facts_follow_upstream(name):
    entry = ZOO[name]
    match = NAME.fullmatch(name)
    assert match, name
    size, tag, mode = match.groups()
    assert (entry.size, TAG[entry.dataset], entry.mode) == (size, tag, mode)
    assert entry.num_classes == CLASSES[entry.dataset]
    assert entry.mask_ratio == MASK_RATIO[entry.dataset]
    assert (entry.num_frames, entry.img_size, entry.patch_size, entry.tubelet_size) == \
        (16, 224, 16, 2)
    assert entry.num_patches == 1568
    assert entry.pixels_per_patch == 1536
    assert (entry.dims["embed_dim"], entry.dims["depth"], entry.dims["num_heads"]) == DIMS[size]
    assert (entry.dims["decoder_embed_dim"], entry.dims["decoder_num_heads"],
            entry.dims["decoder_depth"]) == DECODER[size]
    assert entry.parity_atol == PARITY_ATOL[size] and entry.parity_atol <= 5e-5
    assert not entry.test_only
    assert get_entry(name) is entry


def test_model_config_builds_the_right_kind():
    ft = get_entry("TFVideoMAE_B_SSv2_16x224_FT").model_config()
    assert ft["num_classes"] == 174 and "decoder_depth" not in ft
    pt = get_entry("TFVideoMAE_L_K400_16x224_PT").model_config()
    assert "num_classes" not in pt and pt["decoder_depth"] == 12


def test_test_entries_are_tiny_and_separate():
    assert TEST_ZOO and not set(TEST_ZOO) & set(ZOO)
    for entry in TEST_ZOO.values():
        assert entry.test_only and entry.size == {"v1": "T", "v2": "Tg"}[entry.family]
        assert entry.num_patches == 8
    tiny = get_entry("TFVideoMAE_T_K400_4x32_FT")
    assert (tiny.dims["embed_dim"], tiny.dims["depth"], tiny.dims["num_heads"]) == (48, 2, 3)


@pytest.mark.parametrize("size,mode,dataset", [("L", "FT", "ssv2"), ("H", "PT", "ucf101"),
                                               ("S", "FT", "ucf101")])
def test_find_entry_names_what_exists(size, mode, dataset):
    with pytest.raises(KeyError) as caught:
        find_entry(size, mode, dataset)
    message = caught.value.args[0]
    assert f"size {size}" in message and "B/ucf101" in message


def test_get_entry_rejects_unknown_names():
    with pytest.raises(KeyError):
        get_entry("TFVideoMAE_X_K400_16x224_FT")


@pytest.mark.parametrize("size", ["S", "B", "L", "H"])
def test_fine_tuned_parameter_count_matches_spec(size):
    entry = find_entry(size, "FT", "k400")
    with torch.device("meta"):
        model = torch_reference.VisionTransformer(**entry.model_config())
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - PARAMS_M[size]) <= 0.05, f"{size}: {count:.3f}M"
    assert all(p.device.type == "meta" for p in model.parameters())


def test_timm_registry_builds_the_upstream_small_model():
    model = timm.create_model("videomae_vit_small_patch16_224", num_classes=400)
    assert isinstance(model, torch_reference.VisionTransformer)
    assert model.blocks[0].attn.num_heads == 6  # upstream, not transformers' 16
    assert len(model.blocks) == 12 and model.embed_dim == 384
    zoo_model_keys = torch_reference.VisionTransformer(
        **find_entry("S", "FT", "k400").model_config()).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in zoo_model_keys.items()}
    # timm's own image ViT of the similar name is left alone (not overwritten by ours)
    image_vit = timm.create_model("vit_small_patch16_224", pretrained=False)
    assert not isinstance(image_vit, torch_reference.VisionTransformer)
