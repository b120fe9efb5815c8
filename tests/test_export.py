"""Export: the four artifacts, the JSON report, staging and overwrite rules, failure cleanup,
and loading every format in a fresh process that never imports torch."""

import json
import os
import re
import shutil
import tempfile
import threading

import torch  # noqa: F401  (torch side first)
import converter
from converter import export, mapping, writers
from converter.synthetic import write_synthetic_checkpoint
from converter.errors import OutputError, ParityError
from converter.export import artifact_paths, check_output_dir
from converter.hashes import WORKER_NAME

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import TINY_FT, copy_artifacts  # noqa: E402

def _listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _staging_left(folder, name):
    return [p for p in _listing(folder) if p.startswith(f".{name}.partial")]


def _break_linear_transform(monkeypatch):
    """A mapping slip that keeps every shape (so only parity can see it)."""
    original = mapping.TRANSFORMS["linear"]
    monkeypatch.setitem(mapping.TRANSFORMS, "linear", mapping.Transform(
        lambda array: original.apply(array) * 1.01, original.shape))


def _break_savedmodel_reload(monkeypatch):
    """The reloaded SavedModel answers differently from the model that was written."""
    real = export.RELOADERS["savedmodel"]

    def reload(entry, path):
        run = real(entry, path)
        return lambda case: {k: np.asarray(v) + 1.0 for k, v in run(case).items()}
    monkeypatch.setitem(export.RELOADERS, "savedmodel", reload)


# --- the artifacts ---------------------------------------------------------------------------

def test_conversion_writes_the_four_artifacts(tiny_converted):
    name = TINY_FT
    out = os.path.dirname(tiny_converted.paths["report"])
    assert tiny_converted.paths == artifact_paths(out, name)
    paths = tiny_converted.paths
    assert os.path.isdir(paths["savedmodel"])
    assert os.path.isfile(os.path.join(paths["savedmodel"], "saved_model.pb"))
    assert os.path.isdir(os.path.join(paths["savedmodel"], "variables"))
    assert paths["weights"].endswith(f"{name}.weights.h5") and os.path.isfile(paths["weights"])
    assert paths["keras"].endswith(f"{name}.keras") and os.path.isfile(paths["keras"])
    assert paths["report"].endswith(f"{name}.json") and os.path.isfile(paths["report"])
    # nothing else: no staging folder, no scratch checkpoint
    assert _listing(out) == sorted([name, f"{name}.weights.h5", f"{name}.keras", f"{name}.json"])


def test_report_records_entry_source_versions_and_parity(tiny_converted, tiny_entry):
    with open(tiny_converted.paths["report"]) as handle:
        report = json.load(handle)
    assert report["entry"]["name"] == TINY_FT
    assert report["entry"]["num_classes"] == 400
    assert report["entry"]["model_config"]["embed_dim"] == 48
    assert re.fullmatch(r"[0-9a-f]{64}", report["source"]["sha256"])
    assert report["source"]["synthetic_seed"] == 0
    assert report["source"]["container_key"] == "module"
    for package in ("torch", "tensorflow", "keras", "numpy", "videomae-convert", "python"):
        assert report["versions"][package], package
    assert report["versions"]["videomae-convert"] == converter.__version__
    parity = report["parity"]
    assert parity["passed"] is True
    assert parity["tolerance"] == tiny_entry.parity_atol == 1e-5
    assert 0 < parity["tf_err_vs_f64"] <= parity["tolerance"]
    assert 0 < parity["torch_err_vs_f64"] <= parity["tolerance"]
    assert parity["first_divergent_block"] is None
    assert len(parity["blocks"]) == tiny_entry.dims["depth"]
    assert set(report["reload_checks"]) == {"savedmodel", "weights", "keras"}
    for kind, check in report["reload_checks"].items():
        assert check["passed"] is True, kind
        assert 0 <= check["tf_err_vs_f64"] <= parity["tolerance"], kind
    assert all(size > 0 for size in report["artifact_bytes"].values())
    # the in-memory result says the same as the file
    assert tiny_converted.report.source.sha256 == report["source"]["sha256"]
    assert tiny_converted.parity.tf_err_vs_f64 == pytest.approx(parity["tf_err_vs_f64"])


