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


def test_litert_memory_check_is_one_line_naming_the_need_and_a_fix_for_either_command():
    from converter.errors import ConversionError
    from converter.litert import available_memory, check_litert_memory, litert_memory_needed

    weights = 346_139_200  # ViT-B FT
    with pytest.raises(ConversionError) as caught:
        check_litert_memory("TFVideoMAE_B_K400_16x224_FT", weights, available=2**30)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("TFVideoMAE_B_K400_16x224_FT: --litert")
    assert f"needs about {litert_memory_needed(weights) / 2**30:.1f} GiB" in message
    assert "1.0 GiB is available" in message
    # called by videomae-convert and videomae-export alike: before, it said "convert without
    # --litert" to an export
    assert message.endswith("; run the command again without --litert (its other artifacts "
                            "need far less), or on a machine with more memory")
    check_litert_memory("B", weights, available=litert_memory_needed(weights))  # enough
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


def _keras_outputs(model, entry, video):
    from converter.kinds import kind_of
    from converter.proofs import outputs_to_numpy

    kind = kind_of(entry)
    named = kind.named(outputs_to_numpy(model(video, training=False)))
    return [named[name] for name in sorted(kind.outputs)]


def test_tflite_written_from_stand_ins_is_the_plain_conversion_byte_for_byte(tiny_tflite,
                                                                             tiny_converted):
    """The weights go in after the conversion (stand-ins in the converted graph): the file
    is what converting the frozen model itself writes under the same converter settings, and
    it computes what the Keras model computes."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    from converter.litert import (_serving_function, convert_frozen, make_interpreter,
                                  run_litert)

    path, model = tiny_tflite
    entry = tiny_converted.entry
    plain = convert_frozen(convert_variables_to_constants_v2(
        _serving_function(model, entry).get_concrete_function()))
    with open(path, "rb") as handle:
        assert handle.read() == plain
    clip = random_clip_nthwc(entry, batch=2, seed=3)
    for found, expected in zip(run_litert(make_interpreter(path), clip),
                               _keras_outputs(model, entry, clip)):
        assert np.max(np.abs(found - expected)) <= TOLERANCE


def test_tflite_in_the_buffer_offset_layout_runs_and_matches_keras(tiny_tflite, tiny_converted,
                                                                   tmp_path, monkeypatch):
    """Past the flatbuffer's 2 GB the weights go after it (buffer-offset layout); the pinned
    runtime reads such a file. Here the layout is forced on the tiny model."""
    from tensorflow.lite.python import schema_py_generated as schema

    from converter import litert

    _, model = tiny_tflite
    entry = tiny_converted.entry
    monkeypatch.setattr(litert, "LITERT_INLINE_LIMIT", 0)
    path = str(tmp_path / "offset.tflite")
    litert.export_litert(model, entry, path)
    with open(path, "rb") as handle:
        data = handle.read()
    flat = schema.Model.GetRootAsModel(data, 0)
    buffers = [flat.Buffers(i) for i in range(flat.BuffersLength())]
    assert any(b.Offset() > 1 for b in buffers) and not any(b.DataLength() > 64 for b in buffers)
    clip = random_clip_nthwc(entry, batch=2, seed=4)
    for found, expected in zip(litert.run_litert(litert.make_interpreter(path), clip),
                               _keras_outputs(model, entry, clip)):
        assert np.max(np.abs(found - expected)) <= TOLERANCE


def _edited_copy(path, tmp_path, model, edit):
    """A copy of the ``.tflite`` at ``path`` with ``edit(data, variables) -> data`` applied."""
    with open(path, "rb") as handle:
        data = handle.read()
    variables = {v.path: np.asarray(v.numpy(), dtype=np.float32) for v in model.weights}
    edited = edit(data, variables)
    assert edited != data
    target = str(tmp_path / "edited.tflite")
    with open(target, "wb") as handle:
        handle.write(edited)
    return target


def _replace(data, old, new):
    assert data.count(old.tobytes()) == 1
    return data.replace(old.tobytes(), np.ascontiguousarray(new).tobytes())


@pytest.mark.parametrize("edit", ["square kernel not transposed", "two blocks' fc1 swapped"])
def test_litert_check_catches_a_weight_written_into_the_wrong_buffer(
        tiny_tflite, tiny_converted, tiny_references, tmp_path, edit):
    """What writing the weights after the conversion could get wrong: a square
    ``FULLY_CONNECTED`` weight left in Keras's [in, out] order, or two same-shape weights
    swapped. The parity clips through the reloaded file name it."""
    from converter.errors import ParityError
    from converter.proofs import prove_artifact

    path, model = tiny_tflite
    entry = tiny_converted.entry
    assert prove_artifact(entry, "litert", path, tiny_references, None, None).passed

    def square_not_transposed(data, variables):
        kernel = variables["blocks_0/attn/proj/kernel"]
        assert kernel.shape[0] == kernel.shape[1]
        return _replace(data, kernel.T, kernel)

    def fc1_swapped(data, variables):
        first, second = (variables[f"blocks_{i}/mlp/fc1/kernel"] for i in (0, 1))
        data = _replace(data, first.T, np.full_like(first.T, np.nan))
        data = _replace(data, second.T, first.T)
        return _replace(data, np.full_like(first.T, np.nan), second.T)

    edits = {"square kernel not transposed": square_not_transposed,
             "two blocks' fc1 swapped": fc1_swapped}
    edited = _edited_copy(path, tmp_path, model, edits[edit])
    with pytest.raises(ParityError, match="litert"):
        prove_artifact(entry, "litert", edited, tiny_references, None, None)


def test_litert_is_written_and_checked_before_the_keras_parity_and_its_failure_still_fails(
        tmp_path, monkeypatch):
    """The ``.tflite`` is checked while TensorFlow's memory pool holds little more than the
    model (docs/BENCHMARKS.md); a failed check still fails the conversion, after the parity
    ran, and leaves nothing under a final name."""
    import converter
    from converter import proofs
    from converter.errors import ParityError

    real = proofs.RELOADERS["litert"]

    def shifted(entry, path):
        run = real(entry, path)
        return lambda case: {k: v + 1e-3 for k, v in run(case).items()}
    monkeypatch.setitem(proofs.RELOADERS, "litert", shifted)
    seen, out = [], tmp_path / "out"
    with pytest.raises(ParityError, match="reloaded litert"):
        converter.convert(TINY_FT, str(out), synthetic=True, litert=True, progress=False,
                          on_phase=seen.append)
    assert seen.index("write .tflite") < seen.index("reload litert") < seen.index("keras parity")
    assert "write SavedModel" not in seen  # failed before the other artifacts
    assert not out.exists() or os.listdir(out) == []  # no lock or staging folder either


def test_a_wrong_mapping_with_litert_fails_on_the_keras_parity_naming_the_block(
        tmp_path, monkeypatch):
    """The LiteRT check runs first and fails too; the error raised is the in-memory
    parity's, which names the first divergent block."""
    import converter
    from converter import api
    from converter.errors import ParityError

    real = api.map_tensors

    def map_then_corrupt(state, variables, *args, **kwargs):
        real(state, variables, *args, **kwargs)
        kernel = variables["blocks.1.mlp.fc1.kernel"]
        noise = np.random.default_rng(0).standard_normal(kernel.shape) * 0.05
        kernel.assign(kernel.numpy() + noise.astype(np.float32))
    monkeypatch.setattr(api, "map_tensors", map_then_corrupt)
    with pytest.raises(ParityError, match=r"parity of .* failed: .*first divergent block: "
                                          r"blocks.1 "):
        converter.convert(TINY_FT, str(tmp_path / "out"), synthetic=True, litert=True,
                          progress=False)


