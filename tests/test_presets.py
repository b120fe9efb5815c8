"""``from_preset`` against a release folder built by ``scripts/release.py`` and served on a
loopback HTTP server: good, tampered, truncated, missing and offline; every Keras backend
in its own fresh process (JAX in the fast tier, TensorFlow and PyTorch in the slow one, with
TensorFlow's checks also run in the test's own process in the fast tier); fine-tuning a
pre-trained entry."""

import functools
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from converter.synthetic import synthetic_path
from converter.checkpoint import read_checkpoint
from converter.synthetic import write_synthetic_checkpoint
from converter.kinds import build_torch_model
from converter.zoo import get_entry

import backend_check
from conftest import REPO_ROOT, TINY_FT, TINY_PT
from http_faults import FaultServer
from video_helpers import shipped_videos

TOLERANCE = 1e-5
BACKENDS = ("tensorflow", "jax", "torch")


@pytest.fixture(scope="module")
def release_dir(tiny_release):
    """A release of the tiny K400 FT and PT entries (synthetic, seed 0): the session's
    (conftest.tiny_release, shared with test_release; read-only here)."""
    return tiny_release[0]


@pytest.fixture
def zoo(release_dir, tmp_path, monkeypatch):
    """The release served on 127.0.0.1, VIDEOMAE_ZOO_URL pointing at it, an empty cache."""
    served = str(tmp_path / "served")
    shutil.copytree(release_dir, served)
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("VIDEOMAE_CACHE", cache)
    monkeypatch.delenv("VIDEOMAE_OFFLINE", raising=False)
    with FaultServer(served) as server:
        server.base = server.url("").rstrip("/")
        monkeypatch.setenv("VIDEOMAE_ZOO_URL", server.base)
        server.cache = cache
        yield server


def _requested(server):
    return [path.lstrip("/") for path, _ in server.requests]


def _cached_files(cache):
    return sorted(name for _, _, files in os.walk(cache) for name in files)


def _torch_reference(name, clip_nthwc, mask=None, work=None):
    entry = get_entry(name)
    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, str(work)), 0)
    model = build_torch_model(entry)
    model.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    video = torch.from_numpy(np.ascontiguousarray(clip_nthwc.transpose(0, 4, 1, 2, 3)))
    with torch.inference_mode():
        if mask is None:
            return model(video).numpy()
        return model(video, torch.from_numpy(mask)).numpy()


# --- resolving and verifying ----------------------------------------------------------------

def test_from_preset_downloads_verifies_and_caches_a_zoo_name(zoo, tmp_path):
    import tf_models

    model = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    assert model.preset.name == TINY_FT and model.preset.protocol == "5x3"
    assert model.preset.mean == (0.485, 0.456, 0.406)
    assert f"{TINY_FT}.weights.h5" in _cached_files(zoo.cache)
    clip = np.random.default_rng(3).standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    expected = _torch_reference(TINY_FT, clip, work=tmp_path)
    assert np.max(np.abs(np.asarray(model(clip)) - expected)) <= TOLERANCE
    # the second load uses the cache: only the checksums are fetched again
    zoo.requests.clear()
    tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    assert _requested(zoo) == ["SHA256SUMS"]


def test_from_preset_refuses_a_tampered_asset_naming_the_checksum(zoo):
    import tf_models

    zoo.plan("ok", "ok", "corrupt")  # SHA256SUMS, manifest.json, the weights one byte off
    with pytest.raises(tf_models.PresetError) as error:
        tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    message = str(error.value)
    assert f"{TINY_FT}.weights.h5" in message and "sha256" in message
    assert "\n" not in message
    assert not any(n.endswith(".weights.h5") for n in _cached_files(zoo.cache))
    assert not any(n.endswith(".part") for n in _cached_files(zoo.cache))  # discarded


