"""The VideoMAE classes as keras-hub classes, on keras-hub's own test harness
(``keras_hub/src/tests/test_case.py``): backbone, classifier task with its preprocessor,
masked-autoencoder task, ``.keras`` saving, and preset folders written by ``save_to_preset``
and read back in a fresh process through keras-hub's loaders.

Runs on the backend in ``KERAS_BACKEND``; ``test_harness_passes_on_other_backends`` reruns
the harness in child processes on JAX and PyTorch (slow tier).
"""

import functools
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from keras_hub.src.tests.test_case import TestCase

import tf_models
from tf_models.kerashub_presets import save_zoo_preset

TINY_FT = "TFVideoMAE_T_K400_4x32_FT"
TINY_PT = "TFVideoMAE_T_K400_4x32_PT"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)
FRAMES = RNG.integers(0, 256, (2, 4, 32, 32, 3)).astype("uint8")
VIDEO = RNG.standard_normal((2, 4, 32, 32, 3)).astype("float32")


def _backbone_kwargs(final_norm=None):
    return {**tf_models.get_preset(TINY_FT).backbone_config(), "final_norm": final_norm}


def _classifier_kwargs():
    preset = tf_models.get_preset(TINY_FT)
    return {"backbone": tf_models.VideoMAEBackbone(**_backbone_kwargs()),
            "num_classes": 5,
            "preprocessor": tf_models.kerashub_presets.preprocessor_for(preset)}


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.standard_normal(tuple(variable.shape)).astype("float32"))


class VideoMAEKerasHubTest(TestCase):
    def test_backbone_passes_keras_hubs_backbone_checks(self):
        self.run_backbone_test(
            cls=tf_models.VideoMAEBackbone, init_kwargs=_backbone_kwargs("norm"),
            input_data=VIDEO, expected_output_shape={"tokens": (2, 8, 48), "pooled": (2, 48)},
            run_mixed_precision_check=True, run_quantization_check=False)

    # keras-hub's saving check builds its own model, freshly initialised (zero biases, unit
    # norms, zero mask_token), so what it proves is that keras.models.load_model gives this
    # class back with the same outputs; that every variable survives the trip is
    # tests/test_tf_models.py::test_model_round_trips_its_config_files_and_names (randomised).
    def test_backbone_passes_keras_hubs_saving_check(self):
        self.run_model_saving_test(cls=tf_models.VideoMAEBackbone,
                                   init_kwargs=_backbone_kwargs("fc_norm"), input_data=VIDEO)

    def test_classifier_passes_keras_hubs_task_checks_on_raw_frames(self):
        labels = np.array([0, 3])
        self.run_task_test(cls=tf_models.VideoMAEVideoClassifier,
                           init_kwargs=_classifier_kwargs(), train_data=(FRAMES, labels),
                           expected_output_shape=(2, 5))

    def test_classifier_passes_keras_hubs_saving_check(self):
        self.run_model_saving_test(cls=tf_models.VideoMAEVideoClassifier,
                                   init_kwargs=_classifier_kwargs(), input_data=VIDEO)

    def test_masked_autoencoder_passes_keras_hubs_serialisation_and_saving_checks(self):
        kwargs = {"backbone": tf_models.VideoMAEBackbone(**_backbone_kwargs("norm")),
                  "decoder_embed_dim": 24, "decoder_depth": 1, "decoder_num_heads": 2}
        model = tf_models.VideoMAEMaskedAutoencoder(**kwargs)
        self.run_serialization_test(model)
        mask = np.zeros((2, 8), bool)
        mask[:, 1::2] = True
        self.run_model_saving_test(cls=tf_models.VideoMAEMaskedAutoencoder,
                                   init_kwargs=kwargs, input_data={"video": VIDEO, "mask": mask})

    def test_preset_folder_passes_keras_hubs_preset_checks(self):
        preset_dir = os.path.join(self.get_temp_dir(), "tiny_ft")
        model = tf_models.VideoMAEVideoClassifier(**_classifier_kwargs())
        _randomise(model)
        model.save_to_preset(preset_dir)
        expected = model.predict(FRAMES, verbose=0)
        self.run_preset_test(cls=tf_models.VideoMAEVideoClassifier, preset=preset_dir,
                             input_data=VIDEO, expected_output_shape=(2, 5))
        self.run_preset_test(cls=tf_models.VideoMAEBackbone, preset=preset_dir,
                             input_data=VIDEO,
                             expected_output_shape={"tokens": (2, 8, 48), "pooled": (2, 48)})
        loaded = tf_models.VideoMAEVideoClassifier.from_preset(preset_dir)
        np.testing.assert_array_equal(loaded.predict(FRAMES, verbose=0), expected)


def test_preset_from_save_to_preset_loads_in_a_fresh_process_on_raw_frames(tmp_path):
    """keras-hub's Backbone.from_preset and our Task's from_preset in a new process; predict
    on raw uint8 frames equals the model on upstream-normalised frames."""
    from tf_models.video.protocol import normalize_views

    preset = tf_models.get_preset(TINY_FT)
    model = tf_models.VideoMAEVideoClassifier(**preset.model_config())
    _randomise(model)
    save_zoo_preset(model, preset, str(tmp_path / "preset"))
    np.save(tmp_path / "frames.npy", FRAMES)
    expected = keras.ops.convert_to_numpy(model(normalize_views(FRAMES)))
    code = ("import json, sys, numpy as np, keras_hub, tf_models\n"
            "folder, frames = sys.argv[1], np.load(sys.argv[2])\n"
            "backbone = keras_hub.models.Backbone.from_preset(folder)\n"
            "task = tf_models.VideoClassifier.from_preset(folder)\n"
            "np.save(sys.argv[3], task.predict(frames, verbose=0))\n"
            "print(json.dumps([type(backbone).__name__, type(task).__name__,"
            " isinstance(task, keras_hub.models.Task)]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "preset"),
                           str(tmp_path / "frames.npy"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == ["VideoMAEBackbone",
                                                         "VideoMAEVideoClassifier", True]
    found = np.load(tmp_path / "out.npy")
    scale = np.abs(expected).max()
    assert np.abs(found - expected).max() <= 1e-5 * scale


def test_converter_resizes_other_sizes_like_the_video_tools():
    """Frames at another size: short side resized and centre-cropped, as tf_models.video does
    (OpenCV's INTER_LINEAR there, TensorFlow's bilinear here: a few grey levels apart)."""
    from tf_models.video.protocol import normalize_views, resize_short_side
    from tf_models.videomae_video_converter import VideoMAEVideoConverter

    frames = np.random.default_rng(3).integers(0, 256, (1, 2, 48, 64, 3)).astype("uint8")
    resized = np.stack([resize_short_side(f, 48, 64, 32) for f in frames[0]])  # (2, 32, 42, 3)
    left = (resized.shape[2] - 32) // 2
    expected = normalize_views(resized[None, :, :, left:left + 32])
    found = keras.ops.convert_to_numpy(VideoMAEVideoConverter(image_size=32)(frames))
    assert found.shape == (1, 2, 32, 32, 3)
    # 3 grey levels, in normalised units (std ~0.225)
    assert np.abs(found - expected).max() <= 3 / 255 / 0.224


# h5 paths the subclassed models before the keras-hub classes wrote (read off a file saved by
# commit e48e783's VideoMAEClassifier): the layout tf_models.legacy still reads
OLD_CLASSIFIER_PATHS = ("backbone/blocks/block/attn/qkv/vars/0",
                        "backbone/blocks/block_1/mlp/fc2/vars/1",
                        "backbone/layers/patch_embed/proj/vars/0", "fc_norm/vars/0",
                        "head/vars/1")


def test_old_class_names_and_weight_layouts_still_load(tmp_path):
    import zipfile

    import h5py

    from tf_models.legacy import LEGACY_CLASSES, _old_layout, load_model_file, load_weights_file

    assert set(LEGACY_CLASSES) == {"videomae>VideoMAEClassifier", "videomae>VideoMAEPretrainer"}
    assert not hasattr(tf_models, "VideoMAEClassifier")
    preset = tf_models.get_preset(TINY_FT)
    model = tf_models.VideoMAEVideoClassifier(**preset.model_config())
    _randomise(model)
    expected = keras.ops.convert_to_numpy(model(VIDEO))
    old_weights = str(tmp_path / "old.weights.h5")
    _old_layout(model).save_weights(old_weights)
    with h5py.File(old_weights) as handle:
        for path in OLD_CLASSIFIER_PATHS:
            assert path in handle
    fresh = tf_models.VideoMAEVideoClassifier(**preset.model_config())
    load_weights_file(fresh, old_weights)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh(VIDEO)), expected)
    # a .keras file written under the old class name, its weights in the old layout
    config = keras.saving.serialize_keras_object(model)
    config["registered_name"], config["class_name"] = "videomae>VideoMAEClassifier", \
        "VideoMAEClassifier"
    old_keras = str(tmp_path / "old.keras")
    with zipfile.ZipFile(old_keras, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.write(old_weights, "model.weights.h5")
    loaded = load_model_file(old_keras)
    assert type(loaded) is tf_models.VideoMAEVideoClassifier
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(VIDEO)), expected)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_harness_passes_on_other_backends(backend):
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           os.path.join(REPO_ROOT, "tests", "test_kerashub.py"),
                           "-k", "not other_backends"],
                          capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO_ROOT})
    assert done.returncode == 0, done.stdout[-3000:]


