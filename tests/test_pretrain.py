"""Pre-trained (masked autoencoder) models: tube masks, parity, export, reconstruction,
encoder-only conversions."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import converter
from converter.synthetic import synthetic_path
from converter.checkpoint import read_checkpoint
from converter.synthetic import random_state_dict, upstream_container, write_synthetic_checkpoint
from converter.errors import CheckpointError, ParityError
from converter.mapping import map_tensors, prepare_state_dict
from converter.kinds import build_tf_model, build_torch_model
from converter.parity import check_parity, compute_reference, make_cases
from converter.zoo import get_entry
from torch_reference import tube_mask

TINY_PT = "TFVideoMAE_T_K400_4x32_PT"
TINY_UCF_PT = "TFVideoMAE_T_UCF_4x32_PT"
TOLERANCE = 1e-5


def _tf_runner(tf_model):
    import keras

    def run(case):
        out, hidden = tf_model.call_with_hidden_states(case.video_nthwc, case.mask)
        return keras.ops.convert_to_numpy(out), [keras.ops.convert_to_numpy(h) for h in hidden]
    return run


def _models(entry, seed=0):
    torch_model = build_torch_model(entry)
    state = random_state_dict(torch_model, seed)
    torch_model.load_state_dict(state, strict=True)
    tf_model = build_tf_model(entry)
    map_tensors(prepare_state_dict(state), tf_model.named_variables())
    return torch_model, tf_model, state


def _parts(entry):
    return (("encoder.", entry.dims["depth"]), ("decoder.", entry.dims["decoder_depth"]))


# --- tube masks ------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, masked_per_frame", [(0.9, 176), (0.75, 147), (0.5, 98)])
def test_tube_mask_repeats_one_spatial_mask_over_time(ratio, masked_per_frame):
    mask = tube_mask(16, 224, 16, 2, ratio, batch_size=3, rng=np.random.default_rng(0))
    assert mask.shape == (3, 1568) and mask.dtype == bool
    slots = mask.reshape(3, 8, 196)
    assert (slots == slots[:, :1]).all()  # the same spatial mask in every temporal slot
    assert (slots[:, 0].sum(axis=1) == masked_per_frame).all()
    assert not (mask[0] == mask[1]).all()  # every sample draws its own


def test_keras_side_tube_mask_is_the_reference_one():
    import tf_models

    for ratio in (0.9, 0.75):
        expected = tube_mask(16, 224, 16, 2, ratio, 4, np.random.default_rng(11))
        found = tf_models.tube_mask(16, 224, 16, 2, ratio, 4, np.random.default_rng(11))
        assert (found == expected).all()


@pytest.mark.parametrize("ratio", [-0.5, 1.0, 1.5, float("nan")])
def test_tube_mask_refuses_a_ratio_outside_0_to_1_on_both_sides(ratio):
    """A ratio below 0 or from 1 up is one ValueError line naming it, the same on both sides
    (before: -0.5 masked half of each frame, int(-0.5 * n) slicing from the end; 1 masked
    every token, leaving the encoder none)."""
    import tf_models

    messages = []
    for make in (tube_mask, tf_models.tube_mask):
        with pytest.raises(ValueError) as raised:
            make(4, 32, 16, 2, ratio, 2, np.random.default_rng(0))
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("tube_mask: mask_ratio must be at least 0 and below 1")
    assert f"got {ratio}." in messages[0] and "\n" not in messages[0]


def test_tube_mask_at_ratio_0_masks_nothing_on_both_sides():
    import tf_models

    for make in (tube_mask, tf_models.tube_mask):
        assert not make(4, 32, 16, 2, 0.0, 2, np.random.default_rng(0)).any()


# --- parity ----------------------------------------------------------------------------------

def test_every_pretrained_tensor_is_random():
    state = random_state_dict(build_torch_model(get_entry(TINY_PT), device="meta"), seed=0)
    assert float(state["mask_token"].abs().min()) > 0
    for name, tensor in state.items():
        if name.endswith("bias"):
            assert float(tensor.abs().max()) > 0, name
        if tensor.dim() == 1 and "norm" in name and name.endswith("weight"):
            assert not torch.allclose(tensor, torch.ones_like(tensor)), name


@pytest.mark.parametrize("name", [TINY_PT, TINY_UCF_PT])
def test_pretrained_parity_with_different_masks_per_sample(name):
    entry = get_entry(name)
    torch_model, tf_model, _ = _models(entry)
    cases = make_cases(entry, batch=2, seed=3)
    assert [c.name for c in cases] == [f"mask{entry.mask_ratio:g}", "mask0.5"]
    for case in cases:
        assert not (case.mask[0] == case.mask[1]).all()
    report = check_parity(_tf_runner(tf_model), compute_reference(torch_model, cases),
                          TOLERANCE, _parts(entry))
    assert report.passed, report.summary()
    assert report.first_divergent_block is None
    n_tokens = entry.num_patches
    for reference in compute_reference(torch_model, cases[:1]):
        n_masked = int(reference.case.mask[0].sum())
        assert reference.out32.shape == (2, n_masked, entry.pixels_per_patch)
        assert reference.out64.shape == (1, n_masked, entry.pixels_per_patch)
        assert n_masked < n_tokens
    names = [b.block for b in report.blocks[: entry.dims["depth"] + entry.dims["decoder_depth"]]]
    assert names == ([f"encoder.blocks.{i}" for i in range(entry.dims["depth"])]
                     + [f"decoder.blocks.{i}" for i in range(entry.dims["decoder_depth"])])


@pytest.mark.parametrize("target, first_block", [
    ("mask_token", "decoder.blocks.0"),
    ("encoder.blocks.1.attn.qkv.bias", "encoder.blocks.1"),
    ("decoder.blocks.0.mlp.fc2.bias", "decoder.blocks.0"),
])
def test_a_corrupted_pretrained_tensor_fails_parity_at_its_block(target, first_block):
    entry = get_entry(TINY_PT)
    torch_model, tf_model, _ = _models(entry)
    variable = tf_model.named_variables()[target]
    value = variable.numpy()
    # random, not uniform: a constant shift of a token or bias is removed by LayerNorm
    noise = np.random.default_rng(1).standard_normal(value.shape).astype(np.float32)
    variable.assign(value + 0.05 * noise)
    cases = make_cases(entry, batch=2, seed=3)
    report = check_parity(_tf_runner(tf_model), compute_reference(torch_model, cases),
                          TOLERANCE, _parts(entry))
    assert not report.passed
    assert report.first_divergent_block.startswith(first_block)
    with pytest.raises(ParityError, match=first_block.replace(".", r"\.")):
        report.raise_if_failed()


def test_keras_pretrainer_traces_once_for_any_batch_and_mask_ratio():
    import tensorflow as tf

    entry = get_entry(TINY_PT)
    torch_model, tf_model, _ = _models(entry)
    spec = [tf.TensorSpec([None, 4, 32, 32, 3], tf.float32),
            tf.TensorSpec([None, entry.num_patches], tf.bool)]
    traced = tf.function(lambda v, m: tf_model([v, m]), input_signature=spec)
    rng = np.random.default_rng(0)
    for batch, ratio in [(1, 0.75), (3, 0.5), (2, 0.25)]:
        video = rng.standard_normal((batch, 3, 4, 32, 32), dtype=np.float32)
        mask = tube_mask(4, 32, 16, 2, ratio, batch, rng)
        with torch.inference_mode():
            expected = torch_model(torch.from_numpy(video), torch.from_numpy(mask)).numpy()
        found = traced(video.transpose(0, 2, 3, 4, 1), mask).numpy()
        assert found.shape == expected.shape
        assert np.max(np.abs(found - expected)) <= TOLERANCE


def test_static_token_counts_give_the_pixels_the_masks_give_and_need_the_decoded_count():
    """Inside ``static_token_counts`` (what JAX's compiled steps trace in) the counts are
    Python ints; the pixels are those the masks' values give, with and without a decode mask."""
    import tf_models

    _, tf_model, _ = _models(get_entry(TINY_PT))
    rng = np.random.default_rng(9)
    video = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.75, 2, rng)
    decode = np.ones_like(mask)
    decode[0, [1, 4, 6]] = decode[1, [0, 2, 7]] = False
    assert tf_models.token_counts(mask) == (6, None)
    assert tf_models.token_counts(mask, decode) == (6, 3)
    for inputs in ({"video": video, "mask": mask},
                   {"video": video, "mask": mask, "decode_mask": decode}):
        counts = tf_models.token_counts(inputs["mask"], inputs.get("decode_mask"))
        with tf_models.static_token_counts(*counts):
            static = np.asarray(tf_model(inputs))
        np.testing.assert_array_equal(static, np.asarray(tf_model(inputs)))
        assert static.shape == (2, counts[1] or counts[0], 1536)
    with pytest.raises(ValueError, match="needs n_decoded"):
        with tf_models.static_token_counts(6):
            tf_model({"video": video, "mask": mask, "decode_mask": decode})


