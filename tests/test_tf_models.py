"""tf_models on the shared harness: backbone, classifier and pretrainer (tiny configuration)."""

import re

import numpy as np
import pytest

from conftest import TINY_FT, TINY_PT
from model_harness import (randomise, run_model_saving_test, run_named_variables_test,
                           run_serialization_test)

BLOCK = ["norm1.gamma", "norm1.beta", "attn.qkv.kernel", "attn.qkv.bias", "attn.proj.kernel",
         "attn.proj.bias", "norm2.gamma", "norm2.beta", "mlp.fc1.kernel", "mlp.fc1.bias",
         "mlp.fc2.kernel", "mlp.fc2.bias"]


def _encoder_names(prefix, depth, final):
    names = [f"{prefix}patch_embed.proj.kernel", f"{prefix}patch_embed.proj.bias"]
    names += [f"{prefix}blocks.{i}.{n}" for i in range(depth) for n in BLOCK]
    return names + ([f"{prefix}{final}.gamma", f"{prefix}{final}.beta"] if final else [])


def _clip(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 4, 32, 32, 3), dtype=np.float32)


def _refused_in_one_line(model, labels, cases):
    """Each (clips, words) of ``cases``: predict (the array, a dict), fit and evaluate raise
    one ValueError line matching ``words``."""
    for clips, words in cases:
        for call in (lambda: model.predict(clips, verbose=0),
                     lambda: model.predict({"video": clips}, verbose=0),
                     lambda: model.fit(clips, labels, verbose=0),
                     lambda: model.evaluate(clips, labels, verbose=0)):
            with pytest.raises(ValueError, match=words) as error:
                call()
            assert "\n" not in str(error.value)


def _models():
    import tf_models

    ft = tf_models.get_preset(TINY_FT)
    pt = tf_models.get_preset(TINY_PT)
    rng = np.random.default_rng(1)
    mask = tf_models.tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    return {
        "backbone": (tf_models.VideoMAEBackbone(**ft.backbone_config(), final_norm="norm"),
                     _clip(), _encoder_names("", 2, "norm")),
        "backbone_fc_norm": (tf_models.VideoMAEBackbone(**ft.backbone_config(),
                                                        final_norm="fc_norm"),
                             _clip(), _encoder_names("", 2, "fc_norm")),
        "classifier": (tf_models.VideoMAEVideoClassifier(**ft.model_config()), {"video": _clip()},
                       _encoder_names("", 2, None) + ["fc_norm.gamma", "fc_norm.beta",
                                                      "head.kernel", "head.bias"]),
        "pretrainer": (tf_models.VideoMAEMaskedAutoencoder(**pt.model_config()),
                       {"video": _clip(), "mask": mask},
                       _encoder_names("encoder.", 2, "norm")
                       + ["encoder_to_decoder.kernel", "mask_token", "decoder.norm.gamma",
                          "decoder.norm.beta", "decoder.head.kernel", "decoder.head.bias"]
                       + [f"decoder.blocks.0.{n}" for n in BLOCK]),
    }


@pytest.mark.parametrize("kind", ["backbone", "backbone_fc_norm", "classifier", "pretrainer"])
def test_model_round_trips_its_config_files_and_names(kind, tmp_path):
    model, inputs, names = _models()[kind]
    randomise(model)
    run_named_variables_test(model, names)
    run_serialization_test(model, inputs)
    run_model_saving_test(model, inputs, tmp_path)


def test_classifier_takes_a_tensor_a_dict_or_a_list_alike():
    """...and without Keras's input-structure warning (before: a UserWarning for the dict
    and the list, in calls and in predict)."""
    import warnings

    model, inputs, _ = _models()["classifier"]
    randomise(model)
    video = inputs["video"]
    by_tensor = np.asarray(model(video))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(by_tensor, np.asarray(model({"video": video})))
        np.testing.assert_array_equal(by_tensor, np.asarray(model([video])))
        # predict runs a traced graph: same maths, other fusion (unit-scale weights: ~ 20)
        for given in (video, {"video": video}):
            np.testing.assert_allclose(model.predict(given, verbose=0), by_tensor, atol=1e-4,
                                       rtol=1e-5)
        # and as a layer of another functional model, given a dict of symbolic inputs
        import keras
        inputs = keras.Input(video.shape[1:])
        outer = keras.Model(inputs, model({"video": inputs}))
        np.testing.assert_array_equal(np.asarray(outer(video)), by_tensor)


