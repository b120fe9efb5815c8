"""``--litert-quantize fp16|int8``: the smaller ``.tflite`` files users ship, written from
stand-in weights like the fp32 file, measured against the float64 reference and, on real
videos, by their top-1 / top-5 agreement with it."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import TINY_FT, TINY_PT, assert_one_line_error, run_cli
from video_helpers import shipped_videos

MODES = ("fp16", "int8")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """One tiny conversion with both quantised files and a real video (the CLI, in-process)."""
    out = tmp_path_factory.mktemp("quantized") / "out"
    video = shipped_videos()["bikes.mp4"]
    result = run_cli(["--name", TINY_FT, "--synthetic", "--out", str(out), "-q",
                      "--litert-quantize", "fp16", "--litert-quantize", "int8", "--video", video])
    assert result.exit_code == 0, result.output
    return out, result, video


def _path(out, kind):
    from tf_models.artifacts.names import SUFFIXES

    return os.path.join(out, TINY_FT + SUFFIXES[kind])


def test_quantized_files_are_smaller_measured_against_float64_with_top_k_on_a_real_video(
        quantized, tmp_path):
    from tf_models.artifacts.names import entry_name, kind_of_path

    out, result, video = quantized
    with open(_path(out, "report")) as handle:
        report = json.load(handle)
    weights = len(_keras_model(out).weights)
    # the video's float64 reference, computed again from the synthetic checkpoint
    reference64, clip = _video_reference(video)
    fp32 = os.path.getsize(_path(out, "litert"))
    for mode, share in (("fp16", 0.6), ("int8", 0.75)):  # the tiny graph's own bytes stay
        kind = f"litert_{mode}"
        path = _path(out, kind)
        assert kind_of_path(path) == kind and entry_name(path) == TINY_FT
        assert os.path.getsize(path) < share * fp32
        assert report["artifact_bytes"][kind] == os.path.getsize(path)
        check = report["reload_checks"][kind]
        assert check["method"] == "quantized" and check["passed"]
        # rounding shows (an fp32 file is ~1e-7 off), within the mode's bound
        assert 1e-6 < check["tf_err_vs_f64"] <= check["max_abs"] <= check["tolerance"]
        # every float32 variable of the model read back from the file when it was written
        assert check["weights_proven"] == weights
        assert check["video_clips"] == 1
        assert (check["top1_agreement"], check["top5_agreement"]) == _top_k(
            _path(out, kind), [reference64.outputs64["logits"][0]], clip)
        assert f"{kind}: max |difference| vs float64" in result.stdout
    # the fp32 file is still held to parity
    assert report["reload_checks"]["litert"]["method"] == "outputs"
    assert report["reload_checks"]["litert"]["max_abs"] <= 1e-5
    # the same command again verifies the files and skips; without the files, it says so
    again = run_cli(["--name", TINY_FT, "--synthetic", "--out", str(out), "-q",
                     "--litert-quantize", "int8", "--video", video])
    assert again.exit_code == 0 and "skipped" in again.stdout, again.output
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    os.remove(_path(copy, "litert_int8"))
    line = assert_one_line_error(run_cli(["--name", TINY_FT, "--synthetic", "--out", str(copy),
                                          "--litert-quantize", "int8"]), 2)
    assert TINY_FT + ".int8.tflite is missing" in line and "--force" in line
    # a report without a mode's file: converted without it
    with open(_path(copy, "report")) as handle:
        report = json.load(handle)
    for key in ("artifact_sha256", "artifact_bytes"):
        del report[key]["litert_int8"]
    with open(_path(copy, "report"), "w") as handle:
        json.dump(report, handle)
    line = assert_one_line_error(run_cli(["--name", TINY_FT, "--synthetic", "--out", str(copy),
                                          "--litert-quantize", "int8"]), 2)
    assert "converted without --litert-quantize int8" in line and "--force" in line


def _keras_model(out):
    import keras

    return keras.saving.load_model(_path(out, "keras"), compile=False)


def _video_reference(video):
    """The float64 torch reference of ``video``'s clip (seed 0 synthetic checkpoint, as the
    fixture's conversion), and the clip NTHWC."""
    import tempfile

    from converter.checkpoint import read_checkpoint
    from converter.kinds import build_torch_model, parity_reference
    from converter.parity import float64_outputs, video_case
    from converter.synthetic import synthetic_path, write_synthetic_checkpoint
    from converter.zoo import get_entry

    entry = get_entry(TINY_FT)
    case = video_case(video, entry)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, folder), 0)
        torch_model = build_torch_model(entry)
        torch_model.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    (reference,) = float64_outputs(parity_reference(entry, torch_model), [case])
    return reference, case.video_ncthw.transpose(0, 2, 3, 4, 1)