def test_pretrainer_fit_runs_in_training_mode_and_evaluate_in_inference_mode():
    """``fit`` reaches the pre-trainer with training=True (drop path on): the target is the
    model's own inference output and the learning rate zero, so evaluate's loss is 0 (and a
    direct call's) while fit's, with blocks dropped, is not."""
    import keras

    import tf_models

    keras.utils.set_random_seed(0)
    model = tf_models.VideoMAEMaskedAutoencoder(
        embed_dim=32, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16,
        tubelet_size=2, drop_path_rate=0.9, decoder_embed_dim=16, decoder_depth=1,
        decoder_num_heads=2)
    rng = np.random.default_rng(4)
    inputs = {"video": rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32),
              "mask": tube_mask(4, 32, 16, 2, 0.5, 2, rng)}
    target = np.asarray(model(inputs))
    assert target.shape == (2, int(inputs["mask"][0].sum()), 1536)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    trained = model.fit(inputs, target, batch_size=2, epochs=1, verbose=0).history["loss"][0]
    evaluated = model.evaluate(inputs, target, batch_size=2, verbose=0)
    scale = float(np.mean(target ** 2))
    assert evaluated <= 1e-10 * scale and trained > 1e-3 * scale, (trained, evaluated, scale)


def test_pretrainer_nests_in_another_functional_model():
    """Called on Keras inputs (before: an AttributeError from Keras's graph walk, the absent
    decode_mask being None), the pre-trainer gives a (batch, None, pixels) output another
    model builds on, and the outer model computes the pre-trainer's output through it."""
    import keras

    import tf_models

    inner = tf_models.VideoMAEMaskedAutoencoder(
        embed_dim=32, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16,
        tubelet_size=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    inputs = {"video": keras.Input((4, 32, 32, 3), name="video"),
              "mask": keras.Input((8,), dtype="bool", name="mask")}
    pixels = inner(inputs)
    assert tuple(pixels.shape) == (None, None, 1536)
    head = keras.layers.Dense(3)
    outer = keras.Model(inputs, head(pixels))
    rng = np.random.default_rng(5)
    given = {"video": rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32),
             "mask": tube_mask(4, 32, 16, 2, 0.5, 2, rng)}
    np.testing.assert_allclose(np.asarray(outer(given)), np.asarray(head(inner(given))),
                               atol=1e-6, rtol=0)