def _zoo_preset_folder(tmp_path_factory, row, cls, name):
    """A new ``cls`` of zoo row ``row`` saved as the preset folder ``name``."""
    folder = str(tmp_path_factory.mktemp("kerashub") / name)
    preset = tf_models.get_preset(row)
    save_zoo_preset(cls(**preset.model_config()), preset, folder)
    return folder


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    return _zoo_preset_folder(tmp_path_factory, TINY_FT, tf_models.VideoMAEVideoClassifier,
                              "tiny_ft")


def _copy(folder, tmp_path):
    import shutil

    target = str(tmp_path / "preset")
    shutil.copytree(folder, target)
    return target


def _edit_config(folder, name, edit):
    path = os.path.join(folder, name)
    with open(path) as handle:
        config = json.load(handle)
    edit(config)
    with open(path, "w") as handle:
        json.dump(config, handle)


def _lambda_block(config):
    config["config"]["backbone"]["config"]["extra"] = {
        "class_name": "Lambda", "module": "keras.layers", "registered_name": None,
        "config": {"function": {"class_name": "__lambda__", "config": {"code": "x"}}}}


def _unknown_task(config):
    config["registered_name"] = "somebody>Exploit"


HOSTILE = {
    "lambda": ("task.json", _lambda_block, "task.json: names class 'Lambda'"),
    "unregistered": ("task.json", _unknown_task, "task.json: names class 'somebody>Exploit'"),
    "not json": ("config.json", None, "config.json: missing or unreadable"),
}


@pytest.mark.parametrize("task", [{}, [], "converter"])
def test_a_preset_whose_task_is_no_task_is_refused_in_one_line(tiny_preset, tmp_path, task):
    """``task.json`` an empty object, a list, or naming one of our registered classes that is
    no task: one PresetError line through the loader every ``--model`` uses (before: an
    AttributeError, or keras-hub's FileNotFoundError)."""
    from tf_models.artifacts.resolve import load_artifact
    from tf_models.layers import PACKAGE

    folder = _copy(tiny_preset, tmp_path)
    if task == "converter":
        task = {"module": "tf_models", "class_name": "VideoMAEVideoConverter",
                "registered_name": f"{PACKAGE}>VideoMAEVideoConverter", "config": {}}
        expected = "declares 'videomae>VideoMAEVideoConverter', not a keras-hub Task"
    else:
        expected = "task.json: not a keras-hub preset config"
    with open(os.path.join(folder, "task.json"), "w") as handle:
        json.dump(task, handle)
    # keras-hub's own Task.from_preset builds the task from the backbone when task.json names
    # another class: only the empty object and the list are refused there
    loads = (load_artifact,) + ((tf_models.VideoMAEVideoClassifier.from_preset,)
                                if "preset config" in expected else ())
    for load in loads:
        with pytest.raises(tf_models.PresetError) as raised:
            load(folder)
        assert len(str(raised.value).splitlines()) == 1
        if load is load_artifact:
            assert expected in str(raised.value), raised.value


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_preset_config_is_refused_in_one_line(tiny_preset, tmp_path, case):
    folder = _copy(tiny_preset, tmp_path)
    name, edit, expected = HOSTILE[case]
    if edit is None:
        with open(os.path.join(folder, name), "w") as handle:
            handle.write("{not json")
    else:
        _edit_config(folder, name, edit)
    for load in (tf_models.VideoMAEVideoClassifier.from_preset,
                 tf_models.VideoMAEBackbone.from_preset):
        with pytest.raises(tf_models.PresetError) as raised:
            load(folder)
        assert len(str(raised.value).splitlines()) == 1
        if name == "task.json" and load is tf_models.VideoMAEBackbone.from_preset:
            continue  # every config is checked before anything loads
        assert expected in str(raised.value)


def test_a_task_from_a_preset_of_another_class_follows_from_presets_rules(tiny_preset,
                                                                          tmp_path):
    """keras-hub's fine-tuning workflow, a classifier from a backbone preset and
    ``num_classes``, gets the stored encoder (before: an AttributeError traceback); without
    ``num_classes``, or a classifier from a pre-trained preset, one line asks for it, and a
    masked autoencoder from anything but a pre-trained preset is refused (before: keras-hub
    built one around the backbone, a new random decoder included, or failed on a missing
    ``video_converter.json``)."""
    preset = tf_models.get_preset(TINY_PT)
    backbone = tf_models.VideoMAEBackbone(**_backbone_kwargs("norm"))
    _randomise(backbone, seed=5)
    backbone_preset = str(tmp_path / "backbone")
    backbone.save_to_preset(backbone_preset)
    pretrained = save_zoo_preset(tf_models.VideoMAEMaskedAutoencoder(**preset.model_config()),
                                 preset, str(tmp_path / "pretrained"))
    tuned = tf_models.VideoMAEVideoClassifier.from_preset(backbone_preset, num_classes=5)
    assert tuned.num_classes == 5
    for name, variable in tuned.backbone.named_variables().items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable),
                                      keras.ops.convert_to_numpy(
                                          backbone.named_variables()[name]))
    refused = {
        (tf_models.VideoMAEVideoClassifier, backbone_preset):
            "is a VideoMAEBackbone with no VideoMAEVideoClassifier head; pass num_classes=N",
        (tf_models.VideoMAEVideoClassifier, pretrained):
            "is a pre-trained (PT) model with no VideoMAEVideoClassifier head; pass "
            "num_classes=N",
        (tf_models.VideoMAEMaskedAutoencoder, backbone_preset):
            "is a VideoMAEBackbone; a VideoMAEMaskedAutoencoder needs a pre-trained (PT) model "
            "preset",
        (tf_models.VideoMAEMaskedAutoencoder, tiny_preset):
            "is a fine-tuned (FT) classifier; a VideoMAEMaskedAutoencoder needs a pre-trained "
            "(PT) model preset"}
    for (cls, folder), expected in refused.items():
        with pytest.raises(tf_models.PresetError) as raised:
            cls.from_preset(folder)
        assert str(raised.value).startswith(f"{folder}: {expected}"), str(raised.value)