def _top_k(path, expected_logits, clips_nthwc):
    """(top-1, top-5 agreement) of the file at ``path`` with ``expected_logits`` (one row a
    clip), computed here: the share of clips with the same largest logit / five largest."""
    from converter.litert import make_interpreter, run_litert

    interpreter = make_interpreter(path)
    top1 = top5 = 0
    for expected, clip in zip(expected_logits, clips_nthwc):
        (found,) = run_litert(interpreter, clip[None])
        top1 += int(np.argmax(found[0]) == np.argmax(expected))
        top5 += int(sorted(np.argsort(found[0])[-5:]) == sorted(np.argsort(expected)[-5:]))
    return top1 / len(expected_logits), top5 / len(expected_logits)


def _tensors(data):
    """{tensor name: (type, shape, buffer bytes, scales, zero points, axis)} of a flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    found = {}
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        buffer = model.Buffers(tensor.Buffer())
        q = tensor.Quantization()
        found[tensor.Name().decode()] = (
            tensor.Type(), tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else [],
            buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b"",
            None if q is None else (q.ScaleAsNumpy().tolist() if q.ScaleLength() else [],
                                    q.ZeroPointAsNumpy().tolist() if q.ZeroPointLength() else [],
                                    q.QuantizedDimension()))
    return found


def test_quantized_files_hold_the_converters_own_quantisation_of_the_real_weights(
        tiny_converted, tmp_path):
    """Each file written from stand-ins holds what TensorFlow's converter writes when it
    quantises the real weights itself: fp16 byte for byte; int8 tensor by tensor (values,
    channel scales, zero points; its shared stand-in buffers were split, so the layout
    differs). An all-zero and a near-zero output channel take the converter's floor."""
    import keras
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    from converter import litert

    entry = tiny_converted.entry
    model = keras.saving.load_model(tiny_converted.paths["keras"], compile=False)
    (kernel,) = [v for v in model.weights if v.path == "blocks_0/mlp/fc1/kernel"]
    values = np.array(kernel.numpy())
    values[:, 3] = 0
    values[:, 4] *= 1e-6
    kernel.assign(values)
    for mode in MODES:
        path = str(tmp_path / f"{mode}.tflite")
        litert.export_litert(model, entry, path, mode)
        plain = litert.convert_frozen(convert_variables_to_constants_v2(
            litert._serving_function(model, entry).get_concrete_function()), False, mode)
        with open(path, "rb") as handle:
            written = handle.read()
        if mode == "fp16":
            assert written == plain
        else:
            found, expected = _tensors(written), _tensors(plain)
            assert found.keys() == expected.keys()
            assert [n for n in found if found[n] != expected[n]] == []
            int8 = [n for n, t in found.items() if t[0] == schema.TensorType.INT8]
            assert len(int8) == 9  # every dense weight: 2 blocks x (qkv, proj, fc1, fc2), head


