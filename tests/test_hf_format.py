"""transformers-format checkpoints: renaming to upstream names, and reading every file form."""

import json
import os
import re

import pytest
import torch

import converter  # noqa: F401
import torch_reference
from converter.checkpoint import checkpoint_sha256, read_checkpoint, strip_encoder_prefix
from converter.synthetic import random_state_dict, upstream_container, write_synthetic_checkpoint
from converter.errors import CheckpointError
from converter.hf_format import hf_to_upstream, is_hf_state_dict
from converter.zoo import TEST_ZOO

FT = TEST_ZOO["TFVideoMAE_T_K400_4x32_FT"]
PT = TEST_ZOO["TFVideoMAE_T_K400_4x32_PT"]
SSV2_FT = TEST_ZOO["TFVideoMAE_T_SSv2_4x32_FT"]


def upstream_state(entry, seed=0):
    """A random upstream-named state dict for a tiny zoo entry (every tensor random)."""
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**entry.model_config())
    else:
        model = torch_reference.PretrainVisionTransformer(**entry.model_config())
    return random_state_dict(model, seed)


# The inverse mapping, written independently of converter.hf_format, from the names in
# transformers' modeling_videomae.py (VideoMAELayer, VideoMAEDecoder, VideoMAEFor*).
_LAYER_TO_HF = {
    "norm1.weight": "layernorm_before.weight", "norm1.bias": "layernorm_before.bias",
    "norm2.weight": "layernorm_after.weight", "norm2.bias": "layernorm_after.bias",
    "attn.proj.weight": "attention.output.dense.weight",
    "attn.proj.bias": "attention.output.dense.bias",
    "mlp.fc1.weight": "intermediate.dense.weight", "mlp.fc1.bias": "intermediate.dense.bias",
    "mlp.fc2.weight": "output.dense.weight", "mlp.fc2.bias": "output.dense.bias",
}


def to_transformers(state_dict, bias_style="q_bias", key_bias=None):
    """Upstream names -> transformers names. ``bias_style``: 'q_bias' (v4) or 'query.bias'.
    ``key_bias``: None (absent) or a value to store as ``key.bias`` (a tensor filler)."""
    out = {}
    for name, tensor in state_dict.items():
        if name.startswith("encoder."):
            name = name[len("encoder."):]
        block = re.fullmatch(r"(decoder\.)?blocks\.(\d+)\.(.+)", name)
        if block:
            decoder, index, inner = block.groups()
            base = (f"decoder.decoder_layers.{index}." if decoder
                    else f"videomae.encoder.layer.{index}.")
            attn = base + "attention.attention."
            if inner == "attn.qkv.weight":
                query, key, value = tensor.chunk(3, dim=0)
                out[attn + "query.weight"] = query.clone()
                out[attn + "key.weight"] = key.clone()
                out[attn + "value.weight"] = value.clone()
                if key_bias is not None:
                    out[attn + "key.bias"] = torch.full((key.shape[0],), float(key_bias))
            elif inner in ("attn.q_bias", "attn.v_bias"):
                letter = inner[5]
                if bias_style == "q_bias":
                    out[attn + f"{letter}_bias"] = tensor
                else:
                    out[attn + {"q": "query", "v": "value"}[letter] + ".bias"] = tensor
            else:
                out[base + _LAYER_TO_HF[inner]] = tensor
        elif name.startswith("patch_embed.proj."):
            out["videomae.embeddings.patch_embeddings.projection." + name.split(".")[-1]] = tensor
        elif name in ("norm.weight", "norm.bias"):
            out["videomae.layernorm." + name.split(".")[-1]] = tensor
        elif name.startswith("head."):
            out["classifier." + name.split(".")[-1]] = tensor
        else:  # fc_norm, decoder.norm, decoder.head, encoder_to_decoder, mask_token
            out[name] = tensor
    return out