def test_a_keras_file_with_a_lambda_is_refused_even_with_unsafe_deserialization_on(tmp_path):
    """A ``.keras`` file is a file from the internet too: its Lambda is refused in safe mode
    whatever the global setting, for the new and the old class names (before:
    ``keras.config.enable_unsafe_deserialization()`` overrode ``safe_mode=True`` and the
    Lambda was deserialised)."""
    from keras.src.backend.common import global_state

    preset = tf_models.get_preset(TINY_FT)
    model = tf_models.VideoMAEVideoClassifier(**preset.model_config())
    saved = str(tmp_path / "plain.keras")
    model.save(saved)
    with zipfile.ZipFile(saved) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["preprocessor"] = {
        "module": "keras.layers", "class_name": "Lambda", "registered_name": None,
        "config": {"name": "code", "function": {"class_name": "__lambda__", "config": {
            "code": "YQ==", "defaults": None, "closure": None}}}}
    paths = []
    for old_name in (False, True):
        if old_name:
            config["registered_name"] = "videomae>VideoMAEClassifier"
        path = str(tmp_path / f"{'old' if old_name else 'new'}_{TINY_FT}.keras")
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, json.dumps(config) if name == "config.json" else data)
        paths.append(path)
    previous = global_state.get_global_attribute("safe_mode_saving")
    keras.config.enable_unsafe_deserialization()
    try:
        for path in paths:
            with pytest.raises(tf_models.PresetError) as raised:
                tf_models.VideoMAEVideoClassifier.from_preset(path)
            assert str(raised.value).startswith(f"{path}: cannot be loaded as a Keras model "
                                                f"(Requested the deserialization of a `Lambda`")
            assert global_state.get_global_attribute("safe_mode_saving") is False
    finally:
        global_state.set_global_attribute("safe_mode_saving", previous)