def _readme_litert_section():
    from conftest import REPO_ROOT

    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        return handle.read().split("## Deploy with LiteRT", 1)[1].split("\n## ", 1)[0]


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_the_readmes_litert_snippet_on_a_real_videos_views_prints_what_predict_does(
        tiny_tflite, tiny_converted):
    """A deployer's run: the README's snippet as written (its path and shape the tiny file's),
    fed what the README says the input is, gives videomae-predict's per-view logits. Before,
    the section never said the input is normalised float views (nor how they are made), and
    called the classifier's output `logits`, a name the file does not carry."""
    from tf_models.video import classify_video, load_video_model, normalize_views, read_views
    from tf_models.video.predict import model_protocol
    from video_helpers import shipped_videos

    section = _readme_litert_section()
    for said in ("tf_models.video.read_views", "tf_models.video.normalize_views",
                 "uint8", "LiteRT names it `Identity`"):
        assert said in section, said
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    path, _ = tiny_tflite
    model = load_video_model(tiny_converted.paths["keras"])
    video_file = shipped_videos()["bikes.mp4"]
    protocol = model_protocol(model)
    video = normalize_views(read_views(video_file, protocol), protocol.mean, protocol.std)
    code = (snippet.replace('"weights/TFVideoMAE_S_K400_16x224_FT.tflite"', repr(path))
            .replace("[2, 16, 224, 224, 3]", repr(list(video.shape))))
    assert code != snippet and repr(path) in code and repr(list(video.shape)) in code
    namespace = {"video": video}
    exec(code, namespace)
    interpreter = namespace["interpreter"]
    assert interpreter.get_output_details()[0]["name"] == "Identity"
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    expected = np.asarray(classify_video(model, video_file)["view_logits"])
    assert namespace["logits"].shape == expected.shape == (15, 400)
    assert np.max(np.abs(namespace["logits"] - expected)) <= TOLERANCE


@pytest.mark.parametrize("suffix", [".tflite", ".int8.tflite"])
def test_a_tflite_given_as_model_says_where_it_runs_and_which_file_to_give(tmp_path, suffix):
    """``videomae-predict --model NAME.tflite`` (any --model): before, "expected a .keras or
    .weights.h5 file, ..." with no word on the .tflite or on the file beside it to pass."""
    from click.testing import CliRunner

    from videomae_cli.video import predict_command

    path = tmp_path / f"{TINY_FT}{suffix}"
    path.write_bytes(b"TFL3")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    result = CliRunner().invoke(predict_command, [str(video), "--model", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"error: {path}: a LiteRT file runs in the LiteRT interpreter (README, \"Deploy with "
        f"LiteRT\"); pass the {TINY_FT}.keras beside it"]
