"""The reload check of ``.keras`` proves the artifact by its variables (bit for bit), its class
and its config (an export's also by one clip); ``.weights.h5`` by being byte for byte the
weights inside that ``.keras`` file (by its variables when it is not); the SavedModel and
``.tflite`` by the clips float64 ran on, every clip of an export (docs/PARITY.md). Each test
breaks what one proof looks at and expects the conversion to fail, nothing left under a final
name."""

import gc
import json
import os
import weakref
import zipfile

import torch  # noqa: F401  (torch side first)
import converter
from converter import export, proofs
from converter.errors import ParityError
from converter.record import ConversionRecord

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import TINY_FT  # noqa: E402
from tf_models import VideoMAEVideoClassifier  # noqa: E402


def _after_write(monkeypatch, change):
    """Run ``change(staged paths)`` right after the artifacts are written."""
    real = export.StagedArtifacts.write

    def write(self, model):
        real(self, model)
        change(self.staged)
    monkeypatch.setattr(export.StagedArtifacts, "write", write)


def _convert_fails(tmp_path, match):
    out = tmp_path / "out"
    with pytest.raises(ParityError, match=match):
        converter.convert(TINY_FT, str(out), synthetic=True, seed=0, progress=False)
    assert not out.exists() or os.listdir(out) == []  # no lock or staging folder either


def _nudge_h5(path):
    """Add small random noise to one dataset of an .h5 weights file (the last one)."""
    with h5py.File(path, "r+") as handle:
        found = []
        handle.visititems(lambda name, obj: found.append(name)
                          if isinstance(obj, h5py.Dataset) else None)
        data = handle[found[-1]]
        noise = np.random.default_rng(0).standard_normal(data.shape) * 1e-3
        data[...] = data[...] + noise.astype(data.dtype)
        return found[-1]


def test_a_changed_weight_in_the_weights_file_fails_the_variable_proof(tmp_path, monkeypatch):
    _after_write(monkeypatch, lambda staged: _nudge_h5(staged["weights"]))
    _convert_fails(tmp_path, r"reloaded weights .*values differ")


def _rewrite_keras(path, edit):
    """Rewrite a .keras zip with ``edit(config dict)`` applied to its config.json."""
    with zipfile.ZipFile(path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)


def test_a_changed_config_in_the_keras_file_fails_the_config_proof(tmp_path, monkeypatch):
    def two_heads(config):  # 48 / 2 heads: every shape unchanged, another function
        config["config"]["backbone"]["config"]["num_heads"] = 2
    _after_write(monkeypatch, lambda staged: _rewrite_keras(staged["keras"], two_heads))
    _convert_fails(tmp_path, r"reloaded keras .*config differs: backbone")


@keras.saving.register_keras_serializable(package="test_reload_proofs")
class AnotherClassifier(VideoMAEVideoClassifier):
    """The classifier's variables and config under another class: only the class proof sees it."""


def test_a_keras_file_of_another_class_fails_the_class_proof(tmp_path, monkeypatch):
    def another_class(config):
        config["class_name"] = "AnotherClassifier"
        config["registered_name"] = "test_reload_proofs>AnotherClassifier"
    _after_write(monkeypatch, lambda staged: _rewrite_keras(staged["keras"], another_class))
    _convert_fails(tmp_path, r"reloaded keras .*not the checked model: "
                             r"class AnotherClassifier, expected VideoMAEVideoClassifier$")


def _shifted_graph_runner(monkeypatch):
    """Every reloaded Keras model answers 1e-3 off; returns the clips it was asked."""
    real, calls = proofs._graph_runner, []

    def shifted_runner(entry, model):
        run = real(entry, model)

        def shifted(case):
            calls.append(case.name)
            return {k: v + 1e-3 for k, v in run(case).items()}
        shifted.model = model
        return shifted
    monkeypatch.setattr(proofs, "_graph_runner", shifted_runner)
    return calls


def test_a_conversions_keras_file_runs_no_clip_and_an_exports_runs_one_that_is_compared(
        monkeypatch, tiny_converted, tiny_references):
    """A conversion's ``.keras`` is proven by class, config and variables (that its class
    rebuilds the same function from them: tests/test_keras_rebuild.py), so a reloaded model
    that would answer 1e-3 off is never run; an export's ``.keras`` (a user's model, its
    reference without float64) runs one clip, and that clip off fails."""
    from converter.parity import keras_reference, make_cases

    entry, path = tiny_converted.entry, tiny_converted.paths["keras"]
    model = keras.models.load_model(path)
    expected = proofs.fingerprint_model(model)
    exports, export_checked = keras_reference(proofs.keras_runner(entry, model),
                                              make_cases(entry, batch=2, seed=0),
                                              entry.parity_atol)
    calls = _shifted_graph_runner(monkeypatch)
    check = proofs.prove_artifact(entry, "keras", path, tiny_references,
                                  tiny_converted.parity, expected)
    assert check.passed and check.method == "variables" and check.clips == 0 and calls == []
    with pytest.raises(ParityError, match="reloaded keras"):
        proofs.prove_artifact(entry, "keras", path, exports, export_checked, expected)
    assert calls == ["clip"]


def test_a_weights_file_equal_to_the_keras_archive_member_is_proven_without_a_reload(
        tmp_path, monkeypatch):
    def no_reload(entry, path):
        raise AssertionError("the .weights.h5 file was reloaded")
    monkeypatch.setitem(proofs.RELOADERS, "weights", no_reload)
    result = converter.convert(TINY_FT, str(tmp_path / "out"), synthetic=True, seed=0,
                               progress=False)
    check = result.report.reload_checks["weights"]
    assert check.method == "bytes" and check.passed
    assert proofs.same_bytes_as_keras_weights(result.paths["weights"], result.paths["keras"])