@pytest.mark.parametrize("listed", ["absolute", "../outside", "sub/inside"])
def test_a_release_listing_a_path_is_refused_and_nothing_is_written_outside_the_cache(
        listed, tmp_path, monkeypatch):
    """A release URL's SHA256SUMS that lists a path instead of a file name (the name a download
    is written under, in the cache): one PresetError line, nothing downloaded but the list,
    the user's file at that path untouched. Before: the asset was written there, over the
    user's file, with a sidecar beside it."""
    import hashlib

    import tf_models

    payload = b"bytes from a server\n"
    victim = tmp_path / "mine" / "precious.weights.h5"
    victim.parent.mkdir()
    victim.write_bytes(b"the user's own file\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIDEOMAE_CACHE", str(cache))
    monkeypatch.delenv("VIDEOMAE_OFFLINE", raising=False)
    with FaultServer(tmp_path / "served") as server:
        base = server.url("rel").rstrip("/")
        name = {"absolute": str(victim),
                "../outside": "../../mine/precious.weights.h5",
                "sub/inside": "sub/precious.weights.h5"}[listed]
        server.add("rel/SHA256SUMS",
                   f"{hashlib.sha256(payload).hexdigest()}  {name}\n".encode())
        if listed == "absolute":  # served (inside the served folder) where the list says
            server.add("rel/" + name.lstrip("/"), payload)
        with pytest.raises(tf_models.PresetError, match="a path; a release lists") as error:
            tf_models.VideoMAEVideoClassifier.from_preset(base + "/", progress=False)
        assert "\n" not in str(error.value)
        assert [path for path, _ in server.requests] == ["/rel/SHA256SUMS"]
    assert victim.read_bytes() == b"the user's own file\n"
    assert sorted(os.listdir(victim.parent)) == ["precious.weights.h5"]
    assert sorted(name for _, _, files in os.walk(cache) for name in files) == [
        "SHA256SUMS", "SHA256SUMS.sha256"]  # the list (fetched afresh each time), no asset
    with pytest.raises(tf_models.PresetError, match="not an asset name"):
        tf_models.artifacts.resolve.fetch_asset(base, "../x.weights.h5", progress=False)


@pytest.mark.parametrize("fault", ["drop:1000", "length:5000000", "status:404", "status:500",
                                   "redirect-loop", "stall:30", "html"])
def test_a_broken_download_caches_no_asset_and_keeps_only_a_resumable_part(zoo, fault,
                                                                           monkeypatch):
    import tf_models

    monkeypatch.setattr(tf_models.artifacts.download, "TIMEOUT_S", 1.0)  # a stall: within 1 s
    # SHA256SUMS and manifest.json (the weights' size) as published, then the fault on the
    # weights (a loop: on every request)
    zoo.plan("ok", "ok", *[fault] * (20 if fault == "redirect-loop" else 1))
    with pytest.raises(tf_models.PresetError) as error:
        tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    assert f"{TINY_FT}.weights.h5" in str(error.value)
    cached = _cached_files(zoo.cache)
    assert not any(n.endswith(".weights.h5") for n in cached)
    # a transfer cut short keeps its part for the next call to resume; a refused one does not
    # (a length over the size manifest.json records: refused before a byte is written)
    parts = [n for n in cached if n.endswith(".part")]
    cut = fault.split(":")[0] in ("drop", "stall")
    assert parts == ([f"{TINY_FT}.weights.h5.part"] if cut else []), parts


def test_a_download_with_a_malformed_length_is_still_verified_before_use(zoo):
    import tf_models

    zoo.plan("ok", "ok", "bad-length")  # the whole weights, a Content-Length that is no number
    model = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    cached = os.path.join(zoo.cache, os.listdir(zoo.cache)[0], f"{TINY_FT}.weights.h5")
    expected = tf_models.hub.parse_sums(open(os.path.join(zoo.root, "SHA256SUMS")).read(), "")
    assert tf_models.hub.sha256_file(cached) == expected[f"{TINY_FT}.weights.h5"]
    assert model.preset.name == TINY_FT


def test_from_preset_names_an_asset_the_release_does_not_list(zoo):
    import tf_models

    os.remove(os.path.join(zoo.root, "SHA256SUMS"))
    with pytest.raises(tf_models.PresetError, match="SHA256SUMS: HTTP 404"):
        tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)


def test_offline_mode_uses_the_cache_and_never_downloads(zoo, monkeypatch):
    import tf_models

    monkeypatch.setenv("VIDEOMAE_OFFLINE", "1")
    with pytest.raises(tf_models.PresetError, match="offline mode never downloads"):
        tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    assert zoo.requests == []
    monkeypatch.delenv("VIDEOMAE_OFFLINE")
    tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    zoo.requests.clear()
    model = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, offline=True, progress=False)
    assert zoo.requests == [] and model.preset.name == TINY_FT


