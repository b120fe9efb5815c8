"""Fine-tuning pieces in-process (TensorFlow backend): drop path and head dropout act only while
training, layer-wise learning-rate decay follows upstream's layer ids, a new head starts as
upstream's does."""

import numpy as np
import pytest

from conftest import TINY_FT


@pytest.fixture
def tiny_classifier():
    import tf_models

    preset = tf_models.get_preset(TINY_FT)
    return tf_models.VideoMAEVideoClassifier(**preset.backbone_config(), num_classes=5,
                                        drop_path_rate=0.5, dropout=0.5)


def test_drop_path_and_dropout_act_only_while_training(tiny_classifier):
    clip = np.random.default_rng(0).standard_normal((4, 4, 32, 32, 3), dtype=np.float32)
    inference = [np.asarray(tiny_classifier(clip)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    training = [np.asarray(tiny_classifier(clip, training=True)) for _ in range(3)]
    assert any(not np.allclose(t, inference[0]) for t in training)
    rates = [block.drop_path_rate for block in tiny_classifier.backbone.blocks]
    assert rates == [0.0, 0.5]  # linear from 0 to the rate over the blocks, as upstream


def test_layer_decay_scales_follow_upstream_layer_ids(tiny_classifier):
    import tf_models

    optimizer = tf_models.layer_decay_optimizer(tiny_classifier, learning_rate=1.0,
                                                layer_decay=0.5)
    by_name = {name: optimizer.lr_scales[v.path]
               for name, v in tiny_classifier.named_variables().items()}
    # depth 2: patch_embed id 0 -> 0.5**3, blocks.i id i+1, fc_norm/head id 3 -> 1
    assert by_name["patch_embed.proj.kernel"] == 0.125
    assert by_name["blocks.0.attn.qkv.kernel"] == 0.25
    assert by_name["blocks.1.mlp.fc2.bias"] == 0.5
    assert by_name["head.kernel"] == by_name["fc_norm.gamma"] == 1.0
    decayed = set(optimizer.decay_paths)
    variables = tiny_classifier.named_variables()
    assert variables["blocks.0.mlp.fc1.kernel"].path in decayed
    assert variables["blocks.0.mlp.fc1.bias"].path not in decayed
    assert variables["fc_norm.gamma"].path not in decayed


def test_layer_decay_really_scales_each_update():
    import keras
    import tf_models

    preset = tf_models.get_preset(TINY_FT)
    model = tf_models.VideoMAEVideoClassifier(**preset.backbone_config(), num_classes=3)
    optimizer = tf_models.layer_decay_optimizer(model, learning_rate=1e-3, layer_decay=0.1,
                                                weight_decay=0.0)
    variables = model.named_variables()
    patch, head = variables["patch_embed.proj.bias"], variables["head.bias"]
    before = {n: keras.ops.convert_to_numpy(v).copy() for n, v in (("patch", patch),
                                                                   ("head", head))}
    grads = [keras.ops.ones_like(v) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    # Adam's first step moves each element by lr * scale (the gradient normalises away)
    step_patch = np.abs(keras.ops.convert_to_numpy(patch) - before["patch"]).max()
    step_head = np.abs(keras.ops.convert_to_numpy(head) - before["head"]).max()
    np.testing.assert_allclose(step_head, 1e-3, rtol=1e-3)
    np.testing.assert_allclose(step_patch, 1e-3 * 0.1 ** 3, rtol=1e-3)


@pytest.mark.parametrize("setting, value", [
    ("layer_decay", 1.5), ("layer_decay", 0.0), ("layer_decay", -0.5),
    ("layer_decay", float("nan")), ("layer_decay", "0.75"), ("layer_decay", None),
    ("layer_decay", True), ("weight_decay", -0.05), ("weight_decay", float("inf")),
    ("weight_decay", "0.05")])
def test_layer_decay_optimizer_refuses_settings_outside_upstreams_range(tiny_classifier, setting,
                                                                       value):
    """Before: taken silently (layer_decay 1.5: rates growing toward the input; a negative
    weight decay growing the weights), or a TypeError deep inside for a string."""
    import tf_models

    expected = {"layer_decay": "(0, 1]", "weight_decay": "[0, inf)"}[setting]
    with pytest.raises(ValueError) as caught:
        tf_models.layer_decay_optimizer(tiny_classifier, **{setting: value})
    assert str(caught.value) == (f"{setting} {value!r}: expected a number in {expected}, "
                                 "upstream's range")
    for fine in ({"layer_decay": 1.0, "weight_decay": 0.0}, {"layer_decay": np.float32(0.5)}):
        assert tf_models.layer_decay_optimizer(tiny_classifier, **fine).lr_scales


def _decay_steps(model, optimizer):
    """One step of ``optimizer`` on ``model``'s trainable variables with zero gradients (Adam's
    own step is then zero: only weight decay moves them): {name: new / old}, elementwise."""
    import keras

    named = {v.path: name for name, v in model.named_variables().items()}
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}
    optimizer.apply([keras.ops.zeros_like(v) for v in model.trainable_variables],
                    model.trainable_variables)
    ratios = {}
    for v in model.trainable_variables:
        old = before[v.path]
        ratios[named[v.path]] = np.unique(np.round(keras.ops.convert_to_numpy(v)[old != 0]
                                                   / old[old != 0], 6))
    return ratios


def test_weight_decay_skips_what_upstream_skips_the_pretrainers_mask_token():
    """Upstream's get_parameter_groups skips 1-D tensors, biases and no_weight_decay()
    (modeling_pretrain.py: pos_embed, cls_token, mask_token). Before: the pre-trainer's
    mask_token (1, 1, D) was decayed."""
    import tf_models
    from model_harness import randomise

    preset = tf_models.get_preset(TINY_FT)
    pretrainer = tf_models.VideoMAEMaskedAutoencoder(
        **preset.backbone_config(), decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    randomise(pretrainer)
    optimizer = tf_models.layer_decay_optimizer(pretrainer, learning_rate=0.1, layer_decay=1.0,
                                                weight_decay=0.5)
    ratios = _decay_steps(pretrainer, optimizer)
    np.testing.assert_array_equal(ratios["mask_token"], [1.0])
    for name in ("encoder_to_decoder.kernel", "decoder.head.kernel",
                 "encoder.blocks.0.attn.qkv.kernel"):
        np.testing.assert_allclose(ratios[name], [1 - 0.1 * 0.5], err_msg=name)
    for name in ("decoder.head.bias", "decoder.norm.gamma", "encoder.patch_embed.proj.bias"):
        np.testing.assert_array_equal(ratios[name], [1.0], err_msg=name)


def test_a_backbone_frozen_when_the_optimizer_is_made_trains_as_upstream_once_unfrozen(
        tiny_classifier):
    """Two-stage fine-tuning: the head trained with the backbone frozen, then the backbone
    unfrozen and trained by a fresh optimizer from the first one's config (what Keras asks
    for a new set of variables; what a .keras file saved in stage one gives back). Before:
    the decay set came from the variables trainable when the optimizer was made, so the
    backbone's kernels were never decayed."""
    import tf_models
    from model_harness import randomise
    from tf_models.finetune import LayerDecayAdamW

    randomise(tiny_classifier)
    tiny_classifier.backbone.trainable = False
    optimizer = tf_models.layer_decay_optimizer(tiny_classifier, learning_rate=0.1,
                                                layer_decay=0.5, weight_decay=0.5)
    assert set(_decay_steps(tiny_classifier, optimizer)) == {"head.kernel", "head.bias",
                                                            "fc_norm.gamma", "fc_norm.beta"}
    tiny_classifier.backbone.trainable = True
    ratios = _decay_steps(tiny_classifier, LayerDecayAdamW.from_config(optimizer.get_config()))
    # depth 2: the rate of patch_embed (id 0) is 0.1 * 0.5 ** 3, of block i 0.1 * 0.5 ** (2 - i)
    for name, scale in (("patch_embed.proj.kernel", 0.125), ("blocks.0.mlp.fc1.kernel", 0.25),
                        ("blocks.1.attn.proj.kernel", 0.5), ("head.kernel", 1.0)):
        np.testing.assert_allclose(ratios[name], [1 - 0.1 * scale * 0.5], err_msg=name)
    np.testing.assert_array_equal(ratios["blocks.0.mlp.fc1.bias"], [1.0])


def test_a_run_without_rates_trains_at_upstreams_rates_for_its_batch_of_videos(tiny_classifier):
    """No --lr / --min-lr: upstream's rates per 256 videos scaled by the batch's videos, as
    run_class_finetuning.py scales them (before: 1e-3 as the rate, 64 x upstream's here);
    given ones as given."""
    from tf_models.train.loop import FinetuneConfig, compile_model, run_record, with_rates

    # upstream: --lr 1e-3 and --min_lr 1e-6 per 256 videos, times its batch of videos / 256;
    # 8 clips of 2 per video are 4 videos
    config = FinetuneConfig(model=TINY_FT, list_path="-", num_classes=5, out="-", batch_size=8,
                            num_sample=2, warmup_epochs=1)
    schedule = compile_model(tiny_classifier, config, 20, 2).optimizer.get_config()[
        "learning_rate"]["config"]
    assert schedule["base_lr"] == pytest.approx(1e-3 * 4 / 256)
    assert schedule["min_lr"] == pytest.approx(1e-6 * 4 / 256)
    given = FinetuneConfig(model=TINY_FT, list_path="-", num_classes=5, out="-", batch_size=8,
                           lr=0.02, min_lr=0.0)
    schedule = compile_model(tiny_classifier, given, 20, 2).optimizer.get_config()[
        "learning_rate"]["config"]
    assert (schedule["base_lr"], schedule["min_lr"]) == (0.02, 0.0)  # as given
    # a run records the rates it trains at, so a resume compares those, not None
    run = run_record(with_rates(config), [], None)
    assert (run["lr"], run["min_lr"]) == (pytest.approx(1e-3 * 4 / 256),
                                          pytest.approx(1e-6 * 4 / 256))


def test_clip_grad_scales_the_whole_gradient_to_its_norm_as_upstream(tiny_classifier):
    """--clip_grad (V2's ViT-g scripts: 5.0): upstream's clip_grad_norm_ over every parameter
    before AdamW's step, here Keras's global_clipnorm. Two steps whose gradients' norms differ
    a hundredfold (Adam's first step alone does not show a gradient's scale), against torch's
    AdamW after clip_grad_norm_; without the clip the weights land elsewhere."""
    import keras
    import torch

    import tf_models
    from tf_models.train.loop import FinetuneConfig, compile_model

    config = FinetuneConfig(model=TINY_FT, list_path="-", num_classes=5, out="-", lr=1e-3,
                            min_lr=1e-3, warmup_epochs=0, clip_grad=0.5)
    assert compile_model(tiny_classifier, config, 20, 2).optimizer.global_clipnorm == 0.5
    unclipped = FinetuneConfig(model=TINY_FT, list_path="-", num_classes=5, out="-")
    assert compile_model(tiny_classifier, unclipped, 20, 2).optimizer.global_clipnorm is None

    variables = tiny_classifier.trainable_variables
    start = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    rng = np.random.default_rng(3)
    steps = [[scale * rng.standard_normal(w.shape).astype(np.float32) for w in start]
             for scale in (1.0, 0.01)]
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in start]
    reference = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.0)
    for grads in steps:
        for param, grad in zip(params, grads):
            param.grad = torch.from_numpy(grad.copy())
        norm = torch.nn.utils.clip_grad_norm_(params, 0.5)
        assert norm > 0.5  # both steps are over the limit: each is scaled to 0.5
        reference.step()
    expected = [p.detach().numpy() for p in params]
    for clip in (0.5, None):
        for variable, value in zip(variables, start):
            variable.assign(value)
        optimizer = tf_models.layer_decay_optimizer(tiny_classifier, learning_rate=1e-3,
                                                    layer_decay=1.0, weight_decay=0.0,
                                                    global_clipnorm=clip)
        for grads in steps:
            optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        gap = max(np.max(np.abs(keras.ops.convert_to_numpy(v) - e))
                  for v, e in zip(variables, expected))
        if clip is not None:
            assert gap < 1e-6, gap
        else:  # the second step's small gradient weighs a hundredth: another place
            assert gap > 1e-4, gap


@pytest.mark.parametrize("amsgrad", [False, True])
def test_layer_decay_adamw_steps_as_torchs_adamw_on_gradients_near_epsilon(tiny_classifier,
                                                                          amsgrad):
    """Upstream fine-tunes and pre-trains with torch.optim.AdamW, one parameter group per
    (layer rate, decay or not). Three steps of ours against torch's with those groups, its
    eps 1e-8 and gradients a hundredth of a unit down to a tenth of eps (and some exactly 0).
    Before: Keras's Adam added eps to sqrt(v) before the bias correction, so an element
    whose gradient is near eps moved up to 0.7 x its rate less than upstream's.
    (Within 2e-6: float32 rounding of weights near 1, three steps; the old gap was larger.)"""
    import keras
    import torch

    import tf_models
    from model_harness import randomise
    from tf_models.finetune import decay_paths

    randomise(tiny_classifier)
    variables = tiny_classifier.trainable_variables
    optimizer = tf_models.layer_decay_optimizer(tiny_classifier, learning_rate=1e-3,
                                                layer_decay=0.5, weight_decay=0.05,
                                                amsgrad=amsgrad)
    start = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    rng = np.random.default_rng(5)
    scales = (1e-2, 1e-6, 1e-8, 1e-9)  # per step, per element: a few scales near eps
    steps = [[(rng.choice(scales, w.shape) * rng.standard_normal(w.shape)
               * (rng.random(w.shape) > 0.1)).astype(np.float32) for w in start]
             for _ in range(3)]
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in start]
    decayed = set(decay_paths(tiny_classifier))
    groups = {}
    for param, variable in zip(params, variables):
        key = (optimizer.lr_scales[variable.path], variable.path in decayed)
        groups.setdefault(key, []).append(param)
    reference = torch.optim.AdamW(
        [{"params": group, "lr": 1e-3 * scale, "weight_decay": 0.05 if decay else 0.0}
         for (scale, decay), group in groups.items()],
        betas=(0.9, 0.999), eps=1e-8, amsgrad=amsgrad)
    assert len(groups) > 2  # several rates, with and without decay
    for grads in steps:
        for param, grad in zip(params, grads):
            param.grad = torch.from_numpy(grad.copy())
        reference.step()
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
    for variable, param, first in zip(variables, params, start):
        ours = keras.ops.convert_to_numpy(variable)
        np.testing.assert_allclose(ours, param.detach().numpy(), rtol=0, atol=2e-6,
                                   err_msg=variable.path)
        assert np.abs(ours - first).max() > 1e-5  # every variable moved