def test_report_sha256_is_that_of_the_converted_checkpoint(tiny_converted, tiny_entry, tmp_path):
    """The synthetic checkpoint is regenerated bit for bit from its seed (same file name, since
    torch.save records it), so the recorded digest can be checked."""
    from converter.synthetic import synthetic_path
    from converter.checkpoint import sha256_file

    path = write_synthetic_checkpoint(tiny_entry, synthetic_path(tiny_entry, 0, str(tmp_path)),
                                      seed=0)
    assert tiny_converted.report.source.sha256 == sha256_file(path)


@pytest.fixture(scope="module")
def seed3_run(tmp_path_factory):
    """One tiny conversion (seed 3) with a private scratch folder and ``on_phase`` recording
    the phases, shared by the scratch and on_phase tests: (scratch, out, phases, result)."""
    root = tmp_path_factory.mktemp("seed3")
    scratch_root = root / "scratch"
    scratch_root.mkdir()
    out = root / "out"
    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(scratch_root))
        result = converter.convert(TINY_FT, str(out), synthetic=True, seed=3, progress=False,
                                   on_phase=seen.append)
    return scratch_root, out, seen, result


def test_synthetic_scratch_checkpoint_is_removed(seed3_run):
    scratch_root, out, _, _ = seed3_run
    # TensorFlow's own: the first SavedModel signature a process saves has its wrapper
    # converted by autograph, whose source file TensorFlow removes when the process exits
    ours = [n for n in _listing(scratch_root) if not n.startswith("__autograph_generated_file")]
    assert ours == []
    assert _staging_left(out, TINY_FT) == []


# --- present artifacts and --force -----------------------------------------------------------

def test_same_source_again_without_force_leaves_files_untouched(tiny_converted, tmp_path,
                                                                snapshot):
    out = copy_artifacts(tiny_converted, tmp_path / "again")
    before = snapshot(out)
    result = converter.convert(TINY_FT, out, synthetic=True, seed=0, progress=False)
    assert getattr(result, "skipped", False) is True
    assert snapshot(out) == before


def test_existing_artifacts_from_another_source_refuse_without_force(tiny_converted, tmp_path,
                                                                     snapshot):
    out = copy_artifacts(tiny_converted, tmp_path / "other")
    before = snapshot(out)
    with pytest.raises(OutputError) as caught:
        converter.convert(TINY_FT, out, synthetic=True, seed=1, progress=False)
    message = str(caught.value)
    assert "--force" in message and "\n" not in message
    assert caught.value.exit_code == 2
    assert snapshot(out) == before
    assert _staging_left(out, TINY_FT) == []


def test_check_output_dir_refuses_present_artifacts_without_force(tiny_converted, tmp_path):
    out = copy_artifacts(tiny_converted, tmp_path / "present")
    with pytest.raises(OutputError, match="already exists"):
        check_output_dir(out, TINY_FT)
    check_output_dir(out, TINY_FT, force=True)  # allowed


def test_one_stray_artifact_is_enough_to_refuse(tiny_converted, tmp_path, snapshot):
    out = tmp_path / "stray"
    out.mkdir()
    shutil.copy2(tiny_converted.paths["keras"], out)
    before = snapshot(out)
    with pytest.raises(OutputError):
        converter.convert(TINY_FT, str(out), synthetic=True, seed=0, progress=False)
    assert snapshot(out) == before


