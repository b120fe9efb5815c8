"""Upstream's test-time video protocol on real videos: views, logits, predict and evaluate.

The TF side (``tf_models.video``) is checked against ``torch_reference.video_pipeline``, an
independent implementation that follows upstream's dataset code step by step, and against
the torch reference model loaded from the same synthetic checkpoint.
"""

import torch  # noqa: F401
from torch_reference.video_pipeline import upstream_indices, upstream_merge, upstream_test_views

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import converter  # noqa: E402
from converter.synthetic import synthetic_path  # noqa: E402
from converter.checkpoint import read_checkpoint  # noqa: E402
from converter.synthetic import write_synthetic_checkpoint  # noqa: E402
from converter.kinds import build_torch_model  # noqa: E402

from conftest import REPO_ROOT, TINY_FT  # noqa: E402
from video_helpers import make_bad_videos, make_video_cases, shipped_videos  # noqa: E402

TINY_SSV2 = "TFVideoMAE_T_SSv2_4x32_FT"
LOGIT_ATOL = 1e-4
CASES = ("landscape", "portrait", "lowres", "short")


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    return make_video_cases(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory):
    return make_bad_videos(tmp_path_factory.mktemp("bad_videos"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_converted):
    """{dataset: conversion result} for the tiny K400 and SSv2 entries (synthetic, seed 0)."""
    out = tmp_path_factory.mktemp("tiny_ssv2")
    ssv2 = converter.convert(TINY_SSV2, str(out), synthetic=True, seed=0, progress=False)
    return {"k400": tiny_converted, "ssv2": ssv2}


def torch_reference_model(result, folder, seed=0):
    """The torch reference loaded strictly from the synthetic checkpoint ``result`` came from."""
    entry = result.entry
    path = write_synthetic_checkpoint(entry, synthetic_path(entry, seed, str(folder)), seed)
    model = build_torch_model(entry)
    model.load_state_dict(read_checkpoint(path).state_dict, strict=True)
    return model


def torch_view_logits(model, views_ncthw):
    with torch.inference_mode():
        return model(views_ncthw).numpy()


# --- the protocol ----------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["k400", "ssv2"])
@pytest.mark.parametrize("num_frames", [4, 16])
def test_frame_indices_follow_upstream_for_every_length(dataset, num_frames):
    from tf_models.video.protocol import protocol_for

    protocol = protocol_for(dataset, num_frames, 224)
    for length in range(1, 400):
        expected = [int(i) for i in upstream_indices(dataset, length, clip_len=num_frames,
                                                     num_segment=num_frames)]
        assert protocol.frame_indices(length) == expected, length


def test_resize_follows_upstream_rule():
    from tf_models.video.protocol import protocol_for

    protocol = protocol_for("k400", 16, 224)
    rng = np.random.default_rng(0)
    for (height, width), expected in [((272, 640), (224, 527)), ((640, 272), (527, 224)),
                                      ((144, 176), (224, 273)), ((224, 500), (224, 500)),
                                      ((300, 300), (224, 224))]:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        resized = protocol.resize_frame(frame)
        assert resized.shape[:2] == expected
    untouched = rng.integers(0, 256, (224, 500, 3), dtype=np.uint8)
    assert protocol.resize_frame(untouched) is untouched


# --- views on real videos --------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES + ("lowres_carphone",))
@pytest.mark.parametrize("dataset", ["k400", "ssv2"])
@pytest.mark.parametrize("num_frames,img_size", [(4, 32), (16, 224)])
def test_views_equal_reference_pipeline(videos, case, dataset, num_frames, img_size):
    from tf_models.video import normalize_views, protocol_for, read_views

    protocol = protocol_for(dataset, num_frames, img_size)
    found = read_views(videos[case], protocol)
    raw, normalised = upstream_test_views(videos[case], dataset, clip_len=num_frames,
                                          short_side_size=img_size)
    assert found.shape == (protocol.num_views, num_frames, img_size, img_size, 3)
    assert found.dtype == np.uint8
    np.testing.assert_array_equal(found, raw)
    ours = normalize_views(found)
    theirs = normalised.numpy().transpose(0, 2, 3, 4, 1)  # (V, C, T, H, W) -> (V, T, H, W, C)
    assert ours.dtype == np.float32
    assert float(np.max(np.abs(ours - theirs))) <= 1e-6
    # a real video: views differ from each other (a wrong crop or clip offset would show)
    assert len({v.tobytes() for v in found}) > 1 or case == "short"


@pytest.mark.parametrize("dataset", ["k400", "ssv2"])
def test_views_keep_only_the_frames_they_read_however_long_the_video(videos, dataset,
                                                                      monkeypatch):
    # before: every 4th frame (K400) or every frame (SSv2) of the whole video was resized and
    # held, so a 4-minute video took 2 GB (K400) or 3.5 GB (SSv2) to make 15 or 6 views
    from tf_models.video import protocol_for, read_views
    from tf_models.video.protocol import Protocol

    protocol = protocol_for(dataset, 4, 32)
    resize, resized = Protocol.resize_frame, []
    monkeypatch.setattr(Protocol, "resize_frame",
                        lambda self, frame: resized.append(1) or resize(self, frame))
    views = read_views(videos["landscape"], protocol)  # 250 frames
    assert views.shape == (protocol.num_views, 4, 32, 32, 3)
    assert 0 < len(resized) <= protocol.num_clips * protocol.num_frames


def test_normalisation_uses_imagenet_statistics():
    from tf_models.video import normalize_views

    views = np.full((1, 1, 1, 1, 3), 255, np.uint8)
    expected = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(normalize_views(views)[0, 0, 0, 0], expected, rtol=1e-6)


# --- predict: per-view logits against the torch reference ------------------------------------

@pytest.mark.parametrize("dataset", ["k400", "ssv2"])
def test_predict_view_logits_match_torch_reference(videos, tiny_models, tmp_path, dataset):
    from tf_models.video import classify_video, load_video_model

    result = tiny_models[dataset]
    reference = torch_reference_model(result, tmp_path)
    for artifact in ("keras", "savedmodel"):
        model = load_video_model(result.paths[artifact])
        assert (model.dataset, model.num_frames, model.img_size) == (dataset, 4, 32)
        for case in CASES:
            record = classify_video(model, videos[case], k=5)
            _, normalised = upstream_test_views(videos[case], dataset, clip_len=4,
                                                short_side_size=32)
            expected = torch_view_logits(reference, normalised)
            found = np.asarray(record["view_logits"])
            assert found.shape == expected.shape == (6 if dataset == "ssv2" else 15,
                                                     result.entry.num_classes)
            error = float(np.max(np.abs(found - expected)))
            assert error <= LOGIT_ATOL, f"{artifact} {case}: max abs {error:.2e}"
            probs = torch.softmax(torch.from_numpy(expected).double(), -1).mean(0).numpy()
            assert [row["index"] for row in record["top_k"]] == list(np.argsort(-probs)[:5])
            np.testing.assert_allclose(record["probs"], probs, atol=1e-6)


def test_classify_video_refuses_a_k_or_batch_size_below_one(videos, tiny_models):
    """The Python API refuses what the command's ``--top-k`` and ``--batch-size`` refuse, one
    line each (before: ``k=-1`` returned every class but the least likely one as the "top",
    ``k=0`` nothing, ``batch_size=0`` Python's "range() arg 3 must not be zero")."""
    from tf_models.video import classify_video, load_video_model

    model = load_video_model(tiny_models["k400"].paths["keras"])
    for arguments, words in (({"k": -1}, "k must be at least 1, got -1"),
                             ({"k": 0}, "k must be at least 1, got 0"),
                             ({"batch_size": 0}, "batch_size must be at least 1, got 0")):
        with pytest.raises(ValueError, match=words):
            classify_video(model, videos["landscape"], views="1x1", **arguments)
    assert len(classify_video(model, videos["landscape"], views="1x1", k=1)["top_k"]) == 1


@pytest.mark.slow  # ViT-S (~2 GB): not full_size, so it runs beside the full-size worker's queue
@pytest.mark.parametrize("name", ["TFVideoMAE_S_K400_16x224_FT", "TFVideoMAE_S_SSv2_16x224_FT"])
def test_predict_small_models_match_torch_reference(videos, tmp_path, name):
    """ViT-S K400 and SSv2 through videomae-predict --json: per-view logits within 1e-4."""
    result = converter.convert(name, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False, parity_batch=1)
    reference = torch_reference_model(result, tmp_path)
    dataset = result.entry.dataset
    done = run_video_cli("predict", [videos[c] for c in CASES + ("lowres_carphone",)]
                         + ["--model", result.paths["keras"], "--json"])
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    for record, case in zip(records, CASES + ("lowres_carphone",)):
        _, normalised = upstream_test_views(videos[case], dataset)
        expected = torch_view_logits(reference, normalised)
        error = float(np.max(np.abs(np.asarray(record["view_logits"]) - expected)))
        assert error <= LOGIT_ATOL, f"{case}: max abs {error:.2e}"
        probs = torch.softmax(torch.from_numpy(expected).double(), -1).mean(0).numpy()
        assert [row["index"] for row in record["top_k"]] == list(np.argsort(-probs)[:5])


# --- the command lines -----------------------------------------------------------------------

def run_video_cli(command, args, timeout=600, **kwargs):
    """``videomae-predict`` / ``videomae-evaluate`` in a fresh process (as a console script)."""
    main = {"predict": "predict_main", "evaluate": "evaluate_main"}[command]
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command must quiet TensorFlow by itself
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    code = f"import sys; from videomae_cli.video import {main}; sys.argv[0] = 'videomae'; {main}()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def test_predict_cli_prints_only_json_and_no_framework_noise(videos, tiny_models):
    done = run_video_cli("predict", [videos["landscape"], videos["portrait"], "--model",
                                     tiny_models["k400"].paths["savedmodel"], "--json",
                                     "--top-k", "3"])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no absl / oneDNN / cuInit lines
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["video"] for r in records] == [videos["landscape"], videos["portrait"]]
    for record in records:
        assert record["views"] == "5x3" and record["model"] == "TFVideoMAE_T_K400_4x32_FT"
        assert len(record["top_k"]) == 3 and len(record["probs"]) == 400
        assert len(record["view_logits"]) == 15
        assert abs(sum(record["probs"]) - 1) < 1e-6
        assert record["top_k"][0]["label"] == _k400()[record["top_k"][0]["index"]]