def test_the_base_classifier_class_loads_a_zoo_name_as_its_subclass_does(zoo):
    """``tf_models.VideoClassifier.from_preset`` (keras-hub's base task class) asked keras-hub
    for a zoo name ("config.json: missing or unreadable (Unknown preset identifier") and
    refused ``offline`` and ``drop_path_rate`` as constructor arguments. Now it loads as the
    subclass the preset holds, every argument alike. A zoo name's classifier is its
    ``.weights.h5``, which holds no preprocessor, with arguments or without; and as
    ``VideoMAEVideoClassifier`` whatever subclasses of it a process has registered
    (keras-hub's ``find_subclass`` took the first of a set of them: any one, about 8 times in
    9 here, and one of test_reload_proofs' in a run of the fast tier)."""
    import keras

    import tf_models

    for number in range(8):  # a user's own subclasses, registered as Keras asks
        keras.saving.register_keras_serializable(package="test_presets_own")(
            type(f"OwnClassifier{number}", (tf_models.VideoMAEVideoClassifier,), {}))
    clip = np.random.default_rng(4).standard_normal((1, 4, 32, 32, 3), dtype=np.float32)
    subclass = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    assert subclass.preprocessor is None
    for kwargs in ({}, {"offline": True}, {"dropout": 0.2, "drop_path_rate": 0.1}):
        model = tf_models.VideoClassifier.from_preset(TINY_FT, progress=False, **kwargs)
        assert type(model) is tf_models.VideoMAEVideoClassifier and model.preprocessor is None
        assert model.preset.name == TINY_FT
        np.testing.assert_array_equal(np.asarray(model(clip)), np.asarray(subclass(clip)))
    tuned = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, num_classes=3, offline=True)
    assert tuned.num_classes == 3 and tuned.preprocessor is None