def _spans(data, *keys):
    """{key: the bytes of the quantised weight (fp16 or int8) whose tensor name contains
    key} in the ``.tflite`` flatbuffer ``data``."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytes(data), 0)
    graph = model.Subgraphs(0)
    spans = {}
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        name = tensor.Name().decode()
        for key in keys:
            if key in name and tensor.Type() in (schema.TensorType.FLOAT16,
                                                 schema.TensorType.INT8):
                buffer = model.Buffers(tensor.Buffer())
                start = buffer._tab.Vector(buffer._tab.Offset(4))
                spans[key] = slice(start, start + buffer.DataLength())
    return spans


def _edited(path, tmp_path, edit, prefix=""):
    """A copy of the ``.tflite`` at ``path`` in ``tmp_path``, ``edit(bytearray)`` applied."""
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    edit(data)
    target = str(tmp_path / (prefix + os.path.basename(path)))
    with open(target, "wb") as handle:
        handle.write(data)
    return target


def _swapped(path, tmp_path, first, second):
    """A copy of the ``.tflite`` at ``path`` with the buffers of two same-shape tensors (names
    containing ``first`` / ``second``, the quantised weight of each) swapped."""
    def swap(data):
        spans = _spans(data, first, second)
        a, b = spans[first], spans[second]
        data[a], data[b] = data[b], data[a]
    return _edited(path, tmp_path, swap)


def _zeroed(path, tmp_path, key):
    """A copy of the ``.tflite`` at ``path`` whose quantised weight named ``key`` is zeros
    (its scales kept): what a writer that skipped the weight would leave."""
    def zero(data):
        span = _spans(data, key)[key]
        data[span] = bytes(span.stop - span.start)
    return _edited(path, tmp_path, zero, "zeroed-")


@pytest.mark.parametrize("mode", MODES)
def test_quantized_check_catches_a_weight_written_into_the_wrong_place(
        quantized, tiny_references, tmp_path, mode):
    from converter.errors import ParityError
    from converter.proofs import prove_quantized
    from converter.zoo import get_entry

    out, _, _ = quantized
    entry, kind = get_entry(TINY_FT), f"litert_{mode}"
    assert prove_quantized(entry, kind, _path(out, kind), tiny_references).passed
    # the two blocks' attention projections: 0.14 of the largest output (int8's own rounding:
    # 0.009; two blocks' fc1 swapped, 0.044, passes int8's bound: litert.QUANTIZATIONS)
    edited = _swapped(_path(out, kind), tmp_path, "blocks_0_1/attn_1/proj_1/MatMul",
                      "blocks_1_1/attn_1/proj_1/MatMul")
    with pytest.raises(ParityError, match=f"{kind} of {TINY_FT}.*bound"):
        prove_quantized(entry, kind, edited, tiny_references)


@pytest.mark.parametrize("mode", MODES)
def test_weight_proof_names_a_weight_missing_from_or_misplaced_in_the_file(
        quantized, tmp_path, mode):
    """The output bound passes a file with a whole weight matrix zeroed (int8: fc2 moves the
    outputs by 1.2 % of the largest, the bound is 10 %) or two blocks' fc1 swapped; reading
    the weights back from the file names each such weight."""
    from converter.errors import ParityError
    from converter.proofs import prove_litert_weights
    from converter.zoo import get_entry

    out, _, _ = quantized
    entry, kind = get_entry(TINY_FT), f"litert_{mode}"
    model = _keras_model(out)
    assert prove_litert_weights(entry, kind, _path(out, kind), model) == len(model.weights)
    zeroed = _zeroed(_path(out, kind), tmp_path, "blocks_1_1/mlp_1/fc2_1/MatMul")
    with pytest.raises(ParityError, match=f"{kind} of {TINY_FT}: .*: 1 weight.* "
                                          f"- blocks_1/mlp/fc2/kernel: '.*fc2_1/MatMul'"):
        prove_litert_weights(entry, kind, zeroed, model)
    swapped = _swapped(_path(out, kind), tmp_path, "blocks_0_1/mlp_1/fc1_1/MatMul",
                       "blocks_1_1/mlp_1/fc1_1/MatMul")
    with pytest.raises(ParityError, match="2 weight.* - blocks_0/mlp/fc1/kernel: .*; "
                                          "- blocks_1/mlp/fc1/kernel: "):
        prove_litert_weights(entry, kind, swapped, model)


def test_top_k_agreement_is_the_share_of_clips_whose_top_classes_are_the_references(
        quantized, tiny_references):
    """The parity clips measured as if they were videos, twice, and once against their
    reference's logits negated (so its top classes are the file's least likely; fewer clips,
    so a comparison turned upside down shows): the recorded shares are those counted here
    from the reference's and the interpreter's logits."""
    import dataclasses

    from converter.parity import ncthw_to_nthwc
    from converter.proofs import prove_quantized
    from converter.zoo import get_entry

    out, _, _ = quantized
    negated = [dataclasses.replace(r, outputs32={k: -v for k, v in r.outputs32.items()},
                                   outputs64={k: -v for k, v in r.outputs64.items()})
               for r in tiny_references]
    videos = 2 * list(tiny_references) + negated
    path = _path(out, "litert_int8")
    check = prove_quantized(get_entry(TINY_FT), "litert_int8", path, tiny_references[:1], videos)
    expected = [r.best("logits")[i] for r in videos for i in range(len(r.case.samples()))]
    clips = [ncthw_to_nthwc(s.video_ncthw)[0] for r in videos for s in r.case.samples()]
    assert check.video_clips == len(clips) >= 6
    assert (check.top1_agreement, check.top5_agreement) == _top_k(path, expected, clips)
    assert 0 < check.top1_agreement < 1 and 0 < check.top5_agreement < 1


def test_litert_quantize_refuses_in_one_line_what_it_cannot_do(tmp_path):
    out = tmp_path / "out"
    video = shipped_videos()["bikes.mp4"]
    base = ["--synthetic", "--out", str(out)]
    line = assert_one_line_error(run_cli(["--name", TINY_FT, "--video", video] + base), 2)
    assert "--litert-quantize" in line
    line = assert_one_line_error(run_cli(["--name", TINY_PT, "--litert-quantize", "fp16"]
                                         + base), 2)
    assert "pre-trained" in line
    line = assert_one_line_error(run_cli(["--all", "--size", "T", "--litert-quantize", "int8",
                                          "--video", str(tmp_path / "gone.mp4")] + base), 2)
    assert "gone.mp4: no such file" in line
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    line = assert_one_line_error(run_cli(["--name", TINY_FT, "--litert-quantize", "int8",
                                          "--video", str(not_a_video)] + base), 2)
    assert "notes.mp4" in line
    line = assert_one_line_error(run_cli(["--name", TINY_FT, "--encoder-only",
                                          "--litert-quantize", "int8", "--video", video]
                                         + base), 2)
    assert "--encoder-only writes features: drop --video" in line
    assert not out.exists() or os.listdir(out) == []


def test_a_rerun_asking_for_more_video_clips_than_the_report_measured_is_refused(quantized,
                                                                             tmp_path):
    """Before: a rerun with --video into a folder whose quantised files were measured on fewer
    clips (none: converted without --video) said "skipped" and exit 0, and the report gave no
    top-k agreement for the videos asked for; as for a missing --litert-quantize mode, one line
    asking for --force. The same videos again still skip."""
    out, _, video = quantized
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    base = ["--name", TINY_FT, "--synthetic", "--out", str(copy), "-q",
            "--litert-quantize", "fp16", "--litert-quantize", "int8", "--video", video]
    again = run_cli(base)
    assert again.exit_code == 0 and "skipped" in again.output, again.output
    before = sorted(os.listdir(copy))
    line = assert_one_line_error(run_cli(
        base + ["--video", shipped_videos()["carphone_pristine.mp4"]]), 2)
    assert line == (f"error: {copy / TINY_FT}.json: artifacts of {TINY_FT} already exist and "
                    f"their .fp16.tflite's top-k agreement was measured on 1 --video clip(s), "
                    f"not 2; pass --force to overwrite")
    assert sorted(os.listdir(copy)) == before


def test_a_folder_given_as_video_is_refused_as_a_folder(tmp_path):
    """``convert(..., videos=[FOLDER])``: before, "no such file" (of a folder that is there);
    ``videomae-convert --video FOLDER``: before, click's three-line usage error."""
    from converter import convert
    from converter.errors import ConversionError

    folder = tmp_path / "videos"
    folder.mkdir()
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as caught:
        convert(TINY_FT, str(out), synthetic=True, litert_quantize=["int8"],
                videos=[str(folder)], progress=False)
    assert str(caught.value) == (f"--video {folder}: is a folder, expected a video file; "
                                 f"pass one of its videos")
    line = assert_one_line_error(run_cli(["--name", TINY_FT, "--synthetic", "--out", str(out),
                                          "--litert-quantize", "int8", "--video",
                                          str(folder)]), 2)
    assert line == f"error: --video {folder}: is a folder, expected a video file; pass one of " \
                   f"its videos"
    assert not out.exists() or os.listdir(out) == []


