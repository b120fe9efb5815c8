"""LiteRT export: an fp32 ``.tflite`` with a dynamic batch that matches the torch reference."""

import os

import numpy as np
import pytest

from conftest import TINY_FT, random_clip_nthwc, torch_logits_from_checkpoint

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny_tflite(tiny_converted, tmp_path_factory):
    import keras

    from converter.litert import export_litert

    model = keras.saving.load_model(tiny_converted.paths["keras"], compile=False)
    path = str(tmp_path_factory.mktemp("litert") / "tiny.tflite")
    export_litert(model, tiny_converted.entry, path)
    return path, model


@pytest.mark.parametrize("batch", [1, 3])
def test_tflite_matches_the_torch_reference_at_any_batch(tiny_tflite, tiny_converted, batch,
                                                        tmp_path):
    from converter.synthetic import synthetic_path
    from converter.synthetic import write_synthetic_checkpoint
    from converter.litert import make_interpreter, run_litert

    path, _ = tiny_tflite
    entry = tiny_converted.entry
    clip = random_clip_nthwc(entry, batch=batch, seed=7)
    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, str(tmp_path)), 0)
    expected = torch_logits_from_checkpoint(entry, checkpoint, clip)
    found = run_litert(make_interpreter(path), clip)
    assert len(found) == 1 and found[0].shape == expected.shape
    assert np.max(np.abs(found[0] - expected)) <= TOLERANCE


def test_tflite_holds_constants_not_resource_variables(tiny_tflite):
    from converter.litert import make_interpreter

    path, model = tiny_tflite
    interpreter = make_interpreter(path)
    ops = {detail["op_name"] for detail in interpreter._get_ops_details()}
    assert "READ_VARIABLE" not in ops and "VAR_HANDLE" not in ops
    # the weights are in the file: at least as many bytes as the fp32 parameters
    assert os.path.getsize(path) >= 4 * model.count_params()


def test_tflite_refuses_a_pretrained_model(tmp_path):
    from converter.litert import export_litert
    from converter.kinds import build_tf_model
    from converter.zoo import get_entry

    entry = get_entry("TFVideoMAE_T_K400_4x32_PT")
    with pytest.raises(ValueError, match="pre-trained"):
        export_litert(build_tf_model(entry), entry, str(tmp_path / "pt.tflite"))
    assert not os.path.exists(tmp_path / "pt.tflite")


def test_cli_litert_writes_a_checked_tflite_and_skips_it_next_time(tmp_path):
    from conftest import run_cli

    from converter.record import ConversionRecord

    out = tmp_path / "weights"
    result = run_cli(["--synthetic", "--size", "T", "--out", str(out), "--litert", "-q"])
    assert result.exit_code == 0, result.output
    name = "TFVideoMAE_T_K400_4x32_FT"
    assert (out / f"{name}.tflite").is_file()
    record = ConversionRecord.load(str(out / f"{name}.json"))
    assert record.reload_checks["litert"].passed
    assert record.reload_checks["litert"].tf_err_vs_f64 <= 1e-5
    assert "litert" in record.artifacts
    again = run_cli(["--synthetic", "--size", "T", "--out", str(out), "--litert", "-q"])
    assert again.exit_code == 0 and "skipped" in again.output


def test_cli_litert_refuses_a_pretrained_entry_before_any_work(tmp_path):
    from conftest import assert_one_line_error, run_cli

    out = tmp_path / "weights"
    result = run_cli(["--synthetic", "--size", "T", "--mode", "PT", "--out", str(out),
                      "--litert", "-q"])
    line = assert_one_line_error(result, 2)
    assert "--litert" in line and "pre-trained" in line
    assert not out.exists() or not any(out.iterdir())


def test_litert_serves_encoder_features_with_both_outputs(tiny_encoder_converted):
    """The session's encoder-only conversion (conftest: ``encoder_only=True, litert=True``,
    what ``--encoder-only --litert`` asks for; shared with test_pretrain). The CLI's --litert
    is driven by test_cli_litert_writes_a_checked_tflite_and_skips_it_next_time."""
    from converter.record import ConversionRecord

    out = os.path.dirname(tiny_encoder_converted.paths["report"])
    name = "TFVideoMAE_T_K400_4x32_FT_encoder"
    record = ConversionRecord.load(os.path.join(out, f"{name}.json"))
    assert record.reload_checks["litert"].passed and "litert" in record.artifacts


def test_litert_memory_check_is_one_line_naming_the_need_and_what_is_available():
    from converter.errors import ConversionError
    from converter.litert import LITERT_WEIGHT_COPIES, available_memory, check_litert_memory

    weights = 346_139_200  # ViT-B FT
    with pytest.raises(ConversionError) as caught:
        check_litert_memory("TFVideoMAE_B_K400_16x224_FT", weights, available=4 * 2**30)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("TFVideoMAE_B_K400_16x224_FT: --litert")
    assert f"{LITERT_WEIGHT_COPIES * weights / 2**30:.1f} GiB" in message
    assert "4.0 GiB is available" in message and "without --litert" in message
    check_litert_memory("B", weights, available=LITERT_WEIGHT_COPIES * weights)  # enough
    available = available_memory()  # this machine's, read from /proc and the cgroup
    assert available is None or available > 0


def test_convert_with_litert_refuses_short_memory_before_any_work(tmp_path, monkeypatch):
    import converter
    from converter import litert
    from converter.errors import ConversionError

    monkeypatch.setattr(litert, "available_memory", lambda: 2**20)
    seen = []
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match="--litert needs about"):
        converter.convert(TINY_FT, str(out), synthetic=True, litert=True, progress=False,
                          on_phase=seen.append)
    assert seen == []  # no phase started: nothing read, built or written
    assert not out.exists() or os.listdir(out) == []
