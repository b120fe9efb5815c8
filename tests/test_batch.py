"""``videomae-convert --all``: entry selection, checkpoints matched by content, one child
process per entry, a summary table, resume, and a non-zero exit when an entry fails.

Only the tiny test entries (size T) are converted; every ``--all`` run is narrowed to one entry
so each costs a single child process.
"""

import os
import re
import sys

import torch  # noqa: F401  (torch side first)
from converter.api import PHASES
from converter.batch import (BatchRow, _entries_for, convert_all, format_table,
                             match_checkpoints, select_entries)
from converter.synthetic import write_synthetic_checkpoint
from converter.errors import ConversionError
from converter.export import artifact_paths
from converter.inspect_checkpoint import infer_checkpoint
from converter.zoo import TEST_ZOO, ZOO, get_entry

import pytest  # noqa: E402

from conftest import TINY_FT, assert_one_line_error, run_cli  # noqa: E402

ONE_TINY = ["--size", "T", "--mode", "FT", "--dataset", "k400"]
TINY_SSV2_FT = "TFVideoMAE_T_SSv2_4x32_FT"
TINY_UCF_FT = "TFVideoMAE_T_UCF_4x32_FT"


_run = run_cli
_assert_one_line_error = assert_one_line_error


def _table_row(output, name):
    rows = [line for line in output.splitlines() if line.startswith(name + " ")]
    assert len(rows) == 1, output
    return rows[0]


def _artifact_state(out_dir, name):
    """{path: (bytes, mtime_ns)} of every file of the four artifacts (SavedModel folder
    included), leaving the logs out: they are rewritten on every run."""
    state = {}
    for path in artifact_paths(str(out_dir), name).values():
        files = ([os.path.join(root, f) for root, _, names in os.walk(path) for f in names]
                 if os.path.isdir(path) else [path])
        for file in files:
            with open(file, "rb") as handle:
                state[file] = (handle.read(), os.stat(file).st_mtime_ns)
    return state


# --- selecting entries -----------------------------------------------------------------------

def test_select_entries_without_filters_is_the_whole_published_zoo():
    entries = select_entries()
    assert len(entries) == 28  # V1's 14 and VideoMAE V2's 14
    assert [e.name for e in entries] == list(ZOO)
    assert not any(e.test_only for e in entries)


def test_select_entries_by_size_s():
    names = sorted(e.name for e in select_entries(size="S"))
    assert names == sorted(["TFVideoMAE_S_K400_16x224_FT", "TFVideoMAE_S_K400_16x224_PT",
                            "TFVideoMAE_S_SSv2_16x224_FT", "TFVideoMAE_S_SSv2_16x224_PT",
                            "TFVideoMAEv2_S_K710_16x224_DL", "TFVideoMAEv2_S_K710toK400_16x224_DL",
                            "TFVideoMAEv2_S_K710toK600_16x224_DL"])
    assert [e.name for e in select_entries(size="S", family="v1")] == [
        "TFVideoMAE_S_K400_16x224_PT", "TFVideoMAE_S_K400_16x224_FT",
        "TFVideoMAE_S_SSv2_16x224_PT", "TFVideoMAE_S_SSv2_16x224_FT"]


def test_select_entries_size_t_gives_the_tiny_entries_only():
    entries = select_entries(size="T")
    assert sorted(e.name for e in entries) == sorted(n for n, e in TEST_ZOO.items()
                                                     if e.family == "v1")
    assert len(entries) == 6
    assert all(e.test_only and e.size == "T" for e in entries)
    # tiny entries never leak into an unfiltered or mode/dataset-only selection
    assert not any(e.test_only for e in select_entries(mode="FT", dataset="k400"))


