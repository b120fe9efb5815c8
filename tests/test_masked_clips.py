"""Continuing pre-training with a new tube mask for every clip every epoch
(``tf_models.video.masked_clips.MaskedClips``), as upstream's data pipeline draws them, and
V2's running-cell decode masks on the Keras side."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import converter  # noqa: F401  (torch before TensorFlow, as the console scripts import)
from torch_reference import running_cell_mask

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V1 = "TFVideoMAE_T_K400_4x32_PT"  # 2 x 2 x 2 tokens, 3 of each frame's 4 masked (0.9)
V2 = "TFVideoMAEv2_Tg_Hybrid_4x28_PT"  # running-cell decode mask at 0.5


def _pretrainer(name):
    import tf_models

    return tf_models.VideoMAEMaskedAutoencoder.from_preset(name, load_weights=False)


def _clips(count, size, seed=0):
    return np.random.default_rng(seed).uniform(size=(count, 4, size, size, 3)).astype(
        np.float32)


def _epoch_masks(data, epoch):
    """Every clip's mask in ``epoch``, by clip index: (clips, tokens)."""
    masks = np.zeros((len(data.clips01), 8), dtype=bool)
    for index in range(len(data)):
        ids = data.order(epoch)[index * data.batch_size:(index + 1) * data.batch_size]
        masks[ids] = data.batch(epoch, index)[0]["mask"]
    return masks


def test_keras_side_running_cell_mask_is_the_reference_one():
    import tf_models

    for args in ((16, 224, 16, 2, 0.5, 5), (4, 28, 14, 2, 0.5, 7), (8, 64, 16, 2, 0.25, 3)):
        expected = running_cell_mask(*args, np.random.default_rng(3))
        assert (tf_models.running_cell_mask(*args, np.random.default_rng(3)) == expected).all()
    with pytest.raises(ValueError, match="even patch grid"):
        tf_models.running_cell_mask(4, 42, 14, 2, 0.5)


def test_masks_differ_between_epochs_and_clips_and_hide_upstreams_count():
    """Each clip draws its own tube mask, a new one every epoch, each hiding
    ``int(0.9 * 4) = 3`` patches of every frame (the preset's pre-training ratio); the
    targets are ``masked_targets`` of the drawn masks, the clips ImageNet-normalised."""
    from tf_models.video.masked_clips import MaskedClips
    from tf_models.video.reconstruct import masked_targets, normalize_clip

    model = _pretrainer(V1)
    clips = _clips(12, 32)
    data = MaskedClips(clips, model, batch_size=4, seed=5)
    assert (len(data), data.mask_ratio, data.decoder_mask_ratio) == (3, 0.9, None)
    epochs = [_epoch_masks(data, epoch) for epoch in range(3)]
    for masks in epochs:
        per_frame = masks.reshape(12, 2, 4)
        assert (per_frame.sum(axis=2) == 3).all() and (per_frame[:, :1] == per_frame).all()
        assert len({row.tobytes() for row in masks}) > 1  # clips differ
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert (epochs[a] != epochs[b]).any(axis=1).sum() >= 6, (a, b)  # 1 in 4 alike
    inputs, targets = data.batch(1, 2)
    ids = data.order(1)[8:12]
    assert set(inputs) == {"video", "mask"}
    np.testing.assert_array_equal(inputs["video"], normalize_clip(clips[ids]))
    np.testing.assert_array_equal(targets, masked_targets(clips[ids], inputs["mask"]))
    assert sorted(data.order(1)) == list(range(12))
    assert (data.order(0) != data.order(1)).any()


def test_the_same_seed_gives_the_same_batches_and_another_seed_others():
    from tf_models.video.masked_clips import MaskedClips

    model = _pretrainer(V1)
    clips = list(_clips(5, 32, seed=1))  # a list of clips: any indexable
    first, again = (MaskedClips(clips, model, batch_size=2, seed=9) for _ in range(2))
    other = MaskedClips(clips, model, batch_size=2, seed=10)
    for epoch in range(2):
        for index in range(3):
            a, b, c = (d.batch(epoch, index) for d in (first, again, other))
            np.testing.assert_array_equal(a[0]["mask"], b[0]["mask"])
            np.testing.assert_array_equal(a[1], b[1])
    assert any((first.batch(e, i)[0]["mask"] != other.batch(e, i)[0]["mask"]).any()
               for e in range(2) for i in range(3))
    unshuffled = MaskedClips(clips, model, batch_size=2, seed=9, shuffle=False)
    assert list(unshuffled.order(3)) == [0, 1, 2, 3, 4] and len(unshuffled[2][1]) == 1