def write_transformers_folder(folder, state_dict, config, safetensors=True, bin=False):
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as handle:
        json.dump(config, handle)
    if safetensors:
        save_file({k: v.contiguous() for k, v in state_dict.items()},
                  os.path.join(folder, "model.safetensors"))
    if bin:
        torch.save(state_dict, os.path.join(folder, "pytorch_model.bin"))
    return folder


def hf_config(entry, heads=None):
    dims = entry.dims
    config = {"architectures": ["VideoMAEForVideoClassification" if entry.mode == "FT"
                                else "VideoMAEForPreTraining"],
              "model_type": "videomae", "hidden_size": dims["embed_dim"],
              "num_hidden_layers": dims["depth"],
              "num_attention_heads": heads or dims["num_heads"],
              "intermediate_size": 4 * dims["embed_dim"], "image_size": entry.img_size,
              "num_frames": entry.num_frames, "patch_size": 16, "tubelet_size": 2,
              "qkv_bias": True, "use_mean_pooling": entry.mode == "FT"}
    if entry.mode == "PT":
        config.update(decoder_hidden_size=dims["decoder_embed_dim"],
                      decoder_num_hidden_layers=dims["decoder_depth"],
                      decoder_num_attention_heads=dims["decoder_num_heads"])
    return config


def assert_same_tensors(found, expected):
    assert sorted(found) == sorted(expected)
    for name in expected:
        assert found[name].dtype == expected[name].dtype, name
        assert torch.equal(found[name], expected[name]), name


# --- the test helper itself is anchored to transformers' real names ---------------------------

def test_inverse_helper_gives_transformers_names_for_a_classifier():
    names = set(to_transformers(upstream_state(FT)))
    layer = ["attention.attention.query.weight", "attention.attention.key.weight",
             "attention.attention.value.weight", "attention.attention.q_bias",
             "attention.attention.v_bias", "attention.output.dense.weight",
             "attention.output.dense.bias", "intermediate.dense.weight", "intermediate.dense.bias",
             "output.dense.weight", "output.dense.bias", "layernorm_before.weight",
             "layernorm_before.bias", "layernorm_after.weight", "layernorm_after.bias"]
    expected = {"videomae.embeddings.patch_embeddings.projection.weight",
                "videomae.embeddings.patch_embeddings.projection.bias",
                "fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}
    expected |= {f"videomae.encoder.layer.{i}.{n}" for i in range(FT.dims["depth"]) for n in layer}
    assert names == expected


def test_inverse_helper_gives_transformers_names_for_a_pretrainer():
    names = set(to_transformers(upstream_state(PT)))
    assert {"videomae.layernorm.weight", "videomae.layernorm.bias", "mask_token",
            "encoder_to_decoder.weight", "decoder.norm.weight", "decoder.head.weight",
            "decoder.decoder_layers.0.attention.attention.query.weight",
            "decoder.decoder_layers.0.attention.attention.v_bias"} <= names
    assert not any(n.startswith(("encoder.", "blocks.")) for n in names)


# --- renaming ---------------------------------------------------------------------------------

def test_is_hf_state_dict_tells_the_layouts_apart():
    upstream_ft, upstream_pt = upstream_state(FT), upstream_state(PT)
    assert not is_hf_state_dict(upstream_ft)
    assert not is_hf_state_dict(upstream_pt)
    assert is_hf_state_dict(to_transformers(upstream_ft))
    assert is_hf_state_dict(to_transformers(upstream_pt))
    bare = {k[len("videomae."):]: v for k, v in to_transformers(upstream_ft).items()
            if k.startswith("videomae.")}
    assert is_hf_state_dict(bare)


@pytest.mark.parametrize("bias_style", ["q_bias", "query.bias"])
@pytest.mark.parametrize("entry", [FT, PT], ids=["FT", "PT"])
def test_hf_to_upstream_round_trips_every_tensor(entry, bias_style):
    upstream = upstream_state(entry, seed=3)
    renamed, notes = hf_to_upstream(to_transformers(upstream, bias_style), hf_config(entry))
    assert_same_tensors(renamed, upstream)
    assert any("renamed to upstream names" in n for n in notes)


@pytest.mark.parametrize("entry", [FT, PT], ids=["FT", "PT"])
def test_renamed_state_dict_loads_strictly_into_the_reference(entry):
    upstream = upstream_state(entry, seed=4)
    renamed, _ = hf_to_upstream(to_transformers(upstream, "query.bias"))
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**entry.model_config())
    else:
        model = torch_reference.PretrainVisionTransformer(**entry.model_config())
    model.load_state_dict(renamed, strict=True)