def test_a_new_head_starts_as_upstream_fine_tuning_does(tiny_classifier):
    import keras

    kernel = keras.ops.convert_to_numpy(tiny_classifier.head.kernel)
    assert 0 < kernel.std() < 0.02 * 0.001 * 1.5  # trunc-normal(0.02) scaled by 0.001
    assert not keras.ops.convert_to_numpy(tiny_classifier.head.bias).any()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(tiny_classifier.fc_norm.gamma), 1)


def test_a_model_trained_in_mixed_precision_is_saved_as_float32(tmp_path):
    """--mixed-precision trains under mixed_bfloat16; model.keras is the plain float32 model
    the README promises, every layer (the backbone's policy sits inside the task's config:
    before, only the top level was reset, and the saved model ran, and exported, in bf16)."""
    import keras

    import tf_models
    from model_harness import randomise
    from tf_models.train.loop import save_model

    preset = tf_models.get_preset(TINY_FT)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = tf_models.VideoMAEVideoClassifier(**preset.backbone_config(), num_classes=5)
    finally:
        keras.config.set_dtype_policy(previous)
    randomise(mixed)
    path = save_model(mixed, str(tmp_path / "model.keras"))
    assert keras.config.dtype_policy().name == previous.name
    loaded = keras.saving.load_model(path, compile=False)
    policies = {layer.dtype_policy.name for layer in loaded._flatten_layers()}
    assert policies == {"float32"}, policies
    plain = tf_models.VideoMAEVideoClassifier(**preset.backbone_config(), num_classes=5)
    for target, source in zip(plain.weights, mixed.weights):
        target.assign(np.asarray(source.value, dtype=np.float32))
    clip = np.random.default_rng(1).standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    found = np.asarray(loaded(clip))
    assert found.dtype == np.float32
    np.testing.assert_array_equal(found, np.asarray(plain(clip)))


