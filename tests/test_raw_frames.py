"""``--raw-frames``: the SavedModel and the ``.tflite`` take uint8 frames at the entry's size
(scaling and the dataset's mean/std inside them), equal to the float model on
upstream-normalised frames; the reload checks run through the uint8 signatures, and the
report, the model card and the video tools say what the input is."""

import numpy as np
import pytest

import converter
from conftest import TINY_FT

TOLERANCE = 1e-5  # relative to the output's scale (at least 1)


@pytest.fixture(scope="module")
def raw_converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw_frames")
    return converter.convert(TINY_FT, str(out), synthetic=True, seed=0, litert=True,
                             raw_frames=True, progress=False)


def _frames(entry, batch=3, seed=11):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, entry.num_frames, entry.img_size, entry.img_size, 3),
                        dtype=np.uint8)


def _assert_close(found, expected, what):
    scale = max(1.0, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(np.asarray(found) - expected)))
    assert np.asarray(found).shape == expected.shape, what
    assert error <= TOLERANCE * scale, f"{what}: {error:.3g} (scale {scale:.3g})"


def test_raw_frames_exports_take_uint8_and_equal_the_float_model_on_normalised_frames(
        raw_converted):
    import keras
    import tensorflow as tf

    from converter.litert import make_interpreter, run_litert
    from tf_models.video import normalize_views

    entry, paths = raw_converted.entry, raw_converted.paths
    frames = _frames(entry)
    model = keras.saving.load_model(paths["keras"], compile=False)  # the float model
    expected = keras.ops.convert_to_numpy(
        model(normalize_views(frames, entry.mean, entry.std), training=False))

    serve = tf.saved_model.load(paths["savedmodel"]).signatures["serving_default"]
    assert serve.structured_input_signature[1]["video"].dtype == tf.uint8
    _assert_close(serve(video=tf.constant(frames))["logits"].numpy(), expected, "SavedModel")

    interpreter = make_interpreter(paths["litert"])
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    (found,) = run_litert(interpreter, frames)
    _assert_close(found, expected, ".tflite")


def test_raw_frames_reload_checks_ran_through_the_uint8_signatures(raw_converted):
    report = raw_converted.report
    assert report.entry["raw_frames"] is True
    for kind in ("savedmodel", "litert"):
        check = report.reload_checks[kind]
        # "outputs": every parity clip (seeded uint8 frames) through the reloaded artifact,
        # against the torch reference on their normalisation
        assert check.method == "outputs" and check.passed
        assert check.tf_err_vs_f64 <= report.parity.tolerance


def test_raw_frames_card_says_the_input_is_uint8(raw_converted):
    from converter.kinds import kind_of
    from converter.release import render_model_card

    entry, report = raw_converted.entry, raw_converted.report
    card = render_model_card(entry, report, "https://example.invalid", {})
    assert "- `video`: **uint8** RGB frames `[batch, 4, 32, 32, 3]`" in card
    assert "float32" not in kind_of(entry).video_contract(entry).split(";")[0]


def test_raw_frames_artifacts_are_not_taken_for_a_plain_conversion(raw_converted):
    out = raw_converted.paths["report"].rsplit("/", 1)[0]
    with pytest.raises(converter.ConversionError, match="converted with --raw-frames; pass "
                                                        "--force"):
        converter.convert(TINY_FT, out, synthetic=True, seed=0, progress=False)
    again = converter.convert(TINY_FT, out, synthetic=True, seed=0, litert=True,
                              raw_frames=True, progress=False)
    assert again.skipped


def test_video_tools_refuse_a_raw_frames_savedmodel_in_one_line(raw_converted):
    from tf_models.video.model import ModelError, load_video_model

    path = raw_converted.paths["savedmodel"]
    with pytest.raises(ModelError) as caught:
        load_video_model(path)
    message = str(caught.value)
    assert "takes raw uint8 frames (converted with --raw-frames" in message
    assert "\n" not in message