def test_hf_to_upstream_takes_a_bare_encoder_as_pretrained_without_config():
    upstream = upstream_state(PT)
    bare = {k[len("videomae."):]: v for k, v in to_transformers(upstream).items()
            if k.startswith("videomae.")}
    renamed, _ = hf_to_upstream(bare)
    assert_same_tensors(renamed, {k: v for k, v in upstream.items() if k.startswith("encoder.")})


def test_hf_to_upstream_drops_an_all_zero_key_bias():
    upstream = upstream_state(FT)
    renamed, notes = hf_to_upstream(to_transformers(upstream, "query.bias", key_bias=0.0))
    assert_same_tensors(renamed, upstream)
    assert any("key bias" in n for n in notes)


def test_hf_to_upstream_rejects_a_nonzero_key_bias():
    hf = to_transformers(upstream_state(FT), "query.bias", key_bias=0.5)
    with pytest.raises(CheckpointError) as caught:
        hf_to_upstream(hf, path="model.safetensors")
    message = str(caught.value)
    assert message.startswith("model.safetensors: ")
    assert "videomae.encoder.layer.0.attention.attention.key.bias is not zero" in message
    assert "\n" not in message


def test_hf_to_upstream_lists_every_unknown_tensor_in_one_line():
    hf = to_transformers(upstream_state(FT))
    hf["videomae.embeddings.cls_token"] = torch.zeros(1, 1, 48)
    hf["pooler.dense.weight"] = torch.zeros(48, 48)
    with pytest.raises(CheckpointError) as caught:
        hf_to_upstream(hf, path="ckpt")
    message = str(caught.value)
    assert "2 tensor(s) with no upstream name" in message
    assert "videomae.embeddings.cls_token" in message and "pooler.dense.weight" in message
    assert "\n" not in message


def test_hf_to_upstream_rejects_an_incomplete_qkv_triple():
    hf = to_transformers(upstream_state(FT))
    del hf["videomae.encoder.layer.1.attention.attention.key.weight"]
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.qkv\.weight lacks its key third"):
        hf_to_upstream(hf)


def test_hf_to_upstream_rejects_both_bias_spellings_at_once():
    upstream = upstream_state(FT)
    hf = to_transformers(upstream, "q_bias")
    hf["videomae.encoder.layer.0.attention.attention.query.bias"] = upstream["blocks.0.attn.q_bias"]
    with pytest.raises(CheckpointError, match="both give blocks.0.attn.q_bias"):
        hf_to_upstream(hf)


def test_config_head_count_differing_from_upstream_is_noted():
    # transformers' converter wrote 16 heads into its ViT-S configs; upstream ViT-S has 6
    state = {"videomae.embeddings.patch_embeddings.projection.weight":
             torch.zeros(384, 3, 2, 16, 16),
             "classifier.weight": torch.zeros(400, 384), "classifier.bias": torch.zeros(400)}
    _, notes = hf_to_upstream(state, {"num_attention_heads": 16, "hidden_size": 384})
    assert "config says 16 heads; upstream ViT-S has 6: using 6" in notes
    _, notes = hf_to_upstream(state, {"num_attention_heads": 6})
    assert not any("heads" in n for n in notes)


def test_tiny_config_head_counts_are_compared_too():
    hf = to_transformers(upstream_state(PT))
    _, notes = hf_to_upstream(hf, hf_config(PT))
    assert not any("heads" in n for n in notes)
    config = dict(hf_config(PT), num_attention_heads=4, decoder_num_attention_heads=4)
    _, notes = hf_to_upstream(hf, config)
    assert "config says 4 heads; upstream ViT-Tiny (test) has 3: using 3" in notes
    assert "config says 4 decoder heads; upstream ViT-Tiny (test) decoder has 2: using 2" in notes