def test_weights_changed_alike_in_both_files_fail_the_keras_proof(tmp_path, monkeypatch):
    """The bytes proof leans on the ``.keras`` proof: with the same change in both files the
    ``.weights.h5`` passes as the archive's bytes, and the archive's variables fail."""
    def change_both(staged):
        _nudge_h5(staged["weights"])
        with open(staged["weights"], "rb") as handle:
            changed = handle.read()
        with zipfile.ZipFile(staged["keras"]) as source:
            members = {name: source.read(name) for name in source.namelist()}
        members["model.weights.h5"] = changed
        with zipfile.ZipFile(staged["keras"], "w") as target:
            for name, data in members.items():
                target.writestr(name, data)
    _after_write(monkeypatch, change_both)
    _convert_fails(tmp_path, r"reloaded keras .*values differ")


def test_the_bytes_comparison_tells_apart_size_content_and_a_missing_member(tmp_path):
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"abcd" * 1000)

    def archive(name, data, member="model.weights.h5"):
        with zipfile.ZipFile(tmp_path / name, "w") as target:
            target.writestr(member, data)
        return str(tmp_path / name)
    assert proofs.same_bytes_as_keras_weights(str(weights), archive("same.keras", b"abcd" * 1000))
    assert not proofs.same_bytes_as_keras_weights(str(weights),
                                                  archive("longer.keras", b"abcd" * 1001))
    assert not proofs.same_bytes_as_keras_weights(
        str(weights), archive("other.keras", b"abcd" * 999 + b"abce"))
    assert not proofs.same_bytes_as_keras_weights(
        str(weights), archive("none.keras", b"abcd" * 1000, member="other.h5"))
    assert not proofs.same_bytes_as_keras_weights(str(weights), str(weights))  # not a zip


def test_the_in_memory_model_is_freed_before_the_reload_checks(tmp_path, monkeypatch):
    """The reloads each build a model of their own; the checked one must be gone by then
    (TensorFlow's autograph once kept it alive in a snapshot of the conversion's locals)."""
    written, alive = [], []
    real_write, real_check = export.StagedArtifacts.write, export.StagedArtifacts.check

    def write(self, model):
        written.append(weakref.ref(model))
        real_write(self, model)

    def check(self, references, checked):
        gc.collect()
        alive.append(written[0]() is not None)
        return real_check(self, references, checked)
    monkeypatch.setattr(export.StagedArtifacts, "write", write)
    monkeypatch.setattr(export.StagedArtifacts, "check", check)
    converter.convert(TINY_FT, str(tmp_path / "out"), synthetic=True, seed=0, progress=False)
    assert alive == [False]


def test_the_report_says_how_each_artifact_was_proven(tiny_converted):
    record = ConversionRecord.load(tiny_converted.paths["report"])
    checks = record.reload_checks
    assert checks["savedmodel"].method == "outputs" and checks["savedmodel"].clips == 1
    assert checks["weights"].method == "bytes" and checks["weights"].clips == 0
    assert checks["keras"].method == "variables" and checks["keras"].clips == 0
    assert all(check.passed for check in checks.values())


def _counting_savedmodel(monkeypatch, nudge_call=None):
    """The SavedModel reloader, counting its clips; ``nudge_call``: that call's logits +1e-3."""
    calls = []
    real = proofs.RELOADERS["savedmodel"]

    def reload(entry, path):
        run = real(entry, path)

        def counted(case):
            calls.append(case.name)
            out = run(case)
            if len(calls) == nudge_call:
                out = {**out, "logits": out["logits"] + 1e-3}
            return out
        return counted
    monkeypatch.setitem(proofs.RELOADERS, "savedmodel", reload)
    return calls


def test_the_savedmodel_reload_runs_the_clips_float64_ran_on_and_a_wrong_one_fails(
        monkeypatch, tiny_converted, tiny_references):
    """A conversion's SavedModel runs the first clip of each case (float64's), not the second
    (the in-memory model's check covered it); that clip 1e-3 off fails."""
    entry, path = tiny_converted.entry, tiny_converted.paths["savedmodel"]
    calls = _counting_savedmodel(monkeypatch)
    check = proofs.prove_artifact(entry, "savedmodel", path, tiny_references, None, None)
    assert check.clips == 1 and calls == ["clip"] and check.tf_err_vs_f64 is not None
    _counting_savedmodel(monkeypatch, nudge_call=1)
    with pytest.raises(ParityError, match="reloaded savedmodel"):
        proofs.prove_artifact(entry, "savedmodel", path, tiny_references, None, None)


def test_an_exports_savedmodel_reload_runs_every_clip(monkeypatch, tiny_converted):
    """An export's reference has no float64 run and its reload checks are its only checks:
    every clip runs, and the second one off fails."""
    from converter.parity import keras_reference, make_cases

    entry, path = tiny_converted.entry, tiny_converted.paths["savedmodel"]
    model = keras.models.load_model(tiny_converted.paths["keras"])
    references, _ = keras_reference(proofs.keras_runner(entry, model),
                                    make_cases(entry, batch=2, seed=0), entry.parity_atol)
    calls = _counting_savedmodel(monkeypatch)
    check = proofs.prove_artifact(entry, "savedmodel", path, references, None, None)
    assert check.clips == 2 and len(calls) == 2
    _counting_savedmodel(monkeypatch, nudge_call=2)
    with pytest.raises(ParityError, match="reloaded savedmodel"):
        proofs.prove_artifact(entry, "savedmodel", path, references, None, None)
