"""VideoMAE V2's architecture options on one backbone: each option, on a tiny randomised
configuration, converts through the converter's mapping and matches the torch reference
(float64-checked, per block), and with every option off the models are V1's, name for name."""

import math

import numpy as np
import pytest
import torch

import torch_reference
from converter.mapping import map_tensors, prepare_state_dict
from converter.parity import Case, check_parity, compute_reference
from converter.synthetic import random_state_dict

TOLERANCE = 1e-5
# tiny: 4 frames of 28x28 with patch 14 or 32x32 with patch 16 -> 2 x 2 x 2 = 8 tokens
TINY = dict(embed_dim=48, depth=2, num_heads=3, num_frames=4, img_size=32, patch_size=16,
            tubelet_size=2)
TINY_DECODER = dict(decoder_embed_dim=24, decoder_depth=2, decoder_num_heads=2)
OPTIONS = {
    "patch14": dict(patch_size=14, img_size=28),
    "mlp_ratio_48_11": dict(embed_dim=44, num_heads=2, mlp_ratio=48 / 11),  # int(44*48/11) = 192
    "layer_scale": dict(init_values=0.1),
    "cos_attn": dict(cos_attn=True),
    "no_mean_pooling": dict(use_mean_pooling=False),
}
ALL_ON = dict(patch_size=14, img_size=28, embed_dim=44, num_heads=2, mlp_ratio=48 / 11,
              init_values=0.1, cos_attn=True)


def _state(model, seed):
    """Every tensor random; layer scales and cosine-attention scales given useful ranges
    (gammas around 0.5 of either sign, log scales spread over [1, 6], some over the clamp)."""
    state = random_state_dict(model, seed)
    generator = torch.Generator().manual_seed(seed + 100)
    for name, tensor in state.items():
        if name.endswith(("gamma_1", "gamma_2")):
            state[name] = torch.randn(tensor.shape, generator=generator) * 0.5
        elif name.endswith("attn.scale"):
            state[name] = 1.0 + 5.0 * torch.rand(tensor.shape, generator=generator)
    return state


def _classifier_pair(config, seed=0):
    import tf_models

    torch_model = torch_reference.VisionTransformer(**config, num_classes=7).eval()
    state = _state(torch_model, seed)
    torch_model.load_state_dict(state, strict=True)
    tf_model = tf_models.VideoMAEVideoClassifier(**config, num_classes=7)
    map_tensors(prepare_state_dict(state), tf_model.named_variables(), "test")
    return torch_model, tf_model, state


def _pretrainer_pair(config, seed=0):
    import tf_models

    torch_model = torch_reference.PretrainVisionTransformer(**config, **TINY_DECODER).eval()
    state = _state(torch_model, seed)
    torch_model.load_state_dict(state, strict=True)
    tf_model = tf_models.VideoMAEMaskedAutoencoder(**config, **TINY_DECODER)
    map_tensors(prepare_state_dict(state), tf_model.named_variables(), "test")
    return torch_model, tf_model, state