@pytest.mark.parametrize("size,mode,dataset,expected", [
    ("T", "FT", "k400", [TINY_FT]),
    ("T", "PT", None, ["TFVideoMAE_T_K400_4x32_PT", "TFVideoMAE_T_SSv2_4x32_PT",
                       "TFVideoMAE_T_UCF_4x32_PT"]),
    (None, "PT", "ucf101", ["TFVideoMAE_B_UCF_16x224_PT"]),
    ("H", None, None, ["TFVideoMAE_H_K400_16x224_FT", "TFVideoMAE_H_K400_16x224_PT"]),
    (None, "FT", "k400", [f"TFVideoMAE_{s}_K400_16x224_FT" for s in "SBLH"]
     + ["TFVideoMAEv2_g_K400_16x224_FT", "TFVideoMAEv2_g_K710-K400_16x224_FT",
        "TFVideoMAEv2_S_K710toK400_16x224_DL", "TFVideoMAEv2_B_K710toK400_16x224_DL"]),
    ("L", None, "ucf101", []),
])
def test_select_entries_narrows_by_each_filter(size, mode, dataset, expected):
    assert sorted(e.name for e in select_entries(size, mode, dataset)) == sorted(expected)


# --- matching checkpoints by content ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_ft_entries():
    return select_entries(size="T", mode="FT")


def test_checkpoints_are_matched_by_content_not_file_name(tmp_path, tiny_ft_entries):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    # deliberately misleading names: the K400 file is called ssv2.pth and vice versa
    k400 = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "ssv2.pth"), seed=0)
    ssv2 = write_synthetic_checkpoint(get_entry(TINY_SSV2_FT), str(folder / "k400.pth"), seed=0)
    # unreadable files with a checkpoint suffix, and a file that is no candidate at all
    (folder / "notes.pth").write_text("these are not weights\n")
    (folder / "README.txt").write_text("hello\n")
    (folder / "empty.bin").write_bytes(b"")
    unreadable = []
    found = match_checkpoints(str(folder), tiny_ft_entries, unreadable)
    assert found == {TINY_FT: k400, TINY_SSV2_FT: ssv2}
    assert TINY_UCF_FT not in found  # no 101-class file: left unmatched, not an error
    # each damaged candidate's own one-line error is kept for the unmatched rows
    assert [line.split(": ")[0] for line in unreadable] == [str(folder / "empty.bin"),
                                                            str(folder / "notes.pth")]


def test_a_file_whose_reading_raises_anything_matches_nothing_and_the_rest_match(
        tmp_path, tiny_ft_entries, monkeypatch):
    """A hostile file (keys that are not strings) or any exception a reader lets through
    costs its own match, never the whole --all run."""
    import converter.checkpoint as checkpoint

    folder = tmp_path / "ckpts"
    folder.mkdir()
    k400 = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "k400.pth"), seed=0)
    torch.save({"model": {1: torch.zeros(2)}}, str(folder / "int_key.pth"))
    torch.save({"model": {"w": torch.zeros(2)}}, str(folder / "odd.pth"))
    describe = checkpoint.describe

    def crashing(path):
        if path.endswith("odd.pth"):
            raise RuntimeError("a reader bug\nsecond line")
        return describe(path)

    monkeypatch.setattr(checkpoint, "describe", crashing)
    unreadable = []
    found = match_checkpoints(str(folder), tiny_ft_entries, unreadable)
    assert found == {TINY_FT: k400}
    assert len(unreadable) == 2 and all("\n" not in line for line in unreadable)
    assert unreadable[0].startswith(str(folder / "int_key.pth"))
    assert "key 1 is an int" in unreadable[0]
    assert unreadable[1] == f"{folder / 'odd.pth'}: not a readable checkpoint (RuntimeError: " \
                            f"a reader bug)"


def test_two_files_for_one_entry_is_an_error_naming_both(tmp_path, tiny_ft_entries):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    first = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "a.pth"), seed=0)
    second = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "b.pth"), seed=1)
    with pytest.raises(ConversionError) as raised:
        match_checkpoints(str(folder), tiny_ft_entries)
    message = str(raised.value)
    assert first in message and second in message
    assert TINY_FT in message


def test_duplicate_for_an_entry_not_asked_for_is_no_error(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "a.pth"), seed=0)
    write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "b.pth"), seed=1)
    ssv2 = write_synthetic_checkpoint(get_entry(TINY_SSV2_FT), str(folder / "c.pth"), seed=0)
    assert match_checkpoints(str(folder), [get_entry(TINY_SSV2_FT)]) == {TINY_SSV2_FT: ssv2}