def _deflated_keras(tmp_path, name, files, padded, pad_bytes):
    """A ``.keras`` archive of ``files``, deflated, with ``pad_bytes`` zero bytes (spaces for
    JSON) after member ``padded``: a few hundred KB on disk, declaring far more."""
    path = str(tmp_path / f"{name}_{TINY_FT}.keras")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            with archive.open(member, "w", force_zip64=member == padded) as out:
                out.write(data)
                pad = (b" " if member == "config.json" else b"\0") * (16 << 20)
                for _ in range(pad_bytes // len(pad) if member == padded else 0):
                    out.write(pad)
    return path


@pytest.mark.parametrize("padded, pad_mib, old_name, words", [
    ("config.json", 64, False, "its config.json declares"),
    ("model.weights.h5", 320, False, "times its stored bytes (a zip bomb?)"),
    ("model.weights.h5", 320, True, "times its stored bytes (a zip bomb?)")])
def test_a_keras_file_whose_members_decompress_to_far_more_is_refused_before_reading(
        tmp_path, padded, pad_mib, old_name, words):
    """A deflated member of a .keras file is read whole (config.json; the weights, by Keras
    below its 4 GiB guard, and to copy an old-class-name archive's out) before anything is
    checked: a config.json padded with 64 MiB of JSON whitespace, or weights padded with
    320 MiB of zeros (each still loads), is refused from the zip directory in one line,
    with no more than a few MB allocated (before: read whole into memory, and loaded)."""
    import tracemalloc

    preset = tf_models.get_preset(TINY_FT)
    saved = str(tmp_path / "plain.keras")
    tf_models.VideoMAEVideoClassifier(**preset.model_config()).save(saved)
    with zipfile.ZipFile(saved) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    if old_name:  # the old class name: the weights are copied out of the archive
        config = json.loads(files["config.json"])
        config["registered_name"] = "videomae>VideoMAEClassifier"
        files["config.json"] = json.dumps(config).encode()
    path = _deflated_keras(tmp_path, "padded", files, padded, pad_mib << 20)
    assert os.path.getsize(path) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(tf_models.PresetError) as raised:
            tf_models.VideoMAEVideoClassifier.from_preset(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message
    assert peak < 8 << 20, peak


def test_a_task_preset_without_its_task_weights_is_refused_not_given_a_new_head(tiny_preset,
                                                                               tmp_path):
    """keras-hub builds a task whose ``task.weights.h5`` is missing with new layers: one line
    naming the preset (before: a classifier with a freshly initialised head, no error)."""
    from tf_models.artifacts.resolve import load_artifact

    folder = _copy(tiny_preset, tmp_path)
    os.remove(os.path.join(folder, "task.weights.h5"))
    for load in (load_artifact, tf_models.VideoMAEVideoClassifier.from_preset,
                 tf_models.VideoMAEBackbone.from_preset):
        with pytest.raises(tf_models.PresetError) as raised:
            load(folder)
        assert str(raised.value).startswith(f"{folder}: has task.json but no task.weights.h5: "
                                            f"the task's own layers"), str(raised.value)


def test_a_preset_folder_given_as_a_path_object_loads(tiny_preset):
    """``pathlib.Path`` works for a preset folder as for every other model argument (before:
    keras-hub's 'A preset identifier must be a string', reported as config.json missing or
    unreadable)."""
    import pathlib

    folder = pathlib.Path(tiny_preset)
    assert type(tf_models.VideoMAEVideoClassifier.from_preset(folder)) is \
        tf_models.VideoMAEVideoClassifier
    assert type(tf_models.VideoMAEBackbone.from_preset(folder)) is tf_models.VideoMAEBackbone
    with pytest.raises(tf_models.PresetError, match="needs a pre-trained"):
        tf_models.VideoMAEMaskedAutoencoder.from_preset(folder)


@pytest.fixture(scope="module")
def own_preprocessor_preset(tmp_path_factory):
    """A tiny FT preset folder (random weights) whose preprocessor is not the constructor's
    default (mean / std of another dataset), so one kept by a load is the folder's."""
    from tf_models.videomae_video_converter import VideoMAEVideoConverter

    model = tf_models.VideoMAEVideoClassifier(**_classifier_kwargs())
    model.preprocessor = tf_models.VideoMAEVideoClassifierPreprocessor(VideoMAEVideoConverter(
        image_size=32, mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25)))
    _randomise(model, seed=7)
    folder = str(tmp_path_factory.mktemp("kerashub") / "own_preprocessor")
    model.save_to_preset(folder)
    return folder


def _preprocessor_config(model):
    preprocessor = model.preprocessor
    return None if preprocessor is None else keras.saving.serialize_keras_object(preprocessor)


# raw uint8 frames of another size than the preset's 32 x 32: only a preprocessor takes them
OTHER_SIZE_FRAMES = RNG.integers(0, 256, (2, 4, 40, 56, 3)).astype("uint8")
# from_preset arguments that do not change what the model computes at inference
SAME_FUNCTION = ({"drop_path_rate": 0.1}, {"dropout": 0.3}, {"offline": True},
                 {"dropout": 0.3, "offline": False}, {"num_classes": 5, "drop_path_rate": 0.1})


def test_a_classifier_from_a_preset_keeps_its_preprocessor_whatever_the_arguments(
        own_preprocessor_preset, tmp_path):
    """``from_preset(folder, drop_path_rate=..., dropout=..., num_classes=N, offline=...)``
    rebuilt the classifier without the folder's preprocessor, so predict on raw frames was
    refused with "this model has no preprocessor ... or load a preset folder" although one
    was loaded. Now every argument, on the class and on keras-hub's base class, keeps the
    preprocessor keras-hub loads from the folder, and predict on raw frames of another size
    gives the logits of the model loaded without arguments; a new head (``num_classes``) has
    the folder's preprocessor too. So does a ``.keras`` file of such a classifier."""
    folder = own_preprocessor_preset
    expected_config = keras.saving.serialize_keras_object(
        tf_models.VideoMAEVideoClassifierPreprocessor.from_preset(folder))
    plain = tf_models.VideoMAEVideoClassifier.from_preset(folder)
    assert _preprocessor_config(plain) == expected_config
    expected = plain.predict(OTHER_SIZE_FRAMES, verbose=0)
    # the base class goes to the same from_preset: two of the arguments' cases there
    for cls, cases in ((tf_models.VideoMAEVideoClassifier, SAME_FUNCTION),
                       (tf_models.VideoClassifier, SAME_FUNCTION[::4])):
        for kwargs in cases:
            loaded = cls.from_preset(folder, **kwargs)
            assert _preprocessor_config(loaded) == expected_config, (cls, kwargs)
            np.testing.assert_allclose(loaded.predict(OTHER_SIZE_FRAMES, verbose=0), expected,
                                       rtol=0, atol=1e-6, err_msg=f"{cls.__name__} {kwargs}")
        tuned = cls.from_preset(folder, num_classes=7, dropout=0.1)
        assert tuned.num_classes == 7 and _preprocessor_config(tuned) == expected_config
        assert tuned.predict(OTHER_SIZE_FRAMES, verbose=0).shape == (2, 7)
    keras_file = str(tmp_path / "classifier.keras")
    plain.save(keras_file)
    for kwargs in ({}, {"dropout": 0.3}, {"num_classes": 7}):
        loaded = tf_models.VideoMAEVideoClassifier.from_preset(keras_file, **kwargs)
        assert _preprocessor_config(loaded) == expected_config, kwargs


def test_a_classifier_from_another_kind_of_preset_keeps_the_preprocessor_it_has(
        own_preprocessor_preset, tmp_path):
    """A classifier fine-tuned from a backbone preset beside which a preprocessor was saved
    (``preprocessor.json``, as keras-hub's presets have one without ``task.json``) gets it;
    from a pre-trained preset, which has none, it has none. A clip size given to
    ``from_preset`` (``img_size``) gets the preprocessor's mean and std at that size, so raw
    frames reach the new size."""
    import shutil

    pretrained = save_zoo_preset(
        tf_models.VideoMAEMaskedAutoencoder(**tf_models.get_preset(TINY_PT).model_config()),
        tf_models.get_preset(TINY_PT), str(tmp_path / "pretrained"))
    assert tf_models.VideoMAEVideoClassifier.from_preset(
        pretrained, num_classes=3).preprocessor is None
    backbone_preset = str(tmp_path / "backbone")
    tf_models.VideoMAEBackbone(**_backbone_kwargs("norm")).save_to_preset(backbone_preset)
    assert tf_models.VideoMAEVideoClassifier.from_preset(
        backbone_preset, num_classes=3).preprocessor is None
    for name in ("preprocessor.json", "video_converter.json"):
        shutil.copy(os.path.join(own_preprocessor_preset, name), backbone_preset)
    expected = tf_models.VideoMAEVideoClassifierPreprocessor.from_preset(
        own_preprocessor_preset)
    for cls in (tf_models.VideoMAEVideoClassifier, tf_models.VideoClassifier):
        tuned = cls.from_preset(backbone_preset, num_classes=3)
        assert _preprocessor_config(tuned) == keras.saving.serialize_keras_object(expected)
        assert tuned.predict(OTHER_SIZE_FRAMES, verbose=0).shape == (2, 3)
    for folder in (own_preprocessor_preset, backbone_preset):
        larger = tf_models.VideoMAEVideoClassifier.from_preset(folder, num_classes=3,
                                                               img_size=48)
        converter = larger.preprocessor.video_converter
        assert (converter.image_size, converter.mean, converter.std) == \
            (48, expected.video_converter.mean, expected.video_converter.std)
        assert larger.predict(OTHER_SIZE_FRAMES, verbose=0).shape == (2, 3)


def test_a_preset_folder_without_its_config_or_metadata_names_the_missing_file(tiny_preset,
                                                                             tmp_path):
    """A preset copied in part is one line naming what it lacks (before: taken for a release
    folder, 'SHA256SUMS: missing; a release folder lists its assets' sha256 there')."""
    from tf_models.artifacts.resolve import load_artifact

    for missing, present in (("metadata.json", "config.json"), ("config.json", "metadata.json")):
        folder = _copy(tiny_preset, tmp_path / missing)
        os.remove(os.path.join(folder, missing))
        for load in (load_artifact, tf_models.VideoMAEVideoClassifier.from_preset):
            with pytest.raises(tf_models.PresetError) as raised:
                load(folder)
            assert str(raised.value) == (f"{folder}: a keras-hub preset folder ({present}) "
                                         f"without {missing}; copy the whole folder "
                                         f"save_to_preset wrote")


def test_a_preset_with_missing_or_misshapen_weights_is_refused_in_one_line(tiny_preset,
                                                                           tmp_path):
    """A preset without model.weights.h5 names it (before: keras-hub's "model.weights.json
    doesn't exist", the sharded index it looks for next); without weights asked for, it
    builds."""
    folder = _copy(tiny_preset, tmp_path)
    os.remove(os.path.join(folder, "model.weights.h5"))
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEBackbone.from_preset(folder)
    assert str(raised.value) == (f"{folder}: has no model.weights.h5 (the backbone's weights); "
                                 f"copy the whole folder save_to_preset wrote, or pass "
                                 f"load_weights=False for new weights")
    assert tf_models.VideoMAEBackbone.from_preset(folder, load_weights=False).depth > 0
    other = _copy(tiny_preset, tmp_path / "other")
    _edit_config(other, "config.json", lambda c: c["config"].update(embed_dim=96, num_heads=4))
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEBackbone.from_preset(other)
    assert str(raised.value).startswith(f"{other}/config.json: embed_dim is 96, but the weights "
                                        f"have 48 (")
    assert len(str(raised.value).splitlines()) == 1


# --- a config's sizes against its weights' index, before anything is built ------------------

@pytest.fixture(scope="module")
def tiny_keras_files(tmp_path_factory):
    """{kind: a tiny .keras file}: a classifier, a pre-trainer, a backbone, and a classifier
    under the old class name with its weights in the old layout."""
    from tf_models.legacy import _old_layout

    folder = tmp_path_factory.mktemp("keras_files")
    ft, pt = tf_models.get_preset(TINY_FT), tf_models.get_preset(TINY_PT)
    models = {"classifier": tf_models.VideoMAEVideoClassifier(**ft.model_config()),
              "pre-trainer": tf_models.VideoMAEMaskedAutoencoder(**pt.model_config()),
              "backbone": tf_models.VideoMAEBackbone(**_backbone_kwargs())}
    files = {}
    for kind, model in models.items():
        files[kind] = str(folder / f"{kind}.keras")
        model.save(files[kind])
    old_weights = str(folder / "old.weights.h5")
    _old_layout(models["classifier"]).save_weights(old_weights)
    config = keras.saving.serialize_keras_object(models["classifier"])
    config["registered_name"], config["class_name"] = "videomae>VideoMAEClassifier", \
        "VideoMAEClassifier"
    files["old name"] = str(folder / "old.keras")
    with zipfile.ZipFile(files["old name"], "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.write(old_weights, "model.weights.h5")
    return files


def _rewrite_keras(source, target, edit_config=None, edit_weights=None):
    """A copy of the ``.keras`` archive ``source`` at ``target``, its config.json changed by
    ``edit_config(config)`` and its model.weights.h5 by ``edit_weights(h5py file)``."""
    import h5py

    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for item in archive.infolist():
            data = archive.read(item)
            if item.filename == "config.json" and edit_config is not None:
                config = json.loads(data)
                edit_config(config)
                data = json.dumps(config).encode()
            if item.filename == "model.weights.h5" and edit_weights is not None:
                scratch = str(target) + ".h5"
                with open(scratch, "wb") as handle:
                    handle.write(data)
                with h5py.File(scratch, "a") as handle:
                    edit_weights(handle)
                with open(scratch, "rb") as handle:
                    data = handle.read()
                os.remove(scratch)
            out.writestr(item, data)
    return str(target)


def _backbone_of(config):
    """The backbone's own config in a serialised task's config (or a backbone's)."""
    inner = config["config"]
    return inner["backbone"]["config"] if "backbone" in inner else inner


@pytest.fixture
def built(monkeypatch):
    """Every VideoMAEBackbone construction, recorded (then refused: none may happen); the
    constructor's signature kept, where the loaders read its defaults."""
    calls = []

    @functools.wraps(tf_models.VideoMAEBackbone.__init__)
    def record(self, *args, **kwargs):
        calls.append(kwargs)
        raise AssertionError("a VideoMAEBackbone was built")

    monkeypatch.setattr(tf_models.VideoMAEBackbone, "__init__", record)
    return calls


KERAS_SIZES = {  # case: (file kind, config edit, what the line says, what the weights have)
    "embed_dim": ("classifier", lambda c: _backbone_of(c).update(embed_dim=4800),
                  "embed_dim is 4800", "48 (layers/video_mae_backbone/layers/patch_embed/"),
    "depth": ("classifier", lambda c: _backbone_of(c).update(depth=60), "depth is 60",
              "2 (blocks up to 1 in model.weights.h5)"),
    "num_classes": ("classifier", lambda c: c["config"].update(num_classes=10 ** 6),
                    "num_classes is 1000000", "400 (layers/dense/vars/0 (48, 400)"),
    "decoder_depth": ("pre-trainer", lambda c: c["config"].update(decoder_depth=60),
                      "decoder_depth is 60", "1 (blocks up to 0 in model.weights.h5)"),
    "backbone": ("backbone", lambda c: _backbone_of(c).update(embed_dim=4800),
                 "embed_dim is 4800", "48 (layers/patch_embed/proj/vars/0 "),
    "old name": ("old name", lambda c: _backbone_of(c).update(depth=60), "depth is 60",
                 "2 (blocks up to 1 in model.weights.h5)"),
    # a key the config lacks is checked at the constructor's default (before: a ViT-B was
    # built, then Keras failed with "objects could not be loaded")
    "depth absent": ("classifier", lambda c: _backbone_of(c).pop("depth"),
                     "depth is absent, so the constructor's default 12",
                     "2 (blocks up to 1 in model.weights.h5)"),
    "embed_dim absent": ("backbone", lambda c: _backbone_of(c).pop("embed_dim"),
                         "embed_dim is absent, so the constructor's default 768",
                         "48 (layers/patch_embed/proj/vars/0 "),
    "decoder_depth absent": ("pre-trainer", lambda c: c["config"].pop("decoder_depth"),
                             "decoder_depth is absent, so the constructor's default 4",
                             "1 (blocks up to 0 in model.weights.h5)"),
    "old name depth absent": ("old name", lambda c: _backbone_of(c).pop("depth"),
                              "depth is absent, so the constructor's default 12",
                              "2 (blocks up to 1 in model.weights.h5)"),
}
KERAS_CLASSES = {"classifier": tf_models.VideoMAEVideoClassifier,
                 "old name": tf_models.VideoMAEVideoClassifier,
                 "pre-trainer": tf_models.VideoMAEMaskedAutoencoder,
                 "backbone": tf_models.VideoMAEBackbone}


@pytest.mark.parametrize("case", sorted(KERAS_SIZES))
def test_a_keras_file_whose_config_outgrows_its_weights_is_refused_before_building(
        tiny_keras_files, tmp_path, built, case):
    """A ``.keras`` archive is a file from the internet: a config.json saying a width of 4800
    or 60 blocks beside 48-wide, 2-block weights made Keras build that model first (GBs,
    seconds) and only then fail. Now its sizes are compared with its model.weights.h5's
    index: one line naming the archive, the key, both values and the evidence, and no
    backbone is built, with or without its weights loaded."""
    kind, edit, said, found = KERAS_SIZES[case]
    path = _rewrite_keras(tiny_keras_files[kind], tmp_path / f"{kind}.keras", edit)
    for load_weights in (True, False):
        with pytest.raises(tf_models.PresetError) as raised:
            KERAS_CLASSES[kind].from_preset(path, load_weights=load_weights)
        message = str(raised.value)
        assert message.startswith(f"{path}: {said}, but the weights have {found}"), message
        assert message.endswith("its config.json does not describe its model.weights.h5 "
                                "(edited, or another model's); export or download the .keras "
                                "file again") and "\n" not in message
    assert built == []


KERAS_OPTIONS = {  # case: (file kind, config edit, the cause the line ends with)
    "use_mean_pooling": ("classifier", lambda c: _backbone_of(c).update(use_mean_pooling="x"),
                         "(use_mean_pooling must be True or False, not 'x')"),
    "unknown key": ("classifier", lambda c: c["config"].update(num_clases=3),
                    "(VideoMAEVideoClassifier takes no argument 'num_clases' (given 3); a "
                    "config of another model? It takes backbone, "),
    "another final_norm": ("classifier", lambda c: c["config"].update(final_norm="norm"),
                           "(VideoMAEVideoClassifier takes a backbone with final_norm=None, "
                           "not 'norm')"),
    "drop_path_rate": ("backbone", lambda c: c["config"].update(drop_path_rate=-1),
                       "(drop_path_rate must be a number from 0 to 1, not -1)"),
}


@pytest.mark.parametrize("case", sorted(KERAS_OPTIONS))
def test_a_keras_file_whose_config_has_a_bad_option_is_one_line_naming_it(
        tiny_keras_files, tmp_path, case):
    """A config.json option of the wrong type or range, or a key of another model's config,
    loaded (a string taken for True, a key ignored): now the constructor's line, naming the
    archive."""
    kind, edit, cause = KERAS_OPTIONS[case]
    path = _rewrite_keras(tiny_keras_files[kind], tmp_path / f"{kind}.keras", edit)
    with pytest.raises(tf_models.PresetError) as raised:
        KERAS_CLASSES[kind].from_preset(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: cannot be loaded as a Keras model {cause}"), message
    assert "\n" not in message

def test_untouched_keras_files_of_every_kind_still_load(tiny_keras_files):
    for kind, path in tiny_keras_files.items():
        assert type(KERAS_CLASSES[kind].from_preset(path)) is KERAS_CLASSES[kind]


@pytest.fixture(scope="module")
def tiny_pt_preset(tmp_path_factory):
    return _zoo_preset_folder(tmp_path_factory, TINY_PT, tf_models.VideoMAEMaskedAutoencoder,
                              "tiny_pt")


PRESET_SIZES = {  # case: (preset, file, edit, what the line says, what the weights have)
    "config.json": ("ft", "config.json", lambda c: c["config"].update(embed_dim=4800),
                    "embed_dim is 4800", "48 (layers/patch_embed/proj/vars/0 (2, 16, 16, 3, 48) "
                                         "in model.weights.h5)"),
    "task.json backbone": ("ft", "task.json", lambda c: _backbone_of(c).update(depth=60),
                           "depth is 60", "2 (blocks up to 1 in model.weights.h5)"),
    "task.json head": ("ft", "task.json", lambda c: c["config"].update(num_classes=10 ** 6),
                       "num_classes is 1000000", "400 (layers/dense/vars/0 (48, 400) in "
                                                 "task.weights.h5)"),
    "task.json decoder": ("pt", "task.json", lambda c: c["config"].update(decoder_depth=60),
                          "decoder_depth is 60", "1 (blocks up to 0 in task.weights.h5)"),
    # a key a config lacks is checked at the constructor's default
    "config.json depth absent": ("ft", "config.json", lambda c: c["config"].pop("depth"),
                                 "depth is absent, so the constructor's default 12",
                                 "2 (blocks up to 1 in model.weights.h5)"),
    "task.json decoder absent": ("pt", "task.json",
                                 lambda c: c["config"].pop("decoder_depth"),
                                 "decoder_depth is absent, so the constructor's default 4",
                                 "1 (blocks up to 0 in task.weights.h5)"),
}


@pytest.mark.parametrize("case", sorted(PRESET_SIZES))
def test_a_preset_whose_config_outgrows_its_weights_is_refused_before_building(
        tiny_preset, tiny_pt_preset, tmp_path, built, case):
    """A keras-hub preset's config.json and task.json are files from the internet too:
    keras-hub built the model they describe (a 4800-wide backbone, a million-class head)
    before its weights were found not to fit. Now the backbone's sizes are compared with
    model.weights.h5's index and the task's own with task.weights.h5's: one line naming the
    config, and nothing is built."""
    from tf_models.artifacts.resolve import load_artifact

    kind, name, edit, said, found = PRESET_SIZES[case]
    folder = _copy(tiny_preset if kind == "ft" else tiny_pt_preset, tmp_path)
    _edit_config(folder, name, edit)
    cls = tf_models.VideoMAEVideoClassifier if kind == "ft" else \
        tf_models.VideoMAEMaskedAutoencoder
    for load in (cls.from_preset, load_artifact,
                 lambda preset: cls.from_preset(preset, load_weights=False)):
        with pytest.raises(tf_models.PresetError) as raised:
            load(folder)
        message = str(raised.value)
        assert message.startswith(f"{folder}/{name}: {said}, but the weights have {found}; a "
                                  f"config of another model, or edited? "), message
        assert "\n" not in message
    assert built == []


def test_a_preset_whose_task_json_lacks_num_classes_loads_with_it_given(tmp_path):
    """A handmade or older preset's task.json without num_classes, loaded with
    ``from_preset(folder, num_classes=N)``: keras-hub builds the head from the argument, but
    the sizes' check read the files only and refused it ("num_classes is absent, so the
    constructor's default 400, but the weights have 5"). Now the argument counts: the stored
    head loads (keras-hub's route, and ours with another argument beside it), a count the
    weights do not have is one line naming both, and with neither the refusal stays."""
    model = tf_models.VideoMAEVideoClassifier(**_classifier_kwargs())
    _randomise(model)
    folder = str(tmp_path / "no_num_classes")
    model.save_to_preset(folder)
    expected = keras.ops.convert_to_numpy(model(VIDEO))
    _edit_config(folder, "task.json", lambda c: c["config"].pop("num_classes"))
    cls = tf_models.VideoMAEVideoClassifier
    for load in (lambda: cls.from_preset(folder, num_classes=5),
                 lambda: cls.from_preset(folder, num_classes=5, drop_path_rate=0.0),
                 lambda: cls.from_preset(folder, num_classes=5, offline=True),
                 lambda: tf_models.VideoClassifier.from_preset(folder, num_classes=5)):
        loaded = load()
        assert loaded.num_classes == 5
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(VIDEO)), expected)
    for kwargs, said in (({"num_classes": 4}, "num_classes is absent, and from_preset was "
                                              "given num_classes=4"),
                         ({}, "num_classes is absent, so the constructor's default 400")):
        with pytest.raises(tf_models.PresetError) as raised:
            cls.from_preset(folder, **kwargs)
        message = str(raised.value)
        assert message.startswith(f"{folder}/task.json: {said}, but the weights have 5 "), \
            message
        assert "\n" not in message


CLIP_TOO_LARGE = ("num_frames 4 of img_size 1000000 in patches of 2 x 16 x 16 make 7812500000 "
                  "tokens a clip, more than the 32768 a model here takes (16 times the zoo's "
                  "most, 16 frames of 224 x 224); use fewer frames or smaller ones; ")


def test_a_config_of_a_clip_no_weight_bounds_is_refused_before_building(
        tiny_keras_files, tiny_preset, tmp_path, built):
    """img_size shows in no weight: a .keras archive's or a preset's config saying 1000000
    made Keras build the model first, whose sinusoid table for 7.8e9 tokens asks for
    terabytes. Now the sizes no weight shows are checked as the constructors check them
    (``layers.check_model_sizes``): one line naming the file, nothing built."""
    from tf_models.artifacts.resolve import load_artifact

    path = _rewrite_keras(tiny_keras_files["classifier"], tmp_path / "large.keras",
                          lambda c: _backbone_of(c).update(img_size=1000000))
    folder = _copy(tiny_preset, tmp_path / "preset")
    _edit_config(folder, "config.json", lambda c: c["config"].update(img_size=1000000))
    for where, load in ((path, tf_models.VideoMAEVideoClassifier.from_preset),
                        (path, load_artifact),
                        (f"{folder}/config.json", tf_models.VideoMAEBackbone.from_preset),
                        (f"{folder}/config.json", load_artifact)):
        with pytest.raises(tf_models.PresetError) as raised:
            load(where.replace("/config.json", ""))
        assert str(raised.value).startswith(f"{where}: {CLIP_TOO_LARGE}"), str(raised.value)
        assert "\n" not in str(raised.value)
    assert built == []


@pytest.mark.parametrize("kind, edit, cause", [
    ("classifier", lambda c: c["config"].update(backbone=False),
     "(VideoMAEVideoClassifier: backbone must be a VideoMAEBackbone or its serialised config, "
     "not False)"),
    ("backbone", lambda c: c["config"].update(drop_path_rate="x"),
     "(drop_path_rate must be a number from 0 to 1, not 'x')"),
], ids=["backbone false", "text rate"])
def test_a_keras_file_whose_config_builds_nothing_says_why_in_its_line(tiny_keras_files,
                                                                      tmp_path, kind, edit, cause):
    """Before: "'bool' object has no attribute 'final_norm'", or Keras's preamble and the
    first words of the whole config, cut before the cause."""
    path = _rewrite_keras(tiny_keras_files[kind], tmp_path / f"{kind}.keras", edit)
    with pytest.raises(tf_models.PresetError) as raised:
        KERAS_CLASSES[kind].from_preset(path)
    assert str(raised.value) == f"{path}: cannot be loaded as a Keras model {cause}"


def _extra_array(handle):
    import numpy as np

    handle.create_dataset("layers/extra/vars/0", data=np.zeros((3,), "float32"))


def test_weights_no_layer_takes_are_refused_in_one_line(tiny_keras_files, tiny_preset,
                                                        tiny_pt_preset, tmp_path):
    """Keras's lenient loading skips arrays no layer asks for: a ``.keras`` archive's, a
    preset's model.weights.h5 and (before: loaded without a word) its task.weights.h5, which
    holds the task's own layers only (keras-hub's ``save_task_weights``), each holding one
    array more, are one line naming the file, what it holds and what the model takes; for a
    task.weights.h5 the sizes of the task's own layers (before: the backbone's depth, which
    says nothing of that file)."""
    import h5py

    path = _rewrite_keras(tiny_keras_files["classifier"], tmp_path / "extra.keras",
                          edit_weights=_extra_array)
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEVideoClassifier.from_preset(path)
    assert str(raised.value).startswith(f"{path}: holds 31 weight arrays, but the model its "
                                        f"config.json describes (depth 2) takes 30; ")
    cases = ((tiny_preset, "model.weights.h5", tf_models.VideoMAEVideoClassifier,
              "holds 27 weight arrays, but the model its config.json describes (depth 2) "
              "takes 26; "),
             (tiny_preset, "task.weights.h5", tf_models.VideoMAEVideoClassifier,
              "holds 5 weight arrays, but the task layers of the model its task.json "
              "describes (num_classes 400) take 4; "),
             (tiny_pt_preset, "task.weights.h5", tf_models.VideoMAEMaskedAutoencoder,
              "holds 19 weight arrays, but the task layers of the model its task.json "
              "describes (decoder_depth 1) take 18; "))
    for index, (preset, name, cls, expected) in enumerate(cases):
        folder = _copy(preset, tmp_path / str(index))
        with h5py.File(os.path.join(folder, name), "a") as handle:
            _extra_array(handle)
        with pytest.raises(tf_models.PresetError) as raised:
            cls.from_preset(folder)
        assert str(raised.value).startswith(f"{folder}/{name}: {expected}"), str(raised.value)
        assert "\n" not in str(raised.value)


def test_old_name_files_load_through_the_one_resolver(tmp_path):
    """``from_preset`` and every ``--model`` load through ``tf_models.artifacts.resolve``'s
    ``load_keras_model``, which reads the old class names and weight layout too."""
    from tf_models.artifacts.resolve import load_artifact
    from tf_models.legacy import _old_layout

    preset = tf_models.get_preset(TINY_FT)
    model = tf_models.VideoMAEVideoClassifier(**preset.model_config())
    _randomise(model, seed=3)
    expected = keras.ops.convert_to_numpy(model(VIDEO))
    # the zoo name in the file name gives the dimensions of a bare weights file
    old_weights = str(tmp_path / f"{TINY_FT}.weights.h5")
    _old_layout(model).save_weights(old_weights)
    config = keras.saving.serialize_keras_object(model)
    config["registered_name"], config["class_name"] = "videomae>VideoMAEClassifier", \
        "VideoMAEClassifier"
    old_keras = str(tmp_path / f"{TINY_FT}.keras")
    with zipfile.ZipFile(old_keras, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.write(old_weights, "model.weights.h5")
    for path in (old_weights, old_keras):
        loaded = tf_models.VideoMAEVideoClassifier.from_preset(path)
        assert type(loaded) is tf_models.VideoMAEVideoClassifier
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(VIDEO)), expected)
        _, artifact = load_artifact(path)
        assert type(artifact) is tf_models.VideoMAEVideoClassifier
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(artifact(VIDEO)), expected)