def test_from_preset_accepts_a_release_folder_and_artifact_paths(release_dir, tmp_path):
    import tf_models

    with pytest.raises(tf_models.PresetError, match="holds 2 entries"):
        tf_models.VideoMAEVideoClassifier.from_preset(release_dir, progress=False)
    weights = os.path.join(release_dir, f"{TINY_FT}.weights.h5")
    keras_file = os.path.join(release_dir, f"{TINY_FT}.keras")
    clip = np.random.default_rng(5).standard_normal((1, 4, 32, 32, 3), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_weights = tf_models.VideoMAEVideoClassifier.from_preset(weights)
        from_keras = tf_models.VideoMAEVideoClassifier.from_preset(keras_file)
    # the task compiles on construction; a file with no optimizer is no cause to warn
    assert [str(w.message) for w in caught if "optimizer" in str(w.message)] == []
    np.testing.assert_array_equal(np.asarray(from_weights(clip)), np.asarray(from_keras(clip)))
    single = tmp_path / "one"
    single.mkdir()
    for suffix in (".weights.h5", ".json"):
        shutil.copy(os.path.join(release_dir, TINY_FT + suffix), single)
    with open(single / "SHA256SUMS", "w") as handle:
        for name in sorted(os.listdir(single)):
            if name != "SHA256SUMS":
                handle.write(f"{tf_models.hub.sha256_file(str(single / name))}  {name}\n")
    from_folder = tf_models.VideoMAEVideoClassifier.from_preset(str(single))
    np.testing.assert_array_equal(np.asarray(from_folder(clip)), np.asarray(from_keras(clip)))


def test_from_preset_explains_what_it_cannot_load(release_dir, tmp_path):
    import tf_models

    with pytest.raises(tf_models.PresetError, match="not a zoo preset"):
        tf_models.VideoMAEVideoClassifier.from_preset("TFVideoMAE_X_K400_16x224_FT")
    with pytest.raises(tf_models.PresetError, match="pass num_classes"):
        tf_models.VideoMAEVideoClassifier.from_preset(os.path.join(release_dir, f"{TINY_PT}.keras"))
    with pytest.raises(tf_models.PresetError, match="needs a pre-trained"):
        tf_models.VideoMAEMaskedAutoencoder.from_preset(
            os.path.join(release_dir, f"{TINY_FT}.keras"))
    orphan = tmp_path / "mystery.weights.h5"
    shutil.copy(os.path.join(release_dir, f"{TINY_FT}.weights.h5"), orphan)
    with pytest.raises(tf_models.PresetError, match="dimensions are unknown"):
        tf_models.VideoMAEVideoClassifier.from_preset(str(orphan))


def test_a_from_preset_argument_the_class_does_not_take_is_refused_naming_it(release_dir):
    """A misspelt override is one line naming it, before anything is fetched (before: Keras's
    ``Model`` took it and did nothing, so ``num_clases=5`` gave the stored 400-class head)."""
    import tf_models

    keras_file = os.path.join(release_dir, f"{TINY_FT}.keras")
    for cls, argument in ((tf_models.VideoMAEVideoClassifier, "num_clases"),
                          (tf_models.VideoMAEBackbone, "drop_path"),
                          (tf_models.VideoMAEMaskedAutoencoder, "decoder_dim")):
        source = keras_file.replace("_FT", "_PT") if "Masked" in cls.__name__ else keras_file
        with pytest.raises(tf_models.PresetError) as raised:
            cls.from_preset(source, **{argument: 5})
        assert str(raised.value).startswith(
            f"{source}: {cls.__name__}.from_preset takes no argument {argument}; it takes "), \
            str(raised.value)
    assert tf_models.VideoMAEVideoClassifier.from_preset(keras_file, num_classes=5,
                                                         dtype="float32").num_classes == 5


def test_from_preset_arguments_that_build_no_model_are_one_line_naming_them(release_dir):
    """A clip shorter than one tubelet, no classes: one line naming the arguments (before:
    Keras's ValueError traceback, also from ``videomae-finetune --num-frames 1``)."""
    import tf_models

    keras_file = os.path.join(release_dir, f"{TINY_FT}.keras")
    for cls, given in ((tf_models.VideoMAEVideoClassifier, {"num_classes": 0}),
                       (tf_models.VideoMAEVideoClassifier, {"num_frames": 1}),
                       (tf_models.VideoMAEBackbone, {"img_size": 8})):
        with pytest.raises(tf_models.PresetError) as raised:
            cls.from_preset(keras_file, **given)
        (key, value), = given.items()
        assert str(raised.value).startswith(f"{keras_file}: a {cls.__name__} with {key}={value} "
                                            f"cannot be built ("), str(raised.value)


def test_a_report_whose_model_config_builds_no_model_is_one_line_naming_it(release_dir,
                                                                          tmp_path):
    """A ``.weights.h5`` takes its dimensions from the report beside it: a ``model_config`` of
    the wrong types is one line naming the report (before: a TypeError or ValueError
    traceback from the model's constructor), as is a report nested too deep for JSON (before:
    a RecursionError traceback)."""
    import tf_models

    for case, change in (("text", {"embed_dim": "48"}), ("null", {"num_classes": None})):
        folder = tmp_path / case
        folder.mkdir()
        shutil.copy(os.path.join(release_dir, f"{TINY_FT}.weights.h5"), folder)
        with open(os.path.join(release_dir, f"{TINY_FT}.json")) as handle:
            report = json.load(handle)
        report["entry"]["model_config"].update(change)
        with open(folder / f"{TINY_FT}.json", "w") as handle:
            json.dump(report, handle)
        with pytest.raises(tf_models.PresetError) as raised:
            tf_models.VideoMAEVideoClassifier.from_preset(str(folder / f"{TINY_FT}.weights.h5"))
        message = str(raised.value)
        assert message.startswith(f"{folder / TINY_FT}.json: its model_config ") and \
            "builds no VideoMAEVideoClassifier" in message and "\n" not in message
    # a report nested too deep for Python's JSON reader (a RecursionError, no ValueError)
    with open(folder / f"{TINY_FT}.json", "w") as handle:
        handle.write("[" * 100000 + "]" * 100000)
    with pytest.raises(tf_models.PresetError, match=r"\.json: not a JSON report \(maximum "
                                                    r"recursion depth"):
        tf_models.VideoMAEVideoClassifier.from_preset(str(folder / f"{TINY_FT}.weights.h5"))


def test_a_weights_file_of_more_blocks_than_its_report_says_is_refused(release_dir, tmp_path):
    """Keras fills a model from the arrays it has and ignores the rest: a report saying one
    block beside a file of two is one line (before: a one-block model loaded, no error)."""
    import tf_models

    shutil.copy(os.path.join(release_dir, f"{TINY_FT}.weights.h5"), tmp_path)
    with open(os.path.join(release_dir, f"{TINY_FT}.json")) as handle:
        report = json.load(handle)
    report["entry"]["model_config"]["depth"] = 1
    with open(tmp_path / f"{TINY_FT}.json", "w") as handle:
        json.dump(report, handle)
    weights = str(tmp_path / f"{TINY_FT}.weights.h5")
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEVideoClassifier.from_preset(weights)
    # refused from the file's index, before the model is built
    assert str(raised.value).startswith(
        f"{tmp_path / TINY_FT}.json: depth is 1, but the weights have 2 (blocks up to 1 in "
        f"{TINY_FT}.weights.h5); "), str(raised.value)


ABSENT = object()  # a change that deletes the key


def _beside_report(release_dir, folder, change):
    """The tiny FT ``.weights.h5`` copied into ``folder`` with its report, whose model_config
    ``change`` updates (deleting the keys it maps to ``ABSENT``): (weights path, report
    path)."""
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(release_dir, f"{TINY_FT}.weights.h5"), folder)
    with open(os.path.join(release_dir, f"{TINY_FT}.json")) as handle:
        report = json.load(handle)
    config = report["entry"]["model_config"]
    config.update(change)
    for key in [key for key, value in change.items() if value is ABSENT]:
        del config[key]
    with open(os.path.join(folder, f"{TINY_FT}.json"), "w") as handle:
        json.dump(report, handle)
    return os.path.join(folder, f"{TINY_FT}.weights.h5"), os.path.join(folder, f"{TINY_FT}.json")