def test_pt_checkpoint_needs_its_dataset_in_the_name_when_ambiguous(tmp_path):
    """A PT file has no head: with several tiny PT datasets its name must say which."""
    pt_entries = select_entries(size="T", mode="PT")
    pt = get_entry("TFVideoMAE_T_K400_4x32_PT")
    anonymous = tmp_path / "anon"
    anonymous.mkdir()
    write_synthetic_checkpoint(pt, str(anonymous / "pretrain.pth"), seed=0)
    assert match_checkpoints(str(anonymous), pt_entries) == {}
    named = tmp_path / "named"
    named.mkdir()
    path = write_synthetic_checkpoint(pt, str(named / "videomae_kinetics_pretrain.pth"), seed=0)
    assert match_checkpoints(str(named), pt_entries) == {pt.name: path}
    # with one candidate entry left, the name is not needed
    assert match_checkpoints(str(anonymous), [pt]) == {
        pt.name: str(anonymous / "pretrain.pth")}


def test_entries_for_uses_size_mode_and_class_count(tmp_path):
    path = write_synthetic_checkpoint(get_entry(TINY_UCF_FT), str(tmp_path / "x.pth"), seed=0)
    from converter.checkpoint import describe
    info = infer_checkpoint(describe(path).state_dict)
    assert (info.size, info.mode, info.dataset) == ("T", "FT", "ucf101")
    fits = _entries_for(info, list(TEST_ZOO.values()) + list(ZOO.values()), path)
    assert [e.name for e in fits] == [TINY_UCF_FT]


