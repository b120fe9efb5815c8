"""VideoMAE V2 checkpoint files: upstream's containers and prefixes, fp16 storage, the Hub's
encoder-only ``VideoMAEv2_*`` safetensors repositories, and a ViT-g file given the wrong size."""

import argparse
import json
import os

import numpy as np
import pytest
import torch

import converter
import torch_reference
from converter.checkpoint import describe, hub_v2_model_kwargs, read_checkpoint
from converter.errors import CheckpointError
from converter.inspect_checkpoint import check_fits, infer_checkpoint
from converter.mapping import map_tensors, prepare_state_dict
from converter.synthetic import random_state_dict, write_synthetic_checkpoint
from converter.zoo import find_entry, get_entry

# a tiny V2-shaped configuration: patch 14, mlp_ratio 48/11, layer scale, cosine attention
TINY_V2 = dict(embed_dim=44, depth=2, num_heads=2, num_frames=4, img_size=28, patch_size=14,
               tubelet_size=2, mlp_ratio=48 / 11, init_values=0.1, cos_attn=True)
TINY_DECODER = dict(decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2)


def _ft_state(seed=0, **options):
    with torch.device("meta"):
        model = torch_reference.VisionTransformer(**TINY_V2, num_classes=710, **options)
    return random_state_dict(model, seed)


def _pt_state(seed=0):
    with torch.device("meta"):
        model = torch_reference.PretrainVisionTransformer(**TINY_V2, **TINY_DECODER)
    return random_state_dict(model, seed)


def _loads_strictly(state, model):
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("container", ["model", "module", None])
@pytest.mark.parametrize("prefix", ["", "_orig_mod.", "backbone.", "module._orig_mod."])
def test_v2_fine_tuned_file_reads_from_every_upstream_layout(tmp_path, container, prefix):
    """run_class_finetuning.py tries 'model' then 'module' then the bare dict, and strips
    '_orig_mod.' (torch.compile) and 'backbone.'; so does the reader, V2 tensors included."""
    state = _ft_state()
    wrapped = {prefix + k: v for k, v in state.items()}
    path = tmp_path / "v2.pth"
    torch.save(wrapped if container is None else {container: wrapped, "epoch": 3}, path)
    loaded = read_checkpoint(str(path))
    assert loaded.container_key == container
    assert set(loaded.state_dict) == set(state)
    assert {"blocks.1.gamma_1", "blocks.0.attn.scale"} <= set(loaded.state_dict)
    for name, tensor in state.items():
        assert torch.equal(loaded.state_dict[name], tensor), name
    _loads_strictly(loaded.state_dict, torch_reference.VisionTransformer(**TINY_V2,
                                                                         num_classes=710))


def test_v2_fp16_distilled_style_file_is_upcast_exactly(tmp_path):
    """The distilled S/B files look fp16 (half their fp32 size): read, upcast, noted."""
    half = {k: v.half() for k, v in _ft_state(seed=1).items()}
    path = tmp_path / "vit_s_k710_dl_from_giant.pth"
    torch.save({"module": half}, path)
    loaded = read_checkpoint(str(path))
    assert loaded.source_dtypes == ["float16"]
    assert any("float16" in note and "float32" in note for note in loaded.notes)
    for name, tensor in half.items():
        assert loaded.state_dict[name].dtype == torch.float32
        assert torch.equal(loaded.state_dict[name], tensor.float()), name
    assert os.path.getsize(path) < 0.6 * sum(4 * t.numel() for t in half.values()) + 65536


def test_v2_pretrained_file_from_a_compiled_run_reads_with_its_args(tmp_path):
    """run_mae_pretraining.py compiles the model (torch >= 2), so its saves carry
    '_orig_mod.' before 'encoder.'/'decoder.', under 'model' with the argparse args."""
    state = _pt_state()
    args = argparse.Namespace(model="pretrain_videomae_giant_patch14_224", decoder_depth=4,
                              decoder_mask_type="run_cell", decoder_mask_ratio=0.5)
    path = tmp_path / "vit_g_hybrid_pt_1200e.pth"
    torch.save({"model": {"_orig_mod." + k: v for k, v in state.items()}, "args": args,
                "epoch": 1199}, path)
    loaded = read_checkpoint(str(path))
    assert loaded.container_key == "model"
    assert {"encoder.blocks.0.gamma_2", "decoder.blocks.0.attn.scale", "mask_token"} \
        <= set(loaded.state_dict)
    _loads_strictly(loaded.state_dict,
                    torch_reference.PretrainVisionTransformer(**TINY_V2, **TINY_DECODER))
    assert describe(str(path)).state_dict.keys() == loaded.state_dict.keys()


# --- the Hub's encoder-only VideoMAEv2_* repositories ------------------------------------------