@pytest.mark.parametrize("change, said, found", [
    ({"embed_dim": 65536, "num_heads": 1}, "embed_dim is 65536", 48),
    ({"depth": 500}, "depth is 500", 2),
    ({"num_classes": 10 ** 7}, "num_classes is 10000000", 400),
    ({"mlp_ratio": 4000.0}, "int(embed_dim * mlp_ratio) is 192000", 192),
    ({"patch_size": 2, "tubelet_size": 1}, "tubelet_size is 1", 2),
    ({"depth": 10 ** 60}, "depth is 100000000000... (61 digits)", 2),
    # a key the report lacks is checked at the value the constructor gives it (before: not
    # checked, and a ViT-B of 87M parameters was built before Keras found 60 objects unloaded)
    ({"depth": ABSENT}, "depth is absent, so the constructor's default 12", 2),
    ({"embed_dim": ABSENT}, "embed_dim is absent, so the constructor's default 768", 48),
], ids=["embed_dim", "depth", "num_classes", "mlp_ratio", "tubelet", "huge integer",
        "depth absent", "embed_dim absent"])
def test_a_report_of_sizes_its_weights_do_not_have_is_refused_before_building(
        release_dir, tmp_path, monkeypatch, change, said, found):
    """A report beside a ``.weights.h5`` (a file from the internet) saying a width of 65536 or
    500 blocks: before, the model was built first (gigabytes of variables, minutes) and only
    then found not to fit. Now its sizes are compared with the file's index, one line naming
    the report and the evidence, and no model is built."""
    import tf_models

    weights, report = _beside_report(release_dir, tmp_path, change)

    @functools.wraps(tf_models.VideoMAEVideoClassifier.__init__)  # the defaults read from it
    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(tf_models.VideoMAEVideoClassifier, "__init__", never)
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEVideoClassifier.from_preset(weights)
    message = str(raised.value)
    assert message.startswith(f"{report}: {said}, but the weights have {found} ("), message
    assert f"in {TINY_FT}.weights.h5); a report of another model?" in message
    assert "\n" not in message


def test_a_report_of_a_clip_no_weight_bounds_is_refused_before_building(release_dir,
                                                                         tmp_path, monkeypatch):
    """img_size 1000000 shows in no weight: before, the model was built from the report
    (3.9e9 tokens: terabytes of sinusoid table). Now the sizes no weight shows are checked
    as the constructors check them, one line naming the report, and no model is built."""
    import tf_models

    weights, report = _beside_report(release_dir, tmp_path, {"img_size": 1000000})

    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(tf_models.VideoMAEVideoClassifier, "__init__", never)
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEVideoClassifier.from_preset(weights)
    assert str(raised.value) == (
        f"{report}: num_frames 4 of img_size 1000000 in patches of 2 x 16 x 16 make "
        f"7812500000 tokens a clip, more than the 32768 a model here takes (16 times the "
        f"zoo's most, 16 frames of 224 x 224); use fewer frames or smaller ones; a report of "
        f"another model? Keep the {TINY_FT}.json saved with these weights beside them")


def test_a_weights_file_that_is_not_hdf5_is_one_line_saying_so(release_dir, tmp_path):
    """Before: "does not fit a VideoMAEVideoClassifier of {...} (... file signature not
    found)", as if the sizes were wrong."""
    import tf_models

    weights, _ = _beside_report(release_dir, tmp_path, {})
    with open(weights, "wb") as handle:
        handle.write(b"<html>not found</html>")
    with pytest.raises(tf_models.PresetError) as raised:
        tf_models.VideoMAEVideoClassifier.from_preset(weights)
    message = str(raised.value)
    assert message.startswith(f"{weights}: not an HDF5 weights file (") and \
        message.endswith("it is truncated or not a .weights.h5: download or export it again")


