"""Inferring size, mode and dataset from a state dict, and the one-line mismatch messages."""

import pytest
import torch

import converter  # noqa: F401
import torch_reference
from converter.checkpoint import strip_encoder_prefix
from converter.synthetic import random_state_dict
from converter.errors import CheckpointError
from converter.inspect_checkpoint import check_fits, infer_checkpoint
from converter.zoo import DATASETS, SIZES, TEST_ZOO, ZOO, find_entry


def tiny_state(entry, seed=0):
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**entry.model_config())
    else:
        model = torch_reference.PretrainVisionTransformer(**entry.model_config())
    return random_state_dict(model, seed)


def shapes_only(size, mode, num_classes=400, decoder=True):
    """A full-size state dict skeleton on the meta device (shapes, no memory)."""
    dims = SIZES[size].dims
    width, dec = dims["embed_dim"], dims["decoder_embed_dim"]
    meta = dict(device="meta")
    prefix = "encoder." if mode == "PT" else ""
    patch = SIZES[size].patch_size
    state = {f"{prefix}patch_embed.proj.weight": torch.empty(width, 3, 2, patch, patch, **meta),
             f"{prefix}patch_embed.proj.bias": torch.empty(width, **meta)}
    for i in range(dims["depth"]):
        state[f"{prefix}blocks.{i}.attn.qkv.weight"] = torch.empty(3 * width, width, **meta)
    if mode == "FT":
        state["fc_norm.weight"] = torch.empty(width, **meta)
        state["head.weight"] = torch.empty(num_classes, width, **meta)
        state["head.bias"] = torch.empty(num_classes, **meta)
        return state
    state["encoder.norm.weight"] = torch.empty(width, **meta)
    if decoder:
        state["encoder_to_decoder.weight"] = torch.empty(dec, width, **meta)
        state["mask_token"] = torch.empty(1, 1, dec, **meta)
        for i in range(dims["decoder_depth"]):
            state[f"decoder.blocks.{i}.attn.qkv.weight"] = torch.empty(3 * dec, dec, **meta)
        state["decoder.norm.weight"] = torch.empty(dec, **meta)
        state["decoder.head.weight"] = torch.empty(1536, dec, **meta)
    return state


def fails(entry, state, **kwargs):
    with pytest.raises(CheckpointError) as caught:
        check_fits(entry, state, "ckpt.pth", **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- inference --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TEST_ZOO))
def test_infer_reads_size_mode_and_dataset_of_tiny_checkpoints(name):
    entry = TEST_ZOO[name]
    info = infer_checkpoint(tiny_state(entry))
    assert (info.size, info.mode, info.embed_dim) == (entry.size, entry.mode,
                                                      entry.dims["embed_dim"])
    assert info.depth == entry.dims["depth"]
    if entry.mode == "FT":
        assert (info.dataset, info.num_classes) == (entry.dataset, entry.num_classes)
        assert not info.has_decoder
    else:
        assert info.dataset is None and info.has_decoder
        assert info.decoder_depth == entry.dims["decoder_depth"]
        assert info.decoder_embed_dim == entry.dims["decoder_embed_dim"]
    assert check_fits(entry, tiny_state(entry), "ckpt.pth") == info


@pytest.mark.parametrize("size", sorted(SIZES))
def test_infer_reads_every_zoo_width(size):
    for dataset, facts in DATASETS.items():
        if not facts.labelled:
            continue  # a pre-training source: no head has its classes
        info = infer_checkpoint(shapes_only(size, "FT", facts.num_classes))
        assert (info.size, info.mode, info.dataset) == (size, "FT", dataset)
    info = infer_checkpoint(shapes_only(size, "PT"))
    assert (info.size, info.mode, info.has_decoder) == (size, "PT", True)
    assert info.depth == SIZES[size].depth


def test_every_zoo_entry_accepts_a_checkpoint_of_its_own_shape():
    for entry in ZOO.values():
        state = shapes_only(entry.size, entry.mode, entry.num_classes, decoder=entry.mode == "PT")
        check_fits(entry, state, "ckpt.pth")


def test_describe_is_readable():
    assert infer_checkpoint(shapes_only("B", "FT", 174)).describe() == \
        "ViT-B, fine-tuned (FT), 12 blocks, 174-class head (ssv2)"
    assert infer_checkpoint(shapes_only("H", "PT", decoder=False)).describe() == \
        "ViT-H, pre-trained (PT), 32 blocks, encoder only"


# --- mismatch messages ------------------------------------------------------------------------

def test_size_mismatch_names_the_flag():
    entry = find_entry("S", "FT", "k400")
    assert fails(entry, shapes_only("B", "FT", 400)) == \
        "ckpt.pth: checkpoint is ViT-B (embed dim 768), not ViT-S: use --size B"