# --- reading files and folders ----------------------------------------------------------------

@pytest.mark.parametrize("entry", [FT, PT], ids=["FT", "PT"])
def test_transformers_folder_with_safetensors_round_trips(tmp_path, entry):
    upstream = upstream_state(entry, seed=5)
    # the folder's config.json is read: its (wrong) head count is compared with upstream's
    folder = write_transformers_folder(str(tmp_path / "hf"), to_transformers(upstream),
                                       hf_config(entry, heads=4))
    loaded = read_checkpoint(folder)
    assert loaded.layout == "transformers"
    assert "config says 4 heads; upstream ViT-Tiny (test) has 3: using 3" in loaded.notes
    assert loaded.container_key is None
    assert_same_tensors(loaded.state_dict, upstream)
    assert loaded.notes[0] == f"read model.safetensors from {folder}"


def test_folder_with_both_files_reads_safetensors(tmp_path):
    from_safetensors = upstream_state(FT, seed=1)
    from_bin = upstream_state(FT, seed=2)
    folder = str(tmp_path / "hf")
    write_transformers_folder(folder, to_transformers(from_safetensors), hf_config(FT))
    torch.save(to_transformers(from_bin), os.path.join(folder, "pytorch_model.bin"))
    loaded = read_checkpoint(folder)
    assert_same_tensors(loaded.state_dict, from_safetensors)
    assert any("model.safetensors, pytorch_model.bin present: read model.safetensors"
               in n for n in loaded.notes)


def test_folder_with_only_pytorch_model_bin_is_read_safely(tmp_path):
    upstream = upstream_state(SSV2_FT, seed=6)
    folder = write_transformers_folder(str(tmp_path / "hf"),
                                       to_transformers(upstream, "query.bias"),
                                       hf_config(SSV2_FT), safetensors=False, bin=True)
    loaded = read_checkpoint(folder)
    assert loaded.layout == "transformers"
    assert_same_tensors(loaded.state_dict, upstream)


def test_single_safetensors_file_with_either_naming(tmp_path):
    from safetensors.torch import save_file

    upstream = upstream_state(PT, seed=7)
    save_file(to_transformers(upstream), str(tmp_path / "hf.safetensors"))
    save_file(upstream, str(tmp_path / "upstream.safetensors"))
    hf = read_checkpoint(str(tmp_path / "hf.safetensors"))
    plain = read_checkpoint(str(tmp_path / "upstream.safetensors"))
    assert (hf.layout, plain.layout) == ("transformers", "upstream")
    assert not any("heads" in n for n in hf.notes)  # no config.json beside it
    assert_same_tensors(hf.state_dict, upstream)
    assert_same_tensors(plain.state_dict, upstream)


def test_sharded_safetensors_folder_is_read(tmp_path):
    from safetensors.torch import save_file

    upstream = upstream_state(FT, seed=8)
    hf = to_transformers(upstream)
    names = sorted(hf)
    half = len(names) // 2
    folder = tmp_path / "hf"
    folder.mkdir()
    shards = {"model-00001-of-00002.safetensors": names[:half],
              "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: hf[k] for k in keys}, str(folder / shard))
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(hf_config(FT)))
    loaded = read_checkpoint(str(folder))
    assert_same_tensors(loaded.state_dict, upstream)
    assert loaded.sha256 == checkpoint_sha256(str(folder))
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"changed")
    assert checkpoint_sha256(str(folder)) != loaded.sha256


