"""The ``videomae-convert`` command: exit codes 0 / 1 / 2, one-line errors, no tracebacks."""

import json
import os

import torch  # noqa: F401  (torch side first)
from converter import mapping
from converter.export import artifact_paths
from converter.zoo import ZOO

import pytest  # noqa: E402

from conftest import TINY_FT, assert_one_line_error, copy_artifacts, run_cli  # noqa: E402

TINY = ["--size", "T", "--mode", "FT", "--dataset", "k400"]


_run = run_cli
_assert_one_line_error = assert_one_line_error


def _present(out):
    return [p for p in artifact_paths(str(out), TINY_FT).values() if os.path.lexists(p)]


def test_tiny_synthetic_conversion_exits_zero_with_artifacts(tmp_path):
    out = tmp_path / "out"
    result = _run(TINY + ["--synthetic", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert len(_present(out)) == 4
    assert f"{TINY_FT}: parity passed" in result.stdout
    for path in artifact_paths(str(out), TINY_FT).values():
        assert path in result.stdout
    # the progress bar goes to stderr, never stdout
    assert TINY_FT in result.stderr
    with open(artifact_paths(str(out), TINY_FT)["report"]) as handle:
        assert json.load(handle)["parity"]["passed"] is True


def test_help_lists_zoo_choices():
    result = _run(["--help"])
    assert result.exit_code == 0
    for size in sorted({e.size for e in ZOO.values()}):
        assert size in result.output
    for option in ("--size", "--mode", "--dataset", "--checkpoint", "--synthetic", "--out",
                   "--force", "--quiet"):
        assert option in result.output


def test_missing_out_exits_two(tmp_path):
    result = _run(TINY + ["--synthetic"])
    assert result.exit_code == 2
    assert "--out" in result.output
    assert "Traceback" not in result.output


def test_synthetic_with_checkpoint_exits_two(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    result = _run(TINY + ["--synthetic", "--checkpoint", tiny_checkpoint, "--out", str(out)])
    line = _assert_one_line_error(result, 2)
    assert "--synthetic" in line and "--checkpoint" in line
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (TINY + ["--synthetic", "--jobs", "4"], "--jobs 4 goes with --all"),
    (TINY + ["--synthetic", "--force-download"], "--synthetic converts no upstream download"),
    (TINY + ["--checkpoint", "x.pth", "--force-download"], "--checkpoint converts no upstream"),
    (["--all", "--synthetic", "--size", "T", "--force-download"], "downloads nothing"),
    (TINY + ["--synthetic", "--cache-dir", "c"],
     "error: --cache-dir goes with the upstream download, and --synthetic converts no upstream "
     "download: drop --cache-dir"),
    (TINY + ["--synthetic", "--cache-dir", "c", "--force-download", "--offline"],
     "error: --cache-dir, --force-download go with the upstream download, and --synthetic "
     "converts no upstream download: drop --cache-dir, --force-download"),
    (TINY + ["--checkpoint", "x.pth", "--cache-dir", "c"], "--checkpoint converts no upstream"),
    (["--all", "--synthetic", "--size", "T", "--cache-dir", "c"],
     "downloads nothing: drop --cache-dir"),
])
def test_an_option_that_does_nothing_with_the_others_exits_two(tmp_path, monkeypatch, args,
                                                               words):
    """Before: silently ignored (one entry ran with --jobs 4 in one process; --force-download
    downloaded nothing; --cache-dir, which only the upstream download reads, with
    --synthetic, --checkpoint or --all), as --checkpoint-dir without --all or --json without
    --list are not."""
    import converter.api

    def no_work(*args, **kwargs):
        raise AssertionError("the conversion started")
    monkeypatch.setattr(converter.api, "write_synthetic_checkpoint", no_work)
    out = tmp_path / "out"
    line = _assert_one_line_error(_run(args + ["-q", "--out", str(out)]), 2)
    assert words in line, line
    assert not out.exists()


@pytest.mark.parametrize("args", [
    TINY + ["--synthetic", "--offline"],
    TINY + ["--checkpoint", "x.pth", "--offline"],
    ["--all", "--synthetic", "--size", "T", "--offline"],
])
def test_offline_is_kept_where_nothing_downloads(args):
    """--offline promises that nothing is downloaded, and a run from --synthetic,
    --checkpoint or --all keeps it (a script may pass it always): the options are accepted,
    unlike --cache-dir and --force-download there, which would be ignored."""
    from converter.cli_options import options_refusal
    from converter.cli import main

    context = main.make_context("videomae-convert", args + ["--out", "o"])
    assert options_refusal(**context.params) is None


@pytest.mark.parametrize("extra, named", [
    (["--family", "v2"], "--family"),
    (["--size", "S", "--mode", "PT"], "--size, --mode"),
    (["--out", "weights"], "--out"),
])
def test_list_with_options_it_would_ignore_exits_two(extra, named):
    """Before: ``--list --family v2`` listed every entry, V1's too, as if the filter held."""
    line = _assert_one_line_error(_run(["--list", "--json"] + extra), 2)
    assert line == f"error: --list lists every zoo entry and takes only --json; drop {named}"


def test_a_seed_over_64_bits_is_a_usage_error():
    """Before: accepted, then torch.Generator's 'Overflow when unpacking long long' traceback
    once the synthetic checkpoint was written."""
    result = _run(TINY + ["--synthetic", "--seed", str(2**64), "--out", "unused"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"Invalid value for '--seed': {2**64} is not in the range" in result.output


def test_bad_checkpoint_path_exits_two_with_one_line(tmp_path):
    missing = str(tmp_path / "nowhere" / "videomae_b_k400.pth")
    out = tmp_path / "out"
    result = _run(["--size", "B", "--mode", "FT", "--dataset", "k400", "--checkpoint", missing,
                   "--out", str(out), "-q"])
    line = _assert_one_line_error(result, 2)
    assert line.startswith("error:")
    assert missing in line
    assert not out.exists() or os.listdir(out) == []


def test_text_file_as_checkpoint_exits_two_with_one_line(tmp_path):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("these are not weights\n")
    result = _run(["--size", "S", "--checkpoint", str(bogus), "--out", str(tmp_path / "o"),
                   "-q"])
    line = _assert_one_line_error(result, 2)
    assert str(bogus) in line


def test_checkpoint_for_the_wrong_size_exits_two(tmp_path, tiny_checkpoint):
    """A tiny checkpoint given as ViT-S: the mapping (or a shape check before it) refuses."""
    result = _run(["--size", "S", "--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "o"),
                   "-q"])
    _assert_one_line_error(result, 2)
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []


def test_checkpoint_file_converts_and_is_recorded(tmp_path, tiny_checkpoint):
    from converter.checkpoint import sha256_file

    out = tmp_path / "o"
    result = _run(TINY + ["--checkpoint", tiny_checkpoint, "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(artifact_paths(str(out), TINY_FT)["report"]) as handle:
        source = json.load(handle)["source"]
    assert source["path"] == os.path.abspath(tiny_checkpoint)
    assert source["sha256"] == sha256_file(tiny_checkpoint)
    assert source["synthetic_seed"] is None
    assert source["container_key"] == "module"


@pytest.mark.parametrize("size,dataset", [("L", "ssv2"), ("H", "ucf101"), ("S", "ucf101")])
def test_combination_without_zoo_entry_exits_two(tmp_path, size, dataset):
    result = _run(["--size", size, "--mode", "FT", "--dataset", dataset, "--synthetic",
                   "--out", str(tmp_path / "o")])
    line = _assert_one_line_error(result, 2)
    assert "no zoo entry" in line
    assert f"size {size}" in line
    assert not (tmp_path / "o").exists()


# (hmdb51 was the unknown dataset here until VideoMAE V2 brought it into the zoo)
@pytest.mark.parametrize("args", [["--size", "XL"], ["--mode", "ZZ"], ["--dataset", "hmdb52"],
                                  ["--family", "v3"]])
def test_unknown_choice_exits_two(tmp_path, args):
    base = {"--size": "T", "--mode": "FT", "--dataset": "k400"}
    base[args[0]] = args[1]  # --family: added to the flags
    flat = [item for pair in base.items() for item in pair]
    result = _run(flat + ["--synthetic", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert args[1] in result.output


def test_present_artifacts_from_another_source_exit_two_without_force(tmp_path, snapshot,
                                                                       tiny_converted):
    # present: a copy of the session's seed-0 conversion (what the CLI writes: see
    # test_tiny_synthetic_conversion_exits_zero_with_artifacts)
    out = copy_artifacts(tiny_converted, tmp_path / "out")
    before = snapshot(out)
    result = _run(TINY + ["--synthetic", "--seed", "1", "-q", "--out", str(out)])
    line = _assert_one_line_error(result, 2)
    assert "--force" in line
    assert snapshot(out) == before

    forced = _run(TINY + ["--synthetic", "--seed", "1", "-q", "--force", "--out", str(out)])
    assert forced.exit_code == 0, forced.output
    with open(artifact_paths(str(out), TINY_FT)["report"]) as handle:
        assert json.load(handle)["source"]["synthetic_seed"] == 1
    # -q hides the progress bar (merged here from test_quiet_hides_the_progress_bar, which
    # cost a conversion of its own): a whole conversion, nothing on stderr
    assert forced.stderr.strip() == ""
    assert f"{TINY_FT}: parity passed" in forced.stdout
    assert len(_present(out)) == 4


def test_same_source_again_is_skipped_with_exit_zero(tmp_path, snapshot, tiny_converted):
    out = copy_artifacts(tiny_converted, tmp_path / "out")  # the session's seed-0 conversion
    before = snapshot(out)
    again = _run(TINY + ["--synthetic", "--seed", "0", "-q", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "skipped" in again.stdout
    assert snapshot(out) == before


def test_same_source_again_is_verified_in_a_read_only_folder_without_writing_there(
        tmp_path, snapshot, tiny_converted):
    """Re-verifying only reads. Before: the folder was tried for writing first (a hidden probe
    file made and removed), so a read-only --out (a shared mount, a release folder) stopped
    with ``cannot write there``. Its folders are made read-only (which root ignores), and their
    own times set back: a file made or removed in one, even for a moment, changes its time."""
    out = copy_artifacts(tiny_converted, tmp_path / "out")
    folders = [root for root, _, _ in os.walk(out)]
    for folder in folders:
        os.chmod(folder, 0o555)
        os.utime(folder, ns=(10**18, 10**18))
    before = snapshot(out), {folder: os.stat(folder).st_mtime_ns for folder in folders}
    try:
        again = _run(TINY + ["--synthetic", "--seed", "0", "-q", "--out", str(out)])
        after = snapshot(out), {folder: os.stat(folder).st_mtime_ns for folder in folders}
    finally:
        for folder in folders:
            os.chmod(folder, 0o755)
    assert again.exit_code == 0, again.output
    assert f"{TINY_FT}: skipped: artifacts already present and verified" in again.stdout
    assert after == before


def test_out_that_is_a_file_exits_two(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = _run(TINY + ["--synthetic", "--out", str(target)])
    line = _assert_one_line_error(result, 2)
    assert str(target) in line


@pytest.mark.parametrize("where", ["under_a_file", "name_too_long", "proc"])
def test_an_out_that_cannot_be_made_is_one_line_before_any_work(tmp_path, monkeypatch, where):
    """Permission bits do not say it (these tests may run as root, which passes every
    ``os.access`` test): the folder is tried, and what the try made is removed again."""
    import converter.api

    def no_work(*args, **kwargs):
        raise AssertionError("the conversion started")
    monkeypatch.setattr(converter.api, "write_synthetic_checkpoint", no_work)
    if where == "under_a_file":
        (tmp_path / "afile").write_text("x")
        out, words = tmp_path / "afile" / "sub", "is a file"
    elif where == "name_too_long":
        out, words = tmp_path / "new" / ("x" * 300), "cannot write there"
    else:
        out, words = "/proc/videomae-out", "cannot write there"
    before = sorted(os.listdir(tmp_path))
    line = _assert_one_line_error(_run(TINY + ["--synthetic", "-q", "--out", str(out)]), 2)
    assert str(out) in line and words in line and "--out" in line
    assert sorted(os.listdir(tmp_path)) == before  # tmp_path/new was made and removed again


@pytest.mark.parametrize("where", ["empty", "dangling_link"])
@pytest.mark.parametrize("all_entries", [False, True])
def test_an_empty_or_dangling_out_is_one_line_before_any_work(tmp_path, monkeypatch, where,
                                                              all_entries):
    """Before: ``--out ""`` passed the probe as the current folder, so the whole conversion
    ran and then failed with ``error: : cannot create it`` (``--all`` wrote ``logs/`` into
    the current folder first); a link to a missing folder was called a file."""
    import converter.api

    def no_work(*args, **kwargs):
        raise AssertionError("the conversion started")
    monkeypatch.setattr(converter.api, "write_synthetic_checkpoint", no_work)
    monkeypatch.chdir(tmp_path)
    if where == "empty":
        out, words = "", "--out is empty"
    else:
        os.symlink(tmp_path / "gone", tmp_path / "link")
        out, words = str(tmp_path / "link"), "which does not exist"
    mode = ["--all", "--dataset", "k400", "--mode", "FT"] if all_entries else TINY[2:]
    before = sorted(os.listdir(tmp_path))
    line = _assert_one_line_error(_run(["--size", "T", "--synthetic", "-q", "--out", out]
                                       + mode), 2)
    assert words in line, line
    assert sorted(os.listdir(tmp_path)) == before


def test_parity_failure_exits_one_and_writes_nothing(tmp_path, monkeypatch):
    original = mapping.TRANSFORMS["vector"]
    # every bias and LayerNorm parameter 1 % off: shapes fit, numbers do not
    monkeypatch.setitem(mapping.TRANSFORMS, "vector", mapping.Transform(
        lambda array: original.apply(array) * 1.01, original.shape))
    out = tmp_path / "out"
    result = _run(TINY + ["--synthetic", "-q", "--out", str(out)])
    line = _assert_one_line_error(result, 1)
    assert line.startswith("error:") and "parity" in line
    assert "first divergent block: blocks.0" in line
    assert _present(out) == []
    assert not out.exists() or os.listdir(out) == []


# --- a checkpoint that is almost right: every tensor is checked (name, shape, dtype) against
# the entry before torch or Keras touches any of them, so the user gets one line, not torch's
# RuntimeError from load_state_dict, the forward or the q/v-bias pre-pass --------------------

def _drop(state, name):
    del state[name]


def _rename(state, name):
    state[name + "_renamed"] = state.pop(name)


def _retype(dtype):
    def edit(state, name):
        state[name] = state[name].to(dtype) if dtype is not torch.complex64 \
            else torch.complex(state[name], torch.zeros_like(state[name]))
    return edit


def _zero_dim(state, name):
    state[name] = state[name].reshape(-1)[0].clone()


@pytest.mark.parametrize("edit, name, expected", [
    (_drop, "blocks.1.mlp.fc1.bias", "- missing blocks.1.mlp.fc1.bias"),
    (_rename, "blocks.1.norm2.weight", "+ unexpected blocks.1.norm2.weight_renamed"),
    (_retype(torch.int64), "blocks.0.attn.proj.weight", "! dtype blocks.0.attn.proj.weight"),
    (_retype(torch.bool), "head.bias", "! dtype head.bias"),
    (_retype(torch.complex64), "fc_norm.weight", "! dtype fc_norm.weight"),
    (_zero_dim, "blocks.0.attn.q_bias", "! shape blocks.0.attn.q_bias"),
    (_zero_dim, "blocks.1.mlp.fc2.weight", "! shape blocks.1.mlp.fc2.weight"),
    (_zero_dim, "patch_embed.proj.weight", "patch_embed.proj.weight"),
    (_zero_dim, "head.weight", "head.weight"),
])
def test_damaged_tensor_is_one_clear_error_before_any_framework_runs(tmp_path, tiny_checkpoint,
                                                                     edit, name, expected):
    container = torch.load(tiny_checkpoint, weights_only=True)
    state = container["module"]
    assert name in state
    edit(state, name)
    damaged = tmp_path / "damaged.pth"
    torch.save(container, damaged)
    out = tmp_path / "out"
    result = _run(TINY + ["--checkpoint", str(damaged), "--out", str(out), "-q"])
    line = _assert_one_line_error(result, 2)
    assert str(damaged) in line and expected in line, line
    if "do not map" in line:  # the checked names, shapes and dtypes: the likely fix too
        assert line.endswith("check --size, --mode and --dataset)"), line
    assert not out.exists() or _present(out) == []


def test_damaged_pretraining_tensor_is_one_clear_error(tmp_path):
    from converter.synthetic import write_synthetic_checkpoint
    from converter.zoo import get_entry

    path = write_synthetic_checkpoint(get_entry("TFVideoMAE_T_K400_4x32_PT"),
                                      str(tmp_path / "pt.pth"), seed=0)
    container = torch.load(path, weights_only=False)  # our own file: its args are a Namespace
    container["model"]["encoder.blocks.0.attn.v_bias"] = \
        container["model"]["encoder.blocks.0.attn.v_bias"][0].clone()  # 0-d: the pre-pass
    del container["model"]["decoder.blocks.0.mlp.fc1.bias"]
    torch.save(container, path)
    result = _run(["--size", "T", "--mode", "PT", "--checkpoint", path, "-q",
                   "--out", str(tmp_path / "out")])
    line = _assert_one_line_error(result, 2)
    assert "! shape encoder.blocks.0.attn.v_bias" in line, line
    assert "- missing decoder.blocks.0.mlp.fc1.bias" in line, line


def _console_runs(arg_lists):
    """``videomae-convert``'s console command on each of ``arg_lists``, in one fresh process:
    (exit codes, the framework modules it had loaded, its stdout lines, its stderr)."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    code = ("import json, sys\n"
            "from videomae_cli.convert import convert_command\n"
            "codes = []\n"
            f"for args in {list(arg_lists)!r}:\n"
            "    try:\n"
            "        convert_command.main(args, prog_name='videomae-convert')\n"
            "    except SystemExit as stop:\n"
            "        codes.append(stop.code)\n"
            "print(json.dumps({'codes': codes, 'loaded': sorted(m for m in ('torch', "
            "'tensorflow', 'keras', 'converter', 'tf_models') if m in sys.modules)}))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    *printed, last = done.stdout.strip().splitlines()
    summary = json.loads(last)
    return summary["codes"], summary["loaded"], printed, done.stderr


def test_the_console_command_answers_help_bad_choices_and_list_before_loading_the_frameworks():
    """``videomae-convert --help``, a mistyped choice and ``--list`` answer from the options
    and the zoo table alone, in 0.2 s (before: after about 9 s of torch and TensorFlow
    start-up, and ``--list`` until 2026-12-06); those options are ``python -m
    converter.cli``'s, from one declaration (``converter/cli_options.py``), and so is the
    listing (``converter/upstream.py``)."""
    from click.testing import CliRunner

    from converter.cli import main
    from videomae_cli.convert import convert_command

    codes, loaded, printed, stderr = _console_runs([
        ["--help"], ["--size", "S", "--dataset", "K400", "--out", "x"], ["--list"],
        ["--list", "--json"]])
    assert (codes, loaded) == ([0, 2, 0, 0], [])
    assert "'K400' is not one of 'k400'" in stderr
    listed = (CliRunner().invoke(main, ["--list"]).output
              + CliRunner().invoke(main, ["--list", "--json"]).output).splitlines()
    assert len(listed) == 2 * len(ZOO) and printed[-len(listed):] == listed

    def described(command):
        return [(p.name, p.opts, getattr(p.type, "choices", None), p.default, p.hidden)
                for p in command.params]
    assert described(convert_command) == described(main)
    assert CliRunner().invoke(convert_command, ["--help"]).output == \
        CliRunner().invoke(main, ["--help"]).output


def test_the_console_command_refuses_options_that_do_not_go_together_before_the_frameworks():
    """Before: ``videomae-convert --synthetic --size T`` (no --out), ``--checkpoint-dir``
    without ``--all`` and the like answered after torch and TensorFlow had loaded (5-7 s); the
    options alone decide them (``cli_options.options_refusal``, one definition for both front
    ends)."""
    cases = [
        (["--synthetic", "--size", "T"], "error: Missing option '--out'."),
        (["--synthetic", "--checkpoint", "x.pth", "--size", "T", "--out", "o"],
         "error: --synthetic excludes --checkpoint and --checkpoint-dir"),
        (["--checkpoint-dir", "d", "--size", "T", "--out", "o"],
         "error: --checkpoint-dir goes with --all; for one entry use --checkpoint"),
        (["--all", "--size", "T", "--out", "o"],
         "error: --all needs --checkpoint-dir DIR or --synthetic"),
        (["--size", "T", "--size", "S", "--synthetic", "--out", "o"],
         "error: --size T --size S: one entry has one size; several go with --all"),
    ]
    codes, loaded, _, stderr = _console_runs(args for args, _ in cases)
    assert (codes, loaded) == ([2] * len(cases), [])
    assert stderr.splitlines() == [line for _, line in cases]


def test_a_conversion_under_another_keras_backend_runs_on_tensorflow_and_the_library_says_why(
        tmp_path):
    """A shell with ``KERAS_BACKEND=jax`` (a JAX user's, as for ``videomae-finetune``):
    ``videomae-convert`` runs Keras on TensorFlow, says so in one note line and writes the
    artifacts (before: a traceback); ``converter.convert`` in a process whose Keras runs JAX
    is one ConversionError naming the backend, and writes nothing."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH"))
                                          if p))
    code = ("import sys; from videomae_cli.convert import convert_main; "
            "sys.argv[0] = 'videomae-convert'; convert_main()")
    done = subprocess.run([sys.executable, "-c", code, "--synthetic", "--size", "T", "--out",
                           str(tmp_path / "cli"), "-q"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("note: KERAS_BACKEND=jax: videomae-convert runs Keras on TensorFlow"
            in done.stderr.splitlines()[0])
    assert os.path.isfile(tmp_path / "cli" / f"{TINY_FT}.keras")
    code = ("import converter\n"
            "from converter.errors import ConversionError\n"
            "try:\n"
            f"    converter.convert({TINY_FT!r}, {str(tmp_path / 'api')!r}, synthetic=True,\n"
            "                      progress=False)\n"
            "except ConversionError as error:\n"
            "    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("converting needs Keras's TensorFlow backend, and this process "
                                  "runs Keras on jax")
    assert not os.path.exists(tmp_path / "api")


@pytest.mark.parametrize("module, name, args, words", [
    ("convert", "convert_command", ["--sise", "B"], "No such option '--sise'"),
    ("convert", "convert_command", ["--size", "Q", "--out", "x"], "Invalid value for '--size'"),
    ("video", "predict_command", ["--top-k", "x", "a.mp4"], "Invalid value for '--top-k'"),
    ("video", "predict_command", ["--model", "m"], "Missing argument 'VIDEOS...'"),
    ("video", "evaluate_command", ["--model", "m"], "Missing option '--list'"),
    ("video", "extract_command", ["--nope"], "No such option '--nope'"),
    ("video", "merge_command", ["--nope"], "No such option '--nope'"),
    ("finetune", "finetune_command", ["--nope"], "No such option '--nope'"),
    ("export", "export_command", ["--nope"], "No such option '--nope'"),
    ("reconstruct", "reconstruct_command", ["--nope"], "No such option '--nope'"),
])
def test_every_console_script_reports_a_usage_error_in_one_line(module, name, args, words):
    """click's usage block (``Usage:``, ``Try ...``, a blank line, ``Error: ...``) becomes one
    line as every other error of the commands: ``error: ...`` with the help to read, exit 2."""
    import importlib

    from click.testing import CliRunner

    command = getattr(importlib.import_module(f"videomae_cli.{module}"), name)
    result = CliRunner().invoke(command, args, prog_name="videomae-x")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        result.stderr.strip()], result.stderr  # one line
    line = result.stderr.strip()
    assert line.startswith(f"error: {words}") and line.endswith("See 'videomae-x --help'."), line


def test_python_dash_m_runs_each_command_module_or_names_the_commands():
    """``python -m videomae_cli.MODULE`` runs the module's console script (before: convert and
    reconstruct did nothing and exited 0, even with --help); ``videomae_cli.video``, which
    holds three, names them in one line and exits 2. One fresh process each: --help loads no
    framework."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    for module, script in (("convert", "videomae-convert"), ("reconstruct",
                                                            "videomae-reconstruct"),
                           ("export", "videomae-export"), ("finetune", "videomae-finetune")):
        done = subprocess.run([sys.executable, "-m", f"videomae_cli.{module}", "--help"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith(f"Usage: {script} "), module
    done = subprocess.run([sys.executable, "-m", "videomae_cli.video", "--help"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: videomae_cli.video holds three commands; run "
                           "videomae-predict, videomae-evaluate or videomae-extract\n")


def test_progress_written_to_a_log_is_one_line_per_update_not_redrawn_frames(capsys):
    """Where stderr is no terminal (a log file, a pipe, CI), tqdm redrew each frame after a
    carriage return, so a run's bar piled up on one line of the log; now each frame is a
    line (the phases', and every other bar at most one every ``LOG_SECONDS``), and the last
    is kept (a download's bar, which a terminal clears, ended the log short of 100 %). On a
    terminal, tqdm's own redraws."""
    import io

    from converter.api import PhaseBar
    from tf_models.progress import LogLines, progress_bar

    phases = PhaseBar(TINY_FT, progress=True, total=3)
    for phase in ("build", "map", "write"):
        phases(phase)
    phases.finish()
    log = capsys.readouterr().err
    assert "\r" not in log
    lines = log.splitlines()
    assert lines[-1].startswith(f"{TINY_FT}: 100%|") and lines[-1].endswith(", write]")
    assert [p for p in ("build", "map", "write") if any(line.endswith(f", {p}]")
                                                        for line in lines)] == [
        "build", "map", "write"]
    videos = io.StringIO()
    with progress_bar(total=1000, unit="video", file=videos) as bar:
        for _ in range(1000):
            bar.update(1)
    assert videos.getvalue().count("\n") == 2  # the first and the last, within 30 s
    download = io.StringIO()  # a bar a terminal clears when done (leave=False) ends its log
    with progress_bar(total=4096, unit="B", unit_scale=True, desc="w.h5", leave=False,
                      file=download) as bar:
        bar.update(4096)
    assert download.getvalue().splitlines()[-1].startswith("w.h5: 100%|")
    redrawn = io.StringIO()  # tqdm redraws the last frame when a bar closes: one line
    stream = LogLines(redrawn)
    for frame in ("\rv: 50%|#  | 1/2", "\rv: 100%|###| 2/2", "\rv: 100%|###| 2/2  ", "\r   "):
        stream.write(frame)
    assert redrawn.getvalue() == "v: 50%|#  | 1/2\nv: 100%|###| 2/2\n"

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    terminal = Terminal()
    with progress_bar(total=2, unit="video", file=terminal) as bar:
        bar.update(2)
    assert terminal.getvalue().startswith("\r") and terminal.getvalue().count("\n") == 1