def test_from_preset_without_weights_gives_new_weights_for_files_and_zoo_names(release_dir,
                                                                                tmp_path):
    """``load_weights=False`` was ignored but for keras-hub presets: the trained weights
    loaded anyway. Now a ``.weights.h5`` (with its report) and a ``.keras`` file give the
    same architecture with new weights, as keras-hub's ``from_preset`` does."""
    import tf_models

    cls = tf_models.VideoMAEVideoClassifier
    trained = cls.from_preset(os.path.join(release_dir, f"{TINY_FT}.weights.h5"))
    for name in (f"{TINY_FT}.weights.h5", f"{TINY_FT}.keras"):
        fresh = cls.from_preset(os.path.join(release_dir, name), load_weights=False)
        assert isinstance(fresh, cls) and fresh.get_config()["num_classes"] == 400
        assert len(fresh.weights) == len(trained.weights)
        for new, old in ((fresh.head.kernel, trained.head.kernel),
                         (fresh.backbone.blocks[0].mlp.fc1.kernel,
                          trained.backbone.blocks[0].mlp.fc1.kernel)):
            assert not np.allclose(np.asarray(new), np.asarray(old)), name
    # with overrides: the new task is built from the fresh source
    five = cls.from_preset(os.path.join(release_dir, f"{TINY_FT}.keras"), num_classes=5,
                           load_weights=False)
    assert not np.allclose(np.asarray(five.backbone.patch_embed.proj.kernel),
                           np.asarray(trained.backbone.patch_embed.proj.kernel))


def test_a_zoo_name_without_weights_downloads_nothing(zoo):
    """``from_preset(zoo name, load_weights=False)`` builds the model from the zoo table's row:
    no request reaches the release and nothing is cached (before: its SHA256SUMS and weights
    were downloaded, and then not used); with weights, both are downloaded."""
    import tf_models

    fresh = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, load_weights=False,
                                                          progress=False)
    pretrainer = tf_models.VideoMAEMaskedAutoencoder.from_preset(TINY_PT, load_weights=False)
    backbone = tf_models.VideoMAEBackbone.from_preset(TINY_PT, load_weights=False)
    five = tf_models.VideoMAEVideoClassifier.from_preset(TINY_PT, num_classes=5,
                                                         load_weights=False)
    assert _requested(zoo) == [] and _cached_files(zoo.cache) == []
    assert fresh.preset.name == TINY_FT and fresh.num_classes == 400
    assert pretrainer.preset.name == TINY_PT and backbone.final_norm == "norm"
    assert five.num_classes == 5
    trained = tf_models.VideoMAEVideoClassifier.from_preset(TINY_FT, progress=False)
    assert _requested(zoo) == ["SHA256SUMS", "manifest.json", f"{TINY_FT}.weights.h5"]
    assert len(fresh.weights) == len(trained.weights)
    assert not np.allclose(np.asarray(fresh.head.kernel), np.asarray(trained.head.kernel))


# --- every backend, in a fresh process each --------------------------------------------------

def _backend_args(release_dir, work):
    work.mkdir(exist_ok=True)
    rng = np.random.default_rng(11)
    clip = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    import tf_models

    mask = tf_models.tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    np.save(work / "clip.npy", clip)
    np.save(work / "mask.npy", mask)
    args = {"ft": TINY_FT, "pt": TINY_PT, "keras_ft": os.path.join(release_dir, f"{TINY_FT}.keras"),
            "clip": str(work / "clip.npy"), "mask": str(work / "mask.npy"), "out": str(work),
            "video": shipped_videos()["bikes.mp4"]}
    return clip, mask, args


def _run_backend(backend, zoo, release_dir, work):
    clip, mask, args = _backend_args(release_dir, work)
    # two CPU devices on JAX, for backend_check's data-parallel pre-training step
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               JAX_NUM_CPU_DEVICES="2", VIDEOMAE_ZOO_URL=zoo.base,
               VIDEOMAE_CACHE=str(work / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH"))
                                          if p))
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests", "backend_check.py"),
                           json.dumps(args)], env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(work / "result.json") as handle:
        return clip, mask, args, json.load(handle)


def _tensorflow_video_tools(args, clip):
    """backend_check's video tools in this (TensorFlow) process: pooled features, and the
    real video's prediction."""
    from tf_models.video.features import load_feature_model
    from tf_models.video.model import load_video_model
    from tf_models.video.predict import classify_video

    return (load_feature_model(args["keras_ft"]).run(clip),
            classify_video(load_video_model(args["keras_ft"]), args["video"], k=3))