def test_backbone_takes_a_tensor_a_dict_or_a_list_alike():
    """As the classifier: ``{"video": ...}`` (its documented input) and ``[video]`` give the
    tensor's features, without Keras's input-structure warning (before: a UserWarning "The
    structure of `inputs` doesn't match the expected structure" for the dict and the list)."""
    import warnings

    backbone = _models()["backbone"][0]
    randomise(backbone)
    video = _clip()
    by_tensor = np.asarray(backbone(video)["pooled"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for given in ({"video": video}, [video]):
            np.testing.assert_array_equal(np.asarray(backbone(given)["pooled"]), by_tensor)
        np.testing.assert_allclose(backbone.predict({"video": video}, verbose=0)["pooled"],
                                   by_tensor, atol=1e-4, rtol=1e-5)


def test_a_classifier_refuses_clips_it_cannot_take_in_one_line():
    """predict / fit / evaluate on arrays of another frame count, or, with no preprocessor,
    another frame size or raw uint8 frames: one ValueError that says what the model takes
    (before: TensorFlow's "Incompatible shapes" from deep inside, or for uint8 frames wrong
    logits and no error). With the preset's preprocessor, uint8 frames of another size pass;
    a direct call, which runs no preprocessor, refuses uint8 frames either way."""
    import tf_models

    model, inputs, _ = _models()["classifier"]
    frames, size = model.backbone.num_frames, model.backbone.img_size
    rng = np.random.default_rng(5)
    longer = rng.standard_normal((2, frames + 2, size, size, 3)).astype(np.float32)
    larger = rng.standard_normal((2, frames, size + 8, size, 3)).astype(np.float32)
    raw = rng.integers(0, 256, (2, frames, size, size, 3), dtype=np.uint8)
    labels = np.array([0, 1])
    _refused_in_one_line(model, labels, ((longer, f"takes clips of {frames} frames"),
                                         (larger, "no preprocessor to resize"),
                                         (raw, "got uint8 ones")))
    preset = tf_models.get_preset(TINY_FT)
    converter = tf_models.VideoMAEVideoConverter(image_size=size, mean=preset.mean,
                                                 std=preset.std)
    model.preprocessor = tf_models.VideoMAEVideoClassifierPreprocessor(converter)
    resized = rng.integers(0, 256, (2, frames, size + 8, size + 4, 3), dtype=np.uint8)
    assert model.predict(resized, verbose=0).shape == (2, model.num_classes)
    # a direct call runs no preprocessor, with one or without: raw frames are refused there
    for given in (raw, {"video": raw}, [raw]):
        with pytest.raises(ValueError, match="a direct call takes normalised float32 frames"):
            model(given)
    with pytest.raises(ValueError, match=f"takes clips of {frames} frames, frames of any size"):
        model.predict(rng.integers(0, 256, (2, frames + 2, size, size, 3), dtype=np.uint8),
                      verbose=0)


def test_a_classifier_refuses_a_clip_without_a_batch_axis_or_other_channels_in_one_line():
    """predict / fit / evaluate on one clip without its batch axis, or (no preprocessor)
    frames of 1 channel: one ValueError saying the shape it takes (before: "Cannot take the
    length of shape with unknown rank" from our own check, or a graph error from the
    convolution; on JAX a failed predict leaves the model's variables purged)."""
    from tf_models.input_checks import leading_size

    model, _, _ = _models()["classifier"]
    clips, labels = _clip(), np.array([0, 1])
    _refused_in_one_line(model, labels, (
        (clips[0], r"add a batch axis to one clip \(clip\[None\]\)"),
        (clips[..., :1], "give each frame 3 channels"),
        (clips[None], "pass a batch of clips, 5 dimensions")))
    import tensorflow as tf

    assert leading_size(tf.TensorSpec(shape=None)) is None  # unknown rank: nothing stated


def test_a_classifier_refuses_labels_outside_its_classes_in_one_line():
    """fit / evaluate with a class index below 0 or not below ``num_classes`` (an array, a
    ``(batch, 1)`` array, a list): one ValueError line naming the range (before: TensorFlow's
    and PyTorch's loss failed deep inside; JAX clamped the index and trained without a word,
    tests/backend_check.py); one-hot labels are not read as indices."""
    from tf_models.input_checks import refuse_labels_out_of_range

    model, _, _ = _models()["classifier"]
    clips = _clip()
    for labels, found in ((np.array([0, model.num_classes]), model.num_classes),
                          (np.array([[-1], [0]]), -1), ([3, 1000], 1000)):
        for call in (lambda: model.fit(clips, labels, verbose=0),
                     lambda: model.evaluate(clips, labels, verbose=0)):
            with pytest.raises(ValueError, match=f"takes class indices 0 to "
                               f"{model.num_classes - 1} as labels .*; got {found}\\.") as error:
                call()
            assert "\n" not in str(error.value)
    refuse_labels_out_of_range(np.eye(3, dtype="int64"), "m:", 3)  # one-hot: not indices
    refuse_labels_out_of_range(np.array([0, 2]), "m:", 3)


def test_a_classifier_checks_clips_in_every_container_keras_hub_reads_as_arrays():
    """A list of clips, a nested list, a tuple and a dict of a list, to predict / fit /
    evaluate, get the array's checks, the batch of no clips included (before: only an
    array or a dict of one was checked: a list of 6-frame clips got Keras's input-spec
    error, not what to do; uint8 frames in a list were refused as "a direct call" that
    predict / fit would have preprocessed; ``predict([])`` and an empty batch in a tuple an
    UnboundLocalError from Keras, ``fit([])`` a multi-line error from inside the call)."""
    model, _, _ = _models()["classifier"]
    frames, size = model.backbone.num_frames, model.backbone.img_size
    rng = np.random.default_rng(6)
    longer = rng.standard_normal((2, frames + 2, size, size, 3)).astype(np.float32)
    raw = rng.integers(0, 256, (2, frames, size, size, 3), dtype=np.uint8)
    labels = np.array([0, 1])
    shape = re.escape(f"got (2, {frames + 2}, {size}, {size}, 3)")
    cases = [(list(longer), shape), (longer.tolist(), shape),
             ((list(longer),), f"takes clips of {frames} frames"),
             ({"video": list(longer)}, f"takes clips of {frames} frames"),
             (list(raw), "got uint8 ones"), (raw.tolist(), "got int32 ones"),
             ([], r"got shape \(0,\), no clips"),
             ((longer[:0],), "no clips")]
    for clips, words in cases:
        for call in (lambda: model.predict(clips, verbose=0),
                     lambda: model.fit(clips, labels, verbose=0),
                     lambda: model.evaluate(clips, labels, verbose=0)):
            with pytest.raises(ValueError, match=words) as error:
                call()
            assert str(error.value).startswith(f"{model.name}: "), str(error.value)
            assert "\n" not in str(error.value)
    good = rng.standard_normal((2, frames, size, size, 3)).astype(np.float32)
    assert model.predict(list(good), verbose=0).shape == (2, model.num_classes)


def test_a_classifier_refuses_validation_clips_it_cannot_take_before_training():
    """``fit``'s ``validation_data`` (a tuple or list ``(x, y[, sample_weight])``, by keyword
    or in keras-hub's positional place) gets the checks ``x`` gets, in one line that names
    it, before any training step (before: a whole epoch trained, then the validation pass
    failed with Keras's input-spec error, or took raw uint8 frames as normalised values).
    Good validation data and a dataset still run."""
    import keras
    import tensorflow as tf

    import tf_models

    model = tf_models.VideoMAEVideoClassifier(**tf_models.get_preset(TINY_FT).model_config())
    frames, size = model.backbone.num_frames, model.backbone.img_size
    rng = np.random.default_rng(9)
    clips = rng.standard_normal((2, frames, size, size, 3)).astype(np.float32)
    longer = rng.standard_normal((2, frames + 2, size, size, 3)).astype(np.float32)
    raw = rng.integers(0, 256, clips.shape, dtype=np.uint8)
    labels = np.array([0, 1])

    class CountSteps(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            CountSteps.steps += 1

    cases = [((longer, labels), f"takes clips of {frames} frames"),
             ([longer, labels, np.ones(2)], f"takes clips of {frames} frames"),
             (({"video": list(longer)}, labels), f"takes clips of {frames} frames"),
             ((raw, labels), "takes normalised float32 frames, and got uint8"),
             ((clips[:0], labels[:0]), "takes a batch of at least one clip")]
    for validation, words in cases:
        for call in (lambda: model.fit(clips, labels, validation_data=validation, verbose=0,
                                       callbacks=[CountSteps()]),
                     lambda: model.fit(clips, labels, 2, None, validation, verbose=0,
                                       callbacks=[CountSteps()])):
            with pytest.raises(ValueError, match=f"^{model.name}: validation_data: {words}"
                               ) as error:
                call()
            assert "\n" not in str(error.value)
    assert CountSteps.steps == 0
    history = model.fit(clips, labels, validation_data=(clips, labels), verbose=0,
                        callbacks=[CountSteps()])
    assert "val_loss" in history.history and CountSteps.steps == 1
    dataset = tf.data.Dataset.from_tensor_slices((clips, labels)).batch(2)
    assert "val_loss" in model.fit(clips, labels, validation_data=dataset, verbose=0).history


def test_models_refuse_frames_of_any_integer_dtype_as_raw_frames():
    """int32 / int64 frames (``np.array`` of a list of pixel values, another decoder's
    output) are raw frames as uint8 ones are: a direct call, ``predict`` and the pre-trainer
    refuse them in one line naming the dtype (before: only uint8 was refused; integer frames
    were read as normalised values, logits of 0..255 inputs, and no error)."""
    import tf_models

    models = _models()
    classifier, backbone = models["classifier"][0], models["backbone"][0]
    pretrainer, inputs, _ = models["pretrainer"]
    for dtype in ("int32", "int64"):
        frames = np.random.default_rng(3).integers(0, 256, (2, 4, 32, 32, 3)).astype(dtype)
        for call in (lambda: classifier(frames), lambda: classifier.predict(frames, verbose=0),
                     lambda: backbone(frames), lambda: backbone.predict(frames, verbose=0),
                     lambda: pretrainer({**inputs, "video": frames})):
            with pytest.raises(ValueError, match=f"takes normalised float32 frames, and got "
                                                 f"{dtype} ones") as error:
                call()
            assert "\n" not in str(error.value)
    # floats of any width are taken as normalised values; a preprocessor takes integer frames
    assert classifier(_clip().astype("float16")).shape == (2, classifier.num_classes)
    converter = tf_models.VideoMAEVideoConverter(image_size=32)
    classifier.preprocessor = tf_models.VideoMAEVideoClassifierPreprocessor(converter)
    frames = np.random.default_rng(3).integers(0, 256, (2, 4, 32, 32, 3))
    np.testing.assert_array_equal(classifier.predict(frames, verbose=0),
                                  classifier.predict(frames.astype("uint8"), verbose=0))


def test_a_frozen_backbone_stays_frozen_through_its_config_and_a_keras_file(tmp_path):
    """A classifier on a backbone frozen for fine-tuning (``backbone.trainable = False``),
    rebuilt from its config or reloaded from its ``.keras`` file, trains its head only (before:
    the backbone said trainable False, yet its layers and variables were trainable again, so
    ``fit`` after a reload trained the whole encoder)."""
    import keras

    import tf_models

    backbone = tf_models.VideoMAEBackbone(**tf_models.get_preset(TINY_FT).backbone_config())
    backbone.trainable = False
    model = tf_models.VideoMAEVideoClassifier(backbone=backbone, num_classes=3)
    head = sorted(v.path for v in model.trainable_weights)
    assert len(head) == 4  # fc_norm and head
    path = str(tmp_path / "frozen.keras")
    model.save(path)
    for again in (tf_models.VideoMAEVideoClassifier.from_config(model.get_config()),
                  keras.saving.load_model(path)):
        assert again.backbone.trainable is False
        assert sorted(v.path for v in again.trainable_weights) == head
        assert not any(v.trainable for v in again.backbone.weights)


@pytest.mark.parametrize("task, kind", [("VideoMAEVideoClassifier", "FT"),
                                        ("VideoMAEMaskedAutoencoder", "PT")])
def test_a_task_built_frozen_stays_frozen_through_its_config_and_a_keras_file(task, kind,
                                                                             tmp_path):
    """``Task(..., trainable=False)`` gives a model with nothing to train, also rebuilt from its
    config or reloaded from its ``.keras`` file (before: the constructor dropped the argument,
    and keras-hub's task config has no ``trainable``, so every weight trained)."""
    import keras

    import tf_models

    cls = getattr(tf_models, task)
    model = cls(**tf_models.get_preset(TINY_FT if kind == "FT" else TINY_PT).model_config(),
                trainable=False)
    path = str(tmp_path / "frozen.keras")
    model.save(path)
    for each in (model, cls.from_config(model.get_config()), keras.saving.load_model(path)):
        assert each.trainable is False and each.backbone.trainable is False
        assert each.trainable_weights == []
        assert not any(v.trainable for v in each.weights)


def test_a_batch_of_no_clips_is_one_line():
    """Zero clips, to a call or ``predict`` of any model: one ValueError line naming the shape
    (before: TensorFlow's Conv3D failed deep inside, and ``predict`` with an UnboundLocalError
    from Keras)."""
    import tf_models

    models = _models()
    none = _clip()[:0]
    mask = tf_models.tube_mask(4, 32, 16, 2, 0.5, 0)
    backbone, classifier = models["backbone"][0], models["classifier"][0]
    pretrainer = models["pretrainer"][0]
    for run in (lambda: backbone(none), lambda: backbone.predict(none, verbose=0),
                lambda: classifier(none), lambda: classifier({"video": none}),
                lambda: classifier.predict(none, verbose=0),
                lambda: classifier.fit(none, np.zeros(0, "int32"), verbose=0),
                lambda: pretrainer({"video": none, "mask": mask}),
                lambda: pretrainer.predict({"video": none, "mask": mask}, verbose=0)):
        with pytest.raises(ValueError) as raised:
            run()
        message = str(raised.value)
        assert "\n" not in message, message
        assert message.endswith("got shape (0, 4, 32, 32, 3), no clips. Skip empty batches, "
                                "or add a batch axis to one clip (clip[None])"), message


def test_a_task_refuses_a_backbone_with_the_wrong_final_norm():
    import tf_models

    preset = tf_models.get_preset(TINY_FT)
    backbone = tf_models.VideoMAEBackbone(**preset.backbone_config(), final_norm="norm")
    with pytest.raises(ValueError, match="final_norm=None"):
        tf_models.VideoMAEVideoClassifier(backbone=backbone, num_classes=3)
    with pytest.raises(ValueError, match="either a backbone or its arguments"):
        tf_models.VideoMAEVideoClassifier(backbone=backbone, embed_dim=48)


def test_a_width_that_does_not_split_into_the_heads_is_refused_when_built():
    """embed_dim 48 with 5 heads: before, the model built (heads of width 48 // 5) and its
    attention reshapes regrouped the batch (a batch of 15 ran, mixing clips)."""
    import tf_models

    ft, pt = tf_models.get_preset(TINY_FT), tf_models.get_preset(TINY_PT)
    with pytest.raises(ValueError, match=r"^embed_dim 48 does not split into num_heads 5 heads "
                                         r"of equal width; embed_dim must be a multiple of "
                                         r"num_heads \(ViT-B: 768 and 12\)$"):
        tf_models.VideoMAEBackbone(**dict(ft.backbone_config(), num_heads=5))
    with pytest.raises(ValueError, match=r"^decoder_embed_dim 24 does not split into "
                                         r"decoder_num_heads 5 heads"):
        tf_models.VideoMAEMaskedAutoencoder(**dict(pt.model_config(), decoder_num_heads=5))


BAD_SIZES = {  # case: (change to the tiny FT config, the whole line)
    "tokens": ({"img_size": 16 * 182},
               "num_frames 4 of img_size 2912 in patches of 2 x 16 x 16 make 66248 tokens a "
               "clip, more than the 32768 a model here takes (16 times the zoo's most, 16 "
               "frames of 224 x 224); use fewer frames or smaller ones"),
    "huge integer": ({"num_frames": 10 ** 40},
                     "num_frames 100000000000... (41 digits) of img_size 32 in patches of 2 x "
                     "16 x 16 make 200000000000... (41 digits) tokens a clip, more than the "
                     "32768 a model here takes (16 times the zoo's most, 16 frames of 224 x "
                     "224); use fewer frames or smaller ones"),
    "img_size": ({"img_size": 40},
                 "img_size 40 is not a multiple of patch_size 16: the clip would not be cut "
                 "into whole patches (ViT-B: 224 and 16)"),
    "num_frames": ({"num_frames": 5},
                   "num_frames 5 is not a multiple of tubelet_size 2: the clip would not be cut "
                   "into whole patches (ViT-B: 16 and 2)"),
    "zero": ({"patch_size": 0}, "patch_size must be a positive integer, not 0"),
    "text": ({"img_size": "32"}, "img_size must be a positive integer, not '32'"),
    "bool": ({"tubelet_size": True}, "tubelet_size must be a positive integer, not True"),
    "decoder": ({"decoder_num_heads": -2},
                "decoder_num_heads must be a positive integer, not -2"),
}


@pytest.mark.parametrize("case", sorted(BAD_SIZES))
def test_sizes_no_clip_fits_are_refused_in_one_line_before_a_model_is_built(case):
    """A clip's sizes show in no weight, so nothing else bounds them: img_size 2912 (66248
    tokens; img_size 1000000 asked for terabytes of sinusoid table) built, as did clips not
    cut into whole patches; a zero patch size was a ZeroDivisionError, a huge integer was
    printed in full. Now one ValueError line from the constructor, before anything is built
    (``layers.check_model_sizes``, ``MAX_TOKENS``)."""
    import tf_models

    change, line = BAD_SIZES[case]
    preset = tf_models.get_preset(TINY_FT if case != "decoder" else TINY_PT)
    cls = tf_models.VideoMAEVideoClassifier if case != "decoder" else \
        tf_models.VideoMAEMaskedAutoencoder
    with pytest.raises(ValueError) as raised:
        cls(**dict(preset.model_config(), **change))
    assert str(raised.value) == line


BAD_OPTIONS = {  # case: (class, change to its tiny config, the whole line)
    "use_mean_pooling": ("ft", {"use_mean_pooling": "x"},
                         "use_mean_pooling must be True or False, not 'x'"),
    "cos_attn": ("ft", {"cos_attn": 33}, "cos_attn must be True or False, not 33"),
    "drop_path_rate below": ("ft", {"drop_path_rate": -1},
                             "drop_path_rate must be a number from 0 to 1, not -1"),
    "drop_path_rate above": ("pt", {"drop_path_rate": 1.5},
                             "drop_path_rate must be a number from 0 to 1, not 1.5"),
    "init_values": ("ft", {"init_values": -1},
                    "init_values must be a number >= 0 (0: no layer scale), not -1"),
    "mlp_ratio": ("backbone", {"mlp_ratio": "4"}, "mlp_ratio must be a number > 0, not '4'"),
    "trainable": ("ft", {"trainable": 7}, "trainable must be True or False, not 7"),
    "backbone trainable": ("backbone", {"trainable": "no"},
                           "trainable must be True or False, not 'no'"),
    "final_norm": ("backbone", {"final_norm": "layernorm"},
                   "final_norm must be one of (None, 'norm', 'fc_norm'), not 'layernorm'"),
    "dtype": ("pt", {"dtype": "float33"}, "dtype must be None, a dtype policy or its name "
              "('float32', 'mixed_bfloat16'...), not 'float33'"),
    "head_dtype": ("ft", {"head_dtype": 5}, "head_dtype must be None, a dtype policy or its "
                   "name ('float32', 'mixed_bfloat16'...), not 5"),
    "dropout": ("ft", {"dropout": 2.0}, "dropout must be a number from 0 to 1, not 2.0"),
    "num_classes": ("ft", {"num_classes": 0}, "num_classes must be a positive integer, not 0"),
    "name": ("pt", {"name": 5}, "name must be None or a string, not 5"),
    "decoder on a classifier": (
        "ft", {"decoder_depth": 4},
        "VideoMAEVideoClassifier takes no argument 'decoder_depth' (given 4); a config of "
        "another model? It takes backbone, num_classes, preprocessor, dropout, head_dtype, "
        "embed_dim, depth, num_heads, num_frames, img_size, patch_size, tubelet_size, "
        "mlp_ratio, in_chans, drop_path_rate, init_values, cos_attn, use_mean_pooling, "
        "final_norm, name, trainable, dtype, compile"),
    "another final_norm on a task": (
        "pt", {"final_norm": None},
        "VideoMAEMaskedAutoencoder takes a backbone with final_norm='norm', not None"),
    "typo on a backbone": (
        "backbone", {"embed_dims": 48},
        "VideoMAEBackbone takes no argument 'embed_dims' (given 48); a config of another "
        "model? It takes embed_dim, depth, num_heads, num_frames, img_size, patch_size, "
        "tubelet_size, mlp_ratio, in_chans, final_norm, drop_path_rate, init_values, "
        "cos_attn, use_mean_pooling, dtype, name, trainable, compile"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_options_of_a_wrong_type_or_range_or_unknown_are_refused_before_a_model_is_built(
        case, monkeypatch):
    """Options that are no size were taken as given: ``use_mean_pooling="x"`` and
    ``cos_attn=33`` built (a truthy string, a number), a negative ``drop_path_rate`` or
    ``init_values`` built and ran, ``trainable=7`` froze nothing, and a key the constructor
    does not take (``decoder_depth`` on a classifier's config) was ignored without a word
    (Keras's functional models swallow unknown keyword arguments). Now one ValueError line
    (``layers.OPTION_KINDS``, ``refuse_unknown_args``) and no layer is built."""
    import keras

    import tf_models

    kind, change, line = BAD_OPTIONS[case]
    preset = tf_models.get_preset(TINY_PT if kind == "pt" else TINY_FT)
    config = preset.model_config() if kind != "backbone" else preset.backbone_config()
    cls = {"ft": tf_models.VideoMAEVideoClassifier, "pt": tf_models.VideoMAEMaskedAutoencoder,
           "backbone": tf_models.VideoMAEBackbone}[kind]

    def never(*args, **kwargs):
        raise AssertionError("a layer was built")

    monkeypatch.setattr(keras.layers.Dense, "__init__", never)
    with pytest.raises(ValueError) as raised:
        cls(**dict(config, **change))
    assert str(raised.value) == line


def test_every_option_keras_and_the_zoo_pass_is_taken():
    """What Keras and keras-hub pass themselves (name, trainable, a serialised dtype policy,
    Task's compile) and every zoo entry's options are accepted."""
    import keras

    import tf_models
    from tf_models.layers import check_model_options

    for preset in tf_models.PRESETS.values():
        check_model_options(preset.model_config())
    backbone = tf_models.VideoMAEBackbone(**tf_models.get_preset(TINY_FT).backbone_config(),
                                          trainable=False, name="b", dtype="bfloat16")
    again = tf_models.VideoMAEBackbone.from_config(backbone.get_config())
    assert (again.trainable, again.name, again.dtype_policy.name) == (False, "b", "bfloat16")
    task = tf_models.VideoMAEVideoClassifier(
        backbone=again, num_classes=3, compile=False, trainable=np.bool_(True),
        head_dtype=keras.DTypePolicy("float32"))
    assert type(task.from_config(task.get_config())) is tf_models.VideoMAEVideoClassifier
    # a report's model_config as videomae-export writes it: the backbone's whole config,
    # its final_norm (the task's own) included
    for name, final_norm in ((TINY_FT, None), (TINY_PT, "norm")):
        preset = tf_models.get_preset(name)
        cls = (tf_models.VideoMAEVideoClassifier if preset.mode == "FT"
               else tf_models.VideoMAEMaskedAutoencoder)
        assert cls(**preset.model_config(), final_norm=final_norm).backbone.final_norm \
            == final_norm


# Every consumer module: what a user of the converted models imports (loading, presets,
# fine-tuning, video tools, their commands). Ray's engine is the [ray] extra's (test_ray).
CONSUMER_MODULES = ("tf_models", "tf_models.train", "tf_models.video", "tf_models.video.model",
                    "tf_models.video.predict", "tf_models.video.evaluate",
                    "tf_models.video.extract", "tf_models.video.features",
                    "tf_models.video.reconstruct", "tf_models.video.masked_clips",
                    "videomae_cli.video",
                    "videomae_cli.reconstruct", "videomae_cli.finetune")


def test_consumer_modules_never_import_torch(tmp_path):
    """One fresh process imports each consumer module in turn (and resolves a preset); each
    import's new torch-family modules are recorded, so a failure names the module."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    code = ("import importlib, json, sys\n"
            "def torch_side():\n"
            "    return {m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'timm')}\n"
            "found = {}\n"
            f"for name in {CONSUMER_MODULES!r}:\n"
            "    before = torch_side()\n"
            "    importlib.import_module(name)\n"
            "    found[name] = sorted(torch_side() - before)\n"
            "before = torch_side()\n"
            f"sys.modules['tf_models'].get_preset({TINY_FT!r})\n"
            "found['get_preset'] = sorted(torch_side() - before)\n"
            "print(json.dumps(found))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(found) == list(CONSUMER_MODULES) + ["get_preset"]
    assert {name: mods for name, mods in found.items() if mods} == {}


def test_a_float32_model_file_keeps_its_policy_under_a_global_mixed_one(tiny_converted):
    """Every sublayer takes its layer's dtype policy (as keras-hub's layers do): a float32
    ``.keras`` loaded while the global policy is mixed_bfloat16 computes in float32 throughout,
    bit for bit as loaded under float32 (before, the blocks' sublayers took the global policy:
    a dtype clash on TensorFlow, silently mixed precision elsewhere)."""
    import keras

    path = tiny_converted.paths["keras"]
    clip = np.random.default_rng(0).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(keras.saving.load_model(path)(clip))
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras.saving.load_model(path)
        found = keras.ops.convert_to_numpy(model(clip))
        policies = {layer.dtype_policy.name for layer in model.backbone.blocks[0]._flatten_layers()}
    finally:
        keras.config.set_dtype_policy("float32")
    assert policies == {"float32"}
    np.testing.assert_array_equal(found, expected)


def test_building_a_model_takes_each_blocks_output_from_its_shape_not_a_trace(monkeypatch):
    """Keras's symbolic call (every build of a functional model, every reload of a file)
    traced each Block's ``call`` into a scratch graph: 0.2 s per ViT-B block. A block keeps its
    input's shape, so it says so (``compute_output_shape``); the outputs the models get are
    the same shapes, in the compute dtype, and the blocks still run when called on data."""
    import tf_models
    from tf_models.layers import Block

    traced = []
    call = Block.call
    monkeypatch.setattr(Block, "call", lambda self, x, training=None:
                        traced.append(self.name) or call(self, x, training))
    ft, pt = tf_models.get_preset(TINY_FT), tf_models.get_preset(TINY_PT)
    classifier = tf_models.VideoMAEVideoClassifier(**ft.model_config())
    pretrainer = tf_models.VideoMAEMaskedAutoencoder(**pt.model_config())
    bf16 = tf_models.VideoMAEBackbone(**ft.backbone_config(), dtype="mixed_bfloat16")
    assert traced == []
    tokens = ft.num_patches
    assert tuple(classifier.backbone.output["tokens"].shape) == (None, tokens, 48)
    assert tuple(classifier.output.shape) == (None, ft.num_classes)
    assert [b.output.dtype for b in bf16.blocks] == ["bfloat16"] * 2
    assert [tuple(b.output.shape) for b in pretrainer.backbone.blocks] == [(None, tokens, 48)] * 2
    logits = classifier(_clip())
    assert tuple(logits.shape) == (2, ft.num_classes) and len(traced) == 2


def test_the_pretrainer_refuses_clips_of_another_shape_in_one_line():
    """predict / fit / a call with one clip without its batch axis, frames of 1 channel, or
    another frame count or size: one ValueError saying what it takes (before: PatchEmbed's
    error deep inside, or, for one clip, "'mask' must have one row per clip, 4; got 2", its
    frames read as clips; on JAX a failed predict leaves the model's variables purged)."""
    import tf_models

    model = tf_models.VideoMAEMaskedAutoencoder(
        **tf_models.get_preset("TFVideoMAE_T_K400_4x32_PT").model_config())
    clips = _clip()
    mask = tf_models.tube_mask(4, 32, 16, 2, 0.5, len(clips), np.random.default_rng(0))
    targets = np.zeros((len(clips), int(mask[0].sum()), model.core.num_outputs), np.float32)
    model.compile(optimizer="adam", loss="mse")
    for given, words in ((clips[0], r"add a batch axis to one clip \(clip\[None\]\)"),
                         (clips[..., :1], "give each frame 3 channels"),
                         (clips[:, :2], "takes clips of 4 frames, 32 x 32 frames"),
                         (np.zeros((2, 4, 48, 48, 3), np.float32),
                          r"got \(2, 4, 48, 48, 3\)")):
        for call in (lambda: model.predict({"video": given, "mask": mask}, verbose=0),
                     lambda: model.fit({"video": given, "mask": mask}, targets, verbose=0),
                     lambda: model({"video": given, "mask": mask})):
            with pytest.raises(ValueError, match=words) as error:
                call()
            assert "\n" not in str(error.value)
    assert model.predict({"video": clips, "mask": mask}, verbose=0).shape == targets.shape
