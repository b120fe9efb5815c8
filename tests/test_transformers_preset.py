"""``from_preset`` on a transformers-format VideoMAE (config.json ``model_type: videomae`` +
model.safetensors): converted on the fly without torch, equal to the torch reference on the
same weights; a folder or ``hf://`` repository of pickle weights only is refused in one line.

The tf_models side runs in a child process that never imports torch (and asserts it); this
process writes the folders from randomised upstream state dicts (every tensor random) renamed
to transformers' names, and runs the torch reference on the same inputs.
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
    del hf["videomae.embeddings.cls_token"]
    write_transformers_folder(folder, hf, dict(hf_config(FT), num_hidden_layers=1))
    with pytest.raises(PresetError, match=r"model\.safetensors: \d+ tensor\(s\) do not map: "
                                          r"\+ unexpected blocks\.1\."):
        tf_models.VideoMAEVideoClassifier.from_preset(folder)