def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path):
    """An empty checkpoint.npz (before: EOFError, which click took for Ctrl-C: "Aborted!") or
    one cut short (before: a BadZipFile traceback) is a CheckpointError naming the file."""
    import json

    from tf_models.train.checkpoint import CheckpointError, read_state

    whole = tmp_path / "whole.npz"
    state = np.frombuffer(json.dumps({"format": "x"}).encode(), dtype=np.uint8)
    np.savez(whole, state=state, model_0=np.random.default_rng(0).standard_normal(50_000))
    assert read_state(str(whole)) == {"format": "x"}
    data = whole.read_bytes()
    for name, content in (("empty.npz", b""), ("cut.npz", data[: len(data) // 2]),
                          ("text.npz", b"not a checkpoint\n")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as caught:
            read_state(str(path))
        assert str(caught.value).startswith(f"{path}: not a readable videomae-finetune "
                                            "checkpoint ("), str(caught.value)


def test_a_saved_model_reloads_with_its_optimizer_and_its_state(tmp_path):
    """The README's Python route (layer_decay_optimizer, fit, save): load_model gives the
    optimizer back with its step and moments (before: keras-hub's own compile made Keras skip
    the saved compile config, so a default Adam came back, its state dropped with a warning);
    a model saved before any step, or without an optimizer (as the converter's are), loads
    without a warning (before: Keras's "Skipping variable loading for optimizer")."""
    import warnings

    import keras

    import tf_models
    from model_harness import randomise

    preset = tf_models.get_preset(TINY_FT)
    model = tf_models.VideoMAEVideoClassifier(**preset.backbone_config(), num_classes=3)
    randomise(model)
    fresh = str(tmp_path / "fresh.keras")
    model.save(fresh)
    bare = tf_models.VideoMAEVideoClassifier(**preset.backbone_config(), num_classes=3,
                                             compile=False)
    bare.save(str(tmp_path / "bare.keras"))
    model.compile(optimizer=tf_models.layer_decay_optimizer(model, 1e-3),
                  loss="sparse_categorical_crossentropy")
    clips = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    model.fit(clips, np.array([0, 2]), epochs=1, batch_size=2, verbose=0)
    trained = str(tmp_path / "trained.keras")
    model.save(trained)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = keras.saving.load_model(trained)
        keras.saving.load_model(fresh)
        keras.saving.load_model(str(tmp_path / "bare.keras"))
    assert type(loaded.optimizer).__name__ == "LayerDecayAdamW"
    assert int(loaded.optimizer.iterations) == 1
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables) > 2
    for found, saved in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(found), np.asarray(saved))
    loaded.fit(clips, np.array([0, 2]), epochs=1, batch_size=2, verbose=0)
    assert int(loaded.optimizer.iterations) == 2  # it trains on from its step


def _count_calls(model, method):
    """Wrap ``model.METHOD`` (a train or test step): how often Keras traced it."""
    calls = []
    step = getattr(model, method)

    def counted(data):
        calls.append(1)
        return step(data)
    setattr(model, method, counted)
    return calls


def test_the_first_training_step_of_fit_and_train_on_batch_is_traced_once(monkeypatch):
    """Keras builds a new optimizer's slots inside the first traced training step when no
    distribution strategy is set, and ``tf.function`` traces a step that created variables a
    second time; our tasks build first from the batch's spec
    (``compiling.BuildsBeforeTracing``): one trace for a classifier's first ``fit`` and (after
    a new ``compile``) ``train_on_batch``, and a pre-trainer's first ``fit``; the classifier's
    step gives the same loss and weights as its twin's, built the old way (that build turned
    off), which traced twice."""
    import keras

    import tf_models
    import tf_models.compiling as compiling

    sizes = dict(embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=16,
                 tubelet_size=2)
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    labels = np.arange(2)

    def fitted_classifier():
        keras.utils.set_random_seed(1)
        model = tf_models.VideoMAEVideoClassifier(**sizes, num_classes=5)
        model.compile(optimizer=tf_models.layer_decay_optimizer(model, 1e-2))
        traced = _count_calls(model, "train_step")
        loss = model.fit(clips, labels, batch_size=2, verbose=0).history["loss"][0]
        return model, len(traced), loss

    with monkeypatch.context() as patched:
        patched.setattr(compiling, "build_before_tracing", lambda *a, **k: None)
        twin, twin_traces, twin_loss = fitted_classifier()
    classifier, traces, loss = fitted_classifier()
    assert (traces, twin_traces) == (1, 2)
    assert loss == twin_loss
    for new, old in zip(classifier.weights, twin.weights):
        np.testing.assert_array_equal(new.numpy(), old.numpy())

    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss=classifier.loss)
    traced = _count_calls(classifier, "train_step")
    classifier.train_on_batch(clips, labels)
    pretrainer = tf_models.VideoMAEMaskedAutoencoder(
        **sizes, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    pretrained = _count_calls(pretrainer, "train_step")
    pretrainer.fit({"video": clips, "mask": tf_models.tube_mask(4, 32, 16, 2, 0.5, 2, rng)},
                   np.zeros((2, 4, 2 * 16 * 16 * 3), np.float32), verbose=0)
    assert (len(traced), len(pretrained)) == (1, 1)


def _batch_losses(model, *args, **kwargs):
    """``model.fit(*args, **kwargs)``'s loss of every batch, per epoch (from Keras's running
    mean of equal batches), and its history."""
    import keras

    epochs, means = [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            means.clear()

        def on_train_batch_end(self, batch, logs=None):
            means.append(float(logs["loss"]))

        def on_epoch_end(self, epoch, logs=None):
            epochs.append([(k + 1) * m - k * (means[k - 1] if k else 0.0)
                           for k, m in enumerate(means)])

    history = model.fit(*args, verbose=0, callbacks=[Record()], **kwargs)
    return np.array(epochs), history.history


def test_fit_on_arrays_draws_a_new_order_every_epoch_unless_shuffle_is_false():
    """keras-hub's ``fit`` batched arrays in order and Keras ignores ``shuffle`` for its
    dataset: every epoch saw the same batches, ``shuffle=True`` or not. Now, as Keras's own
    ``fit``: each epoch a new order of every sample (the same under one seed), the given
    order with ``shuffle=False``, and ``validation_split``'s last samples held out unshuffled;
    for the classifier and the pre-trainer (a dict of video and mask). The learning rate is
    0, so each batch's loss says which samples it held."""
    import keras

    import tf_models

    sizes = dict(embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, patch_size=16,
                 tubelet_size=2)
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((8, 4, 32, 32, 3), dtype=np.float32)
    labels = np.arange(8) % 5
    classifier = tf_models.VideoMAEVideoClassifier(**sizes, num_classes=5)
    classifier.compile(optimizer=keras.optimizers.SGD(0.0), metrics=[])
    logits = classifier.predict(clips, verbose=0)
    each = -keras.ops.convert_to_numpy(keras.ops.log_softmax(logits))[np.arange(8), labels]
    in_order = each.reshape(4, 2).mean(axis=1)

    keras.utils.set_random_seed(3)
    shuffled, history = _batch_losses(classifier, clips, labels, batch_size=2, epochs=4)
    np.testing.assert_allclose(history["loss"], [each.mean()] * 4, rtol=1e-5)  # all, once
    assert not all(np.allclose(e, shuffled[0], rtol=1e-5) for e in shuffled[1:])
    assert not all(np.allclose(e, in_order, rtol=1e-5) for e in shuffled)
    keras.utils.set_random_seed(3)
    np.testing.assert_allclose(_batch_losses(classifier, clips, labels, batch_size=2,
                                             epochs=4)[0], shuffled, rtol=1e-5)
    ordered, _ = _batch_losses(classifier, clips, labels, batch_size=2, epochs=2,
                               shuffle=False)
    np.testing.assert_allclose(ordered, [in_order] * 2, rtol=1e-5)
    _, history = _batch_losses(classifier, clips, labels, batch_size=2, epochs=2,
                               validation_split=0.25)
    np.testing.assert_allclose(history["loss"], [each[:6].mean()] * 2, rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], [each[6:].mean()] * 2, rtol=1e-5)

    pretrainer = tf_models.VideoMAEMaskedAutoencoder(
        **sizes, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    inputs = {"video": clips, "mask": tf_models.tube_mask(4, 32, 16, 2, 0.5, 8, rng)}
    targets = rng.standard_normal((8, 4, 2 * 16 * 16 * 3)).astype(np.float32)
    keras.utils.set_random_seed(4)
    shuffled, history = _batch_losses(pretrainer, inputs, targets, batch_size=2, epochs=3)
    assert np.ptp(history["loss"]) < 1e-5 * history["loss"][0]
    assert not all(np.allclose(e, shuffled[0], rtol=1e-5) for e in shuffled[1:])
    ordered, _ = _batch_losses(pretrainer, inputs, targets, batch_size=2, epochs=2,
                               shuffle=False)
    np.testing.assert_allclose(ordered[1], ordered[0], rtol=1e-5)