def _hub_folder(tmp_path, state, model_type="VideoMAEv2_Base", prefix="model."):
    """A folder shaped like OpenGVLab/VideoMAEv2-Base: config.json (model_type, nested
    model_config with upstream's VisionTransformer arguments) and model.safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path / "VideoMAEv2-Base"
    folder.mkdir()
    model_config = dict(img_size=28, patch_size=14, in_chans=3, num_classes=0, embed_dim=44,
                        depth=2, num_heads=2, mlp_ratio=48 / 11, qkv_bias=True, qk_scale=None,
                        drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
                        norm_layer="nn.LayerNorm", layer_norm_eps=1e-6, init_values=0.0,
                        use_learnable_pos_emb=False, tubelet_size=2, use_mean_pooling=True,
                        with_cp=False, num_frames=4, cos_attn=False)
    config = {"model_type": model_type, "architectures": [model_type],
              "auto_map": {"AutoModel": "modeling_videomaev2.VideoMAEv2",
                           "AutoConfig": "modeling_config.VideoMAEv2Config"},
              "model_config": model_config, "transformers_version": "4.38.0"}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({prefix + k: v.contiguous() for k, v in state.items()},
              str(folder / "model.safetensors"))
    return folder


def _hub_encoder_state(seed=0):
    with torch.device("meta"):
        model = torch_reference.VisionTransformer(
            **{**TINY_V2, "init_values": 0.0, "cos_attn": False}, num_classes=0)
    state = random_state_dict(model, seed)
    assert not any(k.startswith("head.") for k in state) and "fc_norm.weight" in state
    return state


def test_hub_v2_repository_reads_as_upstream_names_and_converts_to_encoder_features(tmp_path):
    import keras
    import tf_models

    state = _hub_encoder_state()
    folder = _hub_folder(tmp_path, state)
    loaded = read_checkpoint(str(folder))
    assert set(loaded.state_dict) == set(state)
    assert any("VideoMAEv2_Base" in note and "'model.'" in note for note in loaded.notes)
    assert describe(str(folder)).state_dict.keys() == loaded.state_dict.keys()
    kwargs = hub_v2_model_kwargs(json.loads((folder / "config.json").read_text()))
    torch_model = _loads_strictly(loaded.state_dict, torch_reference.VisionTransformer(**kwargs))
    video = np.random.default_rng(0).standard_normal((2, 3, 4, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        expected = torch_reference.EncoderFeatures(torch_model)(torch.from_numpy(video))
    backbone_kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"}
    backbone = tf_models.VideoMAEBackbone(**backbone_kwargs, final_norm="fc_norm")
    map_tensors(prepare_state_dict(loaded.state_dict), backbone.named_variables(), str(folder))
    found = backbone(video.transpose(0, 2, 3, 4, 1))
    for name in ("tokens", "pooled"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(found[name]),
                                   expected[name].numpy(), atol=1e-5, rtol=0)


def test_hub_v2_repository_without_the_model_prefix_is_a_one_line_error(tmp_path):
    folder = _hub_folder(tmp_path, _hub_encoder_state(), prefix="")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(folder))
    message = str(caught.value)
    assert "\n" not in message
    assert "model.safetensors" in message and "VideoMAEv2_Base" in message
    assert "'model.'" in message


def test_hub_config_without_model_config_is_a_one_line_error(tmp_path):
    folder = _hub_folder(tmp_path, _hub_encoder_state())
    (folder / "config.json").write_text(json.dumps({"model_type": "VideoMAEv2_giant"}))
    with pytest.raises(CheckpointError, match="config.json: model_type VideoMAEv2_giant but no "
                                              "model_config"):
        read_checkpoint(str(folder))


# --- flags checked against the file ---------------------------------------------------------

def _vit_g_shapes(mode="FT", num_classes=400):
    """A full-size ViT-g state dict skeleton on the meta device, from upstream's factories."""
    with torch.device("meta"):
        if mode == "FT":
            model = torch_reference.videomae_vit_giant_patch14_224(num_classes=num_classes)
        else:
            model = torch_reference.videomae_pretrain_giant_patch14_224(decoder_depth=4)
    return model.state_dict()


def test_a_vit_g_file_given_size_b_says_it_is_vit_g():
    with pytest.raises(CheckpointError) as caught:
        check_fits(find_entry("B", "FT", "k400"), _vit_g_shapes(), "vit_g_k400_ft.pth")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("vit_g_k400_ft.pth: checkpoint is ViT-g (embed dim 1408), "
                              "not ViT-B: use --size g")
    # two V2 entries fit a ViT-g K400 head: the message names them instead of "no entry"
    assert message.endswith("(TFVideoMAEv2_g_K400_16x224_FT, TFVideoMAEv2_g_K710-K400_16x224_FT: "
                            "pass --name NAME)")


def test_vit_g_files_are_read_as_vit_g_with_their_decoder():
    info = infer_checkpoint(_vit_g_shapes("FT", 710))
    assert (info.size, info.mode, info.depth, info.num_classes) == ("g", "FT", 40, 710)
    info = infer_checkpoint(_vit_g_shapes("PT"))
    assert (info.size, info.mode, info.depth) == ("g", "PT", 40)
    assert (info.decoder_embed_dim, info.decoder_depth, info.has_decoder) == (512, 4, True)
    assert info.describe() == "ViT-g, pre-trained (PT), 40 blocks, decoder 4 blocks"