# --- handles: hf:// through a loopback Hub, kaggle:// -------------------------------------------

HF_CHILD = """
import json, sys
import numpy as np, keras, keras_hub, tf_models
from tf_models.artifacts.resolve import load_artifact
from tf_models.video.model import load_video_model
handle, frames = sys.argv[1], np.load(sys.argv[2])
task = tf_models.VideoMAEVideoClassifier.from_preset(handle)
np.save(sys.argv[3], task.predict(frames, verbose=0))
resolved, model = load_artifact(handle)
tuned = tf_models.VideoMAEVideoClassifier.from_preset(handle, num_classes=7, progress=False)
refused = []
for bad in (sys.argv[4], handle + "_missing"):
    try:
        tf_models.VideoMAEVideoClassifier.from_preset(bad)
    except tf_models.PresetError as error:
        refused.append(str(error))
print(json.dumps({"task": [type(task).__name__, isinstance(task, keras_hub.models.Task)],
                  "resolved": [resolved.kind, resolved.name, type(model).__name__],
                  "tuned": tuned.num_classes,
                  "cli_dataset": load_video_model(handle).dataset, "refused": refused}))
"""


def test_an_hf_handle_downloads_through_keras_hubs_client_from_a_loopback_hub(tiny_preset,
                                                                              tmp_path):
    """``hf://ORG/NAME`` in a fresh process whose ``HF_ENDPOINT`` is a loopback Hub: keras-hub's
    loader fetches every file through huggingface_hub into its cache; the classifier, the one
    resolver (every ``--model``) and a fine-tuning ``from_preset`` take it; a hostile config
    on the Hub and a missing repository are refused in one line."""
    from hub_server import HubServer

    model = tf_models.VideoMAEVideoClassifier.from_preset(tiny_preset)
    expected = model.predict(FRAMES, verbose=0)
    files = {}
    for name in os.listdir(tiny_preset):
        with open(os.path.join(tiny_preset, name), "rb") as handle:
            files[name] = handle.read()
    hostile = dict(files)
    task = json.loads(files["task.json"])
    _lambda_block(task)
    hostile["task.json"] = json.dumps(task).encode()
    np.save(tmp_path / "frames.npy", FRAMES)
    with HubServer() as hub:
        hub.add_repo(f"org/{TINY_FT}", files)
        hub.add_repo("org/hostile", hostile)
        env = {**os.environ, "PYTHONPATH": REPO_ROOT, "HF_ENDPOINT": hub.endpoint,
               "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1"}
        done = subprocess.run([sys.executable, "-c", HF_CHILD, f"hf://org/{TINY_FT}",
                               str(tmp_path / "frames.npy"), str(tmp_path / "out.npy"),
                               "hf://org/hostile"], capture_output=True, text=True,
                              cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["task"] == ["VideoMAEVideoClassifier", True]
    assert found["resolved"] == ["kerashub", TINY_FT, "VideoMAEVideoClassifier"]
    assert found["tuned"] == 7 and found["cli_dataset"] == "k400"
    hostile_error, missing_error = found["refused"]
    assert "hf://org/hostile/task.json: names class 'Lambda'" in hostile_error
    assert f"hf://org/{TINY_FT}_missing/config.json: missing or unreadable" in missing_error
    assert all(len(e.splitlines()) == 1 for e in found["refused"])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    # fetched from the Hub by huggingface_hub (HEAD then GET of resolve/main), into its cache
    assert ("GET", f"/org/{TINY_FT}/resolve/main/model.weights.h5") in hub.requests
    assert not any(p.endswith("/hostile/resolve/main/model.weights.h5") for _, p in hub.requests)
    cached = tmp_path / "hf" / "hub" / f"models--org--{TINY_FT}" / "snapshots"
    # every file but metadata.json, which keras-hub's loader never reads
    assert {p.name for p in cached.glob("*/*")} == set(files) - {"metadata.json"}


def test_offline_an_uncached_hf_handle_is_one_line_and_asks_the_hub_nothing(monkeypatch,
                                                                          tmp_path):
    """``VIDEOMAE_OFFLINE=1`` and an ``hf://`` handle the Hugging Face cache lacks: before,
    keras-hub's client asked the Hub for its config.json (retrying where it is unreachable)
    before the one line."""
    from huggingface_hub import constants
    from hub_server import HubServer

    from tf_models.artifacts.resolve import load_artifact

    monkeypatch.setenv("VIDEOMAE_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    handle = "hf://nobody/nothing"
    with HubServer() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        for load in (load_artifact, tf_models.VideoMAEVideoClassifier.from_preset):
            with pytest.raises(tf_models.PresetError) as raised:
                load(handle)
            assert str(raised.value) == (
                f"{handle}: not in the Hugging Face cache ({tmp_path / 'hf-cache'}) and "
                f"offline mode is on, which never downloads; run once online or unset "
                f"VIDEOMAE_OFFLINE / VIDEOMAE_CONVERT_OFFLINE / HF_HUB_OFFLINE")
        assert hub.requests == []


@pytest.fixture
def hf_hub(tiny_preset, monkeypatch, tmp_path):
    """A loopback Hub (``hub_server.HubServer``) holding ``tiny_preset`` as ``org/TINY_FT``
    and a backbone's preset with a preprocessor beside it (no task.json, as keras-hub's are)
    as ``org/backbone``, huggingface_hub pointed at it in this process, an empty cache."""
    from huggingface_hub import constants
    from hub_server import HubServer

    files = {}
    for name in os.listdir(tiny_preset):
        with open(os.path.join(tiny_preset, name), "rb") as handle:
            files[name] = handle.read()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with HubServer() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        hub.add_repo(f"org/{TINY_FT}", files)
        hub.add_repo("org/backbone", {k: v for k, v in files.items() if "task" not in k})
        yield hub


def test_a_cached_hf_handle_loads_with_each_file_looked_up_once_by_our_checks(hf_hub):
    """Our checks around keras-hub's loader (the configs, the weights' sizes, the files a task
    needs) look each file of a load up once (``kerashub_presets.hub_access``): a cached
    ``hf://`` task's load asked the Hub 40 times (HEAD requests, 28 of them ours), now 17."""
    handle = f"hf://org/{TINY_FT}"
    tf_models.VideoMAEVideoClassifier.from_preset(handle, progress=False)  # fills the cache
    hf_hub.requests.clear()
    tf_models.VideoMAEVideoClassifier.from_preset(handle, progress=False)
    assert {method for method, _ in hf_hub.requests} == {"HEAD"}
    assert len(hf_hub.requests) <= 20, hf_hub.requests


def test_offline_a_cached_hf_handle_loads_from_the_cache_and_asks_the_hub_nothing(
        hf_hub, monkeypatch):
    """Offline (``offline=True``, or ``VIDEOMAE_OFFLINE=1``), an ``hf://`` keras-hub preset the
    Hugging Face cache holds loads from the cache alone, in every route (keras-hub's own
    ``from_preset``, one with options, the one resolver, the backbone, a classifier from a
    backbone's preset with the preprocessor beside it): before, keras-hub's client asked the
    Hub for every file (and fetched any that changed there) while offline mode promised no
    download. (keras-hub's own base classes, ``keras_hub.models.Backbone.from_preset``, take
    no part of ours: ``HF_HUB_OFFLINE`` is theirs.)"""
    from huggingface_hub import constants

    from tf_models.artifacts.resolve import load_artifact

    handle = f"hf://org/{TINY_FT}"
    online = tf_models.VideoMAEVideoClassifier.from_preset(handle, progress=False)
    expected = online.predict(FRAMES, verbose=0)
    tuned = tf_models.VideoMAEVideoClassifier.from_preset("hf://org/backbone", num_classes=3)
    assert hf_hub.requests  # the cache is filled
    hf_hub.requests.clear()
    offline_tuned = tf_models.VideoMAEVideoClassifier.from_preset(
        "hf://org/backbone", num_classes=3, offline=True)
    loaded = [tf_models.VideoMAEVideoClassifier.from_preset(handle, offline=True),
              tf_models.VideoMAEVideoClassifier.from_preset(handle, offline=True, dropout=0.1),
              load_artifact(handle, offline=True)[1]]
    backbones = [tf_models.VideoMAEBackbone.from_preset(handle, offline=True)]
    monkeypatch.setenv("VIDEOMAE_OFFLINE", "1")
    loaded.append(tf_models.VideoMAEVideoClassifier.from_preset(handle))
    backbones.append(tf_models.VideoMAEBackbone.from_preset(handle))
    assert hf_hub.requests == []
    assert constants.HF_HUB_OFFLINE is False  # the client's own setting, as it was
    for model in loaded:
        np.testing.assert_array_equal(model.predict(FRAMES, verbose=0) if model.preprocessor
                                      else model.predict(online.preprocessor(FRAMES),
                                                         verbose=0), expected)
    assert _preprocessor_config(offline_tuned) == _preprocessor_config(tuned)
    assert _preprocessor_config(tuned) == _preprocessor_config(online)
    tokens = keras.ops.convert_to_numpy(online.backbone(VIDEO)["tokens"])
    for model in backbones:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(VIDEO)["tokens"]),
                                      tokens)