def _check_backend_run(backend, clip, mask, args, result, work, tmp_path):
    """What tests/backend_check.py saw on ``backend``: presets matching torch, one
    fine-tuning step moving every trainable weight (also in mixed_bfloat16 on TensorFlow),
    the pre-trainer's predict and one pre-training step, the video tools."""
    assert result["backend"] == backend
    expected_ft = _torch_reference(TINY_FT, clip, work=tmp_path)
    expected_pt = _torch_reference(TINY_PT, clip, mask, work=tmp_path)
    for name, expected in (("ft", expected_ft), ("keras_ft", expected_ft), ("pt", expected_pt)):
        found = np.load(work / f"{name}.npy")
        assert found.shape == expected.shape, name
        assert np.max(np.abs(found - expected)) <= TOLERANCE, (backend, name)
    tokens = np.load(work / "pt_tokens.npy")
    assert tokens.shape == (2, 8, 48)
    # the pre-trainer's predict, and one pre-training step: its loss is the torch reference's
    # error to the target (the step ran on the real mask), and every weight moved
    np.testing.assert_allclose(np.load(work / "pt_predict.npy"), np.load(work / "pt.npy"),
                               atol=1e-6, rtol=0)
    target = np.load(work / "pt_target.npy")
    pretrain = result["pretrain"]
    assert pretrain["loss"] == pytest.approx(np.mean((expected_pt - target) ** 2), rel=1e-5)
    assert pretrain["evaluate_loss"] == pytest.approx(pretrain["loss"], rel=1e-5)
    # per-clip sample weights (batch,) weigh each clip's error (before: a broadcast error)
    weights = backend_check.PT_CLIP_WEIGHTS[:len(clip)]
    clip_errors = np.mean((expected_pt - target) ** 2, axis=(1, 2))
    assert pretrain["weighted_evaluate_loss"] == pytest.approx(np.mean(weights * clip_errors),
                                                               rel=1e-5)
    assert pretrain["moved"] and len(pretrain["moved"]) == pretrain["trainable"]
    # other token counts: another mask ratio, and a decode mask (3 tokens decoded per row):
    # predict (on JAX compiled per count) computes what a direct call does
    n_masked = int(mask[0].sum())
    assert (result["counts"]["fewer"], result["counts"]["decode"]) == ([2, None], [n_masked, 3])
    for name, decoded in (("fewer", 2), ("decode", 3)):
        predicted = np.load(work / f"counts_{name}_predict.npy")
        assert predicted.shape == (2, decoded, expected_pt.shape[2]), name
        np.testing.assert_allclose(predicted, np.load(work / f"counts_{name}_call.npy"),
                                   atol=1e-6, rtol=0)
    if backend == "jax":  # one compiled step per count each kind saw; none without counts
        assert pretrain["jitted"] == {"predict": [[n_masked, None], [2, None], [n_masked, 3]],
                                      "test": [[n_masked, None]], "train": [[n_masked, None]]}
        assert "static_token_counts" in result["counts"]["jit_error"]
        np.testing.assert_allclose(np.load(work / "counts_jit.npy"), np.load(work / "pt.npy"),
                                   atol=1e-6, rtol=0)
        # the same step on two devices (DataParallel): the same loss and weights
        parallel = result["pretrain_data_parallel"]
        assert parallel["devices"] == 2 and parallel["jitted"] == [[n_masked, None]]
        assert parallel["loss"] == pytest.approx(pretrain["loss"], rel=1e-5)
        assert parallel["max_weight_difference"] <= 1e-6
    else:  # TensorFlow's graphs take the counts as values; PyTorch runs eagerly
        assert pretrain["jitted"] == {}
    # the video tools on this backend: the classifier's logits (any batch), its pooled
    # features (the head's input), a real video's prediction as TensorFlow's video tools give it
    for name in ("video_logits", "video_logits_3"):
        found = np.load(work / f"{name}.npy")
        np.testing.assert_allclose(found[:2], expected_ft, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.load(work / "video_logits_3.npy")[2], expected_ft[0],
                               atol=TOLERANCE, rtol=0)
    pooled, prediction = _tensorflow_video_tools(args, clip)
    np.testing.assert_allclose(np.load(work / "video_pooled.npy"), pooled,
                               atol=TOLERANCE, rtol=0)
    assert [t["index"] for t in result["video"]["top_k"]] == [
        t["index"] for t in prediction["top_k"]]
    np.testing.assert_allclose(result["video"]["view_logits"], prediction["view_logits"],
                               atol=TOLERANCE, rtol=0)
    # Keras's model.export (on JAX, the batch a symbolic dimension our input checks must
    # not turn into a number) serves what the classifier computes; Keras's torch export
    # fails for any model, so there is none on PyTorch
    if backend != "torch":
        assert result["export"].get("max_difference", 1.0) <= TOLERANCE, result["export"]
    # a label outside the classes is one line on every backend (JAX trained on it silently)
    assert (result["bad_labels"] or "").startswith("ValueError: ") and \
        "takes class indices 0 to 399" in result["bad_labels"], result["bad_labels"]
    # fine-tuning: a new 7-class head, and every trainable weight moved in one step
    assert result["head_shape"] == [48, 7]
    assert result["moved"] and len(result["moved"]) == result["trainable"]
    assert np.isfinite(result["loss"])
    if backend == "tensorflow":  # mixed precision trains too
        assert result["bf16"]["compute_dtype"] == "bfloat16"
        assert len(result["bf16"]["moved"]) == result["bf16"]["trainable"]
        assert np.isfinite(result["bf16"]["loss"])