def test_v2_batches_carry_running_cell_decode_masks_and_the_decoded_tokens_targets():
    """The V2 pre-trained preset pre-trains with a running-cell decoder mask at 0.5: each
    batch carries one per clip (half the tokens decoded), and the targets are the decoded
    tokens' (``masked_targets(clips, ~decode_mask)``, patches of 14)."""
    from tf_models.video.masked_clips import MaskedClips
    from tf_models.video.reconstruct import masked_targets

    model = _pretrainer(V2)
    clips = (_clips(3, 28) * 255).astype(np.uint8)  # uint8 frames too
    data = MaskedClips(clips, model, batch_size=3, seed=2)
    assert (data.mask_ratio, data.decoder_mask_ratio) == (0.9, 0.5)
    inputs, targets = data[0]
    ids = data.order(0)
    assert (inputs["decode_mask"].sum(axis=1) == 4).all()
    np.testing.assert_allclose(targets, masked_targets(clips[ids] / np.float32(255),
                                                       ~inputs["decode_mask"], patch=14),
                               rtol=1e-6)
    assert targets.shape == (3, 4, 1176)
    assert set(MaskedClips(clips, model, decoder_mask_ratio=0)[0][0]) == {"video", "mask"}


def test_masked_clips_refuse_clips_of_another_shape_in_one_line():
    from tf_models.video.masked_clips import MaskedClips

    model = _pretrainer(V1)
    with pytest.raises(ValueError, match=r"takes clips \(4, 32, 32, 3\).*\(4, 28, 28, 3\)"):
        MaskedClips(_clips(2, 28), model)
    with pytest.raises(ValueError, match="mask_ratio must be at least 0 and below 1"):
        MaskedClips(_clips(2, 32), model, mask_ratio=1.0)


def test_a_tiny_pretrainer_fits_each_epoch_on_that_epochs_masks():
    """``fit`` takes the batches (before: keras-hub read the PyDataset as an array,
    "inhomogeneous shape"), and epoch ``e``'s loss is the error on ``batch(e, i)``: the
    masks of that epoch, not the first epoch's again. Learning rate 0 and no dropout, so the
    training loss is the evaluated one; the count moves on once per epoch, and on from there
    in the next ``fit``."""
    import keras

    from tf_models.video.masked_clips import MaskedClips

    keras.utils.set_random_seed(0)
    model = _pretrainer(V1)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    data = MaskedClips(_clips(6, 32, seed=3), model, batch_size=2, seed=4)
    held_out = MaskedClips(_clips(2, 32, seed=6), model, batch_size=2, seed=7)
    history = model.fit(data, validation_data=held_out, epochs=3, verbose=0).history
    losses = history["loss"]
    assert data.epoch == 3 and held_out.epoch == 0  # validation keeps its masks
    assert len(set(history["val_loss"])) == 1
    assert model.evaluate(held_out, verbose=0) == pytest.approx(history["val_loss"][0], rel=1e-5)
    expected = [np.mean([model.evaluate(*data.batch(epoch, index), verbose=0)
                         for index in range(3)]) for epoch in range(3)]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert len(set(np.round(expected, 6))) == 3  # other masks, other losses
    model.fit(data, epochs=1, verbose=0)
    assert data.epoch == 4


def test_a_pretrainer_with_a_preprocessor_refuses_a_pydataset_in_one_line():
    """And arrays given as ``validation_data`` beside one are checked as beside arrays."""
    from tf_models.video.masked_clips import MaskedClips

    model = _pretrainer(V1)
    data = MaskedClips(_clips(2, 32), model, batch_size=2)
    inputs, targets = data.batch(0, 0)
    bad = ({"video": inputs["video"], "mask": inputs["mask"][:1]}, targets)
    for args, kwargs in (((), {"validation_data": bad}), ((2, 1, 0, None, 0.0, bad), {})):
        with pytest.raises(ValueError, match="validation_data.*mask"):
            model.fit(data, None, *args, **kwargs)
    model.preprocessor = object()
    with pytest.raises(ValueError, match="past its preprocessor"):
        model.fit(data, verbose=0)


def test_a_jax_pretrainer_fits_two_epochs_of_masked_clips_compiling_once():
    """The same batches on JAX (a child process): the per-count step compiles once for the
    preset's ratio, and each epoch's loss is that epoch's masks' error."""
    code = textwrap.dedent(f"""
        import json
        import keras
        import numpy as np
        import tf_models
        from tf_models.video.masked_clips import MaskedClips
        keras.utils.set_random_seed(0)
        model = tf_models.VideoMAEMaskedAutoencoder.from_preset({V1!r}, load_weights=False)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        clips = np.random.default_rng(3).uniform(size=(4, 4, 32, 32, 3)).astype("float32")
        data = MaskedClips(clips, model, batch_size=2, seed=4)
        losses = model.fit(data, epochs=2, verbose=0).history["loss"]
        expected = [float(np.mean([model.evaluate(*data.batch(e, i), verbose=0)
                                   for i in range(2)])) for e in range(2)]
        print(json.dumps(dict(losses=losses, expected=expected, epoch=data.epoch,
                              counts=model.jitted_token_counts["train"])))
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT,
               JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(found["losses"], found["expected"], rtol=1e-5)
    assert found["epoch"] == 2 and found["counts"] == [[6, None]]