def test_a_kaggle_handle_goes_through_kagglehub_and_fails_in_one_line_offline(monkeypatch,
                                                                               tmp_path):
    """A Kaggle that cannot be reached: kagglehub's endpoint is one of kagglesdk's fixed URLs
    per ``KAGGLE_API_ENVIRONMENT`` (kaggle_env.py; no variable takes a URL); ``LOCALHOST`` is
    ``http://localhost`` (port 80, nothing listening), so the handle reaches kagglehub's
    client and ends in one line. The successful load is the next test (``TEST``, port 7777)."""
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    handle = f"kaggle://someone/videomae/keras/{TINY_FT}"
    for load in (tf_models.VideoMAEVideoClassifier.from_preset,
                 lambda h: tf_models.artifacts.resolve.load_artifact(h)):
        with pytest.raises(tf_models.PresetError) as raised:
            load(handle)
        message = str(raised.value)
        assert len(message.splitlines()) == 1
        assert message.startswith(f"{handle}/config.json: missing or unreadable")
        assert "GetModelInstance" in message and "check the handle, the network" in message


def _free_kaggle_test_port():
    """Whether ``localhost:7777`` would reach only a server this test binds on 127.0.0.1:
    another address of ``localhost`` (``::1``) with a listener there would take the calls."""
    import socket

    for family, kind, proto, _, address in socket.getaddrinfo("localhost", 7777,
                                                              type=socket.SOCK_STREAM):
        if address[0] == "127.0.0.1":
            continue
        with socket.socket(family, kind, proto) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(address) == 0:
                return False
    return True


