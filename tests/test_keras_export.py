"""``videomae-export``: a classifier in a ``.keras`` file (as ``videomae-finetune`` writes one)
exported as a conversion is, each artifact reloaded and held to the in-memory Keras model (no
torch model); a tampered artifact is caught; bad files are one line. Tiny config, a clip shape
no zoo entry has (6 frames), 3 classes, every variable randomised."""

import json
import os
import shutil

import torch  # noqa: F401  (torch side first)
import converter  # noqa: F401

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from conftest import TINY_FT  # noqa: E402
from video_helpers import shipped_videos  # noqa: E402

NAME = "ft_tiny"
# every kind an export with --litert --litert-quantize int8 --preset writes, the report last
KINDS = ("savedmodel", "weights", "keras", "litert", "litert_int8", "preset", "report")


def _randomised_classifier():
    """A tiny classifier at 6 frames, 3 classes, every variable (biases, LayerNorms, head)
    drawn at random: a fine-tuned model's shape, not a zoo entry's."""
    import tf_models

    preset = tf_models.get_preset(TINY_FT)
    config = dict(preset.backbone_config(), num_frames=6)
    model = tf_models.VideoMAEVideoClassifier(**config, num_classes=3, compile=False)
    rng = np.random.default_rng(3)
    for variable in model.weights:
        variable.assign((rng.standard_normal(variable.shape) * 0.2).astype("float32"))
    return model


def _clip(model, seed=7):
    shape = (1, model.num_frames, model.img_size, model.img_size, 3)
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _run(args):
    from videomae_cli.export import export_command

    return CliRunner().invoke(export_command, [str(a) for a in args])


