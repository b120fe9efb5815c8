"""VideoMAE V2 in the zoo: upstream's released models as entries (ViT-g, the distilled ViT-S/B,
their mapped K400 / K600 heads), listed and converted by name, in upstream's file layouts.

Fast tier: tiny V2-shaped entries (patch 14, mlp_ratio 48/11) run the real paths. Slow tier:
the distilled S / B entries and ViT-g (one fine-tuned entry, the pre-trained one) from
full-size synthetic checkpoints.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch

import converter
import torch_reference
from converter.batch import _child_command, _entries_for, select_entries
from converter.checkpoint import describe, read_checkpoint, read_pickle_safely
from converter.inspect_checkpoint import infer_checkpoint
from converter.kinds import build_tf_model, expected_source_shapes
from converter.mapping import map_tensors, prepare_state_dict, take_head_rows
from converter.sources import cached_checkpoint_path, resolve_checkpoint
from converter.synthetic import random_state_dict, write_synthetic_checkpoint
from converter.zoo import (FILE_LAYOUTS, TEST_ZOO, V2_REQUEST_FORM, ZOO, find_entry, get_entry)
from tf_models.presets import PRESETS, RELEASES, TEST_PRESETS, dataset_from_name

from conftest import assert_one_line_error, run_cli
from http_faults import FaultServer

V2 = {name: entry for name, entry in ZOO.items() if entry.family == "v2"}
# V2 docs/MODEL_ZOO.md: name -> (classes, top-1, top-5, views, sampling rate of the test clips)
UPSTREAM = {
    "TFVideoMAEv2_g_Hybrid_16x224_PT": (None, None, None, None, 4),
    "TFVideoMAEv2_g_K710_16x224_FT": (710, 83.8, 96.4, "16x5x3", 4),
    "TFVideoMAEv2_g_K400_16x224_FT": (400, 87.2, 97.4, "16x5x3", 4),
    "TFVideoMAEv2_g_K710-K400_16x224_FT": (400, 88.4, 98.0, "16x5x3", 4),
    "TFVideoMAEv2_g_K710-K600_16x224_FT": (600, 88.8, 98.2, "16x5x3", 4),
    "TFVideoMAEv2_g_SSv2_16x224_FT": (174, 77.0, 95.9, "16x2x3", 4),
    "TFVideoMAEv2_g_K710-UCF_16x224_FT": (101, 99.6, 100.0, "16x5x3", 4),
    "TFVideoMAEv2_g_K710-HMDB51_16x224_FT": (51, 88.1, 98.5, "16x5x3", 2),
    "TFVideoMAEv2_S_K710_16x224_DL": (710, 77.6, None, "16x5x3", 4),
    "TFVideoMAEv2_S_K710toK400_16x224_DL": (400, 83.7, None, "16x5x3", 4),
    "TFVideoMAEv2_S_K710toK600_16x224_DL": (600, 83.1, None, "16x5x3", 4),
    "TFVideoMAEv2_B_K710_16x224_DL": (710, 81.5, None, "16x5x3", 4),
    "TFVideoMAEv2_B_K710toK400_16x224_DL": (400, 86.6, None, "16x5x3", 4),
    "TFVideoMAEv2_B_K710toK600_16x224_DL": (600, 85.9, None, "16x5x3", 4),
}
TINY_K710 = "TFVideoMAEv2_Tg_K710_4x28_DL"
TINY_MAPPED = "TFVideoMAEv2_Tg_K710toK400_4x28_DL"
TOLERANCE = 1e-5


def _listed(entry):
    info = entry.preset.listing()
    return (info["num_classes"], info["top1"], info["top5"], info["views"],
            info["sampling_rate"])


# --- the table --------------------------------------------------------------------------------

def test_v2_entries_are_upstreams_released_models_with_their_numbers():
    assert set(V2) == set(UPSTREAM)
    for name, expected in UPSTREAM.items():
        assert _listed(V2[name]) == expected, name


def test_every_generated_name_is_unique_and_names_its_dataset():
    generated = [p for presets in (PRESETS, TEST_PRESETS) for p in presets.values()]
    assert len(PRESETS) == sum(len(r.recipes) for r in RELEASES)  # no row overwrote another
    assert len({p.name for p in generated}) == len(generated)
    for preset in generated:
        assert dataset_from_name(f"weights/{preset.name}.keras") == preset.dataset
        other = "PT" if preset.mode == "FT" else "FT"
        assert dataset_from_name(preset.name, mode=other) is None


def test_vit_g_is_upstreams_giant_with_a_billion_parameters():
    entry = get_entry("TFVideoMAEv2_g_K710_16x224_FT")
    assert (entry.dims["embed_dim"], entry.dims["depth"], entry.dims["num_heads"]) == \
        (1408, 40, 16)
    assert (entry.patch_size, entry.num_patches) == (14, 2048)
    with torch.device("meta"):
        model = torch_reference.VisionTransformer(**entry.model_config())
    assert model.blocks[0].mlp.fc1.out_features == 6144
    assert 1.00e9 < sum(p.numel() for p in model.parameters()) < 1.02e9
    pt = get_entry("TFVideoMAEv2_g_Hybrid_16x224_PT")
    assert pt.pixels_per_patch == 1176 and (pt.mask_ratio, pt.decoder_mask_ratio) == (0.9, 0.5)
    assert (pt.dims["decoder_embed_dim"], pt.dims["decoder_num_heads"],
            pt.dims["decoder_depth"]) == (512, 8, 4)


def test_a_distilled_entry_is_a_classifier_and_a_mapped_head_converts_its_source_file():
    mapped = get_entry("TFVideoMAEv2_B_K710toK400_16x224_DL")
    assert (mapped.mode, mapped.recipe, mapped.head_from, mapped.num_classes) == \
        ("FT", "DL", "k710", 400)
    assert mapped.upstream is get_entry("TFVideoMAEv2_B_K710_16x224_DL")
    assert mapped.source_url == mapped.upstream.source_url == \
        "https://huggingface.co/OpenGVLab/VideoMAE2/resolve/main/distill/" \
        "vit_b_k710_dl_from_giant.pth"
    assert mapped.encoder_variant().upstream is mapped.upstream
    staged = get_entry("TFVideoMAEv2_g_K710-K400_16x224_FT")
    assert (staged.stage, staged.upstream) == ("k710", staged)
    assert staged.source_url is None and "k710_it_k400" in staged.upstream_run


# --- the CLI ----------------------------------------------------------------------------------

def test_list_json_prints_every_entry_with_its_facts():
    result = run_cli(["--list", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["name"] for row in rows] == list(ZOO)
    fields = {"name", "family", "size", "dataset", "mode", "recipe", "num_classes", "top1",
              "top5", "views"}
    assert all(fields <= set(row) for row in rows)
    by_name = {row["name"]: row for row in rows}
    assert {k: by_name["TFVideoMAE_B_SSv2_16x224_FT"][k] for k in fields} == dict(
        name="TFVideoMAE_B_SSv2_16x224_FT", family="v1", size="B", dataset="ssv2", mode="FT",
        recipe="FT", num_classes=174, top1=70.8, top5=92.4, views="16x2x3")
    assert {k: by_name["TFVideoMAEv2_S_K710toK600_16x224_DL"][k] for k in fields} == dict(
        name="TFVideoMAEv2_S_K710toK600_16x224_DL", family="v2", size="S", dataset="k600",
        mode="FT", recipe="DL", num_classes=600, top1=83.1, top5=None, views="16x5x3")
    assert by_name["TFVideoMAE_B_K400_16x224_PT"]["top1"] is None  # the FT entry's number
    # the text listing: one line per entry
    text = run_cli(["--list"])
    assert text.exit_code == 0 and len(text.stdout.splitlines()) == len(ZOO)


def test_vit_g_without_a_checkpoint_says_in_one_line_how_to_get_it(tmp_path):
    out = tmp_path / "out"
    result = run_cli(["--name", "TFVideoMAEv2_g_K710-HMDB51_16x224_FT", "--out", str(out),
                      "--cache-dir", str(tmp_path / "cache"), "-q"])
    line = assert_one_line_error(result, 2)
    assert V2_REQUEST_FORM in line and "--checkpoint PATH" in line
    assert "vit_g_hybrid_pt_1200e_k710_it_hmdb51_ft" in line
    assert not out.exists() or os.listdir(out) == []


def test_flags_reach_v2_with_family_and_name_the_choices_when_several_fit(tmp_path):
    assert find_entry("S", "FT", "k400", None).name == "TFVideoMAE_S_K400_16x224_FT"
    assert find_entry("B", "FT", "k710", "v2").name == "TFVideoMAEv2_B_K710_16x224_DL"
    assert find_entry("g", "PT", "hybrid", None).name == "TFVideoMAEv2_g_Hybrid_16x224_PT"
    result = run_cli(["--family", "v2", "--size", "g", "--dataset", "k400", "--out",
                      str(tmp_path / "o")])
    line = assert_one_line_error(result, 2)
    assert "TFVideoMAEv2_g_K400_16x224_FT, TFVideoMAEv2_g_K710-K400_16x224_FT" in line
    assert "--name" in line
    unknown = assert_one_line_error(run_cli(["--name", "TFVideoMAEv2_B_K710_16x224_FT",
                                             "--out", str(tmp_path / "o")]), 2)
    assert "did you mean" in unknown and "TFVideoMAEv2_B_K710_16x224_DL" in unknown


# --- mapped heads -----------------------------------------------------------------------------

def test_mapped_classifier_logits_are_the_source_logits_at_upstreams_rows():
    from tf_models.video.labels import head_rows

    source, mapped = get_entry(TINY_K710), get_entry(TINY_MAPPED)
    torch_source = torch_reference.VisionTransformer(**source.model_config()).eval()
    state = random_state_dict(torch_source, seed=4)
    torch_source.load_state_dict(state, strict=True)
    rows = head_rows("k710", "k400")
    assert len(rows) == 400 and rows[:3] == (341, 158, 189)  # label_710to400.json
    mapped_state = dict(state)
    notes = []
    take_head_rows(mapped, mapped_state, notes)
    assert "k710_to_k400.json" in notes[0]
    tf_mapped = build_tf_model(mapped)
    map_tensors(prepare_state_dict(mapped_state), tf_mapped.named_variables(), "test")
    video = np.random.default_rng(5).standard_normal((2, 4, 28, 28, 3), dtype=np.float32)
    with torch.inference_mode():
        expected = torch_source(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy()))
    expected = expected.numpy()[:, list(rows)]
    assert np.max(np.abs(np.asarray(tf_mapped(video)) - expected)) <= TOLERANCE
    assert float(np.std(expected)) > 1e-2  # logits that tell rows apart


def test_name_converts_a_tiny_mapped_entry_and_from_preset_loads_it(tmp_path):
    import tf_models

    out = tmp_path / "out"
    result = run_cli(["--name", TINY_MAPPED, "--synthetic", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert f"{TINY_MAPPED}: parity passed" in result.stdout
    with open(out / f"{TINY_MAPPED}.json") as handle:
        report = json.load(handle)
    assert (report["entry"]["recipe"], report["entry"]["head_from"]) == ("DL", "k710")
    assert report["source"]["container_key"] == "module"
    assert report["source"]["dtypes"] == ["float16"]
    assert any("k710_to_k400.json" in note for note in report["notes"])
    # the converted weights by their zoo name, against the whole K710 model's rows
    model = tf_models.VideoMAEVideoClassifier.from_preset(str(out / f"{TINY_MAPPED}.weights.h5"),
                                                     progress=False)
    assert model.preset.name == TINY_MAPPED and model.preset.num_classes == 400
    source = get_entry(TINY_K710)
    path = write_synthetic_checkpoint(source, str(tmp_path / "k710.pth"), seed=0)
    torch_source = torch_reference.VisionTransformer(**source.model_config()).eval()
    torch_source.load_state_dict(read_checkpoint(path).state_dict, strict=True)
    video = np.random.default_rng(6).standard_normal((1, 4, 28, 28, 3), dtype=np.float32)
    with torch.inference_mode():
        logits = torch_source(torch.from_numpy(video.transpose(0, 4, 1, 2, 3).copy())).numpy()
    from tf_models.video.labels import head_rows
    expected = logits[:, list(head_rows("k710", "k400"))]
    assert np.max(np.abs(np.asarray(model(video)) - expected)) <= TOLERANCE


# --- files: layouts, sources, matching --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(n for n, e in TEST_ZOO.items() if e.family == "v2"))
def test_synthetic_v2_files_are_in_upstreams_layout_and_read_back(name, tmp_path):
    entry = TEST_ZOO[name]
    upstream = entry.upstream
    path = write_synthetic_checkpoint(upstream, str(tmp_path / "ckpt.pth"), seed=1)
    container, dtype = FILE_LAYOUTS[("v2", entry.recipe)]
    found = describe(path)
    assert (found.container_key, found.source_dtypes) == (container, [dtype])
    info = infer_checkpoint(found.state_dict)
    assert (info.size, info.mode) == ("Tg", entry.mode)
    if entry.mode == "FT":
        assert info.dataset == (entry.head_from or entry.dataset)
    else:
        args = read_pickle_safely(path)["args"]
        assert (args.decoder_mask_type, args.decoder_mask_ratio) == ("run_cell", 0.5)
        assert info.has_decoder


def test_released_v2_layouts():
    assert get_entry("TFVideoMAEv2_S_K710_16x224_DL").file_layout == ("module", "float16")
    assert get_entry("TFVideoMAEv2_g_K400_16x224_FT").file_layout == ("module", "float16")
    assert get_entry("TFVideoMAEv2_g_Hybrid_16x224_PT").file_layout == ("model", "float32")


def test_a_mapped_entry_downloads_its_source_file_once_from_a_plain_url(tmp_path):
    source = TEST_ZOO[TINY_K710]
    payload_path = write_synthetic_checkpoint(source, str(tmp_path / "src.pth"), seed=2)
    with open(payload_path, "rb") as handle:
        payload = handle.read()
    cache = str(tmp_path / "cache")
    with FaultServer(str(tmp_path / "served")) as server:
        url = server.add("distill/vit_t_k710_dl.pth", payload)
        mapped = dataclasses.replace(TEST_ZOO[TINY_MAPPED], url=url)
        path = resolve_checkpoint(mapped, cache_dir=cache, offline=False, progress=False)
    assert path == cached_checkpoint_path(source, cache)  # cached under the source's name
    with open(path, "rb") as handle:
        assert handle.read() == payload


def test_v2_all_children_convert_by_name_and_files_match_by_content(tmp_path):
    v2 = select_entries(family="v2")
    assert [e.name for e in v2] == list(V2)
    assert len(select_entries(size="Tg")) == 7
    entry = get_entry(TINY_MAPPED)
    command = _child_command(entry, str(tmp_path), None, True, 0, False, "o.json")
    assert command[command.index("--name") + 1] == TINY_MAPPED and "--size" not in command
    # a distilled K710 file serves its own entry and both mapped heads
    distilled = infer_checkpoint(expected_source_shapes(get_entry("TFVideoMAEv2_B_K710_16x224_DL")))
    assert sorted(e.name for e in _entries_for(distilled, v2, "vit_b_k710_dl_from_giant.pth")) \
        == ["TFVideoMAEv2_B_K710_16x224_DL", "TFVideoMAEv2_B_K710toK400_16x224_DL",
            "TFVideoMAEv2_B_K710toK600_16x224_DL"]
    # the two ViT-g K400 files differ in their names only
    g400 = infer_checkpoint(expected_source_shapes(get_entry("TFVideoMAEv2_g_K400_16x224_FT")))
    assert [e.name for e in _entries_for(g400, v2, "vit_g_hybrid_pt_1200e_k400_ft.pth")] == \
        ["TFVideoMAEv2_g_K400_16x224_FT"]
    assert [e.name for e in _entries_for(g400, v2, "vit_g_hybrid_pt_1200e_k710_it_k400_ft.pth")
            ] == ["TFVideoMAEv2_g_K710-K400_16x224_FT"]


# --- slow tier: full-size synthetic conversions -----------------------------------------------

def _converts_with_parity(name, tmp_path):
    entry = get_entry(name)
    result = converter.convert(entry, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    parity = result.parity
    assert parity.passed and parity.tf_err_vs_f64 <= entry.parity_atol, parity.summary()
    assert parity.first_divergent_block is None
    return result


@pytest.mark.slow  # ViT-B full_size (one at a time); ViT-S (~2 GB) runs beside that queue
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.full_size) if "_B_" in n
                                  else n for n in UPSTREAM if "_DL" in n])
def test_distilled_entries_convert_from_synthetic_files_with_parity(name, tmp_path):
    result = _converts_with_parity(name, tmp_path)
    assert result.report.source.dtypes == ["float16"]


@pytest.mark.slow
@pytest.mark.full_size
@pytest.mark.parametrize("name", ["TFVideoMAEv2_g_K710-K400_16x224_FT",
                                  "TFVideoMAEv2_g_Hybrid_16x224_PT"])
def test_vit_g_converts_from_a_synthetic_file_with_parity(name, tmp_path):
    """ViT-g from a synthetic file in V2's DeepSpeed layout, every check, on the default's
    one parity clip per case (more clips per case and per-sample masks are proven on the
    tiny ``Tg`` entries, which share this code path). Its ~12 GB of artifacts are removed
    once it passes: CI's disk holds the slow tier's other conversions too."""
    result = _converts_with_parity(name, tmp_path)
    assert result.report.parity_inputs.batch == 1
    shutil.rmtree(tmp_path / "out")


def test_readme_zoo_table_has_every_v2_entry_with_its_numbers():
    """The README's V2 table lists every V2 entry once, with the zoo table's classes, views,
    sampling rate and upstream accuracy (top-5 '-' where upstream publishes none)."""
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "README.md")
    with open(readme, encoding="utf-8") as handle:
        rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in handle if line.startswith("| `TFVideoMAEv2_")]
    assert [row[0].strip("`") for row in rows] == list(V2)
    for name, classes, views, accuracy, _ in rows:
        info = V2[name.strip("`")].preset.listing()
        if info["mode"] == "PT":
            assert (classes, views) == ("-", "-") and accuracy.startswith("- (")
            continue
        assert classes == str(info["num_classes"])
        rate = "" if info["sampling_rate"] == 4 else f" (sampling rate {info['sampling_rate']})"
        assert views == info["views"] + rate
        assert accuracy == f"{info['top1']}/{info['top5'] if info['top5'] else '-'}"


def test_readme_says_which_sizes_have_upstreams_fine_tuning_defaults():
    """`FINETUNE_DEFAULTS` has V1's sizes, not ViT-g (V2's scripts vary per dataset): the
    README's sentence on it names exactly the published sizes the table holds."""
    import re

    from tf_models.presets import FINETUNE_DEFAULTS, SIZES

    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "README.md")
    with open(readme, encoding="utf-8") as handle:
        text = " ".join(handle.read().split())
    said = re.search(r"`tf_models\.presets\.FINETUNE_DEFAULTS` \(V1's sizes ([A-Z, ]+);", text)
    assert said, "the README's sentence on FINETUNE_DEFAULTS names its sizes"
    assert set(said.group(1).split(", ")) == set(FINETUNE_DEFAULTS) & set(SIZES)
    assert "g" not in FINETUNE_DEFAULTS and "not ViT-g" in text


