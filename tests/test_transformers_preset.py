"""``from_preset`` on a transformers-format VideoMAE (config.json ``model_type: videomae`` +
model.safetensors): converted on the fly without torch, equal to the torch reference on the
same weights; a folder or ``hf://`` repository of pickle weights only is refused in one line.

The tf_models side runs in a child process that never imports torch (and asserts it); this
process writes the folders from randomised upstream state dicts (every tensor random) renamed
to transformers' names, and runs the torch reference on the same inputs. That child reads
``hf://`` from a Hugging Face cache filled by hand with ``HF_HUB_OFFLINE=1`` (offline mode);
``test_an_hf_transformers_repository_downloads_from_a_loopback_hub`` downloads through
huggingface_hub from ``tests/hub_server.HubServer`` on 127.0.0.1 (in this process).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import torch_reference
from conftest import REPO_ROOT
from converter.synthetic import random_state_dict
from converter.zoo import TEST_ZOO
from test_hf_format import hf_config, to_transformers, upstream_state, write_transformers_folder

import tf_models  # noqa: E402  (after the torch side)
from tf_models.hub import PresetError  # noqa: E402

FT = TEST_ZOO["TFVideoMAE_T_K400_4x32_FT"]
PT = TEST_ZOO["TFVideoMAE_T_K400_4x32_PT"]
HF_REPO = "MCG-NJU/videomae-tiny-test"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import tf_models
    folders, out = sys.argv[1], sys.argv[2]
    data = np.load(folders + "/inputs.npz")
    video, mask = data["video"], data["mask"]
    found = {}
    classifier = tf_models.VideoMAEVideoClassifier.from_preset(folders + "/ft")
    found["classifier"] = np.asarray(classifier(video, training=False))
    from_hub = tf_models.VideoMAEVideoClassifier.from_preset("hf://%s")
    found["classifier_hf"] = np.asarray(from_hub(video, training=False))
    pretrainer = tf_models.VideoMAEMaskedAutoencoder.from_preset(folders + "/pt")
    found["pretrainer"] = np.asarray(pretrainer({"video": video, "mask": mask}, training=False))
    backbone = tf_models.VideoMAEBackbone.from_preset(folders + "/pt")
    found["encoder_norm_gamma"] = np.asarray(backbone.named_variables()["norm.gamma"])
    found["classes"] = np.asarray([classifier.num_classes, from_hub.num_classes])
    assert "torch" not in sys.modules, "tf_models imported torch"
    np.savez(out, **found)
    print("TORCH-FREE")
""" % HF_REPO)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    video = rng.standard_normal((2, FT.num_frames, FT.img_size, FT.img_size, 3), np.float32)
    mask = torch_reference.tube_mask(PT.num_frames, PT.img_size, PT.patch_size,
                                     PT.tubelet_size, PT.mask_ratio, 2, rng)
    return video, mask


def _torch_outputs(entry, state, video, mask=None):
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**entry.model_config())
    else:
        model = torch_reference.PretrainVisionTransformer(**entry.model_config())
    model.load_state_dict(state, strict=True)
    model.eval()
    video_ncthw = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 4, 1, 2, 3)))
    with torch.no_grad():
        if mask is None:
            return model(video_ncthw).numpy()
        return model(video_ncthw, torch.from_numpy(mask)).numpy()


def _hf_cache(root, folder):
    """A Hugging Face cache holding ``folder`` as the ``main`` revision of HF_REPO, read by
    the real client in offline mode (no server, no mock)."""
    repo = os.path.join(root, "models--" + HF_REPO.replace("/", "--"))
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as handle:
        handle.write(COMMIT)
    snapshot = os.path.join(repo, "snapshots", COMMIT)
    os.makedirs(snapshot)
    for name in os.listdir(folder):
        os.symlink(os.path.join(folder, name), os.path.join(snapshot, name))
    return root


def _assert_close(found, expected, what):
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(found - expected)))
    assert found.shape == expected.shape, what
    assert error <= 1e-5 * scale, f"{what}: max |tf - torch| {error:.3g} (scale {scale:.3g})"


def test_transformers_folders_load_torch_free_and_match_the_torch_reference(tmp_path):
    ft_state, pt_state = upstream_state(FT, seed=7), upstream_state(PT, seed=8)
    # q/v biases in transformers v4's spelling for one, the later one (with an all-zero key
    # bias, dropped) for the other
    write_transformers_folder(str(tmp_path / "ft"), to_transformers(ft_state, "q_bias"),
                              hf_config(FT))
    write_transformers_folder(str(tmp_path / "pt"),
                              to_transformers(pt_state, "query.bias", key_bias=0.0),
                              dict(hf_config(PT), decoder_intermediate_size=4 * PT.dims[
                                  "decoder_embed_dim"]))
    video, mask = _inputs()
    np.savez(tmp_path / "inputs.npz", video=video, mask=mask)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1",
               HF_HUB_CACHE=_hf_cache(str(tmp_path / "hub"), str(tmp_path / "ft")),
               PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH"))
                                          if p))
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "TORCH-FREE" in done.stdout, done.stderr[-3000:]
    found = np.load(tmp_path / "out.npz")

    expected = _torch_outputs(FT, ft_state, video)
    _assert_close(found["classifier"], expected, "classifier from a folder")
    _assert_close(found["classifier_hf"], expected, "classifier from hf://")
    assert list(found["classes"]) == [FT.num_classes, FT.num_classes]
    _assert_close(found["pretrainer"], _torch_outputs(PT, pt_state, video, mask), "pretrainer")
    np.testing.assert_array_equal(found["encoder_norm_gamma"],
                                  pt_state["encoder.norm.weight"].numpy())