def _zoo_shapes(name, **overrides):
    """A state dict skeleton (meta device) of zoo entry ``name``'s upstream file."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = torch_reference.VisionTransformer(**{**entry.model_config(), **overrides})
    return model.state_dict()


def _refusal(name, state, requested=None):
    entry = get_entry(name)
    with pytest.raises(CheckpointError) as caught:
        check_fits(entry, state, "ckpt.pth",
                   requested=get_entry(requested) if requested else None)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_v1_k400_file_for_a_v2_entry_names_the_v1_entry_and_its_family():
    # "--dataset k400" alone, with --family v2, would pick the K710toK400 entry (which reads
    # a K710 file) and refuse the file again
    assert _refusal("TFVideoMAEv2_S_K710_16x224_DL",
                    _zoo_shapes("TFVideoMAE_S_K400_16x224_FT")) == (
        "ckpt.pth: head has 400 classes (k400), not 710 (k710): "
        "use --family v1 --dataset k400 (TFVideoMAE_S_K400_16x224_FT)")


def test_a_k400_file_for_a_mapped_k400_entry_says_the_entry_reads_a_k710_head():
    mapped = "TFVideoMAEv2_S_K710toK400_16x224_DL"
    assert _refusal(get_entry(mapped).upstream.name, _zoo_shapes("TFVideoMAE_S_K400_16x224_FT"),
                    requested=mapped) == (
        "ckpt.pth: head has 400 classes (k400), not 710 (k710: "
        "TFVideoMAEv2_S_K710toK400_16x224_DL takes its k400 rows from a k710 head): "
        "use --family v1 (TFVideoMAE_S_K400_16x224_FT)")


def test_a_v2_k710_file_for_a_v1_k400_entry_suggests_the_v2_entry_mapping_it_to_k400():
    assert _refusal("TFVideoMAE_B_K400_16x224_FT",
                    _zoo_shapes("TFVideoMAEv2_B_K710_16x224_DL")) == (
        "ckpt.pth: head has 710 classes (k710), not 400 (k400): "
        "use --family v2 (TFVideoMAEv2_B_K710toK400_16x224_DL)")


def test_conversion_of_a_mapped_entry_explains_a_file_of_another_head(tmp_path):
    """Through convert(): the file is checked as the K710 source's, the line speaks of the
    entry asked for and suggests the entry the file is (an HMDB51 head here)."""
    path = write_synthetic_checkpoint(get_entry("TFVideoMAEv2_Tg_K710-HMDB51_4x28_FT"),
                                      str(tmp_path / "hmdb51.pth"))
    with pytest.raises(CheckpointError) as caught:
        converter.convert("TFVideoMAEv2_Tg_K710toK400_4x28_DL", str(tmp_path / "out"),
                          checkpoint=path, progress=False)
    assert str(caught.value) == (
        f"{path}: head has 51 classes (hmdb51), not 710 (k710: "
        "TFVideoMAEv2_Tg_K710toK400_4x28_DL takes its k400 rows from a k710 head): "
        "use --dataset hmdb51")


@pytest.mark.parametrize("mode", ["FT", "PT"])
def test_a_vit_g_file_of_16_pixel_patches_is_refused_without_a_flag_to_try(mode):
    """No zoo entry is ViT-g wide with 16-pixel patches: the line says so instead of the
    shape list and its 'check --size, --mode and --dataset'."""
    name = "TFVideoMAEv2_g_K710_16x224_FT" if mode == "FT" else "TFVideoMAEv2_g_Hybrid_16x224_PT"
    entry = get_entry(name)
    model_class = (torch_reference.VisionTransformer if mode == "FT"
                   else torch_reference.PretrainVisionTransformer)
    with torch.device("meta"):
        state = model_class(**{**entry.model_config(), "patch_size": 16}).state_dict()
    expected = ("ckpt.pth: checkpoint's patches are 2x16x16 (frames x pixels), ViT-g's are "
                "2x14x14: a model no zoo entry converts")
    assert _refusal(name, state) == expected
    # given for the other mode too: still no flag (none would take it)
    other = "TFVideoMAEv2_g_Hybrid_16x224_PT" if mode == "FT" else "TFVideoMAEv2_g_K710_16x224_FT"
    assert "use" not in _refusal(other, state).split(": a model no zoo entry converts")[1]


def test_hub_v2_weights_file_given_alone_still_reads_its_folder_config(tmp_path):
    """The config.json beside a Hub repository's own weights file counts (not beside any
    other file, see test_checkpoint)."""
    state = _hub_encoder_state()
    folder = _hub_folder(tmp_path, state)
    loaded = read_checkpoint(str(folder / "model.safetensors"))
    assert set(loaded.state_dict) == set(state)
    assert any("VideoMAEv2_Base" in note for note in loaded.notes)