def _k400():
    from tf_models.video import class_names

    return class_names("k400")


def test_predict_cli_views_override(videos, tiny_models):
    from click.testing import CliRunner

    from videomae_cli.video import predict_command

    result = CliRunner().invoke(predict_command, [videos["landscape"], "--model",
                                                  tiny_models["ssv2"].paths["keras"],
                                                  "--views", "1x1", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["views"] == "1x1" and len(record["view_logits"]) == 1


def assert_one_error_line(result, code, naming):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and naming in lines[0], lines[0]
    return lines[0]


EXPECTED_PROBLEM = {
    "zero_byte": "empty (0 bytes)", "truncated_index": "not a video file",
    "truncated_frames": "truncated", "not_a_video": "not a video file",
    "no_video_stream": "no video stream", "one_frame": "has 1 frame",
    "huge_resolution": "megapixels", "missing": "no such file",
    "size_change": "frame size changes mid-stream (640x272 up to frame 11, 320x272 at frame 12)",
    # Matroska and WebM declare a duration, no frame count
    "truncated_mkv": "of the 2.40 s it declares", "truncated_webm": "of the 2.40 s it declares",
}


@pytest.mark.parametrize("case", sorted(EXPECTED_PROBLEM))
def test_predict_bad_video_is_one_clear_line(bad_videos, tiny_models, case):
    from click.testing import CliRunner

    from videomae_cli.video import predict_command

    result = CliRunner().invoke(predict_command, [bad_videos[case], "--model",
                                                  tiny_models["k400"].paths["keras"]])
    line = assert_one_error_line(result, 2, bad_videos[case])
    assert EXPECTED_PROBLEM[case] in line
    assert line.count(bad_videos[case]) == 1, line  # the file named once, one problem
    assert result.stdout == ""


def test_predict_goes_on_after_a_bad_video(videos, bad_videos, tiny_models):
    from click.testing import CliRunner

    from videomae_cli.video import predict_command

    result = CliRunner().invoke(predict_command, [bad_videos["zero_byte"], videos["short"],
                                                  "--model", tiny_models["k400"].paths["keras"],
                                                  "--json"])
    assert_one_error_line(result, 2, bad_videos["zero_byte"])
    assert json.loads(result.stdout)["video"] == videos["short"]


@pytest.mark.parametrize("case", ["truncated_mkv", "truncated_webm", "truncated_frames"])
def test_a_truncated_video_is_refused_by_the_training_input_and_reconstruction(bad_videos,
                                                                                 case):
    from tf_models.train.data import TrainSet
    from tf_models.train.sampling import SAMPLE, rng_for
    from tf_models.video.decode import VideoError
    from tf_models.video.reconstruct import ClipReadError, read_clip

    path = bad_videos[case]
    train = TrainSet([(os.path.basename(path), 0)], os.path.dirname(path), 400, 4, 32)
    with pytest.raises(VideoError, match="truncated") as error:
        train._read(path, rng_for(0, SAMPLE, 0, 0, 0))
    assert str(error.value).startswith(path) and "\n" not in str(error.value)
    with pytest.raises(ClipReadError, match="it declares") as error:
        read_clip(path, num_frames=4, img_size=32)
    assert "\n" not in str(error.value)


def test_an_edit_list_mp4_is_read_whole_not_refused_as_truncated(tmp_path):
    """``ffmpeg -ss T -c copy`` cuts keep every sample in the MP4 index (its frame count) and
    an edit list that drops the first ones (its duration): the file is whole."""
    import av

    from tf_models.train.data import TrainSet
    from tf_models.train.sampling import SAMPLE, rng_for
    from tf_models.video import decode_frames, protocol_for, read_views
    from tf_models.video.reconstruct import read_clip
    from video_helpers import _frames, write_edit_list_copy, write_video

    source = write_video(str(tmp_path / "source.mp4"), _frames(shipped_videos()["bikes.mp4"], 40))
    cut = write_edit_list_copy(source, str(tmp_path / "cut.mp4"), skip_frames=10)
    with av.open(cut) as container:
        assert container.streams.video[0].frames == 40  # what the old count check trusted
    kept, count = decode_frames(source)
    kept_cut, count_cut = decode_frames(cut)
    assert (count, count_cut) == (40, 30)
    for index in range(30):  # the same pictures, less the first ten
        np.testing.assert_array_equal(kept_cut[index], kept[10 + index])
    assert read_views(cut, protocol_for("k400", 4, 32)).shape == (15, 4, 32, 32, 3)
    assert read_clip(cut, num_frames=4, img_size=32).shape == (4, 32, 32, 3)
    train = TrainSet([("cut.mp4", 0)], str(tmp_path), 400, 4, 32)
    # short side shrunk to twice the clip size before the random crop
    assert train._read(cut, rng_for(0, SAMPLE, 0, 0, 0)).shape == (4, 64, 150, 3)


@pytest.mark.parametrize("model,args,naming", [
    (None, ["--model", "nowhere.keras"], "nowhere.keras"),
    (None, ["--model", "TFVIDEO"], "TFVIDEO"),
    ("k400", ["--dataset", "ssv2"], "174"),
    ("k400", ["--views", "0x3"], "views"),
    ("ssv2", ["--views", "3x3"], "views"),
])
def test_predict_bad_arguments_are_one_clear_line(videos, tiny_models, model, args, naming):
    from click.testing import CliRunner

    from videomae_cli.video import predict_command

    if model is not None:
        args = args + ["--model", tiny_models[model].paths["keras"]]
    result = CliRunner().invoke(predict_command, [videos["short"]] + args)
    assert_one_error_line(result, 2, naming)


# --- the model's dataset ---------------------------------------------------------------------

def test_dataset_comes_from_report_then_name_then_class_count(tiny_models, tmp_path):
    import shutil

    from tf_models.video import load_video_model
    from tf_models.video.features import load_feature_model

    paths = tiny_models["ssv2"].paths
    assert load_video_model(paths["keras"]).dataset_from.endswith(".json")
    # a .weights.h5 file is named as its report names it (not Keras's default model name), by
    # the classifier's loader and the features' alike
    weights = load_video_model(paths["weights"])
    assert (weights.name, weights.dataset) == (TINY_SSV2, "ssv2")
    features = load_feature_model(paths["weights"])
    assert (features.name, features.dataset) == (TINY_SSV2, "ssv2")
    # no report, a name that says nothing: the class count decides
    renamed = tmp_path / "mystery"
    shutil.copytree(paths["savedmodel"], renamed)
    model = load_video_model(str(renamed))
    assert (model.dataset, model.dataset_from) == ("ssv2", "its 174 classes")
    # no report next to it: the name decides
    bare = tmp_path / "TFVideoMAE_T_SSv2_4x32_FT"
    shutil.copytree(paths["savedmodel"], bare)
    assert load_video_model(str(bare)).dataset_from.startswith("the model name")


# --- evaluate ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def labelled_list(videos, bad_videos, tiny_models, tmp_path_factory):
    """A root folder and list of real videos (and two bad ones) with labels that make top-1 and
    top-5 neither 0 nor 100: the reference's own 1st class for some videos, its 3rd, 5th (the
    last that top-5 counts) or 6th (the first it does not) for others, a random one for the
    rest."""
    root = tmp_path_factory.mktemp("dataset")
    reference = torch_reference_model(tiny_models["k400"], tmp_path_factory.mktemp("ckpt"))
    rng = np.random.default_rng(7)
    lines = []
    sources = [videos[c] for c in CASES + ("lowres_carphone",)]
    for number in range(10):
        source = sources[number % len(sources)]
        name = f"class_{number % 3}/clip_{number:02d}.mp4"
        os.makedirs(root / os.path.dirname(name), exist_ok=True)
        os.symlink(source, root / name)
        _, normalised = upstream_test_views(source, "k400", clip_len=4, short_side_size=32)
        probs = torch.softmax(torch.from_numpy(torch_view_logits(reference, normalised))
                              .double(), -1).mean(0).numpy()
        ranked = np.argsort(-probs)
        label = [ranked[0], ranked[2], ranked[4], ranked[5], rng.integers(400)][number % 5]
        lines.append(f"{name} {int(label)}")
    for case in sorted(EXPECTED_PROBLEM):  # every kind of bad file: each fails alone
        name = f"broken/{case}.mp4"
        os.makedirs(root / "broken", exist_ok=True)
        os.symlink(bad_videos[case], root / name)
        lines.append(f"{name} 5")
    list_path = root / "test.csv"
    list_path.write_text("\n".join(lines) + "\n")
    return str(root), str(list_path)


@pytest.fixture(scope="session")
def single_run(tiny_models, labelled_list, tmp_path_factory):
    from tf_models.video import load_video_model
    from tf_models.video.evaluate import evaluate_list, merge_results, read_list

    root, list_path = labelled_list
    model = load_video_model(tiny_models["k400"].paths["keras"])
    out = str(tmp_path_factory.mktemp("single"))
    errors = []
    path, stats = evaluate_list(model, read_list(list_path, 400), root, out, workers=2,
                                batch_size=7, on_error=errors.append)
    return model, out, path, merge_results([out]), errors, stats


def _result_rows(path):
    from tf_models.video.protocol import protocol_for, view_order

    order = view_order(protocol_for("k400"))
    rows = []
    with open(path) as handle:
        for line in handle.read().splitlines()[1:]:
            record = json.loads(line)
            if "error" in record:
                continue
            for (chunk, split), logits in zip(order, record["view_logits"]):
                rows.append((record["video"], logits, record["label"], chunk, split))
    return rows


def _label_ranks(rows):
    """Each video's label's rank (0 = first) in its mean softmax over views."""
    views = {}
    for video, logits, label, _, _ in rows:
        views.setdefault((video, label), []).append(np.asarray(logits, dtype=np.float64))
    ranks = []
    for (_, label), logits in views.items():
        stacked = np.stack(logits)
        probs = np.exp(stacked - stacked.max(-1, keepdims=True))
        probs = (probs / probs.sum(-1, keepdims=True)).mean(0)
        ranks.append(int(np.sum(probs > probs[label])))
    return ranks


def test_evaluate_matches_upstream_merge_and_counts_failures(single_run, labelled_list):
    model, out, path, summary, errors, stats = single_run
    rows = _result_rows(path)
    assert {0, 4, 5} <= set(_label_ranks(rows))  # top-5's edges are in the list
    top1, top5 = upstream_merge(rows)
    assert summary["top1"] == pytest.approx(top1, abs=1e-9)
    assert summary["top5"] == pytest.approx(top5, abs=1e-9)
    assert 0 < summary["top1"] < summary["top5"] < 100
    assert (summary["videos"], summary["failed"]) == (10, len(EXPECTED_PROBLEM))
    assert len(errors) == len(EXPECTED_PROBLEM) and all("broken/" in e for e in errors)
    for case, problem in EXPECTED_PROBLEM.items():
        assert any(f"broken/{case}.mp4" in e and problem in e for e in errors), case
    assert sum(c["videos"] for c in summary["per_class"].values()) == 10
    assert stats.videos == 10 and stats.views == 150


def test_evaluate_logits_match_torch_reference(single_run, labelled_list, tiny_models,
                                               tmp_path):
    model, out, path, summary, errors, stats = single_run
    root, _ = labelled_list
    reference = torch_reference_model(tiny_models["k400"], tmp_path)
    with open(path) as handle:
        records = [json.loads(line) for line in handle.read().splitlines()[1:]]
    checked = 0
    for record in records:
        if "error" in record or checked == 3:
            continue
        _, normalised = upstream_test_views(os.path.join(root, record["video"]), "k400",
                                            clip_len=4, short_side_size=32)
        expected = torch_view_logits(reference, normalised)
        assert float(np.max(np.abs(np.asarray(record["view_logits"]) - expected))) <= LOGIT_ATOL
        checked += 1


def test_shards_merge_to_the_single_run(single_run, labelled_list, tmp_path):
    from tf_models.video.evaluate import evaluate_list, merge_results, read_list

    model, _, _, summary, _, _ = single_run
    root, list_path = labelled_list
    items = read_list(list_path, 400)
    folders = []
    for index in (1, 2, 3):
        folder = str(tmp_path / f"shard{index}")
        evaluate_list(model, items, root, folder, shard=(index, 3), workers=1, batch_size=32)
        folders.append(folder)
    partial = merge_results(folders[:2])
    assert partial["shards_missing"] == ["3/3"] and partial["missing"] > 0
    merged = merge_results(folders)
    for key in ("top1", "top5", "videos", "failed", "per_class"):
        assert merged[key] == summary[key], key
    assert merged["missing"] == 0 and merged["shards_missing"] == []


def test_evaluate_refuses_results_of_another_run(single_run, labelled_list, tmp_path):
    from tf_models.video.evaluate import EvaluateError, evaluate_list, read_list

    model, out, _, _, _, _ = single_run
    root, list_path = labelled_list
    items = read_list(list_path, 400)
    with pytest.raises(EvaluateError, match="another run"):
        evaluate_list(model, items[:-1], root, out)


def test_a_results_file_of_another_run_with_no_video_in_it_starts_anew(tmp_path):
    """A run refused after its results file began (a wrong --ray-address, too many --actors)
    leaves a header and no video; the next run with other settings (another --views, another
    model) starts that file anew, as nothing of it is lost (before: refused as another run's
    results until removed by hand). One scored or failed video in it still refuses."""
    from tf_models.video.evaluate import (EvaluateError, append_record, open_results,
                                          read_results)

    path = str(tmp_path / "out" / "results.jsonl")
    first = {"model": "m", "views": "5x3", "list_sha256": "a" * 64, "shard": [1, 1]}
    done, handle = open_results(path, first)
    handle.close()
    second = dict(first, views="2x3")
    done, handle = open_results(path, second)
    append_record(handle, {"video": "a.mp4", "error": "a.mp4: truncated"})
    handle.close()
    header, records, _ = read_results(path)
    assert (done, header) == ({}, second) and list(records) == ["a.mp4"]
    with pytest.raises(EvaluateError, match=r"holds results of another run \(views '2x3' "
                                            r"\(not '5x3'\)\)"):
        open_results(path, first)


def test_an_extract_folder_of_another_run_with_no_features_in_it_starts_anew(tmp_path):
    """videomae-extract's folder likewise: another run's extract.json alone is replaced by
    this run's; with one features file (or failed.jsonl) beside it, still refused."""
    import json

    from tf_models.video.evaluate import EvaluateError
    from tf_models.video.extract import HEADER_NAME, open_extract

    out = tmp_path / "features"
    first = {"model": "m", "model_sha256": None, "sampling": "5x3", "num_frames": 16,
             "img_size": 224, "list_sha256": "a" * 64}
    open_extract(str(out), first, ["a.mp4"])
    second = dict(first, sampling="stride 4")
    open_extract(str(out), second, ["a.mp4"])
    assert json.loads((out / HEADER_NAME).read_text()) == second
    (out / "a.npy").write_bytes(b"")
    with pytest.raises(EvaluateError, match="holds features of another run"):
        open_extract(str(out), first, ["a.mp4"])


def test_a_model_fine_tuned_on_classes_of_its_own_classifies_and_evaluates(videos, tmp_path):
    """A classifier of 3 classes (what videomae-finetune makes from a user's list): --dataset
    gives the views' protocol and its classes are named by index (before: refused whatever
    --dataset said, and the message offered a dataset the option does not take)."""
    from click.testing import CliRunner

    import tf_models
    from model_harness import randomise
    from tf_models.video.model import ModelError, load_video_model
    from videomae_cli.video import evaluate_command, predict_command

    model = tf_models.VideoMAEVideoClassifier(
        **tf_models.get_preset(TINY_FT).backbone_config(), num_classes=3)
    randomise(model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    with pytest.raises(ModelError) as caught:
        load_video_model(path)
    assert str(caught.value) == (f"{path}: has 3 classes, no dataset's count, so the views to "
                                 "take are unknown; pass --dataset k400, ssv2, ucf101, k600, "
                                 "k710 or hmdb51 for its protocol (the classes are then named "
                                 "class 0 ... class 2)")
    loaded = load_video_model(path, dataset="k400")
    assert loaded.labels == ("class 0", "class 1", "class 2")
    assert loaded.notes[-1] == (f"{path}: its 3 classes are not k400's 400 (from --dataset): "
                                "k400's views, the classes named by index")
    result = CliRunner().invoke(predict_command, [videos["landscape"], "--model", path,
                                                  "--dataset", "k400", "--views", "1x1",
                                                  "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert sorted(row["label"] for row in record["top_k"]) == ["class 0", "class 1", "class 2"]
    assert f"note: {loaded.notes[-1]}" in result.stderr
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(videos["landscape"], root / "a.mp4")
    os.symlink(videos["portrait"], root / "b.mp4")
    (tmp_path / "list.txt").write_text("a.mp4 2\nb.mp4 0\n")
    result = CliRunner().invoke(evaluate_command, [
        "--model", path, "--dataset", "k400", "--list", str(tmp_path / "list.txt"), "--root",
        str(root), "--out", str(tmp_path / "eval"), "--views", "1x1", "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["videos"] == 2
    assert {name: row["index"] for name, row in summary["per_class"].items()} == {
        "class 0": 0, "class 2": 2}
    # once more, with nothing left (no failed video to try again): the same numbers, and the
    # timing of the run that scored them stays in summary.json (before: an empty run's)
    again = CliRunner().invoke(evaluate_command, [
        "--model", path, "--dataset", "k400", "--list", str(tmp_path / "list.txt"), "--root",
        str(root), "--out", str(tmp_path / "eval"), "--views", "1x1", "--json", "-q"])
    assert again.exit_code == 0, again.output
    assert "nothing left to score" in again.stderr
    repeated = json.loads(again.stdout)
    assert repeated["run"] == summary["run"] and repeated["top1"] == summary["top1"]
    with open(tmp_path / "eval" / "summary.json") as handle:
        assert json.load(handle)["run"] == summary["run"]


# SIGINT (Python's own KeyboardInterrupt) in the slow tier; the fast tier's SIGTERM case runs
# the same handler (tf_models.stopping raises both alike)
@pytest.mark.parametrize("signum", [signal.SIGTERM,
                                    pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_evaluate_interrupted_is_one_line_and_keeps_what_it_scored(labelled_list, tiny_models,
                                                                   tmp_path, signum):
    """SIGTERM (a scheduler's stop) or Ctrl-C mid-list: one ``error:`` line saying the run
    resumes, exit 2, as videomae-convert does (before: SIGTERM killed it with no line, exit
    -15; Ctrl-C was click's "Aborted!", exit 1, the exit of a failed check)."""
    root, list_path = labelled_list
    out = str(tmp_path / "interrupted")
    main = ("import sys; from videomae_cli.video import evaluate_main; "
            "sys.argv[0] = 'videomae-evaluate'; evaluate_main()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    child = subprocess.Popen([sys.executable, "-c", main, "--model",
                              tiny_models["k400"].paths["keras"], "--list", list_path, "--root",
                              root, "--out", out, "--workers", "1", "--batch-size", "1", "-q"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    results = os.path.join(out, "results.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if os.path.exists(results) and open(results).read().count("\n") >= 3:
            break
        time.sleep(0.05)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: interrupted")]
    assert errors == [f"error: interrupted; the videos scored so far are kept in {out}: run "
                      "again with the same --out to resume"], stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    with open(results) as handle:
        assert handle.read().count("\n") >= 3  # the header and what was scored, kept


def test_predict_stopped_mid_list_is_one_line_and_exit_two(tiny_models):
    """SIGTERM while videomae-predict works through its videos: what it printed stays, one
    ``error:`` line, exit 2 (before: killed with no line, exit -15; Ctrl-C, which the same
    handler raises alike, was click's "Aborted!", exit 1)."""
    main = ("import sys; from videomae_cli.video import predict_main; "
            "sys.argv[0] = 'videomae-predict'; predict_main()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    videos = [shipped_videos()["carphone_pristine.mp4"]] * 40
    child = subprocess.Popen([sys.executable, "-c", main, "--model",
                              tiny_models["k400"].paths["keras"], "--json", *videos],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = child.stdout.readline()  # one video classified (click flushes each line)
    child.send_signal(signal.SIGTERM)
    rest, stderr = child.communicate(timeout=120)
    assert child.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: interrupted; the videos above were classified, the rest were "
                      "not"], stderr
    assert "Traceback" not in stderr
    assert len(json.loads(first)["top_k"]) == 5
    assert 1 + len(rest.splitlines()) < len(videos)


# a child that stops at a point of its start-up and says so on stdout: the moment to signal it
_BLOCK_IMPORT = """
import sys, time

class BlockFrameworkImport:  # the first import of Keras or TensorFlow waits for the signal
    def find_spec(self, name, path=None, target=None):
        if name in ("keras", "tensorflow"):
            sys.meta_path.remove(self)
            print("importing", flush=True)
            time.sleep(300)

sys.meta_path.insert(0, BlockFrameworkImport())
"""
_BLOCK_LOAD = """
import sys, time
from videomae_cli.quiet import prepare_environment, silenced_stderr

prepare_environment(False)
with silenced_stderr():  # TensorFlow's start-up lines, as the command keeps them off
    import {module} as loaders

real = loaders.{loader}

def load_then_wait(*args, **kwargs):  # the model loaded, before its warm-up: wait there
    loaded = real(*args, **kwargs)
    print("loading", flush=True)
    time.sleep(300)
    return loaded

loaders.{loader} = load_then_wait
"""
_MAINS = {"predict": "videomae_cli.video:predict_main",
          "evaluate": "videomae_cli.video:evaluate_main",
          "extract": "videomae_cli.video:extract_main",
          "reconstruct": "videomae_cli.convert:reconstruct_main",
          "convert": "videomae_cli.convert:convert_main",
          "export": "videomae_cli.export:export_main",
          "finetune": "videomae_cli.finetune:finetune_main"}


def _stop_at_marker(command, prelude, args, signum):
    """Run the console script ``command`` after ``prelude`` (which prints a line when the
    child reaches the point to stop it), send ``signum`` once that line is read: (exit code,
    stderr)."""
    module, main = _MAINS[command].split(":")
    code = (prelude + f"from {module} import {main}\n"
            f"sys.argv[0] = 'videomae-{command}'\n{main}()\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    child = subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        marker = child.stdout.readline()
        assert marker.strip() in ("importing", "loading"), (marker, child.communicate())
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, stderr


def _command_args(command, model, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    return {
        "predict": ([shipped_videos()["bikes.mp4"], "--model", model],
                    "no video was classified"),
        "evaluate": (["--model", model, "--list", str(tmp_path / "list.txt"), "--out",
                      str(out), "-q"], "nothing was scored or written"),
        "extract": (["--model", model, "--list", str(tmp_path / "list.txt"), "--out",
                     str(out), "-q"], "nothing was extracted or written"),
        "reconstruct": (["--model", model, "--clip", str(tmp_path / "clip.npy"), "--out",
                         str(out) + ".png"], f"{out}.png was not written"),
        "convert": (["--synthetic", "--size", "T", "--out", str(out), "-q"],
                    "nothing was converted"),
        "export": (["--model", model, "--out", str(out), "-q"], "nothing was exported"),
        "finetune": (["--list", str(tmp_path / "list.txt"), "--model", model, "--num-classes", "2",
                      "--out", str(out), "-q"], "nothing was trained or written"),
    }[command]


@pytest.mark.parametrize("command,signum", [("predict", signal.SIGINT),
                                            ("evaluate", signal.SIGTERM),
                                            ("extract", signal.SIGINT),
                                            ("reconstruct", signal.SIGTERM)])
def test_a_stop_while_tensorflow_imports_is_one_line_and_exit_two(tmp_path, command, signum):
    """Ctrl-C or SIGTERM while the command imports TensorFlow (seconds of a short run): one
    ``error: interrupted`` line, exit 2, nothing written (before: click's "Aborted!" with
    exit 1, or killed by SIGTERM with no line, -15)."""
    args, said = _command_args(command, str(tmp_path / "model.keras"), tmp_path)
    returncode, stderr = _stop_at_marker(command, _BLOCK_IMPORT, args, signum)
    assert returncode == 2, stderr
    assert stderr.splitlines() == [f"error: interrupted; {said}"], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]


@pytest.mark.parametrize("command,signum", [("convert", signal.SIGINT),
                                            ("export", signal.SIGTERM),
                                            ("finetune", signal.SIGINT)])
def test_a_stop_while_the_converters_frameworks_import_is_one_line_and_exit_two(
        tmp_path, command, signum):
    """The same for ``videomae-convert``, ``-export`` and ``-finetune``, whose imports take
    seconds before their own handlers are in place (before: "Aborted!", exit 1, or -15 with
    no line)."""
    args, said = _command_args(command, str(tmp_path / "model.keras"), tmp_path)
    returncode, stderr = _stop_at_marker(command, _BLOCK_IMPORT, args, signum)
    assert returncode == 2, stderr
    assert stderr.splitlines() == [f"error: interrupted; {said}"], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]


# predict loads as evaluate does (the same loader, under its own stoppable block); slow
# tier (a child importing TensorFlow, 10-20 s each): the fast tier's stop while TensorFlow
# imports covers the same handlers, in place from the command's start
@pytest.mark.slow
@pytest.mark.parametrize("command,signum", [("evaluate", signal.SIGINT),
                                            ("extract", signal.SIGTERM)])
def test_a_stop_while_the_model_loads_is_one_line_and_exit_two(tiny_converted, tmp_path,
                                                              command, signum):
    """Ctrl-C or SIGTERM once the model is loaded, before its warm-up and the first video:
    one ``error: interrupted`` line, exit 2, nothing written in --out (before: "Aborted!",
    exit 1, or -15 with no line)."""
    module, loader = (("tf_models.video.features", "load_feature_model")
                      if command == "extract" else ("tf_models.video.model", "load_video_model"))
    args, said = _command_args(command, tiny_converted.paths["keras"], tmp_path)
    returncode, stderr = _stop_at_marker(
        command, _BLOCK_LOAD.format(module=module, loader=loader), args, signum)
    assert returncode == 2, stderr
    assert stderr.splitlines() == [f"error: interrupted; {said}"], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]


def test_extract_exits_two_when_no_video_could_be_extracted(tiny_converted, tmp_path):
    """Every video failed (a wrong --root): exit 2, as evaluate when no video could be scored
    (before: exit 0 after "0 videos with features"); one that fails among others still exits
    0 (the same rule as evaluate's)."""
    from click.testing import CliRunner

    from videomae_cli.video import extract_command

    root = tmp_path / "root"
    root.mkdir()
    os.symlink(shipped_videos()["carphone_pristine.mp4"], root / "good.mp4")
    (tmp_path / "list.txt").write_text("good.mp4\nmissing.mp4\n")
    args = ["--model", tiny_converted.paths["keras"], "--list", str(tmp_path / "list.txt"),
            "--views", "1x1", "--dataset", "k400", "-q", "--json"]
    (tmp_path / "wrong_root").mkdir()  # without the videos (a missing --root is refused)
    result = CliRunner().invoke(extract_command, args + [
        "--root", str(tmp_path / "wrong_root"), "--out", str(tmp_path / "none")])
    assert result.exit_code == 2, result.output
    assert (json.loads(result.stdout)["videos"], json.loads(result.stdout)["failed"]) == (0, 2)
    result = CliRunner().invoke(extract_command, args + [
        "--root", str(root), "--out", str(tmp_path / "some")])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["videos"], json.loads(result.stdout)["failed"]) == (1, 1)


@pytest.mark.parametrize("command,extra,naming", [
    ("evaluate", ["--actors", "2"], "--actors: Ray settings"),
    ("evaluate", ["--ray-address", "10.0.0.1:6379", "--gpus-per-actor", "1"],
     "--ray-address, --gpus-per-actor: Ray settings"),
    ("extract", ["--gpus-per-actor", "1"], "--gpus-per-actor: Ray settings"),
    ("evaluate", ["--engine", "ray", "--workers", "4"], "--workers: the local engine's"),
    ("extract", ["--engine", "ray", "--workers", "4"], "--workers: the local engine's"),
    ("extract", ["--stride", "4", "--dataset", "ssv2"], "--dataset with --stride"),
    ("extract", ["--stride", "4", "--views", "1x1", "--dataset", "k400"],
     "--views and --dataset with --stride"),
])
def test_an_option_the_run_would_ignore_is_refused_before_the_model_loads(tmp_path, command,
                                                                           extra, naming):
    """The other engine's options, and extract's --dataset beside --stride, were taken and
    ignored (a --ray-address without --engine ray scored on this machine); now one line,
    before the model (here a missing one) is read and before --out is made."""
    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command, extract_command

    result = CliRunner().invoke({"evaluate": evaluate_command, "extract": extract_command}[
        command], ["--model", str(tmp_path / "missing.keras"), "--list", "list.txt", "--out",
                   str(tmp_path / "out"), *extra])
    assert_one_error_line(result, 2, naming)
    assert not (tmp_path / "out").exists()


def test_merge_out_under_a_file_names_the_file(single_run, tmp_path):
    """Before: 'cannot write the summary (File exists)', after merging."""
    from click.testing import CliRunner

    from videomae_cli.video import merge_command

    (tmp_path / "a_file").write_text("mine")
    for given in (tmp_path / "a_file" / "summary.json",
                  tmp_path / "a_file" / "sub" / "summary.json"):
        result = CliRunner().invoke(merge_command, [single_run[1], "--out", str(given)])
        line = assert_one_error_line(result, 2, str(given))
        assert f"{tmp_path / 'a_file'} is a file, so --out cannot be written in it" in line
    assert (tmp_path / "a_file").read_text() == "mine"


def test_a_video_listed_twice_under_two_spellings_is_refused(tmp_path):
    """'v.mp4' and './v.mp4' are one file under --root: evaluate refused only the same
    spelling twice, so the video was scored and counted twice in top-1 / top-5; extract named
    it as two videos to rename."""
    from tf_models.video.evaluate import EvaluateError, read_list
    from tf_models.video.extract import read_video_list

    listing = tmp_path / "list.txt"
    for first, again in (("v.mp4", "./v.mp4"), ("a/v.mp4", "a//v.mp4"),
                         ("a/v.mp4", "a/b/../v.mp4")):
        listing.write_text(f"{first} 3\nother.mp4 1\n{again} 3\n")
        with pytest.raises(EvaluateError) as caught:
            read_list(str(listing), 400)
        assert str(caught.value) == (f"{listing}:3: {again} is listed again (first at line 1 "
                                     f"as {first}); list each video once")
        with pytest.raises(EvaluateError) as caught:
            read_video_list(str(listing))
        assert str(caught.value) == (f"{listing}:3: {again} names {first} (line 1) another "
                                     "way; write each video's path one way")
    listing.write_text("v.mp4 3\n..v.mp4 3\nv.mp4.mp4 3\n")  # three files
    assert len(read_list(str(listing), 400)) == 3


def test_a_list_path_may_start_with_two_dots_without_leaving_root(tmp_path):
    """A file named '..clip.mp4' is below --root (before: refused as leaving it, by the
    path's first two characters); a first folder '..' still leaves it."""
    from tf_models.video.evaluate import EvaluateError
    from tf_models.video.extract import feature_path

    out = str(tmp_path)
    assert feature_path(out, "..clip.mp4") == os.path.join(out, "..clip.npy")
    assert feature_path(out, "a/..b/c.mp4") == os.path.join(out, "a", "..b", "c.npy")
    for leaving in ("../clip.mp4", "a/../../clip.mp4", ".."):
        with pytest.raises(EvaluateError, match="a list path may not leave --root"):
            feature_path(out, leaving)


def test_features_stopped_mid_write_leave_no_partial_file(tmp_path, monkeypatch):
    """A stop (or any error) while a .npy is written leaves no temporary file beside it
    (before: 'NAME.npy.tmpPID' stayed in --out)."""
    from tf_models.video import extract

    def stopped(handle, *args, **kwargs):
        handle.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(extract.np, "save", stopped)
    with pytest.raises(KeyboardInterrupt):
        extract.save_features(str(tmp_path / "sub" / "a.npy"), np.zeros((2, 3)))
    assert os.listdir(tmp_path / "sub") == []


def test_an_empty_shard_succeeds_and_merges_with_the_others(tiny_converted, tmp_path):
    """More shards than videos (a job array): the empty one exits 0 with one line saying so
    (before: "nothing left to score: every video of the list has a result" then "no video
    could be scored (0 failed)", exit 2), and the shards merge to the whole list."""
    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command, merge_command

    root = tmp_path / "root"
    root.mkdir()
    os.symlink(shipped_videos()["carphone_pristine.mp4"], root / "a.mp4")
    (tmp_path / "list.txt").write_text("a.mp4 3\n")
    args = ["--model", tiny_converted.paths["keras"], "--list", str(tmp_path / "list.txt"),
            "--root", str(root), "--views", "1x1", "-q"]
    empty = CliRunner().invoke(evaluate_command, args + ["--shard", "2/2", "--out",
                                                         str(tmp_path / "s2")])
    assert empty.exit_code == 0, empty.output
    assert empty.stderr.splitlines() == [
        f"nothing to score: shard 2/2 gets none of the list's 1 videos (more shards than "
        f"videos); its results file in {tmp_path / 's2'} counts it as done for "
        "videomae-evaluate merge"]
    assert empty.stdout == ""
    full = CliRunner().invoke(evaluate_command, args + ["--shard", "1/2", "--out",
                                                        str(tmp_path / "s1"), "--json"])
    assert full.exit_code == 0, full.output
    merged = CliRunner().invoke(merge_command, [str(tmp_path / "s1"), str(tmp_path / "s2"),
                                                "--json"])
    assert merged.exit_code == 0, merged.output
    summary = json.loads(merged.stdout)
    assert (summary["videos"], summary["missing"], summary["shards_missing"]) == (1, 0, [])
    assert summary["top1"] == json.loads(full.stdout)["top1"]


def test_a_damaged_results_line_is_refused_and_only_a_torn_last_line_dropped(tmp_path):
    """A resume drops a last line cut short by a kill; a line that is not a record anywhere
    else is one error naming the file and line (before: the first such line ended the read,
    and the resume truncated every result after it)."""
    from tf_models.video.evaluate import EvaluateError, merge_results, read_results

    path = tmp_path / "results.jsonl"
    header = json.dumps({"header": {"model": "m"}})
    records = [json.dumps({"video": f"v{i}.mp4", "label": 0, "error": "x"}) for i in range(3)]
    whole = "\n".join([header] + records) + "\n"
    path.write_text(whole + records[0][:20])
    found, done, good = read_results(str(path))
    assert found == {"model": "m"} and sorted(done) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert good == len(whole.encode())
    for damage in (records[1][:20], "", "7"):
        path.write_text("\n".join([header, records[0], damage, records[2]]) + "\n")
        before = path.read_bytes()
        with pytest.raises(EvaluateError) as caught:
            read_results(str(path))
        assert str(caught.value).startswith(f"{path}:3: expected one JSON record per line, "
                                            f"found {damage!r}; only a last line cut short")
        with pytest.raises(EvaluateError, match=":3: expected one JSON record"):
            merge_results([str(tmp_path)])
        assert path.read_bytes() == before


def test_extract_summary_survives_a_damaged_failures_line(tmp_path):
    """``failed.jsonl`` only gives the summary its messages: a damaged line in the middle
    loses that video's message, not the summary (before: a JSONDecodeError traceback)."""
    from tf_models.video.evaluate import RunStats
    from tf_models.video.extract import FAILED_NAME, extract_summary, record_failure

    record_failure(str(tmp_path), "a.mp4", "a.mp4: not a video")
    with open(tmp_path / FAILED_NAME, "a") as handle:
        handle.write('{"video": "b.mp4", "err\n[1, 2]\n')
    record_failure(str(tmp_path), "c.mp4", "c.mp4: truncated")
    summary = extract_summary(["a.mp4", "b.mp4", "c.mp4"], str(tmp_path), RunStats())
    assert summary["failed_videos"] == [
        {"video": "a.mp4", "error": "a.mp4: not a video"},
        {"video": "b.mp4", "error": "not extracted yet"},
        {"video": "c.mp4", "error": "c.mp4: truncated"}]


def test_evaluate_refuses_to_resume_with_another_model_of_the_same_name(single_run,
                                                                      labelled_list,
                                                                      tiny_models, tmp_path):
    """The header holds the sha256 of the file the model was read from: a re-converted or
    fine-tuned model that kept its name is another run (before: resumed, mixing two models'
    logits in one summary); a results file of a version that recorded the name alone still
    resumes."""
    import dataclasses
    import shutil

    from tf_models.artifacts.checksums import tree_sha256
    from tf_models.video.evaluate import EvaluateError, evaluate_list, read_list, read_results

    model, out, path, _, _, _ = single_run
    root, list_path = labelled_list
    items = read_list(list_path, 400)
    header, _, _ = read_results(path)
    assert header["model_sha256"] == tree_sha256(tiny_models["k400"].paths["keras"])
    other = dataclasses.replace(model, path=tiny_models["k400"].paths["weights"])
    with pytest.raises(EvaluateError, match=r"another run \(model_sha256 '[0-9a-f]{12}\.\.\.' "
                                            r"\(not '[0-9a-f]{12}\.\.\.'\)\)"):
        evaluate_list(other, items, root, out)
    older = tmp_path / "older"
    older.mkdir()
    with open(path) as source, open(older / "results.jsonl", "w") as copy:
        first = json.loads(source.readline())
        del first["header"]["model_sha256"]
        copy.write(json.dumps(first) + "\n" + source.read())
    _, stats = evaluate_list(other, items, root, str(older))
    assert stats.videos == 0  # all there: resumed, nothing scored again
    shutil.rmtree(older)


def test_a_results_file_appears_with_its_header_and_an_empty_one_is_a_fresh_start(
        single_run, labelled_list, tmp_path):
    """A run stopped before its header was written (a full disk, a kill) left an empty
    results file that every later run refused as someone else's; the header is now written
    under a temporary name and renamed, and an empty file is taken as not begun."""
    from tf_models.video.evaluate import evaluate_list, read_list, read_results

    model, _, _, _, _, _ = single_run
    root, list_path = labelled_list
    items = read_list(list_path, 400)[:1]  # the list's first video: one real video
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_bytes(b"")
    path, stats = evaluate_list(model, items, root, str(out))
    header, records, _ = read_results(path)
    assert header is not None and list(records) == [items[0][0]] and stats.videos == 1
    assert os.listdir(out) == ["results.jsonl"]


def test_evaluate_and_extract_keep_to_their_own_folders(single_run, tiny_models, tmp_path):
    """Each writes a summary.json: one run in the other's folder would replace it."""
    from tf_models.video.evaluate import EvaluateError, evaluate_list
    from tf_models.video.extract import extract_header, open_extract
    from tf_models.video.features import Sampling, load_feature_model

    model, out, _, _, _, _ = single_run
    features = load_feature_model(tiny_models["k400"].paths["keras"])
    sampling = Sampling(features.num_frames, features.img_size, dataset="k400")
    with pytest.raises(EvaluateError, match="holds videomae-evaluate results"):
        open_extract(out, extract_header(features, sampling, ["a.mp4"]), ["a.mp4"])
    assert not os.path.exists(os.path.join(out, "extract.json"))
    open_extract(str(tmp_path / "x"), extract_header(features, sampling, ["a.mp4"]), ["a.mp4"])
    with pytest.raises(EvaluateError, match="holds videomae-extract features"):
        evaluate_list(model, [("a.mp4", 0)], str(tmp_path), str(tmp_path / "x"))
    assert sorted(os.listdir(tmp_path / "x")) == ["extract.json"]


def test_a_list_is_read_as_written_and_refused_in_one_line_where_it_cannot_be(tmp_path):
    """A byte-order mark is not part of the first path; a video listed twice, a rawframe
    list's three fields and a label in other digits are each one line naming the list's line;
    two videos whose features would share one .npy are refused by extract."""
    from tf_models.video.evaluate import EvaluateError, read_list
    from tf_models.video.extract import read_video_list

    listing = tmp_path / "list.txt"
    listing.write_bytes("\ufeffa/b.mp4 3\nc.mp4 5\n".encode("utf-8"))
    assert read_list(str(listing), 400) == [("a/b.mp4", 3), ("c.mp4", 5)]
    assert read_video_list(str(listing)) == ["a/b.mp4", "c.mp4"]
    refused = {
        "a.mp4 3\nb.mp4 4\na.mp4 7\n": ":3: a.mp4 is listed again (first at line 1); list "
                                       "each video once",
        "a.mp4 3\nfolder/video_1 120 5\n": ":2: expected 'relative/path.mp4 LABEL', found "
                                          "three fields 'folder/video_1 120 5' (upstream's "
                                          "rawframe lists say 'FOLDER FRAMES LABEL')",
        "a.mp4 \u00b2\n": ":1: expected 'relative/path.mp4 LABEL', found 'a.mp4 \u00b2'",
    }
    for text, message in refused.items():
        listing.write_text(text, encoding="utf-8")
        with pytest.raises(EvaluateError) as caught:
            read_list(str(listing), 400)
        assert str(caught.value).startswith(f"{listing}{message}"), str(caught.value)
    listing.write_text("v/a.mp4\nv/b.mp4\nv/a.mp4\nv/a.ts 2\n")
    with pytest.raises(EvaluateError) as caught:
        read_video_list(str(listing))
    assert str(caught.value) == (f"{listing}:4: v/a.ts and v/a.mp4 (line 1) would both write "
                                 "v/a.npy; rename one")


def test_a_list_may_hold_comments_and_a_folder_or_missing_list_is_one_line(tmp_path):
    """A line starting with '#' is a comment for both readers (before: evaluate refused it,
    extract counted it as a video that failed); CRLF line ends and blank lines are read as
    written; line numbers stay the file's. A folder given as --list, or a list that is not
    there, is one line saying so (before: Python's IsADirectoryError, the path twice)."""
    from tf_models.video.evaluate import EvaluateError, read_list
    from tf_models.video.extract import read_video_list

    listing = tmp_path / "list.txt"
    listing.write_bytes(b"# my clips\r\n\r\n  # label 3: applauding\r\na.mp4 3\r\n"
                        b"#b.mp4 4\r\nc d.mp4 5\r\nc.mp4 x\r\n")
    with pytest.raises(EvaluateError) as caught:
        read_list(str(listing), 400)
    assert str(caught.value).startswith(f"{listing}:7: expected"), str(caught.value)
    listing.write_bytes(listing.read_bytes().replace(b"c.mp4 x\r\n", b""))
    assert read_list(str(listing), 400) == [("a.mp4", 3), ("c d.mp4", 5)]
    assert read_video_list(str(listing)) == ["a.mp4", "c d.mp4"]
    for reader in (read_list, read_video_list):
        with pytest.raises(EvaluateError) as caught:
            reader(str(tmp_path))
        assert str(caught.value) == (
            f"{tmp_path}: is a folder, expected a list file naming its videos (one per line, "
            "paths below --root); give the folder as --root and the list as --list")
        with pytest.raises(EvaluateError) as caught:
            reader(str(tmp_path / "none.txt"))
        assert str(caught.value) == (f"{tmp_path / 'none.txt'}: no such list file; check the "
                                     "--list path")


@pytest.mark.parametrize("command", ["evaluate", "extract"])
def test_a_root_that_is_no_folder_is_one_line_before_the_model_loads(tmp_path, command):
    """Before: every video of the list failed, one error line each, after the model loaded
    (and evaluate wrote a results file of failures)."""
    from click.testing import CliRunner

    from videomae_cli import video

    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    (tmp_path / "afile").write_text("x")
    for root, found in (("missing", "no such folder"), ("afile", "is a file")):
        result = CliRunner().invoke(getattr(video, f"{command}_command"), [
            "--model", str(tmp_path / "no-model.keras"), "--list", str(tmp_path / "list.txt"),
            "--root", str(tmp_path / root), "--out", str(tmp_path / "out"), "-q"])
        line = assert_one_error_line(result, 2, f"--root {tmp_path / root}: {found}, expected "
                                               "the folder the list's paths are in")
        assert "no-model" not in line
    assert not (tmp_path / "out").exists()


def test_evaluate_resumes_after_kill(labelled_list, tiny_models, single_run, tmp_path):
    root, list_path = labelled_list
    out = str(tmp_path / "killed")
    args = ["--model", tiny_models["k400"].paths["keras"], "--list", list_path, "--root", root,
            "--out", out, "--workers", "1", "--batch-size", "1", "--json", "-q"]
    main = ("import sys; from videomae_cli.video import evaluate_main; "
            "sys.argv[0] = 'videomae-evaluate'; evaluate_main()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    child = subprocess.Popen([sys.executable, "-c", main, *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = os.path.join(out, "results.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline:
        if os.path.exists(results) and open(results).read().count("\n") >= 4:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    with open(results) as handle:
        before = handle.read().splitlines()
    assert 2 <= len(before) - 1 < 10 + len(EXPECTED_PROBLEM), "the kill did not land mid-run"
    # a kill mid-write leaves half a line: it is dropped on resume (the resumed run in this
    # process: the console script's own start is test_predict_cli_prints_only_json_...'s)
    with open(results, "a") as handle:
        handle.write('{"video": "class_0/clip_09.mp4", "label": 3, "view_lo')
    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command

    done = CliRunner().invoke(evaluate_command, args)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert "resuming: " in done.stderr
    with open(results) as handle:
        after = [json.loads(line) for line in handle.read().splitlines()]
    videos = [r["video"] for r in after[1:] if "error" not in r]
    assert len(videos) == len(set(videos)) == 10  # nothing scored twice, nothing lost
    assert after[:len(before)] == [json.loads(line) for line in before]
    assert summary["run"]["videos"] == 10 - sum(1 for line in before[1:]
                                               if "error" not in json.loads(line))
    for key in ("top1", "top5", "videos", "failed", "per_class"):
        assert summary[key] == single_run[3][key], key


def test_merge_cli_and_bad_list(single_run, labelled_list, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command, merge_command

    _, out, _, summary, _, _ = single_run
    result = CliRunner().invoke(merge_command, [out, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["top1"] == summary["top1"]
    bad_list = tmp_path / "bad.csv"
    bad_list.write_text("a.mp4 3\nb.mp4 not_a_label\n")
    result = CliRunner().invoke(evaluate_command, ["--model", single_run[0].source, "--list",
                                                   str(bad_list), "--out", str(tmp_path / "o")])
    assert_one_error_line(result, 2, f"{bad_list}:2")
    # without --out (the default folder under the working one) the same run gets as far
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(evaluate_command, ["--model", single_run[0].source, "--list",
                                                   str(bad_list)])
    assert_one_error_line(result, 2, f"{bad_list}:2")
    result = CliRunner().invoke(merge_command, [str(tmp_path)])
    assert_one_error_line(result, 2, str(tmp_path))


def test_merge_out_writes_a_summary_and_overwrites_nothing_else(single_run, tmp_path):
    """merge --out: a new file (its folder made), or a summary it wrote before; a folder, the
    results it reads or any other file are one line and left as they were (before: the
    results file was replaced by the summary, a folder was a traceback)."""
    from click.testing import CliRunner

    from videomae_cli.video import merge_command

    _, out, path, summary, _, _ = single_run
    with open(path, "rb") as handle:
        results = handle.read()
    target = tmp_path / "new" / "folder" / "summary.json"
    for _ in range(2):  # written, then its own summary replaced
        result = CliRunner().invoke(merge_command, [out, "--out", str(target)])
        assert result.exit_code == 0, result.output
        assert json.loads(target.read_text())["top1"] == summary["top1"]
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    for given, problem in ((path, "exists and is not a summary"), (str(other), "exists and is "
                           "not a summary"), (str(tmp_path), "is a folder; --out names")):
        result = CliRunner().invoke(merge_command, [out, "--out", given])
        line = assert_one_error_line(result, 2, given)
        assert problem in line
    with open(path, "rb") as handle:
        assert handle.read() == results
    assert other.read_text() == "mine"
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]


def test_evaluate_exits_two_when_no_video_could_be_scored(labelled_list, tiny_models, tmp_path):
    from click.testing import CliRunner

    from videomae_cli.video import evaluate_command

    _, list_path = labelled_list
    (tmp_path / "wrong_root").mkdir()  # without the videos (a missing --root is refused)
    result = CliRunner().invoke(evaluate_command, [
        "--model", tiny_models["k400"].paths["keras"], "--list", list_path, "--root",
        str(tmp_path / "wrong_root"), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    videos = 10 + len(EXPECTED_PROBLEM)  # the labelled list's good and broken videos
    assert f"no video could be scored ({videos} failed)" in result.stdout


def test_class_names_are_complete_and_in_upstream_order():
    from tf_models.video import class_names

    k400, ssv2, ucf = class_names("k400"), class_names("ssv2"), class_names("ucf101")
    assert (len(k400), len(set(k400)), len(ssv2), len(set(ssv2)), len(ucf), len(set(ucf))) == \
        (400, 400, 174, 174, 101, 101)
    assert list(k400) == sorted(k400) and list(ssv2) == sorted(ssv2)
    # UCF101's classInd.txt order is not plain sorted order: Hammering before HammerThrow
    assert ucf.index("Hammering") + 1 == ucf.index("HammerThrow")
    assert (k400[0], k400[-1], ucf[0], ucf[-1]) == ("abseiling", "zumba", "ApplyEyeMakeup", "YoYo")
    assert ssv2[0] == "Approaching something with your camera"


FRAMEWORK_NOISE = ("absl::", "oneDNN", "cuInit", "cuda_", "cpu_feature_guard", "I0000", "E0000",
                   "W0000", "WARNING:absl", "XNNPACK", "trackable_obj")


@pytest.mark.slow  # a whole child conversion with --litert; fast tier: the predict CLI test above
def test_convert_entry_point_keeps_tensorflow_noise_off_the_terminal(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    code = ("import sys; from videomae_cli.convert import convert_main; "
            "sys.argv[0] = 'videomae-convert'; convert_main()")
    # --litert too: TensorFlow's LiteRT converter and LiteRT's runtime have their own lines
    done = subprocess.run([sys.executable, "-c", code, "--synthetic", "--size", "T", "--out",
                           str(tmp_path), "-q", "--litert"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    noise = [line for line in (done.stdout + done.stderr).splitlines()
             if any(mark in line for mark in FRAMEWORK_NOISE)]
    assert noise == []
    assert os.path.isfile(tmp_path / f"{TINY_FT}.keras")
    assert os.path.isfile(tmp_path / f"{TINY_FT}.tflite")


# --- extract ----------------------------------------------------------------------------------

def test_extract_writes_upstreams_forward_features_of_every_view(tiny_models, videos, tmp_path):
    """``videomae-extract`` on real videos: OUT/<video path>.npy holds (views, D), each row
    the torch reference's ``forward_features`` (fc_norm of the mean token, what the head
    reads) of that view as upstream's test protocol cuts it."""
    from click.testing import CliRunner

    from videomae_cli.video import extract_command

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    os.symlink(videos["landscape"], root / "a.mp4")
    os.symlink(videos["portrait"], root / "sub" / "b.mp4")
    (tmp_path / "list.txt").write_text("a.mp4\nsub/b.mp4 3\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(extract_command, [
        "--model", tiny_models["k400"].paths["keras"], "--list", str(tmp_path / "list.txt"),
        "--root", str(root), "--out", str(out), "-q", "--json", "--workers", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["videos"], summary["failed"]) == (2, 0)
    reference = torch_reference_model(tiny_models["k400"], tmp_path)
    for name, case in (("a", "landscape"), ("sub/b", "portrait")):
        features = np.load(out / f"{name}.npy", allow_pickle=False)
        _, normalised = upstream_test_views(videos[case], "k400", clip_len=4,
                                            short_side_size=32)
        with torch.inference_mode():
            expected = reference.forward_features(normalised).numpy()
        assert features.shape == expected.shape == (15, 48) and features.dtype == np.float32
        assert float(np.max(np.abs(features - expected))) <= LOGIT_ATOL


def test_extract_refuses_a_list_path_outside_root_before_writing_anything(tiny_models, videos,
                                                                         tmp_path):
    """A list the run cannot take leaves no header behind, so its corrected rerun is not
    refused as another run's folder."""
    from click.testing import CliRunner

    from videomae_cli.video import extract_command

    (tmp_path / "list.txt").write_text("good.mp4\n../good.mp4\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(extract_command, [
        "--model", tiny_models["k400"].paths["keras"], "--list", str(tmp_path / "list.txt"),
        "--root", str(tmp_path), "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "list.txt: ../good.mp4: a list path may not leave --root" in (
        lines[0])
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "extract"])
def test_an_out_that_is_a_file_is_one_line_before_the_model_loads(tmp_path, command):
    from click.testing import CliRunner

    from videomae_cli import video

    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(getattr(video, f"{command}_command"), [
        "--model", str(tmp_path / "no-model.keras"), "--list", str(tmp_path / "list.txt"),
        "--root", str(tmp_path), "--out", str(tmp_path / "afile"), "-q"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'afile'}: --out is a file, expected a folder (it is "
                     f"made if missing)"]
    assert (tmp_path / "afile").read_text() == "x"


def test_decoding_ahead_is_bounded_and_a_stop_drops_the_queued_videos():
    """``decoded_ahead`` (evaluate, extract and fine-tuning's validation): at most 2 x workers
    videos submitted beyond the one handed out, and closing it (a stop leaving the loop) does
    not wait for the queued ones, which are never decoded (before: evaluate and extract waited
    for every queued decode, ``ThreadPoolExecutor``'s exit)."""
    import threading

    from tf_models.video.ahead import decoded_ahead

    gate, started = threading.Event(), []

    def load(index):
        started.append(index)
        if index > 0:
            gate.wait(10)
        return index

    ahead = decoded_ahead(range(50), load, workers=2)
    index, future = next(ahead)
    assert (index, future.result(timeout=10)) == (0, 0)
    time.sleep(0.2)
    assert sorted(started) == [0, 1, 2]  # two threads busy, 3 and 4 queued, 5 on not submitted
    tick = time.perf_counter()
    ahead.close()
    assert time.perf_counter() - tick < 1.0
    gate.set()
    time.sleep(0.3)
    assert sorted(started) == [0, 1, 2]