def test_convert_refuses_an_unknown_quantisation_before_any_work(tmp_path):
    """``convert(..., litert_quantize=["int4"])`` (or a str's letters): before, a ValueError
    traceback once the torch reference had run."""
    from converter import ConversionError, convert

    with pytest.raises(ConversionError, match="^litert_quantize 'int4': not a quantisation"):
        convert(TINY_FT, str(tmp_path / "out"), synthetic=True, progress=False,
                litert_quantize=["int4"])
    assert not (tmp_path / "out").exists()


def test_a_repeated_quantisation_mode_writes_and_checks_its_file_once(tmp_path, monkeypatch):
    """Before: ``--litert-quantize fp16 --litert-quantize fp16`` wrote, proved and timed the
    .fp16.tflite twice (two more phases on the bar); now each mode once."""
    import converter.api

    class Stop(Exception):
        pass

    seen = {}

    def phases(name, progress, on_phase=None, litert=False, total=None, quantize=0):
        seen.update(litert=litert, quantize=quantize)
        raise Stop
    monkeypatch.setattr(converter.api, "PhaseBar", phases)
    with pytest.raises(Stop):
        converter.api.convert(TINY_FT, str(tmp_path / "out"), synthetic=True, progress=False,
                              litert_quantize=("fp16", "int8", "fp16"))
    assert seen == {"litert": True, "quantize": 2}