def _top_k_of_video(model, path):
    """(top-1, top-5 agreement) of the ``.tflite`` at ``path`` with ``model`` on the shipped
    video's clip the export measured, counted here: 1.0 or 0.0 each (3 classes: every class
    is in the top five)."""
    import keras

    from converter.keras_export import target_for
    from converter.litert import make_interpreter, run_litert
    from converter.parity import ncthw_to_nthwc, video_case

    case = video_case(shipped_videos()["carphone_pristine.mp4"], target_for(model, NAME))
    clip = ncthw_to_nthwc(case.video_ncthw)
    expected = keras.ops.convert_to_numpy(model(clip))[0]
    (found,) = run_litert(make_interpreter(path), clip)
    return (float(np.argmax(found[0]) == np.argmax(expected)),
            float(sorted(np.argsort(found[0])[-5:]) == sorted(np.argsort(expected)[-5:])))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(the in-memory model, its ``model.keras`` as videomae-finetune names it)."""
    folder = tmp_path_factory.mktemp("finetuned")
    model = _randomised_classifier()
    path = str(folder / "model.keras")
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    """One export through the command, with every optional artifact and a real video."""
    _, path = source
    out = tmp_path_factory.mktemp("exported")
    video = shipped_videos()["carphone_pristine.mp4"]
    result = _run(["--model", path, "--out", out, "--name", NAME, "--litert", "--preset",
                   "--litert-quantize", "int8", "--video", video, "--json", "-q"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1]), str(out)


def test_export_writes_every_artifact_and_each_reloads_as_the_model(source, exported):
    import keras
    import tensorflow as tf

    import tf_models
    from converter.litert import make_interpreter, run_litert
    from converter.record import ConversionRecord

    model, _ = source
    summary, out = exported
    assert list(summary["paths"]) == list(KINDS)
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p)
                                             for p in summary["paths"].values())
    report = ConversionRecord.load(summary["paths"]["report"])
    # no torch model: the report says what the reference was and holds no torch parity
    assert (report.reference, report.parity) == ("keras", None)
    assert report.parity_inputs.cases == ["clip", "video:carphone_pristine.mp4"]
    assert report.parity_inputs.float64_samples == 0
    assert set(report.reload_checks) == set(KINDS) - {"report"}
    tolerance = summary["tolerance"]
    assert tolerance == report.entry["parity_atol"] == 1e-5
    for kind, check in report.reload_checks.items():
        if kind == "litert_int8":  # measured and bounded, not held to the tolerance
            assert check.method == "quantized" and check.tf_err_vs_f64 is None
            assert tolerance < check.max_abs <= check.tolerance
            assert check.weights_proven == len(model.weights)  # read back when written
            assert check.video_clips == 1
            assert (check.top1_agreement, check.top5_agreement) == _top_k_of_video(
                model, summary["paths"][kind])
            continue
        assert check.passed and check.tf_err_vs_f64 is None and check.max_abs <= tolerance

    # each file again, here, on a clip the export never ran, against the in-memory model
    clip = _clip(model)
    expected = keras.ops.convert_to_numpy(model(clip))
    paths = summary["paths"]
    signature = tf.saved_model.load(paths["savedmodel"]).signatures["serving_default"]
    interpreter = make_interpreter(paths["litert"])
    found = {
        "savedmodel": signature(video=tf.constant(clip))["logits"].numpy(),
        "keras": tf_models.VideoMAEVideoClassifier.from_preset(paths["keras"])(clip),
        # the report beside the weights gives their model's dimensions
        "weights": tf_models.VideoMAEVideoClassifier.from_preset(paths["weights"])(clip),
        "preset": tf_models.VideoMAEVideoClassifier.from_preset(paths["preset"])(clip),
        "litert": run_litert(interpreter, clip)[0]}
    for kind, logits in found.items():
        error = np.max(np.abs(keras.ops.convert_to_numpy(logits) - expected))
        assert error <= tolerance * max(1.0, np.max(np.abs(expected))), (kind, error)
    # the preset takes raw frames: its preprocessor is at the model's clip size
    reloaded = tf_models.VideoMAEVideoClassifier.from_preset(paths["preset"])
    frames = np.random.default_rng(0).integers(0, 256, (1, 6, 32, 32, 3), dtype=np.uint8)
    assert reloaded.predict(frames, verbose=0).shape == (1, 3)


def test_the_export_command_runs_on_tensorflow_under_another_keras_backend(source, tmp_path,
                                                                          monkeypatch):
    """``KERAS_BACKEND=jax`` in the shell: ``videomae-export`` sets TensorFlow's backend before
    Keras loads, with one note line (this process's Keras runs TensorFlow already; the
    fresh-process case is test_cli's, for videomae-convert, whose set-up this shares)."""
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    result = _run(["--model", source[1], "--out", tmp_path, "--name", NAME, "-q"])
    assert result.exit_code == 0, result.output
    assert "note: KERAS_BACKEND=jax: videomae-export runs Keras on TensorFlow" in result.output
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    assert os.path.isfile(tmp_path / f"{NAME}.keras")


def test_a_tampered_weights_file_fails_the_export_and_nothing_is_placed(source, tmp_path):
    """The reload check of a real export catches a weights file changed after it was written
    (changed from the export's own phase hook, just before its reload check runs)."""
    from converter.errors import ParityError
    from converter.keras_export import export_model

    _, path = source
    out = tmp_path / "out"

    def tamper(phase):
        if phase == "reload weights":
            (staging,) = [p for p in os.listdir(out) if p.startswith(f".{NAME}.partial")]
            _shift_first_dataset(str(out / staging / f"{NAME}.weights.h5"))
    with pytest.raises(ParityError, match=f"reloaded weights of {NAME}: not the checked "
                                          "model: ! .*values differ"):
        export_model(path, str(out), name=NAME, progress=False, on_phase=tamper)
    assert not out.exists()  # no artifact, no staging folder, no lock, nor the --out it made


def test_a_tampered_preset_is_caught_by_its_reload_check(source, exported, tmp_path):
    from converter.errors import ParityError
    from converter.keras_export import target_for
    from converter.parity import keras_reference, make_cases
    from converter.proofs import fingerprint_model, keras_runner, prove_artifact

    model, _ = source
    summary, _ = exported
    target = target_for(model, NAME)
    references, checked = keras_reference(keras_runner(target, model),
                                          make_cases(target), target.parity_atol)
    copy = str(tmp_path / f"{NAME}.preset")
    shutil.copytree(summary["paths"]["preset"], copy)
    fingerprint = fingerprint_model(model)
    # untouched, the copy passes the check
    assert prove_artifact(target, "preset", copy, references, checked, fingerprint).passed
    _shift_first_dataset(os.path.join(copy, "model.weights.h5"))
    with pytest.raises(ParityError, match="reloaded preset of .*values differ"):
        prove_artifact(target, "preset", copy, references, checked, fingerprint)


def _shift_first_dataset(path):
    """Add 0.5 to every value of the first array in an HDF5 weights file."""
    import h5py

    found = []
    with h5py.File(path, "r+") as handle:
        handle.visititems(lambda name, item: found.append(item)
                          if isinstance(item, h5py.Dataset) and item.size > 1 else None)
        found[0][...] = found[0][...] + 0.5


def test_a_keras_file_of_another_model_is_one_line(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = str(tmp_path / "other.keras")
    other.save(path)
    out = tmp_path / "out"
    result = _run(["--model", path, "--out", out, "-q"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {path}: holds a Sequential, expected a VideoMAE classifier "
        "(VideoMAEVideoClassifier: a fine-tuned or converted FT model); a pre-trained or "
        "encoder-only model is exported by videomae-convert from its checkpoint")
    assert not out.exists()


def test_a_preset_of_no_classifier_is_one_line_not_a_classifier_with_a_new_head(source,
                                                                               tmp_path):
    """A keras-hub preset of a backbone and its preprocessor (no task.json, as keras-hub
    ships pre-trained encoders) is no classifier: before, the classifier's from_preset gave
    it a new random 400-class head, and that was exported."""
    from converter.keras_export import target_for
    from tf_models.kerashub_presets import preprocessor_for

    model, _ = source
    preset = str(tmp_path / "encoder.preset")
    model.backbone.save_to_preset(preset)
    preprocessor_for(target_for(model, NAME)).save_to_preset(preset)
    out = tmp_path / "out"
    result = _run(["--model", preset, "--out", out, "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(
        f"error: {preset}: holds a VideoMAEBackbone, expected a VideoMAE classifier")
    assert not out.exists()


@pytest.mark.parametrize("content, phrase", [
    (b"PK\x03\x04 not really a zip", "cannot be loaded as a Keras model (File is not a zip "
     "file); it is truncated or not a .keras archive: download or export it again"),
    (b"", "is empty (0 bytes); download or export it again"),  # before: "not a zip file"
    (None, "no such file"),
])
def test_a_damaged_or_missing_keras_file_is_one_line(tmp_path, content, phrase):
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    result = _run(["--model", path, "--out", tmp_path / "out", "-q"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and phrase in lines[0]


@pytest.mark.parametrize("model_config, phrase", [
    ({"depth": "two"}, "builds no VideoMAEVideoClassifier ("),
    ({"num_heads": 0}, ": num_heads must be a positive integer, not 0; a report of another "),
    ({"num_heads": 5}, ": embed_dim 48 does not split into num_heads 5 heads of equal width; "),
    (None, "its entry has no model_config"),
])
def test_weights_whose_report_builds_no_model_are_one_line(exported, tmp_path, model_config,
                                                            phrase):
    """A ``.weights.h5`` whose report beside it records a config that builds no model (a
    damaged or edited report): before, a TypeError / ZeroDivisionError / RecordError
    traceback, exit 1; a width that does not split into the heads built a model whose
    attention regrouped the batch."""
    summary, _ = exported
    shutil.copy(summary["paths"]["weights"], tmp_path)
    with open(summary["paths"]["report"]) as handle:
        data = json.load(handle)
    if model_config is None:
        del data["entry"]["model_config"]
    else:
        data["entry"]["model_config"].update(model_config)
    report = tmp_path / f"{NAME}.json"
    report.write_text(json.dumps(data))
    result = _run(["--model", tmp_path / f"{NAME}.weights.h5", "--out", tmp_path / "out",
                   "-q"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {report}: ") and phrase in lines[0]
    assert not (tmp_path / "out").exists()


def _set_depth(config, depth):
    """Every ``depth`` in a serialised config (the backbone's, nested in a task's) set."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "depth":
                config[key] = depth
            else:
                _set_depth(value, depth)
    elif isinstance(config, list):
        for value in config:
            _set_depth(value, depth)
    return config


def _smaller_config(path, tmp_path, kind):
    """A copy of the exported ``kind`` artifact whose config says depth 1 (its weights hold
    2 blocks): the file, and the file the line names."""
    import zipfile

    if kind == "keras":
        copy = tmp_path / f"{NAME}.keras"
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
            for item in source.infolist():
                data = source.read(item)
                if item.filename == "config.json":
                    data = json.dumps(_set_depth(json.loads(data), 1)).encode()
                target.writestr(item, data)
        return copy, copy
    if kind == "weights":
        copy = tmp_path / f"{NAME}.weights.h5"
        shutil.copy(path, copy)
        with open(path[: -len(".weights.h5")] + ".json") as handle:
            report = json.load(handle)
        report["entry"]["model_config"]["depth"] = 1
        (tmp_path / f"{NAME}.json").write_text(json.dumps(report))
        return copy, tmp_path / f"{NAME}.json"
    copy = tmp_path / f"{NAME}.preset"
    shutil.copytree(path, copy)
    for name in ("config.json", "task.json"):
        config = json.loads((copy / name).read_text())
        (copy / name).write_text(json.dumps(_set_depth(config, 1)))
    return copy, copy / "config.json"


@pytest.mark.parametrize("kind", ["keras", "weights", "preset"])
def test_a_config_of_fewer_blocks_than_its_weights_is_one_line(exported, tmp_path, kind):
    """A file whose config says depth 1 while its weights hold 2 blocks: before, Keras's
    lenient loading skipped the second block and the 1-block model was exported, exit 0.
    Each config's sizes are now checked against its weights' index before anything is built
    (a report, a .keras archive's config.json, a preset's config.json and task.json); arrays
    no layer takes beyond the sizes are tests/test_kerashub.py's extra-arrays tests."""
    summary, _ = exported
    model, named = _smaller_config(summary["paths"][kind], tmp_path, kind)
    out = tmp_path / "out"
    result = _run(["--model", model, "--out", out, "-q"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {named}: depth is 1, but the weights have 2 (blocks up to 1 in "), lines
    assert not out.exists()


def test_a_folder_given_as_video_is_one_line_saying_it_is_a_folder(source, tmp_path):
    """Before: "--video FOLDER: no such file" (of a folder that is there)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    out = tmp_path / "out"
    result = _run(["--model", source[1], "--out", out, "--litert-quantize", "int8", "--video",
                   folder, "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error: --video {folder}: is a folder, expected a video "
                                     f"file; pass one of its videos")
    assert not out.exists()


class _Stopped(Exception):
    pass


@pytest.mark.parametrize("modes, files", [("int8", ("int8",)),
                                          (["int8", "fp16", "int8"], ("int8", "fp16"))])
def test_litert_quantize_takes_one_mode_as_a_string_and_each_mode_once(source, tmp_path,
                                                                       monkeypatch, modes,
                                                                       files):
    """``export_model(..., litert_quantize="int8")``: before, the string's letters were
    taken for modes (a ValueError traceback after the model loaded); a repeated mode was
    converted and written twice. Stopped where the files would be written."""
    from converter import keras_export

    asked = []

    def staged(*args, quantize=(), **kwargs):
        asked.append(quantize)
        raise _Stopped
    monkeypatch.setattr(keras_export, "StagedArtifacts", staged)
    with pytest.raises(_Stopped):
        keras_export.export_model(source[1], str(tmp_path / "out"), name=NAME,
                                  progress=False, litert_quantize=modes)
    assert asked == [files]


@pytest.mark.parametrize("handle, name", [
    ("kaggle://owner/videomae/keras/my_classifier/3", "my_classifier"),
    ("kaggle://owner/videomae/keras/my_classifier", "my_classifier"),
    ("hf://org/my_classifier", "my_classifier")])
def test_a_hub_handle_names_the_artifacts_after_its_entry(tmp_path, monkeypatch, handle,
                                                          name):
    """Without --name, a Kaggle handle's artifacts are named after its variation (before:
    after its version, ``3.keras``). Stopped before anything is fetched."""
    from converter import keras_export

    named = []

    def check_output_dir(out_dir, name, force):
        named.append(name)
        raise _Stopped
    monkeypatch.setattr(keras_export, "check_output_dir", check_output_dir)
    with pytest.raises(_Stopped):
        keras_export.export_model(handle, str(tmp_path / "out"), progress=False)
    assert named == [name]


def test_an_unknown_quantisation_is_one_line_before_any_work(tmp_path):
    from converter.errors import ConversionError
    from converter.keras_export import export_model

    with pytest.raises(ConversionError, match="^litert_quantize 'int4': not a quantisation; "
                                              "one of fp16, int8"):
        export_model(str(tmp_path / "missing.keras"), str(tmp_path / "out"),
                     litert_quantize=["int4"])
    assert not (tmp_path / "out").exists()


def test_existing_artifacts_are_kept_unless_forced(exported):
    from tf_models.artifacts.checksums import tree_sha256

    summary, out = exported
    before = {k: tree_sha256(p) for k, p in summary["paths"].items()}
    result = _run(["--model", summary["source"]["path"], "--out", out, "--name", NAME, "-q"])
    assert result.exit_code == 2
    assert "already exists" in result.output and "--force" in result.output
    assert {k: tree_sha256(p) for k, p in summary["paths"].items()} == before


def test_force_retires_every_optional_artifact_this_run_does_not_write(exported, tmp_path):
    """--force without --litert / --litert-quantize / --preset: the earlier .tflite files
    (the int8 one included: before, it stayed, a file of the replaced model) and preset go
    aside with the rest, so nothing under NAME outlives the model it matched."""
    import shutil

    from tf_models.artifacts.names import artifact_paths

    summary, out = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    optional = ("litert", "litert_int8", "preset")
    before = artifact_paths(str(copy), NAME, litert=True)
    assert all(os.path.exists(before[kind]) for kind in optional)
    result = _run(["--model", summary["source"]["path"], "--out", copy, "--name", NAME,
                   "--force", "-q"])
    assert result.exit_code == 0, result.output
    assert [kind for kind in optional if os.path.lexists(before[kind])] == []
    assert all(os.path.exists(before[kind]) for kind in ("savedmodel", "keras", "report"))


def test_a_conversion_folder_given_as_model_says_to_pass_its_keras_file(source, tmp_path):
    _, path = source
    folder = os.path.dirname(path)
    result = _run(["--model", folder, "--out", tmp_path / "out", "-q"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {folder}/SHA256SUMS: missing; ")
    assert lines[0].endswith("for one model of a conversion's folder, pass its NAME.keras file")


def test_the_exported_file_itself_is_never_an_output(source):
    _, path = source
    # model.keras exported as "model" into its own folder would replace it
    result = _run(["--model", path, "--out", os.path.dirname(path), "--force", "-q"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {path}: is the model being exported; pass "
                                     "another --name or --out")


@pytest.mark.parametrize("name, other", [("m.int8", "m.int8.tflite"), ("m.keras", "m.keras"),
                                         ("m.json", "m.json"), ("m.preset", "m.preset")])
def test_a_name_whose_files_could_be_another_names_is_refused(source, tmp_path, name, other):
    """``m.int8``'s SavedModel and LiteRT files would include ``m``'s int8 file
    (``m.int8.tflite``); a later ``--force`` export would replace or retire it."""
    from tf_models.artifacts.names import artifact_paths

    assert os.path.join(str(tmp_path), other) in set(
        artifact_paths(str(tmp_path), "m", litert=True).values())
    _, path = source
    result = _run(["--model", path, "--out", tmp_path / "out", "--name", name, "-q"])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: --name {name!r}: ends in "
                                            f"'.{name.split('.')[1]}'"), result.output
    assert not (tmp_path / "out").exists()


def test_a_report_without_torch_parity_must_name_another_reference(exported, tmp_path):
    from converter.record import ConversionRecord, RecordError

    summary, _ = exported
    with open(summary["paths"]["report"]) as handle:
        data = json.load(handle)
    assert data["reference"] == "keras" and "no torch model" in data["reference_is"]
    data["reference"] = "torch"  # a torch-checked conversion always holds its parity
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="parity missing or malformed"):
        ConversionRecord.load(str(path))


def test_an_empty_name_is_refused_not_replaced_by_the_default(source, tmp_path):
    """``--name ''`` (an unset shell variable, say) exported under the file's own name."""
    _, path = source
    result = _run(["--model", path, "--out", tmp_path / "out", "--name", "", "-q"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --name '': names the artifact files, so letters, "
                                     "digits, '.', '_' and '-' only, starting with a letter or "
                                     "digit")
    assert not (tmp_path / "out").exists()