def test_a_pickle_only_transformers_folder_is_refused_naming_the_converter(tmp_path):
    folder = write_transformers_folder(str(tmp_path / "bin"),
                                       to_transformers(upstream_state(FT)), hf_config(FT),
                                       safetensors=False, bin=True)
    with pytest.raises(PresetError) as caught:
        tf_models.VideoMAEVideoClassifier.from_preset(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder}: holds only PyTorch pickle weights (pytorch_model.bin)")
    assert "videomae-convert" in message and "\n" not in message


def test_a_transformers_folder_of_another_model_type_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(PresetError, match=r"config\.json: model_type 'vit'; from_preset reads "
                                          r"transformers' VideoMAE"):
        tf_models.VideoMAEBackbone.from_preset(str(folder))


def test_transformers_tensors_that_do_not_fit_the_config_are_listed_in_one_line(tmp_path):
    hf = to_transformers(upstream_state(FT))
    hf["videomae.embeddings.cls_token"] = torch.zeros(1, 1, 48)
    folder = write_transformers_folder(str(tmp_path / "extra"), hf,
                                       dict(hf_config(FT), num_hidden_layers=1))
    with pytest.raises(PresetError) as caught:
        tf_models.VideoMAEVideoClassifier.from_preset(folder)
    message = str(caught.value)
    assert "videomae.embeddings.cls_token" in message and "\n" not in message
    del hf["videomae.embeddings.cls_token"], hf["fc_norm.bias"]
    write_transformers_folder(folder, hf, hf_config(FT))
    with pytest.raises(PresetError, match=r"model\.safetensors: 1 tensor\(s\) do not map: "
                                          r"- missing fc_norm\.bias"):
        tf_models.VideoMAEVideoClassifier.from_preset(folder)


def test_a_transformers_folder_that_cannot_be_read_is_one_line_naming_the_file(tmp_path):
    """Through the resolver behind every ``--model``: sizes of the wrong type, a non-square
    frame, a clip of more tokens than any model here takes, a config.json that is no JSON
    object (before: a TypeError traceback, or a release folder's missing SHA256SUMS), shards
    named outside the folder (before: read)."""
    from tf_models.artifacts.resolve import load_artifact

    state = to_transformers(upstream_state(FT))
    cases = {"null_size": (dict(hf_config(FT), hidden_size=None),
                           "config.json: hidden_size is null, expected a positive integer"),
             "text_size": (dict(hf_config(FT), num_frames="4"),
                           'config.json: num_frames is "4", expected a positive integer'),
             "oblong": (dict(hf_config(FT), image_size=[32, 48]),
                        "config.json: image_size is [32, 48]; VideoMAE takes square frames"),
             # no tensor shows a clip's size: before, the model was built for 66248 tokens
             "large_clip": (dict(hf_config(FT), image_size=16 * 182),
                            "config.json: num_frames 4 of img_size 2912 in patches of 2 x 16 x "
                            "16 make 66248 tokens a clip, more than the 32768 a model here "
                            "takes")}
    for case, (config, expected) in cases.items():
        folder = write_transformers_folder(str(tmp_path / case), state, config)
        with pytest.raises(PresetError) as caught:
            load_artifact(folder)
        assert str(caught.value).startswith(f"{folder}/{expected}"), str(caught.value)
    unreadable = {"not_json": "{not json", "a_list": "[1, 2]", "neither": '{"hidden": 1}'}
    for case, text in unreadable.items():
        folder = tmp_path / case
        folder.mkdir()
        (folder / "config.json").write_text(text)
        with pytest.raises(PresetError) as caught:
            load_artifact(str(folder))
        message = str(caught.value)
        assert message.startswith(f"{folder}/config.json: ") and "model_type" in message, message
    outside = write_transformers_folder(str(tmp_path / "elsewhere"), state, hf_config(FT))
    for case, shard in (("dotdot", "../elsewhere/model.safetensors"),
                        ("absolute", os.path.join(outside, "model.safetensors"))):
        folder = tmp_path / case
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(hf_config(FT)))
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {name: shard for name in state}}))
        with pytest.raises(PresetError) as caught:
            load_artifact(str(folder))
        assert str(caught.value) == (
            f"{folder}/model.safetensors.index.json: shard {shard!r} is not a file name inside "
            f"the folder; an index names the shards beside it")


def test_a_transformers_width_that_does_not_split_into_its_heads_is_one_line(tmp_path):
    """hidden_size 40 (no upstream size, so no head count is corrected) with 3 heads: before,
    a model of heads 40 // 3 wide was built and loaded, whose attention regrouped the batch."""
    from tf_models.artifacts.resolve import load_artifact

    config = dict(FT.model_config(), embed_dim=40, num_heads=4)
    state = random_state_dict(torch_reference.VisionTransformer(**config), 0)
    folder = write_transformers_folder(
        str(tmp_path / "hf"), to_transformers(state),
        dict(hf_config(FT), hidden_size=40, intermediate_size=160, num_attention_heads=3))
    with pytest.raises(PresetError) as caught:
        load_artifact(folder)
    assert str(caught.value) == (
        f"{folder}/config.json: hidden_size 40 does not split into num_attention_heads 3 "
        f"heads of equal width; hidden_size must be a multiple of num_attention_heads "
        f"(ViT-B: 768 and 12)")