def test_changed_artifact_is_not_taken_for_a_finished_conversion(tiny_converted, tmp_path):
    out = copy_artifacts(tiny_converted, tmp_path / "tampered")
    weights = os.path.join(out, f"{TINY_FT}.weights.h5")
    with open(weights, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(OutputError):
        converter.convert(TINY_FT, out, synthetic=True, seed=0, progress=False)


def test_force_overwrites_existing_artifacts(tiny_converted, tiny_forced_seed1, snapshot):
    # the copy of tiny_converted with notes.txt, its snapshot and the forced seed-1 conversion
    # over it: conftest.tiny_forced_seed1 (its seed-1 artifacts are test_release's wrong model)
    out, before, result = tiny_forced_seed1
    with open(result.paths["report"]) as handle:
        report = json.load(handle)
    assert report["source"]["synthetic_seed"] == 1
    assert report["source"]["sha256"] != tiny_converted.report.source.sha256
    after = snapshot(out)
    assert after[f"{TINY_FT}.weights.h5"][0] != before[f"{TINY_FT}.weights.h5"][0]
    assert after["notes.txt"] == before["notes.txt"]
    assert _staging_left(out, TINY_FT) == []
    assert sorted(p for p in _listing(out) if p != "notes.txt") == sorted(
        os.path.basename(p) for p in result.paths.values())


def test_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("not a folder\n")
    with pytest.raises(OutputError) as caught:
        converter.convert(TINY_FT, str(target), synthetic=True, progress=False)
    assert "file" in str(caught.value) and "\n" not in str(caught.value)
    assert target.read_text() == "not a folder\n"
    with pytest.raises(OutputError):
        check_output_dir(str(target), TINY_FT)


# --- failures leave nothing behind -----------------------------------------------------------

def test_parity_failure_leaves_nothing_in_out(tmp_path, monkeypatch):
    _break_linear_transform(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(ParityError) as caught:
        converter.convert(TINY_FT, str(out), synthetic=True, seed=0, progress=False)
    assert "parity" in str(caught.value)
    assert caught.value.report is not None and not caught.value.report.passed
    assert _listing(out) == []


def test_reload_failure_removes_staging_and_writes_no_final_names(tmp_path, monkeypatch):
    _break_savedmodel_reload(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(ParityError) as caught:
        converter.convert(TINY_FT, str(out), synthetic=True, seed=0, progress=False)
    assert "savedmodel" in str(caught.value)
    assert _listing(out) == []  # the staging folder was created here, then removed


def test_failed_forced_conversion_keeps_the_previous_artifacts(tiny_converted, tmp_path,
                                                               monkeypatch, snapshot):
    out = copy_artifacts(tiny_converted, tmp_path / "keep")
    before = snapshot(out)
    _break_savedmodel_reload(monkeypatch)
    with pytest.raises(ParityError):
        converter.convert(TINY_FT, out, synthetic=True, seed=1, force=True, progress=False)
    assert snapshot(out) == before
    assert _staging_left(out, TINY_FT) == []
    # the artifacts it wrote were being hashed in a worker thread: stopped with the run
    assert not [t for t in threading.enumerate() if t.name.startswith(WORKER_NAME)]


# --- fresh process, no torch -----------------------------------------------------------------

def test_tiny_artifacts_load_in_a_fresh_process_and_match_torch(
        tiny_converted, tiny_entry, tmp_path, check_fresh_process):
    check_fresh_process(tiny_converted, tiny_entry, tmp_path)


@pytest.mark.slow
def test_small_artifacts_load_in_a_fresh_process_and_match_torch(
        small_converted, small_entry, tmp_path, check_fresh_process):
    """Slow tier (~75 s: ViT-S in three formats in a fresh process). In the fast tier the
    fresh-process load is test_tiny_artifacts_load_in_a_fresh_process_and_match_torch, and the
    ViT-S artifacts' three reloads are checked inside the conversion that
    tests/test_parity.py::test_small_fine_tuned_parity_passes_with_batch_two asserts on."""
    check_fresh_process(small_converted, small_entry, tmp_path)


def test_keras_file_written_through_disk_loads_with_plain_keras(tmp_path):
    """Inside ``keras_weights_through_disk`` Keras takes its temporary-file path (no in-memory
    copy of the weights); the file it writes is an ordinary .keras file."""
    import keras
    from keras.src.saving import saving_lib

    model = _random_tiny_model()
    original = saving_lib.is_memory_sufficient
    path = str(tmp_path / "m.keras")
    with export.keras_weights_through_disk():
        assert saving_lib.is_memory_sufficient(model) is False
        model.save(path)
    assert saving_lib.is_memory_sufficient is original
    assert os.listdir(tmp_path) == ["m.keras"]  # the temporary .h5 is gone
    reloaded = keras.saving.load_model(path, compile=False)
    for a, b in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _random_tiny_model():
    """Every variable its own draws (one generator for all): a reader that swapped two of them
    (gamma with beta, block 0 with block 1) would not load the same values."""
    from converter.kinds import build_tf_model
    from converter.zoo import get_entry

    model = build_tf_model(get_entry(TINY_FT))
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.standard_normal(variable.shape).astype("float32"))
    return model


def _zeroed_tiny_model():
    """The same architecture holding none of ``_random_tiny_model``'s values: what a reload
    leaves in it came from the file."""
    model = _random_tiny_model()
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, "float32"))
    return model