def test_a_tensor_in_two_shards_is_refused_naming_both(tmp_path):
    """A shard holding a tensor its index places in another shard is one line naming the
    tensor and both shards (before: the later shard's copy silently won)."""
    from safetensors.torch import save_file

    hf = to_transformers(upstream_state(FT, seed=8))
    names = sorted(hf)
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    shards = {first: names[: len(names) // 2], second: names[len(names) // 2:]}
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({k: hf[k] for k in shards[first]}, str(folder / first))
    twice = shards[first][0]
    save_file(dict({k: hf[k] for k in shards[second]}, **{twice: hf[twice] + 7}),
              str(folder / second))
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(hf_config(FT)))
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(folder))
    assert str(caught.value) == (
        f"{folder}/{second}: holds {twice}, which model.safetensors.index.json places in "
        f"{first}; each tensor is in the one shard the index names (re-save or download it "
        f"again)")


def test_checkpoint_sha256_matches_what_loading_reports(tmp_path):
    folder = write_transformers_folder(str(tmp_path / "hf"), to_transformers(upstream_state(FT)),
                                       hf_config(FT), bin=True)
    pth = write_synthetic_checkpoint(FT, str(tmp_path / "ft.pth"))
    for path in (folder, os.path.join(folder, "pytorch_model.bin"), pth):
        assert checkpoint_sha256(path) == read_checkpoint(path).sha256
    assert checkpoint_sha256(folder) != checkpoint_sha256(os.path.join(folder,
                                                                       "pytorch_model.bin"))


def test_fp16_module_file_is_upcast_and_described_without_reading_data(tmp_path):
    from converter.checkpoint import describe

    path = write_synthetic_checkpoint(FT, str(tmp_path / "ft16.pth"), seed=9, dtype=torch.float16)
    loaded = read_checkpoint(path)
    described = describe(path)
    assert all(t.is_meta for t in described.state_dict.values())
    assert {k: (tuple(t.shape), t.dtype) for k, t in described.state_dict.items()} == \
        {k: (tuple(t.shape), torch.float16) for k, t in loaded.state_dict.items()}
    assert described.container_key == "module" and described.source_dtypes == ["float16"]
    reference = read_checkpoint(path)
    assert loaded.layout == "upstream" and loaded.container_key == "module"
    assert loaded.source_dtypes == ["float16"]
    assert any("upcast to float32" in n for n in loaded.notes)
    assert loaded.sha256 == reference.sha256
    expected = {k: v.half().float() for k, v in upstream_state(FT, seed=9).items()}
    assert_same_tensors(loaded.state_dict, expected)
    assert_same_tensors(reference.state_dict, expected)


def test_fp16_transformers_safetensors_is_upcast(tmp_path):
    upstream = upstream_state(FT, seed=10)
    hf16 = {k: v.half() for k, v in to_transformers(upstream, "query.bias").items()}
    folder = write_transformers_folder(str(tmp_path / "hf"), hf16, hf_config(FT))
    loaded = read_checkpoint(folder)
    assert loaded.source_dtypes == ["float16"]
    assert_same_tensors(loaded.state_dict, {k: v.half().float() for k, v in upstream.items()})


def test_upstream_pth_in_a_pt_container_keeps_its_encoder_prefix(tmp_path):
    upstream = upstream_state(PT, seed=11)
    path = str(tmp_path / "pt.pth")
    torch.save(upstream_container(PT, upstream), path)
    loaded = read_checkpoint(path)
    assert loaded.container_key == "model" and loaded.layout == "upstream"
    assert_same_tensors(loaded.state_dict, upstream)


def test_folder_without_weights_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(tmp_path))
    message = str(caught.value)
    assert "folder has no model.safetensors or pytorch_model.bin" in message
    assert "README.md" in message and "\n" not in message