def _assert_config_refused(tmp_path, state, cases):
    """Each ``cases`` key set to its value in config.json beside ``state``: loading is one
    PresetError line naming config.json, starting with the expected text."""
    from tf_models.artifacts.resolve import load_artifact

    for key, (value, expected) in cases.items():
        folder = write_transformers_folder(str(tmp_path / key), state,
                                           dict(hf_config(FT), **{key: value}))
        with pytest.raises(PresetError) as caught:
            load_artifact(folder)
        assert str(caught.value).startswith(f"{folder}/config.json: {expected}"), \
            str(caught.value)


def test_a_config_whose_sizes_are_not_the_weights_is_refused_before_a_model_is_built(
        tmp_path, monkeypatch):
    """config.json is a file from the internet: a size the tensors contradict, or a clip
    shorter than one patch, is one line naming it, and no model is built first (before: a
    model of the config's sizes, gigabytes for a large hidden_size, minutes for many layers,
    then the tensor listing; a traceback for a clip shorter than one patch). Heads that do not
    divide the width: the test above."""
    from tf_models import transformers_format

    def never(*args):
        raise AssertionError("a model was built from a config the tensors contradict")

    monkeypatch.setattr(transformers_format, "_build", never)
    state = to_transformers(upstream_state(FT))
    cases = {"hidden_size": (4095, "hidden_size is 4095, but the weights have 48 "
                                   "(patch_embed.proj.weight (48, 3, 2, 16, 16) in "
                                   "model.safetensors)"),
             "num_hidden_layers": (60, "num_hidden_layers is 60, but the weights have 2 "
                                       "(blocks up to 1 in model.safetensors)"),
             "intermediate_size": (10 ** 6, "intermediate_size is 1000000, but the weights "
                                            "have 192"),
             "patch_size": ([8, 8], "patch_size is 8, but the weights have 16"),
             "num_frames": (1, "num_frames is 1, smaller than tubelet_size 2; a clip needs at "
                               "least one patch")}
    _assert_config_refused(tmp_path, state, cases)


def test_a_shard_holding_a_tensor_the_index_places_elsewhere_is_refused(tmp_path):
    """Sharded weights load, each tensor from the shard its index names; a tensor also in
    another shard is one line naming both (before: the later shard's copy silently won)."""
    from safetensors.numpy import save_file

    state = {k: v.numpy() for k, v in to_transformers(upstream_state(FT)).items()}
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config(FT)))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    first, second = shards
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / shard))
    loaded = tf_models.VideoMAEVideoClassifier.from_preset(str(folder))
    np.testing.assert_array_equal(np.asarray(loaded.named_variables()["fc_norm.gamma"]),
                                  state["fc_norm.weight"])
    other = dict({k: state[k] for k in shards[second]},
                 **{"fc_norm.weight": np.full_like(state["fc_norm.weight"], 7.0)})
    assert "fc_norm.weight" in shards[first]
    save_file(other, str(folder / second))
    with pytest.raises(PresetError) as caught:
        tf_models.VideoMAEVideoClassifier.from_preset(str(folder))
    assert str(caught.value) == (f"{folder}/{second}: holds fc_norm.weight, which "
                                 f"model.safetensors.index.json places in {first}; each tensor "
                                 f"is in the one shard the index names")


def test_transformers_weights_holding_nan_or_inf_are_refused_naming_the_tensor(tmp_path):
    """As videomae-convert refuses them (before: loaded, every prediction NaN)."""
    for value in (float("nan"), float("inf")):
        state = to_transformers(upstream_state(FT))
        state["classifier.bias"][3] = value
        folder = write_transformers_folder(str(tmp_path / str(value)), state, hf_config(FT))
        with pytest.raises(PresetError) as caught:
            tf_models.VideoMAEVideoClassifier.from_preset(folder)
        assert str(caught.value).startswith(f"{folder}/model.safetensors: classifier.bias holds "
                                            f"NaN or Inf values; "), str(caught.value)