def test_a_kaggle_handle_downloads_through_kagglehub_from_a_loopback_kaggle(tiny_preset,
                                                                           monkeypatch,
                                                                           tmp_path):
    """``kaggle://OWNER/MODEL/keras/VARIATION`` through kagglehub's own client against a
    loopback Kaggle Models API (``tests/hub_server.KaggleServer``) at kagglesdk's fixed
    ``KAGGLE_API_ENVIRONMENT=TEST`` endpoint, ``http://localhost:7777``: the classifier and the
    one resolver take it, equal to the preset folder; a missing variation (404) and a file
    whose MD5 does not match are each one ``PresetError`` line. Skipped when the port is
    taken (it cannot be chosen)."""
    from hub_server import KaggleServer

    from tf_models.artifacts.resolve import load_artifact

    expected = tf_models.VideoMAEVideoClassifier.from_preset(tiny_preset).predict(FRAMES,
                                                                                 verbose=0)
    files = {}
    for name in os.listdir(tiny_preset):
        with open(os.path.join(tiny_preset, name), "rb") as handle:
            files[name] = handle.read()
    # no real credentials reach the loopback server (kagglesdk reads ~/.kaggle itself)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR",
                 "KAGGLE_KERNEL_RUN_TYPE", "TBE_RUNTIME_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    if not _free_kaggle_test_port():
        pytest.skip("localhost:7777 answers on another address than 127.0.0.1")
    try:
        server = KaggleServer()
    except OSError as error:
        pytest.skip(f"127.0.0.1:7777 (kagglesdk's TEST endpoint) is taken: {error}")
    handle = f"kaggle://someone/videomae/keras/{TINY_FT}"
    with server as kaggle:
        kaggle.add_instance(f"someone/videomae/keras/{TINY_FT}", files, version=3)
        kaggle.add_instance("someone/videomae/keras/corrupt", files,
                            corrupt=["config.json"])
        task = tf_models.VideoMAEVideoClassifier.from_preset(handle)
        found = task.predict(FRAMES, verbose=0)
        resolved, model = load_artifact(handle)
        refused = {}
        for bad in ("missing", "corrupt"):
            with pytest.raises(tf_models.PresetError) as raised:
                tf_models.VideoMAEVideoClassifier.from_preset(
                    f"kaggle://someone/videomae/keras/{bad}")
            refused[bad] = str(raised.value)
    np.testing.assert_array_equal(found, expected)
    assert type(task) is tf_models.VideoMAEVideoClassifier
    assert [resolved.kind, resolved.name, type(model).__name__] == [
        "kerashub", TINY_FT, "VideoMAEVideoClassifier"]
    for name, variable in task.named_variables().items():
        np.testing.assert_array_equal(np.asarray(model.named_variables()[name]),
                                      np.asarray(variable), err_msg=name)
    # fetched by kagglehub: the current version, then each file by a redirect to it
    downloads = {r[2]["path"] for r in kaggle.requests
                 if r[1].endswith("/DownloadModelInstanceVersion")
                 and r[2]["instanceSlug"] == TINY_FT}
    assert {"config.json", "model.weights.h5", "task.json"} <= downloads
    assert ("GET", f"/files/someone/videomae/MODEL_FRAMEWORK_KERAS/{TINY_FT}/3/"
                   "model.weights.h5", None) in kaggle.requests
    cached = tmp_path / "kaggle" / "models" / "someone" / "videomae" / "keras" / TINY_FT / "3"
    assert (cached / "model.weights.h5").read_bytes() == files["model.weights.h5"]
    assert all(len(message.splitlines()) == 1 for message in refused.values()), refused
    assert refused["missing"].startswith(
        "kaggle://someone/videomae/keras/missing/config.json: missing or unreadable")
    assert refused["corrupt"].startswith("kaggle://someone/videomae/keras/corrupt/config.json: "
                                         "missing or unreadable") and "MD5" in refused["corrupt"]