def _video(config, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    size = config["img_size"]
    return rng.standard_normal((batch, 3, config["num_frames"], size, size), dtype=np.float32)


def _classifier_runner(tf_model):
    import keras

    def run(case):
        out, hidden = tf_model.call_with_hidden_states(case.video_nthwc)
        return keras.ops.convert_to_numpy(out), [keras.ops.convert_to_numpy(h) for h in hidden]
    return run


def _tokens(config):
    return (config["num_frames"] // 2) * (config["img_size"] // config["patch_size"]) ** 2


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_v2_option_converts_with_float64_parity(option):
    config = {**TINY, **OPTIONS[option]}
    torch_model, tf_model, _ = _classifier_pair(config)
    references = compute_reference(torch_model, [Case("clip", _video(config))])
    report = check_parity(_classifier_runner(tf_model), references, TOLERANCE)
    assert report.passed, report.summary()
    assert report.first_divergent_block is None
    assert float(np.max(np.abs(references[0].out32))) > 1e-2  # logits that show something


def test_all_v2_options_together_convert_with_float64_parity():
    config = {**TINY, **ALL_ON, "use_mean_pooling": False}
    torch_model, tf_model, state = _classifier_pair(config, seed=3)
    assert {"norm.weight", "blocks.1.gamma_2", "blocks.0.attn.scale"} <= set(state)
    assert "fc_norm.weight" not in state
    report = check_parity(_classifier_runner(tf_model),
                          compute_reference(torch_model, [Case("clip", _video(config))]),
                          TOLERANCE)
    assert report.passed, report.summary()


def test_synthetic_v2_checkpoints_randomise_layer_scales_and_logit_scales_per_channel():
    """What a synthetic file holds for V2's own tensors (``converter.synthetic.random_tensor``,
    not this module's ``_state``): every gamma differs per channel and every cosine
    attention's logit scale per head, none at upstream's initial values (gamma
    ``init_values``, scale log 10), so a channel or head mapped to another shows."""
    config = {**TINY, **ALL_ON, "init_values": 0.1}
    models = {"finetune": torch_reference.VisionTransformer(**config, num_classes=7),
              "pretrain": torch_reference.PretrainVisionTransformer(**config, **TINY_DECODER)}
    for kind, model in models.items():
        state = random_state_dict(model, seed=0)
        assert set(state) == set(model.state_dict())
        gammas = [n for n in state if n.endswith(("gamma_1", "gamma_2"))]
        scales = [n for n in state if n.endswith("attn.scale")]
        # every block of the encoder (and the decoder's) has both
        assert len(gammas) == 2 * len(scales) and len(scales) == TINY["depth"] + (
            TINY_DECODER["decoder_depth"] if kind == "pretrain" else 0), kind
        for name in gammas + scales:
            values = state[name].flatten()
            assert len(torch.unique(values)) == values.numel() > 1, f"{kind} {name}"
            initial = 0.1 if name in gammas else math.log(10.0)
            assert not torch.any(torch.isclose(values, torch.tensor(initial))), name
        for name, tensor in state.items():
            assert float(tensor.std()) > 0, f"{kind} {name} is constant"


@pytest.mark.parametrize("option, tensor, block", [
    ("layer_scale", "blocks.1.gamma_1", "blocks.1"),
    ("layer_scale", "blocks.0.gamma_2", "blocks.0"),
    ("cos_attn", "blocks.1.attn.scale", "blocks.1"),
    ("no_mean_pooling", "norm.beta", None),
])
def test_a_wrong_v2_tensor_fails_parity_at_its_block(option, tensor, block):
    config = {**TINY, **OPTIONS[option]}
    torch_model, tf_model, _ = _classifier_pair(config)
    references = compute_reference(torch_model, [Case("clip", _video(config))])
    variable = tf_model.named_variables()[tensor]
    value = np.array(variable.numpy())
    noise = np.random.default_rng(1).standard_normal(value.shape).astype(np.float32)
    variable.assign(value + 0.05 * noise)
    report = check_parity(_classifier_runner(tf_model), references, TOLERANCE)
    assert not report.passed
    expected = None if block is None else f"{block} (clip)"
    assert report.first_divergent_block == expected


def test_cos_attn_clamps_the_logit_scale_as_upstream():
    """A log scale above 4.6052 acts as 4.6052 on both sides (upstream clamps, never learns
    past 100x): raising it further changes nothing, lowering it below does."""
    config = {**TINY, "cos_attn": True}
    torch_model, tf_model, state = _classifier_pair(config)
    video = torch.from_numpy(_video(config))
    outputs = {}
    for log_scale in (4.7, 9.0, 4.0):
        high = dict(state)
        high["blocks.0.attn.scale"] = torch.full_like(state["blocks.0.attn.scale"], log_scale)
        torch_model.load_state_dict(high, strict=True)
        with torch.inference_mode():
            outputs[log_scale] = torch_model(video).numpy()
        tf_model.named_variables()["blocks.0.attn.scale"].assign(
            high["blocks.0.attn.scale"].numpy())
        found = np.asarray(tf_model(video.numpy().transpose(0, 2, 3, 4, 1)))
        np.testing.assert_allclose(found, outputs[log_scale], atol=TOLERANCE, rtol=0)
    assert np.array_equal(outputs[4.7], outputs[9.0])
    assert np.max(np.abs(outputs[4.0] - outputs[4.7])) > 1e-4


def test_fused_float64_cosine_attention_matches_the_explicit_one():
    """The converter's float64 run uses torch's fused kernel: for cosine attention it must be
    upstream's explicit arithmetic to rounding."""
    from converter.parity import fused_attention

    config = {**TINY, "cos_attn": True}
    torch_model, _, _ = _classifier_pair(config)
    torch_model.double()
    video = torch.from_numpy(_video(config)).double()
    with torch.inference_mode():
        explicit = torch_model(video)
        with fused_attention(torch_model):
            fused = torch_model(video)
    assert float((explicit - fused).abs().max()) < 1e-12


def test_patch14_and_mlp_ratio_shape_the_tensors_as_vit_g():
    """ViT-g's two shape options on the tiny model: patch 14 kernels and int(D * 48 / 11)."""
    config = {**TINY, **ALL_ON}
    torch_model, tf_model, _ = _classifier_pair(config)
    variables = tf_model.named_variables()
    assert tuple(variables["patch_embed.proj.kernel"].shape) == (2, 14, 14, 3, 44)
    assert tuple(variables["blocks.0.mlp.fc1.kernel"].shape) == (44, 192)
    assert tuple(variables["blocks.0.attn.scale"].shape) == (2, 1, 1)
    assert tf_model.num_patches == _tokens(config) == 8
    assert int(1408 * 48 / 11) == 6144


# --- the pre-trainer: options in encoder and decoder, and V2's decode mask -------------------

def _pt_runner(tf_model):
    """Parity's runner for the pre-trainer: the case's decode mask goes along when it has one."""
    import keras

    def run(case):
        out, hidden = tf_model.call_with_hidden_states(case.video_nthwc, case.mask,
                                                       case.decode_mask)
        return keras.ops.convert_to_numpy(out), [keras.ops.convert_to_numpy(h) for h in hidden]
    return run


def _tube_and_decode_masks(config, seed=0):
    """Per sample: a tube mask (75 %) and a decode mask (True = not decoded) that keeps half
    of the tokens, some of them visible to the encoder (as upstream's running cells do)."""
    rng = np.random.default_rng(seed)
    n = _tokens(config)
    per_slot = n // (config["num_frames"] // 2)
    masks, decode = [], []
    for _ in range(2):
        spatial = np.zeros(per_slot, bool)
        spatial[rng.permutation(per_slot)[: int(0.75 * per_slot)]] = True
        masks.append(np.tile(spatial, config["num_frames"] // 2))
        visible = rng.choice(np.flatnonzero(~masks[-1]))  # one encoder-visible token decoded
        keep = np.zeros(n, bool)
        keep[visible] = True
        keep[rng.permutation(np.delete(np.arange(n), visible))[: n // 2 - 1]] = True
        decode.append(~keep)
    masks, decode = np.stack(masks), np.stack(decode)
    assert (~decode & ~masks).any(axis=1).all()  # the decoder sees visible positions too
    return masks, decode


@pytest.mark.parametrize("option", ["layer_scale", "cos_attn"])  # all on: the kinds test
def test_v2_options_in_the_pretrainer_convert_with_float64_parity(option):
    config = {**TINY, **OPTIONS[option]}
    torch_model, tf_model, state = _pretrainer_pair(config)
    if option == "layer_scale":
        assert "decoder.blocks.1.gamma_2" in state and "encoder.blocks.0.gamma_1" in state
    else:
        assert "decoder.blocks.0.attn.scale" in state
    masks, _ = _tube_and_decode_masks(config)
    report = check_parity(
        _pt_runner(tf_model), compute_reference(torch_model, [Case("mask", _video(config),
                                                                   masks)]),
        TOLERANCE, (("encoder.", config["depth"]), ("decoder.", 2)))
    assert report.passed, report.summary()


@pytest.mark.parametrize("config", [TINY, {**TINY, **ALL_ON}], ids=["v1_blocks", "v2_blocks"])
def test_decode_mask_pretrainer_converts_with_float64_parity(config):
    torch_model, tf_model, _ = _pretrainer_pair(config, seed=5)
    masks, decode = _tube_and_decode_masks(config, seed=1)
    references = compute_reference(torch_model, [Case("dual", _video(config), masks, decode)])
    n_decoded = int((~decode[0]).sum())
    assert references[0].out32.shape == (2, n_decoded, 3 * 2 * config["patch_size"] ** 2)
    assert n_decoded != int(masks[0].sum())
    report = check_parity(_pt_runner(tf_model), references, TOLERANCE,
                          (("encoder.", config["depth"]), ("decoder.", 2)))
    assert report.passed, report.summary()


@pytest.mark.parametrize("config", [TINY, {**TINY, **ALL_ON}], ids=["v1_blocks", "v2_blocks"])
def test_a_mask_with_no_masked_token_decodes_every_token_as_upstream(config):
    """Upstream's decoder predicts the last ``return_token_num`` tokens, or every token when
    that is 0 (a mask ratio under one patch per frame); the Keras pre-trainer does the same,
    in the same graph as any other mask."""
    torch_model, tf_model, _ = _pretrainer_pair(config, seed=2)
    none = np.zeros((2, _tokens(config)), dtype=bool)
    references = compute_reference(torch_model, [Case("none", _video(config), none)])
    assert references[0].out32.shape == (2, _tokens(config), 3 * 2 * config["patch_size"] ** 2)
    report = check_parity(_pt_runner(tf_model), references, TOLERANCE,
                          (("encoder.", config["depth"]), ("decoder.", 2)))
    assert report.passed, report.summary()


def test_decode_mask_selects_upstreams_tokens_in_ascending_order():
    """The decoder's output rows are the tokens where decode_mask is False, ascending: each row
    equals the V1 output's row for that token when decode_mask keeps exactly the masked ones,
    and a dict input with 'decode_mask' gives the same pixels as the positional call."""
    import keras

    config = dict(TINY)
    torch_model, tf_model, _ = _pretrainer_pair(config, seed=7)
    masks, _ = _tube_and_decode_masks(config, seed=2)
    video = _video(config)
    video_nthwc = video.transpose(0, 2, 3, 4, 1)
    v1 = keras.ops.convert_to_numpy(tf_model({"video": video_nthwc, "mask": masks}))
    same = keras.ops.convert_to_numpy(
        tf_model({"video": video_nthwc, "mask": masks, "decode_mask": ~masks}))
    np.testing.assert_allclose(same, v1, atol=1e-6, rtol=0)
    with torch.inference_mode():
        upstream = torch_model(torch.from_numpy(video), torch.from_numpy(masks),
                               torch.from_numpy(~masks)).numpy()
    np.testing.assert_allclose(same, upstream, atol=TOLERANCE, rtol=0)


# --- V1 unchanged with the options off ------------------------------------------------------

def test_v1_variable_names_and_shapes_are_unchanged_with_options_off():
    """With every V2 option at its off value the models have V1's variables, name for name,
    and the torch reference V1's state dict: the options add nothing when unused."""
    import tf_models

    off = dict(mlp_ratio=4.0, init_values=0.0, cos_attn=False, use_mean_pooling=True)
    for cls, extra in ((tf_models.VideoMAEVideoClassifier, dict(num_classes=7)),
                       (tf_models.VideoMAEMaskedAutoencoder, TINY_DECODER)):
        plain = {n: tuple(v.shape) for n, v in cls(**TINY, **extra).named_variables().items()}
        options = {n: tuple(v.shape)
                   for n, v in cls(**TINY, **extra, **off).named_variables().items()}
        assert options == plain
        assert not any(n.endswith(("gamma_1", "gamma_2", "attn.scale")) for n in plain)
    classifier = tf_models.VideoMAEVideoClassifier(**TINY, num_classes=7)
    names = set(classifier.named_variables())
    assert {"fc_norm.gamma", "fc_norm.beta", "head.kernel", "blocks.1.attn.qkv.bias"} <= names
    assert "norm.gamma" not in names
    assert len(names) == 2 + 12 * TINY["depth"] + 4  # patch, blocks, fc_norm and head
    state = torch_reference.VisionTransformer(**TINY, num_classes=7, **off).state_dict()
    assert set(state) == set(torch_reference.VisionTransformer(**TINY,
                                                               num_classes=7).state_dict())
    assert "norm.weight" not in state and "fc_norm.weight" in state


def test_backbone_config_round_trips_the_v2_options():
    import tf_models

    backbone = tf_models.VideoMAEBackbone(**{**TINY, **ALL_ON}, use_mean_pooling=False,
                                          final_norm="norm")
    config = backbone.get_config()
    assert {k: config[k] for k in ("init_values", "cos_attn", "use_mean_pooling",
                                   "mlp_ratio")} == dict(init_values=0.1, cos_attn=True,
                                                         use_mean_pooling=False,
                                                         mlp_ratio=48 / 11)
    again = tf_models.VideoMAEBackbone.from_config(config)
    assert set(again.named_variables()) == set(backbone.named_variables())
    with pytest.raises(ValueError, match="use_mean_pooling"):
        tf_models.VideoMAEBackbone(**TINY, use_mean_pooling=False, final_norm="fc_norm")


def test_encoder_features_without_mean_pooling_match_upstreams_norm_on_the_first_token():
    """A V2 fine-tuned model without mean pooling as features: tokens = norm(last block),
    pooled = its first token = what upstream's head reads; the Keras backbone agrees."""
    import keras
    import tf_models

    config = {**TINY, "use_mean_pooling": False}
    torch_model, _, state = _classifier_pair(config)
    features = torch_reference.EncoderFeatures(torch_model)
    video = _video(config)
    with torch.inference_mode():
        expected = {k: v.numpy() for k, v in features(torch.from_numpy(video)).items()}
        head_input = torch_model.forward_features(torch.from_numpy(video)).numpy()
    np.testing.assert_allclose(expected["pooled"], head_input, atol=0, rtol=0)
    backbone = tf_models.VideoMAEBackbone(**config, final_norm="norm")
    encoder_state = {k: v for k, v in state.items() if not k.startswith("head.")}
    map_tensors(prepare_state_dict(encoder_state), backbone.named_variables(), "test")
    found = backbone(video.transpose(0, 2, 3, 4, 1))
    for name in ("tokens", "pooled"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(found[name]), expected[name],
                                   atol=TOLERANCE, rtol=0)
    assert math.isclose(float(np.abs(expected["pooled"]).max()), float(
        np.abs(expected["tokens"][:, 0]).max()))


@pytest.mark.parametrize("mean_pooling", [True, False])
def test_features_extracted_from_a_classifier_are_what_its_head_reads(mean_pooling):
    """``videomae-extract`` on a classifier: upstream's ``forward_features`` (fc_norm of the
    mean, or norm of the first token without mean pooling), the same ``.keras`` model's
    head applied to them giving its logits."""
    import keras

    from tf_models.video.features import _keras_pooled

    config = {**TINY, "use_mean_pooling": mean_pooling}
    torch_model, tf_model, _ = _classifier_pair(config)
    video = _video(config)
    with torch.inference_mode():
        expected = torch_model.forward_features(torch.from_numpy(video)).numpy()
    frames, size, run = _keras_pooled(tf_model, "model.keras")
    assert (frames, size) == (config["num_frames"], config["img_size"])
    found = run(video.transpose(0, 2, 3, 4, 1))
    np.testing.assert_allclose(found, expected, atol=TOLERANCE, rtol=0)
    logits = keras.ops.convert_to_numpy(tf_model(video.transpose(0, 2, 3, 4, 1)))
    head = keras.ops.convert_to_numpy(tf_model.head(found))
    np.testing.assert_allclose(head, logits, atol=TOLERANCE, rtol=0)


# --- the converter's kinds and parity pass a V2 configuration through ----------------------

class _V2Entry:
    """Builds a test entry whose ``model_config`` is a V2 configuration: the zoo table's V2
    rows do not exist yet, and kinds reads nothing else of an entry's architecture."""

    @staticmethod
    def make(name, config, encoder_only=False):
        import dataclasses

        from converter.zoo import Entry, get_entry

        base = get_entry(name)

        class Configured(Entry):
            def model_config(self) -> dict:
                backbone = {k: v for k, v in config.items()
                            if k not in ("num_classes", *TINY_DECODER)}
                if self.encoder_only:
                    return backbone
                if self.mode == "FT":
                    return {**backbone, "num_classes": self.num_classes}
                return {**backbone, **TINY_DECODER}

            # the shapes the configuration gives, where the tiny preset states others
            patch_size = property(lambda self: config["patch_size"])
            img_size = property(lambda self: config["img_size"])
            dims = property(lambda self: {**base.dims, **TINY_DECODER, **{
                k: config[k] for k in ("embed_dim", "depth", "num_heads")}})
            num_patches = property(lambda self: (self.num_frames // self.tubelet_size)
                                   * (config["img_size"] // config["patch_size"]) ** 2)
            pixels_per_patch = property(lambda self: 3 * self.tubelet_size
                                        * config["patch_size"] ** 2)

        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Entry)}
        fields.update(encoder_only=encoder_only)
        return Configured(**fields)


@pytest.mark.parametrize("name, encoder_only, pooling", [
    ("TFVideoMAE_T_K400_4x32_FT", False, True),
    ("TFVideoMAE_T_K400_4x32_FT", True, False),
    ("TFVideoMAE_T_K400_4x32_PT", False, True),
    ("TFVideoMAE_T_K400_4x32_PT", True, True),
])
def test_kinds_and_parity_carry_a_v2_configuration(name, encoder_only, pooling):
    """Both sides built by converter.kinds from one V2 config dict, the checkpoint split and
    mapped as a conversion does, and converter.parity's own cases pass."""
    import keras

    from converter.kinds import build_tf_model, build_torch_model, kind_of
    from converter.parity import make_cases

    entry = _V2Entry.make(name, {**TINY, **ALL_ON, "use_mean_pooling": pooling}, encoder_only)
    kind = kind_of(entry)
    full = _state(build_torch_model(_V2Entry.make(name, {**TINY, **ALL_ON,
                                                         "use_mean_pooling": pooling}),
                                    device="meta"), seed=4)
    torch_state, mapped_state = kind.split_state(entry, full)
    torch_model = build_torch_model(entry)
    torch_model.load_state_dict(torch_state, strict=True)
    tf_model = build_tf_model(entry)
    map_tensors(prepare_state_dict(mapped_state), tf_model.named_variables(), "test")

    def run(case):
        out, hidden = tf_model.call_with_hidden_states(*kind.case_inputs(case))
        named = {k: keras.ops.convert_to_numpy(v) for k, v in kind.named(out).items()}
        return named, [keras.ops.convert_to_numpy(h) for h in hidden]
    references = compute_reference(kind.reference(torch_model), make_cases(entry, batch=2))
    report = check_parity(run, references, TOLERANCE, kind.block_layout(entry))
    assert report.passed, report.summary()
    assert any(n.endswith("gamma_1") for n in tf_model.named_variables())