# Each backend in a fresh process: PyTorch and TensorFlow in the slow tier, JAX in the fast one
# (the same child and checks); the fast tier runs TensorFlow's checks in this process (below)
@pytest.mark.parametrize("backend", [
    b if b == "jax" else pytest.param(b, marks=pytest.mark.slow) for b in BACKENDS])
def test_every_backend_loads_presets_matching_torch_fine_tunes_pretrains_and_runs_video_tools(
        backend, zoo, release_dir, tmp_path):
    clip, mask, args, result = _run_backend(backend, zoo, release_dir, tmp_path / backend)
    _check_backend_run(backend, clip, mask, args, result, tmp_path / backend, tmp_path)
    if backend != "torch":
        assert result["torch_modules"] == []


def test_presets_match_torch_fine_tune_in_bfloat16_pretrain_and_run_video_tools_on_tensorflow(
        zoo, release_dir, tmp_path):
    """backend_check's checks in this (TensorFlow) process, its presets from ``zoo`` (the
    fixture points VIDEOMAE_ZOO_URL at the loopback server): the fresh TensorFlow process's
    other check, importing no torch, is test_tf_models' import test."""
    work = tmp_path / "tensorflow"
    clip, mask, args = _backend_args(release_dir, work)
    backend_check.main(args)
    with open(work / "result.json") as handle:
        result = json.load(handle)
    _check_backend_run("tensorflow", clip, mask, args, result, work, tmp_path)


# --- the pre-trained model's inputs ---------------------------------------------------------

def test_reloaded_pretrainer_answers_list_dict_and_predict_alike(release_dir):
    import keras
    import tf_models

    model = keras.saving.load_model(os.path.join(release_dir, f"{TINY_PT}.keras"),
                                    compile=False)
    rng = np.random.default_rng(2)
    clip = rng.standard_normal((2, 4, 32, 32, 3), dtype=np.float32)
    mask = tf_models.tube_mask(4, 32, 16, 2, 0.5, 2, rng)
    as_list = np.asarray(model([clip, mask]))
    as_dict = np.asarray(model({"video": clip, "mask": mask}))
    predicted = model.predict({"video": clip, "mask": mask}, verbose=0)
    assert as_list.shape == (2, 4, 3 * 2 * 16 * 16)  # 4 masked tubelets of 2x16x16x3
    np.testing.assert_array_equal(as_list, as_dict)
    np.testing.assert_allclose(predicted, as_dict, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="video.*mask"):
        model(clip)


def test_video_model_loads_a_zoo_name_through_from_preset(zoo):
    from tf_models.video.model import ModelError, load_video_model

    model = load_video_model(TINY_FT)
    assert (model.kind, model.num_frames, model.img_size) == ("zoo", 4, 32)
    assert model.num_classes == 400 and model.dataset == "k400"
    views = np.random.default_rng(0).standard_normal((3, 4, 32, 32, 3), dtype=np.float32)
    assert model.run(views).shape == (3, 400)
    zoo.plan("ok", "corrupt")
    os.remove(os.path.join(zoo.cache, os.listdir(zoo.cache)[0], f"{TINY_FT}.weights.h5"))
    with pytest.raises(ModelError, match="sha256"):
        load_video_model(TINY_FT)