def test_all_passes_the_quantised_files_and_videos_to_each_fine_tuned_child(tmp_path):
    from converter.batch import _child_command
    from converter.zoo import get_entry

    def command(name):
        return _child_command(get_entry(name), str(tmp_path), None, True, 0, False, "o.json",
                              False, False, ("fp16", "int8"), ("clip.mp4",))
    flags = command(TINY_FT)
    assert flags[flags.index("--litert"):] == [
        "--litert", "--litert-quantize", "fp16", "--litert-quantize", "int8", "--video",
        os.path.abspath("clip.mp4")]
    assert "--litert-quantize" not in command(TINY_PT)  # its row says it has no .tflite


def test_an_fp16_file_in_the_buffer_offset_layout_computes_what_the_inline_one_does(
        quantized, tmp_path, monkeypatch):
    """ViT-g's fp16 file (2 GB) keeps its weights after the flatbuffer; forced here on the
    tiny model, the stand-ins are found there and the file runs as the inline one does."""
    import keras
    from tensorflow.lite.python import schema_py_generated as schema

    from converter import litert
    from converter.zoo import get_entry

    out, _, _ = quantized
    entry = get_entry(TINY_FT)
    model = keras.saving.load_model(_path(out, "keras"), compile=False)
    monkeypatch.setattr(litert, "LITERT_INLINE_LIMIT", 0)
    path = str(tmp_path / "offset.fp16.tflite")
    litert.export_litert(model, entry, path, "fp16")
    with open(path, "rb") as handle:
        flat = schema.Model.GetRootAsModel(handle.read(), 0)
    assert any(flat.Buffers(i).Offset() > 1 for i in range(flat.BuffersLength()))
    # the weights are read back from after the flatbuffer too
    from converter.proofs import prove_litert_weights

    assert prove_litert_weights(entry, "litert_fp16", path, model) == len(model.weights)
    clip = np.random.default_rng(5).standard_normal(
        (2, entry.num_frames, entry.img_size, entry.img_size, 3), dtype=np.float32)
    found = litert.run_litert(litert.make_interpreter(path), clip)
    inline = litert.run_litert(litert.make_interpreter(_path(out, "litert_fp16")), clip)
    np.testing.assert_array_equal(found[0], inline[0])


def test_every_quantisation_mode_has_its_file_name_its_bound_and_its_choice():
    """The modes are declared once (``tf_models.artifacts.names``); the converter's table of
    what each one is has exactly those, and both command lines offer exactly those."""
    from converter.cli import main
    from converter.litert import QUANTIZATIONS
    from tf_models.artifacts.names import QUANTIZED_MODES, SUFFIXES, quantized_kind
    from videomae_cli.export import export_command

    assert tuple(QUANTIZATIONS) == QUANTIZED_MODES == MODES
    assert [SUFFIXES[quantized_kind(m)] for m in MODES] == [".fp16.tflite", ".int8.tflite"]
    for command in (main, export_command):
        (option,) = [p for p in command.params if p.name == "litert_quantize"]
        assert tuple(option.type.choices) == QUANTIZED_MODES