def test_list_json_gives_null_top5_and_classifier_fields_exactly_where_upstream_has_none():
    rows = [json.loads(line) for line in run_cli(["--list", "--json"]).stdout.splitlines()]
    assert {row["family"] for row in rows} == {"v1", "v2"} and len(rows) == len(ZOO)
    for row in rows:
        classifier = row["mode"] == "FT"
        assert (row["num_classes"] is not None) == classifier
        assert (row["views"] is not None) == classifier
        # V1 and V2's ViT-g publish top-5; the distilled models top-1 only
        assert (row["top5"] is None) == (not classifier or row["recipe"] == "DL"), row["name"]
        assert (row["top1"] is None) == (not classifier), row["name"]


def test_all_takes_several_sizes_so_v2_runs_without_vit_g(tmp_path):
    """``--all --synthetic --family v2 --size S --size B``: the six distilled entries; one
    entry with two sizes is a one-line error."""
    assert [e.name for e in select_entries(("S", "B"), family="v2")] == [
        n for n in V2 if "_S_" in n or "_B_" in n]
    assert len(select_entries(("S", "B"), family="v2")) == 6
    assert {e.size for e in select_entries(("Tg", "S"), family="v2")} == {"Tg", "S"}
    line = assert_one_line_error(run_cli(["--size", "S", "--size", "B", "--synthetic", "--out",
                                          str(tmp_path / "o")]), 2)
    assert "--size S --size B" in line and "--all" in line
    none = assert_one_line_error(run_cli(["--all", "--synthetic", "--family", "v2", "--size",
                                          "L", "--size", "H", "--out", str(tmp_path / "o")]), 2)
    assert "L/H" in none