def test_mode_mismatch_names_the_flag():
    assert fails(find_entry("B", "PT", "k400"), shapes_only("B", "FT", 400)) == \
        "ckpt.pth: checkpoint is fine-tuned (FT), not pre-trained: use --mode FT"
    assert fails(find_entry("B", "FT", "k400"), shapes_only("B", "PT")) == \
        "ckpt.pth: checkpoint is pre-trained (PT), not fine-tuned: use --mode PT"


def test_dataset_mismatch_names_the_flag():
    assert fails(find_entry("B", "FT", "k400"), shapes_only("B", "FT", 174)) == \
        "ckpt.pth: head has 174 classes (ssv2), not 400 (k400): use --dataset ssv2"


def test_several_mismatches_make_one_line():
    message = fails(find_entry("S", "FT", "k400"), shapes_only("B", "FT", 101))
    assert message == ("ckpt.pth: checkpoint is ViT-B (embed dim 768), not ViT-S; "
                       "head has 101 classes (ucf101), not 400 (k400): "
                       "use --size B --dataset ucf101")


def test_suggestion_without_a_zoo_entry_says_so():
    message = fails(find_entry("B", "FT", "ssv2"), shapes_only("L", "FT", 174))
    assert message.endswith("use --size L (but the zoo has no L/FT/ssv2 entry)")


def test_unknown_width_and_class_count_are_reported_without_a_flag():
    state = shapes_only("B", "FT", 700)
    state["patch_embed.proj.weight"] = torch.empty(512, 3, 2, 16, 16, device="meta")
    message = fails(find_entry("B", "FT", "k400"), state)
    assert "checkpoint has embed dim 512, which is no zoo size (S 384, B 768, L 1024, H 1280, " \
           "g 1408), not ViT-B (768)" in message
    assert "head has 700 classes, which is no zoo dataset (400 k400, 174 ssv2, 101 ucf101, " \
           "600 k600, 710 k710, 51 hmdb51), not 400 (k400)" in message
    assert "use" not in message


def test_not_a_videomae_checkpoint():
    message = fails(find_entry("B", "FT", "k400"), {"conv1.weight": torch.zeros(1)})
    assert message == ("ckpt.pth: not a VideoMAE checkpoint: no patch_embed.proj.weight "
                       "(first keys: conv1.weight)")


def test_depth_mismatch_is_reported_when_size_and_mode_agree():
    entry = TEST_ZOO["TFVideoMAE_T_K400_4x32_FT"]
    state = tiny_state(entry)
    state = {k: v for k, v in state.items() if not k.startswith("blocks.1.")}
    assert fails(entry, state) == "ckpt.pth: encoder has 1 blocks, ViT-Tiny (test) has 2"


# --- encoder-only pre-trained files (upstream ViT-H PT: MCG-NJU/VideoMAE#89) ---------------------

ENCODER_ONLY = ("ckpt.pth: pre-trained checkpoint holds the encoder only (no decoder.* keys; the "
                "upstream ViT-H PT file is known to lack its decoder, MCG-NJU/VideoMAE#89): "
                "convert it with --encoder-only")


def test_vit_h_pt_without_decoder_asks_for_encoder_only():
    entry = find_entry("H", "PT", "k400")
    state = shapes_only("H", "PT", decoder=False)
    info = infer_checkpoint(state)
    assert info.mode == "PT" and not info.has_decoder
    assert fails(entry, state) == ENCODER_ONLY
    assert check_fits(entry, state, "ckpt.pth", encoder_only=True).size == "H"
    assert check_fits(entry.encoder_variant(), state, "ckpt.pth").size == "H"


def test_tiny_pt_without_decoder_is_detected():
    entry = TEST_ZOO["TFVideoMAE_T_K400_4x32_PT"]
    full = tiny_state(entry)
    encoder = {k: v for k, v in full.items() if k.startswith("encoder.")}
    assert fails(entry, encoder) == ENCODER_ONLY
    check_fits(entry, encoder, "ckpt.pth", encoder_only=True)
    check_fits(entry, full, "ckpt.pth", encoder_only=True)  # a decoder may be present and unused
    # once stripped for an encoder-only conversion it reads as a headless backbone
    assert infer_checkpoint(strip_encoder_prefix(full)).num_classes is None


def test_encoder_only_combines_with_other_mismatches():
    message = fails(find_entry("B", "PT", "k400"), shapes_only("H", "PT", decoder=False))
    assert message.startswith("ckpt.pth: checkpoint is ViT-H (embed dim 1280), not ViT-B; "
                              "pre-trained checkpoint holds the encoder only (")
    assert message.endswith("): use --size H --encoder-only")