def test_matching_reads_shapes_only_so_a_nan_weight_is_matched_and_refused_later(tmp_path):
    """--checkpoint-dir matching reads names and shapes (``describe``), not values: a file
    whose weights hold a NaN is matched by its shapes; the conversion itself refuses it."""
    from converter.checkpoint import read_checkpoint

    folder = tmp_path / "ckpts"
    folder.mkdir()
    path = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "a.pth"), seed=0)
    container = torch.load(path, weights_only=True)
    container["module"]["blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    torch.save(container, path)
    assert match_checkpoints(str(folder), [get_entry(TINY_FT)]) == {TINY_FT: path}
    with pytest.raises(ConversionError, match="NaN"):
        read_checkpoint(path)


def test_match_checkpoints_on_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(ConversionError, match="not a folder"):
        match_checkpoints(str(tmp_path / "nowhere"), select_entries(size="T"))


# --- the summary table -----------------------------------------------------------------------

def test_format_table_shows_each_status_and_the_counts():
    rows = [BatchRow("TFVideoMAE_T_K400_4x32_FT", "converted", 3.2e-7, 12.4, 2048.0, "", "a"),
            BatchRow("TFVideoMAE_T_K400_4x32_PT", "skipped", 1.0e-6, 9.0, 1024.0),
            BatchRow("TFVideoMAE_T_SSv2_4x32_FT", "failed", None, 0.0, None,
                     "no checkpoint in ckpts matches TFVideoMAE_T_SSv2_4x32_FT"),
            BatchRow("TFVideoMAE_T_SSv2_4x32_PT", "failed", None, 4.0, 512.0,
                     "error: parity of X failed")]
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["entry", "status"]
    assert set(lines[1]) == {"-"}
    assert len(lines) == 2 + len(rows) + 1
    for row, line in zip(rows, lines[2:]):
        assert line.startswith(row.name)
        assert line.split()[1] == row.status
        assert row.message in line
    assert "3.2e-07" in lines[2] and "2.0 GB" in lines[2]
    assert " - " in lines[4]  # no error, no memory: dashes
    assert lines[-1] == "1 converted, 1 skipped, 2 failed"


def test_format_table_of_nothing_has_a_zero_count_line():
    assert format_table([]).splitlines()[-1] == "0 converted, 0 skipped, 0 failed"


# --- videomae-convert --all: bad input -------------------------------------------------------

def test_all_without_a_source_exits_two(tmp_path):
    out = tmp_path / "out"
    line = _assert_one_line_error(_run(["--all", "--out", str(out)] + ONE_TINY), 2)
    assert "--checkpoint-dir" in line and "--synthetic" in line
    assert not out.exists()


def test_all_with_checkpoint_exits_two(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    result = _run(["--all", "--checkpoint", tiny_checkpoint, "--out", str(out)] + ONE_TINY)
    line = _assert_one_line_error(result, 2)
    assert "--checkpoint-dir" in line
    assert not out.exists()


@pytest.mark.parametrize("extra,words", [
    (["--synthetic", "--checkpoint-dir", "."], "--synthetic excludes"),
    (["--synthetic", "--encoder-only"], "--encoder-only"),
    (["--synthetic", "--jobs", "0"], "--jobs"),
])
def test_all_with_conflicting_options_exits_two(tmp_path, extra, words):
    out = tmp_path / "out"
    result = _run(["--all", "--out", str(out)] + ONE_TINY + extra)
    line = _assert_one_line_error(result, 2)
    assert words in line
    assert result.stdout == ""  # refused before the run announces itself
    assert not os.path.exists(os.path.join(out, TINY_FT + ".json"))


def test_all_with_no_matching_entry_exits_two(tmp_path):
    out = tmp_path / "out"
    result = _run(["--all", "--synthetic", "--size", "H", "--dataset", "ucf101",
                   "--out", str(out)])
    line = _assert_one_line_error(result, 2)
    assert "no zoo entry" in line
    assert not out.exists()


def test_all_with_out_a_file_exits_two(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    line = _assert_one_line_error(_run(["--all", "--synthetic", "--out", str(target)]
                                       + ONE_TINY), 2)
    assert str(target) in line
    assert target.read_text() == "x"


def test_all_into_a_folder_it_cannot_write_says_what_it_writes_there():
    """A read-only --out: one entry's run re-verifies there without writing
    (test_cli's read-only test), --all cannot (its logs and its lock). Before, the line did
    not say why a run that would skip every entry needed to write. /proc/self: a folder that
    refuses a new file even to root."""
    line = _assert_one_line_error(_run(["--all", "--synthetic", "--out", "/proc/self"]
                                       + ONE_TINY), 2)
    assert line.startswith("error: /proc/self: cannot write there ("), line
    assert line.endswith("), where --all writes /proc/self/logs and its lock, even for entries "
                         "already converted; choose another --out"), line


def test_all_whose_log_folder_is_a_file_exits_two(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "logs").write_text("x")
    line = _assert_one_line_error(_run(["--all", "--synthetic", "--out", str(out)]
                                       + ONE_TINY), 2)
    assert f"{out / 'logs'}: cannot make the log folder" in line
    assert sorted(os.listdir(out)) == ["logs"] and (out / "logs").read_text() == "x"


def test_a_second_all_into_the_same_folder_stops_with_one_line_and_leaves_the_logs(tmp_path):
    """Before: a second ``--all`` into a folder where one was running truncated the running
    children's logs (and could take their outcome files, turning a converted entry into a
    failed row); now it stops at once, naming the holder, and touches nothing."""
    from converter.batch import BATCH_LOCK
    from tf_models.artifacts.files import FileLock

    out = tmp_path / "out"
    logs = out / "logs"
    logs.mkdir(parents=True)
    (logs / f"{TINY_FT}.log").write_text("the running child's log")
    holder = FileLock(str(logs / BATCH_LOCK)).acquire(wait=False)  # what a running --all holds
    try:
        line = _assert_one_line_error(_run(["--all", "--synthetic", "--out", str(out)]
                                           + ONE_TINY), 2)
    finally:
        holder.release()
    assert line == (f"error: {out}: another videomae-convert --all run (pid {os.getpid()}) is "
                    f"converting into this folder; wait for it to finish, or use another --out")
    assert sorted(os.listdir(logs)) == [f"{TINY_FT}.log"]
    assert (logs / f"{TINY_FT}.log").read_text() == "the running child's log"


def test_all_whose_lock_cannot_be_written_exits_two_in_one_line(tmp_path, monkeypatch):
    """A full disk still lets the empty lock file be made, not its pid written: one line, not
    the OSError's traceback (nor a failed row per entry)."""
    import errno

    from tf_models.artifacts.files import FileLock

    def full(self, wait=True):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(FileLock, "acquire", full)
    out = tmp_path / "out"
    line = _assert_one_line_error(_run(["--all", "--synthetic", "--out", str(out)] + ONE_TINY),
                                  2)
    assert line == (f"error: {out / 'logs'}: cannot take the lock of --all there (No space "
                    f"left on device); free space or choose another --out")


def test_a_child_killed_by_a_signal_is_a_failed_row_that_says_so(tmp_path, monkeypatch):
    """The out-of-memory killer's SIGKILL on a large entry's child. Before: the row's message
    was the last line of its log, a TensorFlow start-up notice; now it names the signal."""
    import sys

    import converter.batch

    noise = "I0000 00:00:1.0 port.cc:153] oneDNN custom operations are on."
    monkeypatch.setattr(converter.batch, "_child_command", lambda *args, **kwargs: [
        sys.executable, "-c",
        f"import os, signal; print({noise!r}, flush=True); os.kill(os.getpid(), signal.SIGKILL)"])
    out = tmp_path / "out"
    (row,) = convert_all([get_entry(TINY_FT)], str(out), synthetic=True)
    assert row.status == "failed" and row.tf_err_vs_f64 is None
    log = os.path.join(str(out), "logs", f"{TINY_FT}.log")
    assert row.message.startswith("killed by SIGKILL (the out-of-memory killer, at "), row.message
    assert row.message.endswith(f"; its log: {log}") and noise not in row.message


# a child that reports its phases as a conversion does (one line each: batch.report_phase),
# slowly, and exits without an outcome; frameworkless, so it starts at once
PHASE_CHILD = """
import os, sys, time
fd = int(sys.argv[sys.argv.index("--phases-fd") + 1])
for phase in ("load checkpoint", "build torch", "torch reference"):
    os.write(fd, (phase + "\\n").encode())
    time.sleep(0.3)
"""


def test_all_with_two_jobs_shows_each_childs_phases_as_whole_lines_named_by_entry(
        tmp_path, monkeypatch):
    """Two children at once, each reporting its phases through its own pipe: every line is
    whole and names its entry, each entry's phases in order, before its row. Before: nothing
    between the start line and an entry's row (minutes for a large model). These children
    only report (real ones: test_all_synthetic_converts_and_prints_the_table); ``-q`` shows
    no phase."""
    import converter.batch

    monkeypatch.setattr(converter.batch, "_child_command", lambda *args, **kwargs: [
        sys.executable, "-c", PHASE_CHILD])
    args = ["--all", "--synthetic", "--jobs", "2", "--size", "T", "--mode", "PT",
            "--out", str(tmp_path / "out")]
    names = [e.name for e in select_entries("T", "PT")]
    assert len(names) >= 2
    result = _run(args)
    assert result.exit_code == 1, result.output  # no child left an outcome: every row failed
    lines = result.stdout.splitlines()
    done = []
    for name in names:
        phases = [line for line in lines if line.startswith(f"  {name}: ") and "(at " in line]
        assert [re.fullmatch(rf"  {re.escape(name)}: (.+) \(at \d+s\)", line).group(1)
                for line in phases] == ["load checkpoint", "build torch", "torch reference"]
        (row,) = [line for line in lines if line.startswith(f"  {name}: failed in ")]
        assert lines.index(phases[-1]) < lines.index(row)
        done.append(int(re.search(rf" \[(\d+) of {len(names)} done\]$", row).group(1)))
    assert sorted(done) == list(range(1, len(names) + 1))  # "k of n" as the rows finish
    quiet = _run(args + ["-q", "--force"])
    assert not [line for line in quiet.stdout.splitlines() if "(at " in line], quiet.stdout


def test_convert_all_needs_a_source(tmp_path):
    with pytest.raises(ConversionError, match="--checkpoint-dir DIR or --synthetic"):
        convert_all(select_entries("T", "FT", "k400"), str(tmp_path / "o"))


def test_all_with_a_missing_checkpoint_dir_exits_two(tmp_path):
    missing = tmp_path / "nowhere"
    result = _run(["--all", "--checkpoint-dir", str(missing), "--out", str(tmp_path / "o")]
                  + ONE_TINY)
    line = _assert_one_line_error(result, 2)
    assert str(missing) in line and "not a folder" in line


@pytest.mark.parametrize("case", ["checkpoint dir missing", "out a file", "logs a file"])
def test_all_refuses_before_it_announces_the_run(tmp_path, case):
    """Before: ``converting N entries into OUT`` on stdout, then the refusal: a run that
    never started, announced."""
    out = tmp_path / "out"
    source = ["--synthetic"]
    if case == "checkpoint dir missing":
        source = ["--checkpoint-dir", str(tmp_path / "nowhere")]
    elif case == "out a file":
        out.write_text("x")
    else:
        out.mkdir()
        (out / "logs").write_text("x")
    result = _run(["--all", "--out", str(out)] + source + ONE_TINY)
    _assert_one_line_error(result, 2)
    assert result.stdout == ""


def test_all_with_two_checkpoints_for_one_entry_exits_two_naming_both(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    first = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "a.pth"), seed=0)
    second = write_synthetic_checkpoint(get_entry(TINY_FT), str(folder / "b.pth"), seed=1)
    out = tmp_path / "out"
    result = _run(["--all", "--checkpoint-dir", str(folder), "--out", str(out)] + ONE_TINY)
    line = _assert_one_line_error(result, 2)
    assert first in line and second in line
    assert not out.exists()  # refused before any log folder or child process


# --- videomae-convert --all: failures --------------------------------------------------------

def test_entry_without_a_matching_checkpoint_fails_with_exit_one(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    # the only candidate is damaged: its own error is in the row, not silently passed over
    whole = write_synthetic_checkpoint(get_entry(TINY_FT), str(tmp_path / "whole.pth"), seed=0)
    with open(whole, "rb") as handle:
        (empty / "cut.pth").write_bytes(handle.read()[:5000])
    out = tmp_path / "out"
    result = _run(["--all", "--checkpoint-dir", str(empty), "--out", str(out)] + ONE_TINY)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    row = _table_row(result.stdout, TINY_FT)
    assert row.split()[1] == "failed"
    assert f"no checkpoint in {empty} matches {TINY_FT}" in row
    assert f"1 file(s) there could not be read, the first: {empty / 'cut.pth'}: " in row
    assert result.stdout.splitlines()[-1] == "0 converted, 0 skipped, 1 failed"
    assert not any(os.path.lexists(p) for p in artifact_paths(str(out), TINY_FT).values())


# --- videomae-convert --all --synthetic: convert, resume, fail -------------------------------

@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    """One ``--all --synthetic`` run narrowed to the tiny K400 FT entry (one child process)."""
    out = tmp_path_factory.mktemp("batch") / "weights"
    result = _run(["--all", "--synthetic", "--out", str(out)] + ONE_TINY)
    return out, result


def test_all_synthetic_converts_and_prints_the_table(batch_run):
    out, result = batch_run
    assert result.exit_code == 0, result.output
    assert result.exception is None
    for path in artifact_paths(str(out), TINY_FT).values():
        assert os.path.exists(path), path
    assert f"converting 1 entries into {out}" in result.stdout
    row = _table_row(result.stdout, TINY_FT)
    fields = row.split()
    assert fields[1] == "converted"
    assert float(fields[2]) <= get_entry(TINY_FT).parity_atol  # the report's tf error
    assert fields[5] == "GB" and float(fields[4]) > 0  # the child's peak RSS was measured
    assert result.stdout.splitlines()[-1] == "1 converted, 0 skipped, 0 failed"
    # each phase of the child's conversion as it started (before: nothing until the row)
    lines = result.stdout.splitlines()
    phases = [line for line in lines if line.startswith(f"  {TINY_FT}: ") and "(at " in line]
    assert [re.fullmatch(rf"  {TINY_FT}: (.+) \(at \d+s\)", line).group(1)
            for line in phases] == list(PHASES), result.stdout
    assert lines.index(phases[-1]) < lines.index(f"  {TINY_FT}: converted in "
                                                 f"{row.split()[3][:-1]}s [1 of 1 done]")
    # nothing staged is left behind; the child's log is kept
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    log = out / "logs" / f"{TINY_FT}.log"
    assert log.is_file()
    assert f"{TINY_FT}: parity passed" in log.read_text()


def test_all_again_skips_and_leaves_the_artifacts_untouched(batch_run):
    out, first = batch_run
    assert first.exit_code == 0, first.output
    before = _artifact_state(out, TINY_FT)
    assert len(before) > 4
    result = _run(["--all", "--synthetic", "--out", str(out)] + ONE_TINY)
    assert result.exit_code == 0, result.output
    row = _table_row(result.stdout, TINY_FT)
    assert row.split()[1] == "skipped"
    assert result.stdout.splitlines()[-1] == "0 converted, 1 skipped, 0 failed"
    assert _artifact_state(out, TINY_FT) == before
    assert "skipped" in (out / "logs" / f"{TINY_FT}.log").read_text()


def test_all_with_another_seed_fails_the_entry_and_keeps_the_artifacts(batch_run):
    """The resumed run is for another source: the child refuses, the table says failed with the
    child's error line, the exit code is 1 and nothing that was converted is touched."""
    out, first = batch_run
    assert first.exit_code == 0, first.output
    before = _artifact_state(out, TINY_FT)
    result = _run(["--all", "--synthetic", "--seed", "1", "--out", str(out)] + ONE_TINY)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    row = _table_row(result.stdout, TINY_FT)
    assert row.split()[1] == "failed"
    assert "error:" in row and "--force" in row
    assert result.stdout.splitlines()[-1] == "0 converted, 0 skipped, 1 failed"
    assert _artifact_state(out, TINY_FT) == before
    assert "error:" in (out / "logs" / f"{TINY_FT}.log").read_text()


# --- --all --litert ---------------------------------------------------------------------------

def test_all_litert_asks_each_fine_tuned_child_for_a_tflite_and_no_pretrained_one(tmp_path):
    from converter.batch import _child_command
    from converter.kinds import kind_of

    for name, serves in ((TINY_FT, True), ("TFVideoMAE_T_K400_4x32_PT", False)):
        entry = get_entry(name)
        assert kind_of(entry).serves_litert is serves
        with_flag = _child_command(entry, str(tmp_path), None, True, 0, False, "o.json", True)
        without = _child_command(entry, str(tmp_path), None, True, 0, False, "o.json", False)
        assert ("--litert" in with_flag) is serves
        assert "--litert" not in without
        assert [a for a in with_flag if a != "--litert"] == without


@pytest.mark.slow
def test_all_litert_writes_a_checked_tflite_for_fine_tuned_entries_only(tmp_path):
    """End to end (two child conversions): the fine-tuned entry gets a checked .tflite, the
    pre-trained one converts without and its row says so. The fast tier covers the child
    commands (above) and --litert on one entry (tests/test_litert.py)."""
    from converter.record import ConversionRecord

    out = tmp_path / "out"
    result = _run(["--all", "--synthetic", "--size", "T", "--dataset", "k400", "--litert",
                   "--out", str(out)])
    assert result.exit_code == 0, result.output
    pt = "TFVideoMAE_T_K400_4x32_PT"
    assert "converted" in _table_row(result.stdout, TINY_FT)
    assert "no .tflite: pre-trained" in _table_row(result.stdout, pt)
    assert (out / f"{TINY_FT}.tflite").is_file() and not (out / f"{pt}.tflite").exists()
    report = ConversionRecord.load(str(out / f"{TINY_FT}.json"))
    assert "litert" in report.artifacts and report.reload_checks["litert"].passed
    assert "litert" not in ConversionRecord.load(str(out / f"{pt}.json")).artifacts
