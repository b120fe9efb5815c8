"""The zoo: V1's 14 published entries with upstream's facts, and a reference that matches them
(VideoMAE V2's entries: tests/test_v2_zoo.py)."""

import re

import torch
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


@pytest.mark.parametrize("size,dataset,listed", [("Tg", "ucf101", "Tg/hmdb51"),
                                                  ("T", "k400", "Tg/k400")])
def test_find_entry_for_a_test_size_names_the_test_entries_that_exist(size, dataset, listed):
    """Before: ``--size Tg --dataset ucf101`` named the published entries only, though
    ``--size`` takes the test sizes; the published sizes' hint still leaves them out (as
    ``--all`` selects them only by their size)."""
    with pytest.raises(KeyError) as caught:
        find_entry(size, "FT", dataset, "v2")
    assert listed in caught.value.args[0]
    with pytest.raises(KeyError) as caught:
        find_entry("S", "FT", "ucf101", "v2")
    assert "T/" not in caught.value.args[0] and "Tg/" not in caught.value.args[0]


def test_convert_of_an_unknown_name_is_one_conversion_error(tmp_path):
    """``converter.convert("typo", ...)``, documented to raise ConversionError on bad input,
    raised the zoo's KeyError (a CLI catching ConversionError got a traceback)."""
    from converter import convert
    from converter.errors import ConversionError

    with pytest.raises(ConversionError) as caught:
        convert("TFVideoMAE_S_K400_16x224_FTT", str(tmp_path / "out"), synthetic=True)
    assert str(caught.value) == (
        "unknown zoo entry 'TFVideoMAE_S_K400_16x224_FTT' (did you mean "
        "TFVideoMAE_S_K400_16x224_FT, TFVideoMAE_S_K400_16x224_PT, TFVideoMAE_L_K400_16x224_FT?)"
        "; videomae-convert --list lists them")
    assert not (tmp_path / "out").exists()


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
    # here, not at the top: timm imports torchvision (about 3 s, paid by every worker that
    # collects this module otherwise)
    import timm

    import torch_reference.timm_registry  # noqa: F401  (registers the videomae_ factories)

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


# --- one table -----------------------------------------------------------------------------

# the report's ``entry`` keys before the table was split (NAME.json must keep every one)
_REPORT_ENTRY_KEYS = {"name", "size", "mode", "dataset", "num_classes", "mask_ratio",
                      "eval_views", "top1", "top5", "pt_epochs", "parity_atol", "gdrive_id",
                      "hub_id", "num_frames", "img_size", "patch_size", "tubelet_size", "dims",
                      "test_only", "encoder_only", "source_url", "model_config"}


def test_an_entry_is_its_preset_plus_only_what_conversion_needs():
    import dataclasses

    from tf_models.presets import get_preset

    assert {f.name for f in dataclasses.fields(ZOO[next(iter(ZOO))])} == \
        {"preset", "parity_atol", "gdrive_id", "hub_id", "encoder_only", "raw_frames", "url",
         "upstream_run"}
    for name, entry in {**ZOO, **TEST_ZOO}.items():
        preset = get_preset(name)
        assert entry.preset is preset
        assert (entry.dims, entry.num_classes, entry.mask_ratio, entry.eval_views) == \
            (preset.dims, preset.num_classes, preset.mask_ratio, preset.eval_views)
        assert _REPORT_ENTRY_KEYS <= set(entry.to_dict())
        assert _REPORT_ENTRY_KEYS <= set(entry.encoder_variant().to_dict())
    eval_views = {e.dataset: e.eval_views for e in ZOO.values()}
    assert eval_views == {"k400": "16x5x3", "ssv2": "16x2x3", "ucf101": "16x5x3",
                          "k600": "16x5x3", "k710": "16x5x3", "hmdb51": "16x5x3",
                          "hybrid": "16x5x3"}
    encoder = get_entry("TFVideoMAE_B_K400_16x224_PT").encoder_variant()
    assert encoder.name == "TFVideoMAE_B_K400_16x224_PT_encoder" and encoder.encoder_only
    assert "decoder_depth" not in encoder.model_config()
    raw = get_entry("TFVideoMAE_B_K400_16x224_FT").raw_frames_variant()
    assert raw.name == "TFVideoMAE_B_K400_16x224_FT" and raw.to_dict()["raw_frames"] is True
    assert raw.upstream == get_entry("TFVideoMAE_B_K400_16x224_FT")


def test_upstream_file_ids_live_in_the_converter_only():
    import tf_models.presets

    source = open(tf_models.presets.__file__).read()
    for entry in ZOO.values():
        if entry.gdrive_id:
            assert entry.gdrive_id not in source
            assert entry.source_url.endswith(entry.gdrive_id)
        if entry.url:  # V2's distilled files
            assert entry.url not in source and entry.source_url == entry.url
        assert not entry.upstream_run or entry.upstream_run not in source
    assert get_entry("TFVideoMAE_B_UCF_16x224_FT").hub_id is None


@pytest.mark.parametrize("name", sorted(ZOO) + sorted(TEST_ZOO))
def test_every_name_parses_back_to_its_dataset(name):
    from tf_models.presets import dataset_from_name, is_zoo_name

    entry = get_entry(name)
    assert is_zoo_name(name) and not is_zoo_name(f"x{name}")
    assert dataset_from_name(f"weights/{name}.keras") == entry.dataset
    assert dataset_from_name(name, mode=entry.mode) == entry.dataset
    other = "PT" if entry.mode == "FT" else "FT"
    assert dataset_from_name(name, mode=other) is None


def test_video_and_finetune_clis_take_their_dataset_choices_from_the_table_before_tf_starts(
        tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from tf_models.presets import DATASETS

    code = ("import sys, json; import videomae_cli.video as v, videomae_cli.finetune as f; "
            "t = [p.type.choices for p in f.finetune_command.params if p.name == 'dataset']; "
            "print(json.dumps([list(v._DATASETS.choices), list(t[0]), sorted({m.split('.')[0] "
            "for m in sys.modules} & {'tensorflow', 'keras', 'tf_models', 'torch', 'numpy'})]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    choices, finetune_choices, heavy = json.loads(done.stdout.splitlines()[-1])
    # the datasets a classifier predicts (V2's UnlabeledHybrid pre-training source has no labels)
    assert choices == [k for k, d in DATASETS.items() if d.labelled] and heavy == []
    assert finetune_choices == choices  # every labelled dataset is a training recipe too
    assert "hmdb51" in choices and "hybrid" not in choices