def test_keras_and_weights_files_come_from_one_serialisation_as_keras_writes_them(tmp_path):
    """The .keras archive is Keras's unzipped save zipped as Keras zips it, and its weights
    member is byte for byte the .weights.h5 file, which is what Keras's own writers produce."""
    import zipfile

    import keras

    model = _random_tiny_model()
    keras_path, weights_path = str(tmp_path / "m.keras"), str(tmp_path / "m.weights.h5")
    phases = []
    assert export.save_keras_and_weights(model, keras_path, weights_path,
                                         phases.append) == "one write"
    assert phases == ["write .weights.h5", "write .keras"]
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "m.weights.h5"]
    # Keras's own writers, for comparison
    own_dir = tmp_path / "own"
    own_dir.mkdir()
    model.save_weights(str(own_dir / "own.weights.h5"))
    with export.keras_weights_through_disk():
        model.save(str(own_dir / "own.keras"))
    with zipfile.ZipFile(keras_path) as ours, zipfile.ZipFile(own_dir / "own.keras") as own:
        assert [(i.filename, i.compress_type) for i in ours.infolist()] == \
            [(i.filename, i.compress_type) for i in own.infolist()]
        assert ours.read("config.json") == own.read("config.json")
        member = ours.read("model.weights.h5")
        assert member == own.read("model.weights.h5")
    with open(weights_path, "rb") as handle:
        assert handle.read() == member
    with open(own_dir / "own.weights.h5", "rb") as handle:
        assert handle.read() == member
    # and both load, each through its own Keras reader
    reloaded = keras.saving.load_model(keras_path, compile=False)
    rebuilt = _zeroed_tiny_model()
    rebuilt.load_weights(weights_path)
    for a, b, c in zip(model.weights, reloaded.weights, rebuilt.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_another_unzipped_keras_layout_falls_back_to_two_keras_writes(tmp_path, monkeypatch):
    """Should Keras's unzipped save write other files than the archive this code zips, each
    file is written by its own Keras writer instead, and both still load."""
    import keras

    monkeypatch.setattr(writers, "KERAS_ARCHIVE_MEMBERS",
                        writers.KERAS_ARCHIVE_MEMBERS + ("assets",))
    model = _random_tiny_model()
    keras_path, weights_path = str(tmp_path / "m.keras"), str(tmp_path / "m.weights.h5")
    assert export.save_keras_and_weights(model, keras_path, weights_path) == "two writes"
    assert sorted(os.listdir(tmp_path)) == ["m.keras", "m.weights.h5"]
    reloaded = keras.saving.load_model(keras_path, compile=False)
    rebuilt = _zeroed_tiny_model()
    rebuilt.load_weights(weights_path)
    for a, b, c in zip(model.weights, reloaded.weights, rebuilt.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


# --- seams, not patches -----------------------------------------------------------------------

def test_convert_calls_on_phase_as_each_phase_starts(seed3_run):
    from converter.api import PHASES

    _, _, seen, result = seed3_run
    assert seen == list(PHASES)
    assert list(result.seconds) == list(PHASES)


def test_keras_still_builds_small_weights_in_memory():
    """Fails once the workaround in ``keras_weights_through_disk`` is no longer needed (Keras
    streams every ``.keras`` file's weights through disk) or can no longer work (the hook it
    sets is gone): then remove it."""
    import keras
    from keras.src.saving import saving_lib

    from converter.export import KERAS_WORKAROUND_VERSION, keras_weights_through_disk

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert hasattr(saving_lib, "is_memory_sufficient"), \
        f"Keras {keras.__version__} has no is_memory_sufficient (written against " \
        f"{KERAS_WORKAROUND_VERSION}): drop keras_weights_through_disk"
    assert saving_lib.is_memory_sufficient(model) is True
    with keras_weights_through_disk():
        assert saving_lib.is_memory_sufficient(model) is False
    assert saving_lib.is_memory_sufficient(model) is True