def test_corrupt_safetensors_is_one_line_error(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as caught:
        read_checkpoint(str(path))
    assert "\n" not in str(caught.value)


def test_missing_path_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or folder"):
        read_checkpoint(str(tmp_path / "nope"))


def test_strip_encoder_prefix_keeps_only_the_encoder():
    upstream = upstream_state(PT)
    encoder = strip_encoder_prefix(upstream)
    assert sorted(encoder) == sorted(k[len("encoder."):] for k in upstream
                                     if k.startswith("encoder."))
    assert "norm.weight" in encoder and "patch_embed.proj.weight" in encoder
    assert not any(k.startswith(("decoder", "mask_token", "encoder_to_decoder")) for k in encoder)
    assert encoder["blocks.0.attn.q_bias"] is upstream["encoder.blocks.0.attn.q_bias"]


def test_strip_encoder_prefix_refuses_a_fine_tuned_state_dict():
    with pytest.raises(CheckpointError, match="no encoder"):
        strip_encoder_prefix(upstream_state(FT))


# --- end to end ------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, bias_style", [(FT, "query.bias"), (PT, "q_bias")])
def test_transformers_folder_converts_end_to_end_through_the_cli(tmp_path, entry, bias_style):
    """A transformers-format folder (safetensors), converted by the CLI: parity passes, the
    report records the layout and the head count the config got wrong."""
    from click.testing import CliRunner

    from converter.cli import main

    state = upstream_state(entry, seed=4)
    folder = write_transformers_folder(str(tmp_path / "hf"), to_transformers(state, bias_style),
                                       hf_config(entry, heads=16))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--size", "T", "--mode", entry.mode, "--checkpoint",
                                       folder, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    with open(out / f"{entry.name}.json") as handle:
        report = json.load(handle)
    assert report["parity"]["passed"]
    assert report["source"]["layout"] == "transformers"
    assert any("16 heads" in note for note in report["notes"]), report["notes"]


@pytest.mark.parametrize("entry", [FT, PT], ids=["FT", "PT"])
def test_describe_gives_read_names_shapes_and_layout_of_a_transformers_folder(tmp_path, entry):
    from converter.checkpoint import describe

    upstream = upstream_state(entry, seed=4)
    folder = write_transformers_folder(str(tmp_path / "hf"), to_transformers(upstream),
                                       hf_config(entry))
    described = describe(folder)
    assert described.layout == "transformers" and described.sha256 == ""
    assert all(t.is_meta for t in described.state_dict.values())
    assert {k: tuple(t.shape) for k, t in described.state_dict.items()} == \
        {k: tuple(t.shape) for k, t in upstream.items()}


# --- malformed transformers inputs: one line naming the file ----------------------------------

def test_config_whose_architectures_is_not_a_list_is_one_line(tmp_path):
    config = dict(hf_config(FT), architectures=5)
    folder = write_transformers_folder(str(tmp_path / "hf"), to_transformers(upstream_state(FT)),
                                       config)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(os.path.join(folder, "config.json"))
    assert "architectures is 5, expected a list of class names" in message


def test_config_nested_too_deeply_in_a_folder_is_one_line(tmp_path):
    folder = write_transformers_folder(str(tmp_path / "hf"), to_transformers(upstream_state(FT)),
                                       hf_config(FT))
    with open(os.path.join(folder, "config.json"), "w") as handle:
        handle.write("[" * 100000 + "]" * 100000)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(folder)
    message = str(caught.value)
    assert "\n" not in message and "nested too deeply" in message


def test_non_tensor_value_in_a_transformers_bin_is_one_line_naming_it(tmp_path):
    state = to_transformers(upstream_state(FT))
    name = "videomae.embeddings.patch_embeddings.projection.weight"
    state[name] = 5
    path = str(tmp_path / "pytorch_model.bin")
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and f"entry {name} is an int, not a tensor" in message


def test_shard_index_naming_a_non_string_shard_is_one_line(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    torch.save(to_transformers(upstream_state(FT)), str(folder / "pytorch_model-1.bin"))
    index = {"weight_map": {"videomae.layernorm.weight": 1,
                            "classifier.weight": "pytorch_model-1.bin"}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    for path in (str(folder), str(folder / "pytorch_model.bin.index.json")):
        for read in (read_checkpoint, checkpoint_sha256):
            with pytest.raises(CheckpointError) as caught:
                read(path)
            message = str(caught.value)
            assert "\n" not in message
            assert "weight_map maps videomae.layernorm.weight to 1 (an int)" in message