def _tiny_pretrainer():
    """A compiled 8-token pre-trainer (4 frames of 32 x 32, patches of 2 x 16 x 16)."""
    import tf_models

    model = tf_models.VideoMAEMaskedAutoencoder(
        embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=16,
        tubelet_size=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    model.compile(loss="mse")
    return model


def _tiny_inputs(batch, seed):
    """``batch`` clips in [0, 1], the pre-trainer's inputs from them (4 of the 8 tokens
    masked) and upstream's targets (``masked_targets``)."""
    from tf_models.video.reconstruct import masked_targets, normalize_clip

    rng = np.random.default_rng(seed)
    clips01 = rng.uniform(size=(batch, 4, 32, 32, 3)).astype(np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, batch, rng)
    return {"video": normalize_clip(clips01), "mask": mask}, masked_targets(clips01, mask)


def test_pretrainer_predicts_evaluates_and_fits_on_a_list_as_on_the_dict():
    """``predict`` / ``evaluate`` / ``fit`` take ``[video, mask]`` and ``(video, mask,
    decode_mask)`` as a call does (before: numpy's "inhomogeneous shape" error from
    keras-hub's pipeline, which read the list as one array)."""
    import keras

    model = _tiny_pretrainer()
    inputs, target = _tiny_inputs(2, seed=12)
    decode = np.zeros_like(inputs["mask"])
    expected = model.predict(inputs, verbose=0)
    np.testing.assert_array_equal(model.predict([inputs["video"], inputs["mask"]], verbose=0),
                                  expected)
    np.testing.assert_array_equal(
        model.predict((inputs["video"], inputs["mask"], decode), verbose=0),
        model.predict({**inputs, "decode_mask": decode}, verbose=0))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    assert model.evaluate([inputs["video"], inputs["mask"]], target, verbose=0) == \
        pytest.approx(model.evaluate(inputs, target, verbose=0), rel=1e-6)
    history = model.fit([inputs["video"], inputs["mask"]], target, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_pretrainer_weighs_each_clip_by_a_per_clip_sample_weight():
    """``sample_weight`` of shape (batch,) weighs clips: the loss is the mean over clips of
    weight times the clip's squared error, in ``evaluate`` (the explicit "mse" and the
    default loss) and ``fit`` (before: Keras multiplied the (batch,) vector into the
    (batch, n_masked) losses: "Incompatible shapes" where the counts differ, and here, 4
    clips with 4 masked tokens each, tokens weighed instead of clips, without an error).
    Weights per masked token (batch, n_masked) still weigh tokens."""
    import keras

    batch = 4  # as many clips as masked tokens: the case an unweighted reshape gets wrong
    model = _tiny_pretrainer()
    inputs, target = _tiny_inputs(batch, seed=11)
    weights = np.arange(1, batch + 1, dtype=np.float32)
    error = (np.asarray(model.predict(inputs, verbose=0), np.float64) - target) ** 2
    per_clip = np.mean(weights * error.mean(axis=(1, 2)))
    tokens = np.linspace(0.0, 2.0, target.shape[0] * target.shape[1], dtype=np.float32)
    tokens = tokens.reshape(target.shape[:2])
    per_token = np.mean(tokens[..., None] * error)
    for loss in ("mse", "auto"):
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
        found = model.evaluate(inputs, target, sample_weight=weights, verbose=0)
        assert found == pytest.approx(per_clip, rel=1e-5), loss
        found = model.evaluate(inputs, target, sample_weight=tokens, verbose=0)
        assert found == pytest.approx(per_token, rel=1e-5), loss
    history = model.fit(inputs, target, sample_weight=weights, batch_size=batch, verbose=0)
    assert history.history["loss"][0] == pytest.approx(per_clip, rel=1e-5)


def test_pretrainer_compiles_with_upstream_pretraining_defaults(tmp_path):
    """A new pre-trainer is compiled as upstream pre-trains (run_mae_pretraining.py): the mean
    squared error, AdamW with betas 0.9 / 0.95, eps 1e-8, weight decay 0.05 left off 1-D
    tensors, biases and the mask token, rate 1.5e-4 at a batch of 256 (scaled by
    ``pretraining_optimizer``'s batch); it trains with no compile of one's own, and saved
    comes back with that optimizer (before: RMSprop and no loss, so ``fit`` failed). Given
    arguments replace the defaults."""
    import keras

    import tf_models

    model = tf_models.VideoMAEMaskedAutoencoder(
        embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=16,
        tubelet_size=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "LayerDecayAdamW"
    assert (float(optimizer.learning_rate), optimizer.beta_1, optimizer.beta_2,
            optimizer.epsilon, optimizer.decoupled_weight_decay) == pytest.approx(
        (1.5e-4, 0.9, 0.95, 1e-8, 0.05))
    decayed = {v.path for v in model.trainable_variables if len(v.shape) > 1
               and v.name != "mask_token"}
    assert set(optimizer.decay_paths) == decayed and "decoder/head/kernel" in decayed
    assert isinstance(model.loss, keras.losses.MeanSquaredError)
    scaled = tf_models.pretraining_optimizer(model, batch_size=64)
    assert float(scaled.learning_rate) == pytest.approx(1.5e-4 / 4)
    # README's translation of V2's ViT-g script (--lr 6e-4 --clip_grad 0.02, 32 videos)
    clipped = tf_models.pretraining_optimizer(model, learning_rate=6e-4 * 32 / 256,
                                              global_clipnorm=0.02)
    assert (float(clipped.learning_rate), clipped.global_clipnorm) == pytest.approx(
        (6e-4 / 8, 0.02))
    assert type(clipped).from_config(clipped.get_config()).global_clipnorm == 0.02
    inputs, target = _tiny_inputs(2, seed=12)
    before = model.evaluate(inputs, target, verbose=0)
    model.fit(inputs, target, batch_size=2, epochs=1, verbose=0)
    assert model.evaluate(inputs, target, verbose=0) != before
    path = str(tmp_path / "pretrainer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.optimizer.decay_paths == optimizer.decay_paths
    assert int(loaded.optimizer.iterations) == 1
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mae", metrics=["mse"])
    assert type(model.optimizer).__name__ == "SGD"
    history = model.fit(inputs, target, batch_size=2, verbose=0).history
    assert set(history) == {"loss", "mse"}


def test_the_readmes_continued_pretraining_route_runs(tmp_path, monkeypatch):
    """README's "Continuing pre-training" block, as written, on a tiny pre-trainer (from_preset
    gives it) and two .npy clips: ``fit`` trains on ``MaskedClips``' batches, new masks in each
    of its epochs (before: one mask array, the same masks in every epoch)."""
    import re

    import tf_models

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "README.md")) as handle:
        readme = handle.read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
              if "MaskedClips(" in b and ".fit(" in b]
    assert len(blocks) == 1, blocks
    tiny = tf_models.VideoMAEMaskedAutoencoder(
        embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=16,
        tubelet_size=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    named = []

    def from_preset(cls, preset, **kwargs):
        named.append(tf_models.get_preset(preset).name)  # a zoo name
        return tiny
    monkeypatch.setattr(tf_models.VideoMAEMaskedAutoencoder, "from_preset",
                        classmethod(from_preset))
    rng = np.random.default_rng(13)
    paths = []
    for index in range(2):
        paths.append(str(tmp_path / f"clip{index}.npy"))
        np.save(paths[-1], rng.integers(0, 256, (6, 40, 48, 3), dtype=np.uint8))
    weights = [np.asarray(v).copy() for v in tiny.trainable_variables]
    scope = {"paths": paths}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    batches = scope["batches"]
    assert named and int(tiny.optimizer.iterations) == 2 and batches.epoch == 2
    assert (batches.batch(0, 0)[0]["mask"] != batches.batch(1, 0)[0]["mask"]).any()
    assert any(not np.array_equal(w, np.asarray(v))
               for w, v in zip(weights, tiny.trainable_variables))
    assert scope["clips01"].shape == (2, 4, 32, 32, 3)


def test_pretrainer_and_backbone_refuse_inputs_they_would_misread_in_one_line():
    """Raw uint8 frames (read as normalised values), masks whose rows hide different counts
    (the count comes from the first row: the others' pixels belong to other tokens), or masks
    of another length, through a direct call, ``predict`` and ``evaluate``: one ValueError
    that says what the model takes. Before: pixels, wrong ones, and no error for the first
    two. Rows that differ in positions but not in count still run, and ``token_counts``
    (what the JAX steps read per batch) refuses uneven rows too."""
    import keras

    import tf_models

    model = _tiny_pretrainer()
    rng = np.random.default_rng(6)
    video = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    assert (mask[0] != mask[1]).any()  # same count, other positions: taken
    target = np.asarray(model({"video": video, "mask": mask}))
    uneven = mask.copy()
    uneven[1] = False
    decode = np.zeros_like(mask)
    decode[0, 0] = True
    raw = rng.integers(0, 256, video.shape, dtype=np.uint8)
    bad = {"got uint8 ones": {"video": raw, "mask": mask},
           "counts \\[0, 4\\]": {"video": video, "mask": uneven},
           "'decode_mask' must be the same count of tokens it keeps": {
               "video": video, "mask": mask, "decode_mask": decode},
           "'mask' must be \\(batch, 8\\) bool": {"video": video, "mask": mask[:, :6]}}
    for words, inputs in bad.items():
        for call in (lambda: model(inputs), lambda: model(list(inputs.values())),
                     lambda: model.predict(inputs, verbose=0),
                     lambda: model.evaluate(inputs, target, verbose=0)):
            with pytest.raises(ValueError, match=words) as error:
                call()
            assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="counts \\[0, 4\\]"):
        tf_models.token_counts(uneven)
    assert tf_models.token_counts(mask, np.logical_not(mask)) == (4, 4)
    backbone = model.backbone
    for call in (lambda: backbone(raw), lambda: backbone({"video": raw}),
                 lambda: backbone.predict(raw, verbose=0)):
        with pytest.raises(ValueError, match="backbone: takes normalised float32"):
            call()
    assert keras.ops.shape(backbone(video)["pooled"]) == (2, 32)


def test_pretrainer_refuses_a_mask_of_another_batch_in_one_line():
    """A mask with fewer or more rows than the video has clips (``tube_mask``'s default
    ``batch_size=1`` for a batch of two, say), through a call, ``predict`` and ``fit``: one
    ValueError naming the counts (before: a call failed deep in the backend, a TensorFlow
    "ConcatOp : Dimension 0 in both shapes must be equal" from inside MaskedAutoencoding)."""

    model = _tiny_pretrainer()
    rng = np.random.default_rng(7)
    video = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    target = np.zeros((2, 4, 1536), np.float32)
    for name, inputs in (("mask", {"video": video, "mask": mask[:1]}),
                         ("mask", {"video": video, "mask": np.concatenate([mask, mask])}),
                         ("decode_mask", {"video": video, "mask": mask,
                                          "decode_mask": np.zeros((1, 8), bool)})):
        for call in (lambda: model(inputs), lambda: model(list(inputs.values())),
                     lambda: model.predict(inputs, verbose=0),
                     lambda: model.fit(inputs, target, verbose=0)):
            with pytest.raises(ValueError, match=f"'{name}' must have one row per clip, 2; "
                                                 "got [14]") as error:
                call()
            assert "\n" not in str(error.value)


def test_pretrainer_checks_lists_of_clips_and_masks_in_a_dict_as_the_arrays_they_become():
    """``predict`` / ``fit`` / ``evaluate`` read a list inside the inputs' dict as the array it
    becomes (``input_checks.fed_video``): lists of clips and masks skipped every check (raw
    frames, an empty batch, masks of another batch or length, rows of different counts), as
    the classifier's did before ``ListedArray``. Now the lines the arrays get; lists that
    fit still run. Mask rows of two lengths (a ragged list, no array) were numpy's
    "inhomogeneous shape" error: now the masks' line."""

    model = _tiny_pretrainer()
    rng = np.random.default_rng(8)
    video = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    target = np.zeros((2, 4, 1536), np.float32)
    raw = rng.integers(0, 256, video.shape, dtype=np.uint8)
    uneven = mask.copy()
    uneven[1] = False
    bad = {"takes a batch of at least one clip": {"video": [], "mask": []},
           "got uint8 ones": {"video": list(raw), "mask": list(mask)},
           "'mask' must have one row per clip, 2; got 1": {"video": list(video),
                                                           "mask": [list(mask[0])]},
           "'mask' must be \\(batch, 8\\) bool": {"video": list(video),
                                                  "mask": mask[:, :6].tolist()},
           "counts \\[0, 4\\]": {"video": list(video), "mask": uneven.tolist()},
           "rows have 6, 8 entries": {"video": list(video),
                                      "mask": [mask[0].tolist(), mask[1, :6].tolist()]}}
    for words, inputs in bad.items():
        for call in (lambda: model.predict(inputs, verbose=0),
                     lambda: model.fit(inputs, target, verbose=0),
                     lambda: model.evaluate(inputs, target, verbose=0)):
            with pytest.raises(ValueError, match=words) as error:
                call()
            assert "\n" not in str(error.value)
    pixels = model.predict({"video": list(video), "mask": mask.tolist()}, verbose=0)
    assert pixels.shape == (2, 4, 1536)

def test_pretrainer_refuses_validation_inputs_it_would_misread_before_training():
    """``fit``'s ``validation_data`` gets the checks ``x`` gets (masks of another batch or
    length, rows of different counts, raw frames, lists as the arrays they become), in one
    line that names it, before any training step (before: keras-hub's batch-size error for
    masks of another batch; for the others a whole epoch trained, then a multi-line error
    from inside the validation pass, or, for uneven rows, a validation loss of wrong pixels
    and no error).
    Good validation data still runs."""
    model = _tiny_pretrainer()
    rng = np.random.default_rng(9)
    video = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    target = np.zeros((2, 4, 1536), np.float32)
    uneven = mask.copy()
    uneven[1] = False
    raw = rng.integers(0, 256, video.shape, dtype=np.uint8)
    bad = {"'mask' must have one row per clip, 2; got 1": {"video": video, "mask": mask[:1]},
           "'mask' must be \\(batch, 8\\) bool": {"video": list(video),
                                                 "mask": mask[:, :6].tolist()},
           "every row of 'mask' must be the same count": {"video": video, "mask": uneven},
           "takes normalised float32 frames": {"video": raw, "mask": mask},
           "'mask' must be \\(batch, tokens\\) bool": {
               "video": video, "mask": [mask[0].tolist(), mask[1, :6].tolist()]}}
    before = [np.copy(w) for w in model.get_weights()]
    for words, inputs in bad.items():
        for validation in ((inputs, target), [list(inputs.values()), target]):
            with pytest.raises(ValueError, match=f"validation_data: {words}") as error:
                model.fit({"video": video, "mask": mask}, target, validation_data=validation,
                          verbose=0)
            assert "\n" not in str(error.value)
    for kept, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(kept, now)
    history = model.fit({"video": video, "mask": mask}, target, verbose=0,
                        validation_data=({"video": video, "mask": mask}, target))
    assert "val_loss" in history.history


# --- conversion, export and a fresh process --------------------------------------------------

FRESH_PT_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras
    import tf_models

    paths, config, inputs = json.loads(sys.argv[1])
    video, mask = np.load(inputs + "/video.npy"), np.load(inputs + "/mask.npy")
    serving = tf.saved_model.load(paths["savedmodel"]).signatures["serving_default"]
    out = {"savedmodel": serving(video=tf.constant(video), mask=tf.constant(mask))["pixels"]}
    out["keras"] = keras.saving.load_model(paths["keras"], compile=False)([video, mask])
    fresh = tf_models.VideoMAEMaskedAutoencoder(**config)
    fresh.load_weights(paths["weights"])
    out["weights"] = fresh({"video": video, "mask": mask})
    for name, value in out.items():
        np.save(f"{inputs}/{name}.npy", keras.ops.convert_to_numpy(value))
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm"))))
""")


def check_pretrained_fresh_process(result, entry, work_dir, seed=0):
    """Each PT format, loaded in a process without torch, against the torch reference loaded
    strictly from the regenerated synthetic checkpoint, on a new clip and new masks."""
    work_dir = str(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    rng = np.random.default_rng(77)
    video = rng.standard_normal((2, entry.num_frames, entry.img_size, entry.img_size, 3),
                                dtype=np.float32)
    mask = tube_mask(entry.num_frames, entry.img_size, entry.patch_size, entry.tubelet_size,
                     entry.mask_ratio, 2, rng)
    np.save(os.path.join(work_dir, "video.npy"), video)
    np.save(os.path.join(work_dir, "mask.npy"), mask)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PT_SCRIPT,
         json.dumps([result.paths, entry.model_config(), work_dir])],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no torch in that process

    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, seed, work_dir), seed)
    assert result.report.source.sha256 == __import__(
        "converter.checkpoint", fromlist=["sha256_file"]).sha256_file(checkpoint)
    model = build_torch_model(entry)
    model.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    with torch.inference_mode():
        expected = model(torch.from_numpy(np.ascontiguousarray(video.transpose(0, 4, 1, 2, 3))),
                         torch.from_numpy(mask)).numpy()
    for kind in ("savedmodel", "keras", "weights"):
        found = np.load(os.path.join(work_dir, f"{kind}.npy"))
        assert found.shape == expected.shape, kind
        assert float(np.max(np.abs(found - expected))) <= TOLERANCE, kind


# tiny_pt_converted: the session's tiny PT conversion (conftest), shared with test_release


def test_pretrained_conversion_writes_artifacts_with_a_mask_signature(tiny_pt_converted):
    import tensorflow as tf

    result = tiny_pt_converted
    assert result.parity.passed
    assert {o.case for o in result.parity.outputs} == {"mask0.9", "mask0.5"}
    signature = tf.saved_model.load(result.paths["savedmodel"]).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert set(inputs) == {"video", "mask"}
    assert inputs["mask"].dtype == tf.bool and inputs["video"].shape[0] is None
    assert set(signature.structured_outputs) == {"pixels"}
    report = json.load(open(result.paths["report"]))
    assert report["entry"]["mode"] == "PT"
    assert all(check["passed"] for check in report["reload_checks"].values())


def test_tiny_pretrained_artifacts_match_torch_in_a_fresh_process(tiny_pt_converted, tmp_path):
    check_pretrained_fresh_process(tiny_pt_converted, get_entry(TINY_PT), tmp_path)


@pytest.mark.slow  # ViT-B full_size (one at a time); ViT-S (~2 GB) runs beside that queue
@pytest.mark.parametrize("name", ["TFVideoMAE_S_K400_16x224_PT",
                                  pytest.param("TFVideoMAE_B_UCF_16x224_PT",
                                               marks=pytest.mark.full_size)])
def test_pretrained_artifacts_match_torch_in_a_fresh_process(name, tmp_path):
    result = converter.convert(name, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    check_pretrained_fresh_process(result, get_entry(name), tmp_path / "fresh")


@pytest.mark.slow
@pytest.mark.full_size
def test_large_pretrained_conversion_passes_parity(tmp_path):
    result = converter.convert("TFVideoMAE_L_K400_16x224_PT", str(tmp_path), synthetic=True,
                               progress=False)
    assert result.parity.passed


# --- the encoder alone -----------------------------------------------------------------------

def _encoder_only_checkpoint(entry, path, seed=0):
    """A PT checkpoint holding the encoder only, as upstream's ViT-H PT file does."""
    state = random_state_dict(build_torch_model(entry, device="meta"), seed)
    state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    torch.save(upstream_container(entry, state), path)
    return path


def test_pretrained_file_without_decoder_points_to_encoder_only(tmp_path):
    entry = get_entry(TINY_PT)
    path = _encoder_only_checkpoint(entry, str(tmp_path / "encoder_only.pth"))
    with pytest.raises(CheckpointError, match="--encoder-only") as caught:
        converter.convert(entry, str(tmp_path / "out"), checkpoint=path, progress=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("mode", ["PT", "FT"])
def test_encoder_only_exports_tokens_and_pooled_features(tmp_path, mode, request):
    import tensorflow as tf

    entry = get_entry(f"TFVideoMAE_T_K400_4x32_{mode}")
    if mode == "PT":
        path = _encoder_only_checkpoint(entry, str(tmp_path / "encoder_only.pth"))
        result = converter.convert(entry, str(tmp_path / "out"), checkpoint=path,
                                   encoder_only=True, progress=False)
    else:  # synthetic, seed 0: the session's conversion (conftest), shared with test_litert
        result = request.getfixturevalue("tiny_encoder_converted")
    assert result.entry.name == f"{entry.name}_encoder"
    assert os.path.basename(result.paths["keras"]) == f"{entry.name}_encoder.keras"
    assert {o.output for o in result.parity.outputs} == {"tokens", "pooled"}
    assert result.parity.passed
    serving = tf.saved_model.load(result.paths["savedmodel"]).signatures["serving_default"]
    video = np.zeros((3, 4, 32, 32, 3), np.float32)
    outputs = serving(video=tf.constant(video))
    dim = entry.dims["embed_dim"]
    assert outputs["tokens"].shape == (3, entry.num_patches, dim)
    assert outputs["pooled"].shape == (3, dim)


def test_encoder_only_features_match_upstream_forward_features(tmp_path, tiny_encoder_converted):
    """FT encoder-only pooled features are exactly what upstream's head sees."""
    import keras

    entry = get_entry("TFVideoMAE_T_K400_4x32_FT")
    result = tiny_encoder_converted  # synthetic, seed 0, encoder only
    model = keras.saving.load_model(result.paths["keras"])
    checkpoint = write_synthetic_checkpoint(entry, str(tmp_path / "ckpt.pth"), 0)
    reference = build_torch_model(entry)
    reference.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    video = np.random.default_rng(5).standard_normal((2, 3, 4, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        pooled = reference.forward_features(torch.from_numpy(video)).numpy()
        logits = reference(torch.from_numpy(video)).numpy()
    found = keras.ops.convert_to_numpy(model(video.transpose(0, 2, 3, 4, 1))["pooled"])
    assert np.max(np.abs(found - pooled)) <= TOLERANCE
    head = reference.head
    recomputed = found @ head.weight.detach().numpy().T + head.bias.detach().numpy()
    assert np.max(np.abs(recomputed - logits)) <= TOLERANCE


# --- reconstruction --------------------------------------------------------------------------

def test_reconstruct_command_writes_a_strip_and_refuses_a_classifier(tiny_pt_converted,
                                                                     tiny_converted, tmp_path):
    from PIL import Image

    from videomae_cli.reconstruct import reconstruct_command as reconstruct_main

    clip = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    np.save(tmp_path / "clip.npy", clip)
    out = tmp_path / "strip.png"
    runner = CliRunner()
    result = runner.invoke(reconstruct_main, ["--model", tiny_pt_converted.paths["keras"],
                                              "--clip", str(tmp_path / "clip.npy"),
                                              "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mask ratio 0.9" in result.output
    with Image.open(out) as image:
        width, height = image.size
    assert height > 3 * 32 and width >= 4 * 32  # three rows of frames
    again = runner.invoke(reconstruct_main, ["--model", tiny_pt_converted.paths["keras"],
                                             "--clip", str(tmp_path / "clip.npy"),
                                             "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output

    ft = tiny_converted  # the session's tiny FT conversion (synthetic, seed 0)
    refused = runner.invoke(reconstruct_main, ["--model", ft.paths["keras"], "--clip",
                                               str(tmp_path / "clip.npy"), "--out",
                                               str(tmp_path / "x.png")])
    assert refused.exit_code == 2 and "fine-tuned (FT)" in refused.output
    assert "pre-trained (PT)" in refused.output
    assert "Traceback" not in refused.output


def test_reconstruction_through_the_savedmodel_matches_the_keras_file(tiny_pt_converted):
    from tf_models.video.reconstruct import load_pretrained_model

    clip = np.random.default_rng(1).standard_normal((1, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, 1, np.random.default_rng(2))
    by_keras = load_pretrained_model(tiny_pt_converted.paths["keras"])
    by_savedmodel = load_pretrained_model(tiny_pt_converted.paths["savedmodel"])
    for model in (by_keras, by_savedmodel):
        geometry = (model.num_frames, model.img_size, model.patch_size, model.tubelet_size)
        assert geometry == (4, 32, 16, 2)
        assert model.preset.name == "TFVideoMAE_T_K400_4x32_PT" and model.mask_ratio == 0.9
    np.testing.assert_allclose(by_keras.predict(clip, mask), by_savedmodel.predict(clip, mask),
                               atol=1e-6)


def test_reconstruction_loads_a_kerashub_preset_folder_named_after_its_entry(tiny_pt_converted,
                                                                             tmp_path):
    """``videomae-reconstruct --model`` on a keras-hub preset folder (before: an
    AttributeError traceback, keras-hub's loader sets no ``preset``): the zoo row the folder
    is named after gives the mask ratio, and the predictions are the ``.keras`` file's."""
    import keras

    from tf_models.kerashub_presets import save_zoo_preset
    from tf_models.presets import get_preset
    from tf_models.video.reconstruct import load_pretrained_model

    model = keras.saving.load_model(tiny_pt_converted.paths["keras"], compile=False)
    folder = save_zoo_preset(model, get_preset(TINY_PT), str(tmp_path / TINY_PT))
    by_preset = load_pretrained_model(folder)
    assert by_preset.preset.name == TINY_PT and by_preset.mask_ratio == 0.9
    clip = np.random.default_rng(3).standard_normal((1, 4, 32, 32, 3), dtype=np.float32)
    mask = tube_mask(4, 32, 16, 2, 0.5, 1, np.random.default_rng(4))
    np.testing.assert_array_equal(
        by_preset.predict(clip, mask),
        load_pretrained_model(tiny_pt_converted.paths["keras"]).predict(clip, mask))