def test_transformers_weights_of_a_dtype_not_read_are_refused_by_name(tmp_path):
    """An 8-bit float tensor (numpy has no such dtype), an integer or a bool one: one line
    naming the tensor, its dtype and the ones read (before: an 8-bit float was safetensors'
    "module 'numpy' has no attribute 'float8_e4m3fn'"). The header is read, not the values."""
    import struct

    state = to_transformers(upstream_state(FT))
    for dtype, size in (("F8_E4M3", 1), ("I64", 8), ("BOOL", 1)):
        folder = write_transformers_folder(str(tmp_path / dtype), state, hf_config(FT))
        path = os.path.join(folder, "model.safetensors")
        with open(path, "rb") as handle:
            length = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(length))
            data = handle.read()
        begin, end = header["classifier.bias"]["data_offsets"]
        assert (end - begin) % size == 0
        header["classifier.bias"].update(dtype=dtype, shape=[(end - begin) // size])
        text = json.dumps(header).encode()
        with open(path, "wb") as handle:
            handle.write(struct.pack("<Q", len(text)) + text + data)
        with pytest.raises(PresetError) as caught:
            tf_models.VideoMAEVideoClassifier.from_preset(folder)
        assert str(caught.value) == (
            f"{folder}/model.safetensors: classifier.bias is {dtype}, expected floating point "
            f"of 16, 32 or 64 bits (F64, F32, F16, BF16); save the weights in one of them "
            f"(8-bit floats are not read)")


def test_a_config_or_index_nested_too_deep_for_json_is_one_line_naming_it(tmp_path):
    """Python's JSON reader stops on deep nesting with a RecursionError, no ValueError: a
    crafted config.json or shard index is one line naming it (before: that traceback)."""
    from tf_models.artifacts.resolve import load_artifact

    deep = "[" * 100000 + "]" * 100000
    state = to_transformers(upstream_state(FT))
    for name in ("config.json", "model.safetensors.index.json"):
        folder = write_transformers_folder(str(tmp_path / name), state, hf_config(FT))
        with open(os.path.join(folder, name), "w") as handle:
            handle.write(deep)
        for load in (load_artifact, tf_models.VideoMAEVideoClassifier.from_preset):
            with pytest.raises(PresetError) as caught:
                load(folder)
            assert str(caught.value).startswith(f"{folder}/{name}: not "), str(caught.value)
            assert "maximum recursion depth" in str(caught.value)


def test_a_transformers_config_of_the_wrong_types_for_the_renaming_is_one_line(tmp_path):
    """``architectures`` and ``use_mean_pooling`` settle which model the tensors are; of the
    wrong type, one line naming config.json (before: a TypeError traceback)."""

    state = to_transformers(upstream_state(FT))
    cases = {"architectures": (5, "architectures is 5, expected a list of class names"),
             "use_mean_pooling": ("no", "use_mean_pooling is 'no', expected true or false")}
    _assert_config_refused(tmp_path, state, cases)


def test_transformers_bfloat16_weights_and_class_names_are_read(tmp_path):
    """A checkpoint saved in bfloat16 loads (widened; before: refused as not floating point)
    and equals torch on the same rounded weights; a config's own class names (``id2label``)
    name the predictions, transformers' ``LABEL_i`` placeholders do not."""
    from tf_models.video.model import load_video_model
    from tf_models.video.predict import describe_prediction
    from tf_models.video.protocol import protocol_for

    state = upstream_state(FT, seed=3)
    rounded = {k: v.to(torch.bfloat16) for k, v in state.items()}
    names = {str(i): f"my class {i}" for i in range(FT.num_classes)}
    folder = write_transformers_folder(str(tmp_path / "bf16"), to_transformers(rounded),
                                       dict(hf_config(FT), id2label=names))
    video, _ = _inputs(seed=4)
    model = load_video_model(folder)
    _assert_close(model.run(video), _torch_outputs(
        FT, {k: v.float() for k, v in rounded.items()}, video), "bfloat16 classifier")
    assert model.labels == tuple(names[str(i)] for i in range(FT.num_classes))
    # from_preset's classifier carries them, at another clip length too (a model rebuilt for
    # the new grid, the same head: before, its names were lost)
    for options in ({}, {"num_frames": 2 * FT.num_frames}):
        assert tf_models.VideoMAEVideoClassifier.from_preset(folder, **options).class_labels \
            == model.labels
    logits = model.run(video[:1])
    found = describe_prediction(model, "clip.mp4", protocol_for(model.dataset), logits, k=1)
    assert found["top_k"][0]["label"] == f"my class {int(np.argmax(logits[0]))}"
    placeholders = {str(i): f"LABEL_{i}" for i in range(FT.num_classes)}
    folder = write_transformers_folder(str(tmp_path / "plain"), to_transformers(state),
                                       dict(hf_config(FT), id2label=placeholders))
    assert load_video_model(folder).labels is None


def test_an_exports_source_is_the_handle_and_the_digest_of_its_loaded_weights(loopback_hub,
                                                                              tmp_path):
    """``videomae-export``'s loader, given an ``hf://`` handle (downloaded from a loopback Hub),
    gives back the handle as given, and its source record is the handle and a sha256 of the
    loaded variables (before: the handle joined to the working folder, and the sha256 of no
    data), the same for the same weights read from a folder, another for other weights; from
    a transformers folder, the folder's sha256 and layout ``transformers``."""
    from converter.keras_export import load_classifier, source_record
    from tf_models.artifacts.checksums import tree_sha256

    folder = write_transformers_folder(str(tmp_path / "ft"), to_transformers(upstream_state(FT)),
                                       hf_config(FT))
    model, path, layout = load_classifier(folder, progress=False)
    assert (path, layout) == (folder, "transformers")
    local = source_record(model, path, layout)
    assert (local.path, local.sha256) == (os.path.abspath(folder), tree_sha256(folder))

    loopback_hub.add_repo(HF_REPO, _files(folder))
    handle = f"hf://{HF_REPO}"
    downloaded, path, layout = load_classifier(handle, progress=False)
    assert (path, layout) == (handle, "transformers")
    assert ("GET", f"/{HF_REPO}/resolve/main/{WEIGHTS}") in loopback_hub.requests
    remote = source_record(downloaded, path, layout)
    assert remote.path == handle and remote.sha256 != local.sha256
    assert source_record(model, handle, layout).sha256 == remote.sha256  # a function of them
    head = model.named_variables()["head.bias"]
    head.assign(np.asarray(head) + 1.0)
    assert source_record(model, handle, layout).sha256 != remote.sha256


def test_a_head_count_the_loader_corrects_is_said_by_the_commands(tmp_path):
    """transformers' ViT-S configs say 16 heads where upstream has 6 (384 / 16 is a valid head
    width too, so nothing would fail): the model is built with 6 and equals the torch
    reference, and ``videomae-predict`` and ``videomae-extract`` (one loader each) say so on
    stderr, their output on stdout / disk unchanged."""
    from click.testing import CliRunner
    from video_helpers import shipped_videos

    from converter.synthetic import random_state_dict
    from videomae_cli.video import extract_command, predict_command

    narrow = torch_reference.VisionTransformer(embed_dim=384, depth=1, num_heads=6,
                                               num_frames=4, img_size=32, num_classes=400)
    state = random_state_dict(narrow, 7)
    config = dict(hf_config(FT), hidden_size=384, num_hidden_layers=1, num_attention_heads=16,
                  intermediate_size=1536)
    folder = write_transformers_folder(str(tmp_path / "vit_s_16_heads"),
                                       to_transformers(state), config)

    model = tf_models.VideoMAEVideoClassifier.from_preset(folder)
    assert model.backbone.num_heads == 6
    video, _ = _inputs()
    narrow.load_state_dict(state, strict=True)
    narrow.eval()
    with torch.no_grad():
        expected = narrow(torch.from_numpy(np.ascontiguousarray(
            video.transpose(0, 4, 1, 2, 3)))).numpy()
    _assert_close(np.asarray(model(video, training=False)), expected, "16-head config")

    said = f"note: {folder}/config.json says 16 heads"
    videos = shipped_videos()
    result = CliRunner().invoke(predict_command, [videos["bikes.mp4"], "--model", folder,
                                                  "--views", "1x1", "--json"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith(said), notes
    assert notes[0].endswith("has 6: using 6"), notes
    assert len(json.loads(result.stdout)["top_k"]) == 5

    listing = tmp_path / "list.txt"
    listing.write_text("bikes.mp4\n")
    result = CliRunner().invoke(extract_command, ["--model", folder, "--list", str(listing),
                                                  "--root", os.path.dirname(videos["bikes.mp4"]),
                                                  "--out", str(tmp_path / "features"),
                                                  "--views", "1x1", "--dataset", "k400", "-q"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith(said), notes


# --- hf:// through a loopback Hub: the download path, not a hand-filled cache ------------------

@pytest.fixture
def loopback_hub(monkeypatch, tmp_path):
    """huggingface_hub pointed at ``tests/hub_server.HubServer`` on 127.0.0.1, in this process.

    ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` are read once, when huggingface_hub is imported
    (``constants.py``), and keras-hub's ``get_file`` calls ``hf_hub_download`` without an
    endpoint, so the values they set are set here instead (a child process with the
    variables, as test_kerashub does, costs ~6 s of imports). Before anything loads, the URL
    the client would build must be the loopback one: a client that reads its endpoint
    elsewhere fails here rather than reaching huggingface.co."""
    import huggingface_hub
    from huggingface_hub import constants
    from hub_server import HubServer

    with HubServer() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        url = huggingface_hub.hf_hub_url(HF_REPO, CONFIG)
        assert url.startswith(hub.endpoint + "/"), f"huggingface_hub would fetch {url}"
        yield hub


CONFIG, WEIGHTS = "config.json", "model.safetensors"


def _files(folder):
    found = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as handle:
            found[name] = handle.read()
    return found


def test_an_hf_transformers_repository_downloads_from_a_loopback_hub(loopback_hub, tmp_path):
    """``from_preset("hf://ORG/NAME")`` on a transformers-format repository that huggingface_hub
    downloads (HEAD + GET of ``resolve/main``) from a loopback Hub into its cache: every class
    that reads transformers repositories equals the torch reference on the same random weights
    and the same folder read locally; a missing repository, a missing weights file and a
    tensor of the wrong shape and a pickle-only repository on the Hub are each one
    ``PresetError`` line."""
    hub = loopback_hub
    ft_state, pt_state = upstream_state(FT, seed=11), upstream_state(PT, seed=12)
    ft = write_transformers_folder(str(tmp_path / "ft"), to_transformers(ft_state, "q_bias"),
                                   hf_config(FT))
    pt = write_transformers_folder(str(tmp_path / "pt"),
                                   to_transformers(pt_state, "query.bias", key_bias=0.0),
                                   dict(hf_config(PT), decoder_intermediate_size=4 * PT.dims[
                                       "decoder_embed_dim"]))
    hub.add_repo(HF_REPO, _files(ft))
    hub.add_repo(HF_REPO + "-pt", _files(pt))
    hub.add_repo(HF_REPO + "-noweights", {CONFIG: _files(ft)[CONFIG]})
    misshapen = to_transformers(ft_state, "q_bias")
    misshapen["classifier.weight"] = misshapen["classifier.weight"][:-1]
    write_transformers_folder(str(tmp_path / "misshapen"), misshapen, hf_config(FT))
    hub.add_repo(HF_REPO + "-misshapen", _files(str(tmp_path / "misshapen")))
    pickle = write_transformers_folder(str(tmp_path / "pickle"), to_transformers(ft_state),
                                       hf_config(FT), safetensors=False, bin=True)
    hub.add_repo(HF_REPO + "-pickle", _files(pickle))
    video, mask = _inputs(seed=1)
    handle = f"hf://{HF_REPO}"

    classifier = tf_models.VideoMAEVideoClassifier.from_preset(handle)
    found = np.asarray(classifier(video, training=False))
    _assert_close(found, _torch_outputs(FT, ft_state, video), "classifier from hf://")
    local = tf_models.VideoMAEVideoClassifier.from_preset(ft)
    np.testing.assert_array_equal(found, np.asarray(local(video, training=False)))
    assert classifier.num_classes == FT.num_classes
    backbone = tf_models.VideoMAEBackbone.from_preset(handle)
    for name, variable in local.backbone.named_variables().items():
        np.testing.assert_array_equal(np.asarray(backbone.named_variables()[name]),
                                      np.asarray(variable), err_msg=name)
    pretrainer = tf_models.VideoMAEMaskedAutoencoder.from_preset(handle + "-pt")
    _assert_close(np.asarray(pretrainer({"video": video, "mask": mask}, training=False)),
                  _torch_outputs(PT, pt_state, video, mask), "pretrainer from hf://")

    # downloaded, not read from a cache filled by hand
    for name in (CONFIG, WEIGHTS):
        assert ("GET", f"/{HF_REPO}/resolve/main/{name}") in hub.requests
    snapshots = tmp_path / "hf-cache" / ("models--" + HF_REPO.replace("/", "--")) / "snapshots"
    assert {p.name for p in snapshots.glob("*/*")} == {CONFIG, WEIGHTS}

    refused = {
        "-missing": f"{handle}-missing/config.json: missing or unreadable",
        "-noweights": f"{handle}-noweights: no model.safetensors (from_preset reads",
        "-pickle": f"{handle}-pickle: holds only PyTorch pickle weights (pytorch_model.bin)",
        "-misshapen": f"{handle}-misshapen/model.safetensors: 1 tensor(s) do not map",
    }
    for suffix, expected in refused.items():
        with pytest.raises(PresetError) as caught:
            tf_models.VideoMAEVideoClassifier.from_preset(handle + suffix)
        message = str(caught.value)
        assert message.startswith(expected), message
        assert "\n" not in message
    # the pickle is found by a HEAD request, never downloaded (it may be gigabytes)
    pickle_url = f"/{HF_REPO}-pickle/resolve/main/pytorch_model.bin"
    assert ("HEAD", pickle_url) in hub.requests and ("GET", pickle_url) not in hub.requests


def test_every_model_option_takes_a_transformers_folder_or_hf_repository(loopback_hub, tmp_path):
    """The resolver behind the commands' ``--model`` (``videomae-predict``, ``-evaluate``,
    ``-extract``, ``-export``) reads a transformers-format folder or ``hf://`` repository as
    ``from_preset`` does: the classifier's logits and its ``forward_features`` equal the torch
    reference on the same random weights, from the folder and from the loopback Hub alike."""
    from tf_models.artifacts.resolve import load_artifact, resolve_artifact
    from tf_models.video.features import load_feature_model
    from tf_models.video.model import load_video_model

    state = upstream_state(FT, seed=13)
    folder = write_transformers_folder(str(tmp_path / "ft"), to_transformers(state, "q_bias"),
                                       hf_config(FT))
    loopback_hub.add_repo(HF_REPO, _files(folder))
    video, _ = _inputs(seed=2)
    reference = torch_reference.VisionTransformer(**FT.model_config())
    reference.load_state_dict(state, strict=True)
    reference.eval()
    with torch.no_grad():
        video_ncthw = torch.from_numpy(np.ascontiguousarray(video.transpose(0, 4, 1, 2, 3)))
        logits, features = (reference(video_ncthw).numpy(),
                            reference.forward_features(video_ncthw).numpy())
    for spec in (folder, f"hf://{HF_REPO}"):
        assert resolve_artifact(spec).kind == "transformers", spec
        model = load_video_model(spec)
        assert (model.kind, model.num_classes, model.dataset) == (
            "transformers", FT.num_classes, "k400"), spec
        _assert_close(model.run(video), logits, f"videomae-predict --model {spec}")
        _assert_close(load_feature_model(spec).run(video), features,
                      f"videomae-extract --model {spec}")
        _, keras_model = load_artifact(spec)
        assert isinstance(keras_model, tf_models.VideoMAEVideoClassifier), spec


def test_an_hf_transformers_repository_loads_offline_from_the_cache_alone(loopback_hub,
                                                                          tmp_path):
    """Offline (``offline=True``, as ``VIDEOMAE_OFFLINE=1``), the resolver reads an ``hf://``
    repository from the Hugging Face cache and sends no request (before: HEAD and GET of
    config.json, and the weights downloaded anyway); with nothing cached it asks nothing."""
    from tf_models.artifacts.resolve import load_artifact, resolve_artifact
    from tf_models.transformers_format import is_transformers_preset

    state = upstream_state(FT, seed=5)
    folder = write_transformers_folder(str(tmp_path / "ft"), to_transformers(state),
                                       hf_config(FT))
    loopback_hub.add_repo(HF_REPO, _files(folder))
    handle = f"hf://{HF_REPO}"
    assert not is_transformers_preset(handle, offline=True)
    assert loopback_hub.requests == []
    resolved, online = load_artifact(handle)  # fills the cache
    assert resolved.kind == "transformers" and loopback_hub.requests
    loopback_hub.requests.clear()
    resolved, offline = load_artifact(handle, offline=True)
    assert resolve_artifact(handle, offline=True).kind == "transformers"
    assert loopback_hub.requests == []
    video, _ = _inputs(seed=6)
    np.testing.assert_array_equal(np.asarray(offline(video)), np.asarray(online(video)))
    _assert_close(np.asarray(offline(video)), _torch_outputs(FT, state, video), "offline")


# --- preprocessor_config.json: the classifier's preprocessor, where it is ours ----------------

PREPROCESSOR = "preprocessor_config.json"
# transformers' VideoMAEImageProcessor settings as a repository saves them, at the tiny
# model's 32 px, with a mean and std of its own (not ImageNet's, so the file's are seen used)
MATCHING = {"do_resize": True, "size": {"shortest_edge": FT.img_size}, "resample": 2,
            "do_center_crop": True, "crop_size": {"height": FT.img_size, "width": FT.img_size},
            "do_rescale": True, "rescale_factor": 0.00392156862745098, "do_normalize": True,
            "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3],
            "image_processor_type": "VideoMAEImageProcessor"}


ABSENT = object()  # a key left out of the file


def _with_preprocessor(folder, text):
    with open(os.path.join(folder, PREPROCESSOR), "w") as handle:
        handle.write(text if isinstance(text, str) else json.dumps(text))
    return folder


def test_a_matching_preprocessor_config_gives_the_classifier_raw_frames_in(loopback_hub,
                                                                           tmp_path):
    """A transformers folder or ``hf://`` repository whose ``preprocessor_config.json``
    describes what our converter does gives ``from_preset``'s classifier a preprocessor with
    the file's mean, std and size (before: none, and raw frames refused): ``predict`` on raw
    uint8 frames of another size equals the model on the converter's frames, at the model's
    size on ``tf_models.video``'s numpy normalisation; offline, the file comes from the cache
    alone; ``num_classes`` keeps it, ``img_size`` makes its frames that size."""
    from tf_models.video.protocol import normalize_views

    folder = _with_preprocessor(write_transformers_folder(
        str(tmp_path / "ft"), to_transformers(upstream_state(FT, seed=21)), hf_config(FT)),
        MATCHING)
    loopback_hub.add_repo(HF_REPO, _files(folder))
    handle = f"hf://{HF_REPO}"
    rng = np.random.default_rng(22)
    other = rng.integers(0, 256, (2, FT.num_frames, 40, 48, 3), dtype=np.uint8)
    same = rng.integers(0, 256, (2, FT.num_frames, FT.img_size, FT.img_size, 3), np.uint8)
    mean, std = tuple(MATCHING["image_mean"]), tuple(MATCHING["image_std"])
    for spec in (folder, handle):
        model = tf_models.VideoMAEVideoClassifier.from_preset(spec)
        converter = model.preprocessor.video_converter
        assert (converter.image_size, converter.mean, converter.std) == (FT.img_size, mean, std)
        assert model.conversion_notes == []
        expected = np.asarray(model(converter(other), training=False))
        np.testing.assert_allclose(model.predict(other, verbose=0), expected, atol=1e-5)
        expected = np.asarray(model(normalize_views(same, mean, std), training=False))
        np.testing.assert_allclose(model.predict(same, verbose=0), expected, atol=1e-5)
    assert ("GET", f"/{HF_REPO}/resolve/main/{PREPROCESSOR}") in loopback_hub.requests

    loopback_hub.requests.clear()
    offline = tf_models.VideoMAEVideoClassifier.from_preset(handle, offline=True)
    assert loopback_hub.requests == []
    found = offline.preprocessor.video_converter
    assert (found.image_size, found.mean, found.std) == (FT.img_size, mean, std)

    for options, size in (({"num_classes": 3}, FT.img_size), ({"img_size": 48}, 48)):
        model = tf_models.VideoMAEVideoClassifier.from_preset(folder, **options)
        converter = model.preprocessor.video_converter
        assert (converter.image_size, converter.mean, converter.std) == (size, mean, std)
        assert model.backbone.img_size == size, options


def test_offline_a_preprocessor_config_the_cache_never_fetched_is_a_note_not_silence(
        loopback_hub, tmp_path):
    """Offline, an ``hf://`` repository whose ``preprocessor_config.json`` the cache has never
    fetched (a backbone was loaded online, which reads no preprocessor) gives the classifier
    no preprocessor and one note saying so and how to get it (before: nothing said, as if the
    repository had no such file); one whose download found no file is no note."""
    folder = _with_preprocessor(write_transformers_folder(
        str(tmp_path / "ft"), to_transformers(upstream_state(FT, seed=24)), hf_config(FT)),
        MATCHING)
    handle = f"hf://{HF_REPO}"
    loopback_hub.add_repo(HF_REPO, _files(folder))
    tf_models.VideoMAEBackbone.from_preset(handle)  # config and weights into the cache
    model = tf_models.VideoMAEVideoClassifier.from_preset(handle, offline=True)
    assert model.preprocessor is None
    assert model.conversion_notes == [
        f"{handle}/{PREPROCESSOR}: not in the Hugging Face cache (never fetched; offline mode "
        f"downloads nothing, one load online fetches it); no preprocessor (the classifier "
        f"takes normalised frames)"]

    files = _files(folder)
    del files[PREPROCESSOR]
    loopback_hub.add_repo(HF_REPO + "-bare", files)
    bare = f"hf://{HF_REPO}-bare"
    tf_models.VideoMAEVideoClassifier.from_preset(bare)  # finds no file, and the cache marks it
    model = tf_models.VideoMAEVideoClassifier.from_preset(bare, offline=True)
    assert (model.preprocessor, model.conversion_notes) == (None, [])


def test_a_preprocessor_config_describing_something_else_gives_no_preprocessor_and_a_note(
        tmp_path):
    """A ``preprocessor_config.json`` our converter does not follow (a short side resized
    past the crop, as 256 before a 224 crop) or that is not JSON: the classifier still loads,
    with no preprocessor (raw frames refused as before) and one note naming the file and why
    (before: the file was ignored, no note); the backbone neither reads it nor notes it."""
    folder = write_transformers_folder(str(tmp_path / "ft"),
                                       to_transformers(upstream_state(FT, seed=23)),
                                       hf_config(FT))
    where = f"{folder}/{PREPROCESSOR}: "
    raw = np.zeros((1, FT.num_frames, FT.img_size, FT.img_size, 3), np.uint8)
    for text, said in (
            (dict(MATCHING, size={"shortest_edge": 40}),
             "shortest_edge 40 before a 32 crop; the converter resizes the short side to the "
             "crop size; no preprocessor"),
            ('{"size": ', "not readable as JSON (")):
        _with_preprocessor(folder, text)
        model = tf_models.VideoMAEVideoClassifier.from_preset(folder)
        assert model.preprocessor is None
        assert len(model.conversion_notes) == 1, model.conversion_notes
        assert model.conversion_notes[0].startswith(where + said), model.conversion_notes
        assert "\n" not in model.conversion_notes[0]
        with pytest.raises(ValueError, match="no preprocessor"):
            model.predict(raw, verbose=0)
    assert tf_models.VideoMAEBackbone.from_preset(folder).conversion_notes == []


@pytest.mark.parametrize("change, said", [
    ({"crop_size": {"height": 32, "width": 24}}, "a 32 x 24 crop, the model takes 32 x 32"),
    ({"crop_size": 224}, "a 224 x 224 crop, the model takes 32 x 32 frames"),
    ({"size": {"height": 32, "width": 32}}, 'size is {"height": 32, "width": 32}, expected'),
    ({"do_center_crop": False}, "do_center_crop false where the converter has true"),
    ({"resample": 3}, "resample 3 where the converter has 2"),
    ({"do_normalize": 1}, "do_normalize 1 where the converter has true"),
    ({"rescale_factor": 1.0}, "rescale_factor 1.0, the converter's is 1/255"),
    ({"image_mean": [0.5, 0.5]}, "image_mean is [0.5, 0.5], expected 3 finite numbers"),
    ({"image_mean": None}, "image_mean is null, expected 3 finite numbers"),
    ({"image_std": ABSENT}, "no image_std (transformers' default 0.5 is not assumed)"),
    ({"image_std": [0.2, 0.0, 0.3]}, "image_std is [0.2, 0.0, 0.3], expected 3 positive"),
    ({"image_std": [0.2, float("nan"), 0.3]}, "image_std is [0.2, NaN, 0.3], expected 3 finite"),
    ({"rescale_factor": 10 ** 400}, "rescale_factor 1000000000000000000000000000000000000000..."),
    ([1, 2], "a JSON list"),
])
def test_a_preprocessor_config_the_converter_does_not_follow_is_said_why(tmp_path, change,
                                                                           said):
    """Each setting our converter does not follow is named in the note, as JSON spells it."""
    from tf_models.transformers_format import converter_arguments

    folder = str(tmp_path)
    config = change if not isinstance(change, dict) else \
        {k: v for k, v in dict(MATCHING, **change).items() if v is not ABSENT}
    found, note = converter_arguments(_with_preprocessor(folder, config), FT.img_size)
    assert found is None and note.startswith(f"{folder}/{PREPROCESSOR}: {said}"), note


def test_a_feature_extractor_era_preprocessor_config_reads_with_transformers_defaults(tmp_path):
    """A file as VideoMAEFeatureExtractor saved them (``"size": 224``, no crop or rescale keys)
    is read as transformers reads it, its defaults filling the gaps (a 224 crop, 1/255); no
    file, no preprocessor and no note."""
    from tf_models.transformers_format import converter_arguments

    old = {"do_center_crop": True, "do_normalize": True, "do_resize": True,
           "feature_extractor_type": "VideoMAEFeatureExtractor", "resample": 2, "size": 224,
           "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    assert converter_arguments(str(tmp_path), 224) == (None, None)
    found, note = converter_arguments(_with_preprocessor(str(tmp_path), old), 224)
    assert note is None and found == {"mean": (0.485, 0.456, 0.406),
                                      "std": (0.229, 0.224, 0.225)}
