"""Faults around a conversion: a disk that fills mid-write, SIGKILL at each phase, two runs
into one folder. Each test drives the command line (in a child process where the fault needs
one) and checks what is left: no artifact under a final name, nothing hidden left behind,
what was there untouched, and that the next run succeeds."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import REPO_ROOT, TINY_FT, assert_one_line_error, run_cli, snapshot_tree

from converter.export import EntryLock, artifact_paths, verify_artifacts
from converter.zoo import get_entry

FINAL = ("", ".weights.h5", ".keras", ".json")


def final_names(out_dir, name=TINY_FT):
    return sorted(p for p in os.listdir(out_dir) if p.startswith(name)) \
        if os.path.isdir(out_dir) else []


def hidden_names(out_dir):
    return sorted(p for p in os.listdir(out_dir) if p.startswith(".")) \
        if os.path.isdir(out_dir) else []


def child_env(tmpdir):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               TMPDIR=str(tmpdir))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture
def scratch_tmp(tmp_path, monkeypatch):
    """A private temporary folder (where synthetic checkpoints go) for this test and its
    children, so leftovers can be seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def scratch_left(folder):
    """Synthetic-checkpoint scratch folders in ``folder`` (TensorFlow's autograph files,
    also in the temporary folder, are not ours)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".videomae-synthetic-")]


def assert_converted(out_dir, name=TINY_FT, seed=0):
    assert final_names(out_dir, name) == sorted(name + s for s in FINAL)
    assert hidden_names(out_dir) == []
    assert verify_artifacts(str(out_dir), get_entry(name), {"synthetic_seed": seed}) is None


# --- disk full ------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 8 MiB tmpfs (root only), unmounted afterwards; skips where mounting is refused."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill_when_staging_appears(out_dir, filler, stop):
    """Once the staging folder exists, fill the disk (leaving 64 KiB)."""
    while not stop.is_set():
        if any(".partial-" in p for p in hidden_names(out_dir)):
            free = os.statvfs(out_dir).f_bavail * os.statvfs(out_dir).f_frsize
            with open(filler, "wb") as handle:
                handle.write(b"\0" * max(0, free - (64 << 10)))
            return
        time.sleep(0.001)


def test_disk_filling_mid_write_is_one_line_and_keeps_old_artifacts(small_disk, scratch_tmp):
    out_dir = small_disk / "out"
    out_dir.mkdir()
    # stand-ins for an earlier conversion, replaced only if everything succeeds (--force)
    for suffix in FINAL:
        (out_dir / (TINY_FT + suffix)).write_bytes(b"old " + suffix.encode())
    (out_dir / "notes.txt").write_text("user file")
    before = snapshot_tree(out_dir)
    stop = threading.Event()
    filler = threading.Thread(target=_fill_when_staging_appears,
                              args=(str(out_dir), str(small_disk / "filler"), stop))
    filler.start()
    try:
        result = run_cli(["--synthetic", "--size", "T", "--out", str(out_dir), "--force", "-q"])
    finally:
        stop.set()
        filler.join()
    assert (small_disk / "filler").exists(), "the disk was never filled"
    line = assert_one_line_error(result, 2)
    assert line.startswith(f"error: {out_dir}: no space left on the device"), line
    assert "need about" in line and "MB" in line
    assert snapshot_tree(out_dir) == before
    assert hidden_names(out_dir) == []
    assert scratch_left(scratch_tmp) == []


def test_disk_too_small_is_refused_before_writing(small_disk, scratch_tmp):
    # leave 2.5 MiB free: less than the tiny model's artifacts take at their peak (about
    # 2.8 MB; estimated 3.4 MB)
    (small_disk / "filler").write_bytes(b"\0" * (11 << 19))
    out_dir = small_disk / "out"
    result = run_cli(["--synthetic", "--size", "T", "--out", str(out_dir), "-q"])
    line = assert_one_line_error(result, 2)
    assert line.startswith(f"error: {out_dir}: no space left on the device"), line
    assert final_names(out_dir) == [] and hidden_names(out_dir) == []


def _under_size_limit(real):
    """``real`` run under a 100 kB file-size limit (``ulimit -f``, a full folder's cut-short
    write; Python ignores SIGXFSZ, so the write fails with EFBIG)."""
    import resource

    def limited(*args, **kwargs):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
        try:
            return real(*args, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return limited


@pytest.mark.parametrize("writer", ["export_savedmodel", "save_keras_and_weights"])
def test_a_file_over_the_size_limit_is_one_line_and_leaves_nothing(tmp_path, monkeypatch,
                                                                   writer):
    """A file system's largest file (FAT32: 4 GiB, ViT-g's .keras is more) or ``ulimit -f``:
    the write fails with EFBIG. Before: TensorFlow's OutOfRangeError (or h5py's error) went
    up as a traceback, exit 1; now one line naming the folder, and nothing is left."""
    from converter import export
    from converter.errors import OutputError
    from converter.kinds import build_tf_model

    entry = get_entry(TINY_FT)
    model = build_tf_model(entry)
    real = getattr(export, writer)

    monkeypatch.setattr(export, writer, _under_size_limit(real))
    out_dir = tmp_path / "out"
    with pytest.raises(OutputError) as raised:
        with export.StagedArtifacts(entry, str(out_dir)) as staged:
            staged.write(model)
    assert str(raised.value).startswith(f"{out_dir}: an artifact is larger than a file there "
                                        f"may be (File too large"), raised.value
    assert "\n" not in str(raised.value)
    assert not out_dir.exists()  # the run made it, and removed it with the staging folder


def test_a_temporary_folder_that_cannot_take_the_synthetic_checkpoint_is_one_line(
        tmp_path, monkeypatch, scratch_tmp):
    """``--synthetic`` writes its checkpoint into the temporary folder (often a small tmpfs;
    ViT-H's file is 2.5 GB). Before: torch.save's short write came up as a RuntimeError
    traceback, exit 1; now one line naming the folder, what the file takes and TMPDIR."""
    import converter.api

    real = converter.api.write_synthetic_checkpoint

    monkeypatch.setattr(converter.api, "write_synthetic_checkpoint", _under_size_limit(real))
    out_dir = tmp_path / "out"
    line = assert_one_line_error(
        run_cli(["--synthetic", "--size", "T", "--out", str(out_dir), "-q"]), 2)
    assert line.startswith(f"error: {scratch_tmp}: cannot write the --synthetic checkpoint "
                           f"into the temporary folder ("), line
    assert "it takes about 0.6 MB" in line and "TMPDIR" in line, line
    assert scratch_left(scratch_tmp) == []
    assert final_names(out_dir) == [] and hidden_names(out_dir) == []


def test_a_stop_while_the_synthetic_checkpoint_is_written_leaves_no_scratch_folder(
        tmp_path, monkeypatch, scratch_tmp):
    """SIGTERM or Ctrl-C (an exception raised wherever the run is, ``tf_models.stopping``)
    while the checkpoint is written: the stop's line, and no scratch folder left (before, from
    35083d8 on: the folder was made in the helper that writes the checkpoint, and a stop
    there left it, as the slow ``--all`` killed-alone test found)."""
    import converter.api

    real = converter.api.write_synthetic_checkpoint

    def stopped(upstream, path, seed):  # the stop comes once the file has begun
        real(upstream, path, seed)
        raise KeyboardInterrupt
    monkeypatch.setattr(converter.api, "write_synthetic_checkpoint", stopped)
    out_dir = tmp_path / "out"
    line = assert_one_line_error(
        run_cli(["--synthetic", "--size", "T", "--out", str(out_dir), "-q"]), 2)
    assert line == f"error: interrupted; no partial artifact was left in {out_dir}"
    assert scratch_left(scratch_tmp) == []
    assert final_names(out_dir) == [] and hidden_names(out_dir) == []


# --- killed runs ----------------------------------------------------------------------------

def start_cli(args, tmpdir, stderr=subprocess.PIPE):
    """``videomae-convert ARGS`` in a process started as ``--all`` starts its children."""
    from tf_models.lifetime import framework_child

    return subprocess.Popen(framework_child("converter.cli:main", *args),
                            stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL,
                            env=child_env(tmpdir), start_new_session=True)


def kill_at_phase(args, phase, tmpdir, timeout=600):
    """Run the CLI with its progress bar on stderr; SIGKILL it as soon as the bar names
    ``phase``. Returns the text seen."""
    process = start_cli(args, tmpdir)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = os.read(process.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            if phase.encode() in seen:
                os.killpg(process.pid, signal.SIGKILL)
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
    text = seen.decode(errors="replace")
    assert phase in text, f"the run ended before {phase!r}: {text[-2000:]}"
    assert process.returncode == -signal.SIGKILL
    return text


def _next_run_cleans_up_and_succeeds(out_dir, scratch_tmp):
    result = run_cli(["--synthetic", "--size", "T", "--out", str(out_dir), "-q"])
    assert result.exit_code == 0, result.output
    assert_converted(out_dir)
    assert scratch_left(scratch_tmp) == [], "the killed run's scratch checkpoint is left"


@pytest.mark.parametrize("phase", [
    pytest.param("build torch", marks=pytest.mark.slow), "write .weights.h5"])
def test_sigkill_leaves_no_final_name_and_next_run_cleans_up(phase, tmp_path, scratch_tmp):
    out_dir = tmp_path / "out"
    kill_at_phase(["--synthetic", "--size", "T", "--out", str(out_dir)], phase, scratch_tmp)
    assert final_names(out_dir) == []
    # what the killed run left: its scratch checkpoint, and its staging folder once writing
    assert len(scratch_left(scratch_tmp)) == 1
    if phase.startswith("write"):
        assert any(".partial-" in p for p in hidden_names(out_dir))
    _next_run_cleans_up_and_succeeds(out_dir, scratch_tmp)


KILL_MID_PLACE = """
import os, signal, sys
out = os.path.abspath(sys.argv[1])
real_replace, placed = os.replace, []

def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if os.path.dirname(os.path.abspath(dst)) == out and not os.path.basename(dst).startswith("."):
        placed.append(dst)
        if len(placed) == 2:  # between the second and third rename into place
            os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
from converter.cli import main
main(["--synthetic", "--size", "T", "--out", out, "-q"])
"""


def test_sigkill_between_renames_is_finished_by_the_next_run(tmp_path, scratch_tmp):
    out_dir = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", KILL_MID_PLACE, str(out_dir)],
                          env=child_env(scratch_tmp), capture_output=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    # killed inside the microseconds of the move: two of the four are in place, each whole
    assert final_names(out_dir) == sorted([TINY_FT, TINY_FT + ".weights.h5"])
    _next_run_cleans_up_and_succeeds(out_dir, scratch_tmp)
    with open(artifact_paths(str(out_dir), TINY_FT)["report"]) as handle:
        assert json.load(handle)["source"]["synthetic_seed"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("phase", [
    "load checkpoint", "build torch", "torch reference", "build keras", "map tensors",
    "keras parity", "write SavedModel", "write .weights.h5", "write .keras",
    "reload savedmodel", "reload weights", "reload keras", "move into place"])
def test_sigkill_at_every_phase(phase, tmp_path, scratch_tmp):
    out_dir = tmp_path / "out"
    kill_at_phase(["--synthetic", "--size", "T", "--out", str(out_dir)], phase, scratch_tmp)
    assert final_names(out_dir) in ([], sorted(TINY_FT + s for s in FINAL))
    _next_run_cleans_up_and_succeeds(out_dir, scratch_tmp)


@pytest.mark.slow
def test_sigkill_during_all_then_rerun_resumes(tmp_path, scratch_tmp):
    out_dir = tmp_path / "out"
    args = ["--all", "--synthetic", "--size", "T", "--dataset", "k400", "--out", str(out_dir)]
    process = start_cli(args, scratch_tmp, stderr=subprocess.DEVNULL)
    first = os.path.join(out_dir, TINY_FT + ".json")
    try:
        deadline = time.monotonic() + 600
        while not os.path.exists(first) and time.monotonic() < deadline:
            assert process.poll() is None, "--all ended before it was killed"
            time.sleep(0.05)
        time.sleep(3)  # into the second entry
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert "TFVideoMAE_T_K400_4x32_FT: skipped" in result.output
    assert_converted(out_dir, TINY_FT)
    assert_converted(out_dir, "TFVideoMAE_T_K400_4x32_PT")
    assert scratch_left(scratch_tmp) == []


def _children_of(pid):
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if name.isdigit() and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(name))
    return found


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_all_killed_alone_stops_its_children_and_rerun_resumes(tmp_path, scratch_tmp):
    """SIGKILL to the ``--all`` process only (not its group): its converting child stops as
    on SIGTERM (one line in its log, nothing left), rather than converting on, holding its
    entry's lock against the rerun."""
    out_dir = tmp_path / "out"
    args = ["--all", "--synthetic", "--size", "T", "--dataset", "k400", "--out", str(out_dir)]
    process = start_cli(args, scratch_tmp, stderr=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.monotonic() + 600
        while not scratch_left(scratch_tmp) and time.monotonic() < deadline:
            assert process.poll() is None, "--all ended before it was killed"
            time.sleep(0.05)
        children[:] = _children_of(process.pid)  # the one converting: its checkpoint is written
        assert len(children) == 1, children
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while _running(children[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(children[0]), "the child converts on after --all was killed"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for child in children:  # on the old code, the orphan
            if _running(child):
                os.kill(child, signal.SIGKILL)
    logs = [p for p in os.listdir(out_dir / "logs") if p.endswith(".log")]
    assert len(logs) == 1, logs
    with open(out_dir / "logs" / logs[0]) as handle:
        last = handle.read().strip().splitlines()[-1]
    assert last == f"error: interrupted; no partial artifact was left in {out_dir}"
    assert hidden_names(out_dir) == [] and scratch_left(scratch_tmp) == []
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert_converted(out_dir, TINY_FT)
    assert_converted(out_dir, "TFVideoMAE_T_K400_4x32_PT")


# --- concurrent runs ------------------------------------------------------------------------

def test_second_run_into_a_locked_folder_stops_with_one_line(tmp_path, scratch_tmp):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    holder = EntryLock(str(out_dir), TINY_FT).acquire()  # what a running conversion holds
    try:
        result = run_cli(["--synthetic", "--size", "T", "--out", str(out_dir), "-q"])
    finally:
        holder.release()
    line = assert_one_line_error(result, 2)
    assert line == (f"error: {out_dir}: another videomae-convert run (pid {os.getpid()}) is "
                    f"converting {TINY_FT} into this folder; wait for it to finish, or use "
                    f"another --out")
    assert os.listdir(out_dir) == []


@pytest.mark.slow  # two child conversions; the fast tier has the locked-folder test above
def test_two_runs_at_once_one_converts_the_other_stops(tmp_path, scratch_tmp):
    out_dir = tmp_path / "out"
    args = ["--synthetic", "--size", "T", "--out", str(out_dir), "-q"]
    runs = [start_cli(args, scratch_tmp) for _ in range(2)]
    errors = [run.communicate(timeout=600)[1].decode() for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], errors
    loser = errors[[run.returncode for run in runs].index(2)]
    lines = [line for line in loser.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in loser, loser
    assert ("another videomae-convert run" in lines[0]
            or "already exists" in lines[0]), lines[0]
    assert_converted(out_dir)
    assert scratch_left(scratch_tmp) == []


@pytest.mark.parametrize("killed", ["before retiring", "after retiring"])
def test_a_run_killed_while_placing_is_finished_with_the_kinds_it_retires(tmp_path, killed):
    """A ``--force`` run without ``--litert`` over a conversion with a ``.tflite``, killed
    after its PLACING marker: the next run finishes the move and the old ``.tflite``, which
    no longer matches the artifacts, goes too (before: the recovery retired nothing, so it
    stayed beside them when the kill came before the retiring rename)."""
    from converter.staging import (PLACING_MARKER, STAGING_INFIX, placing_marker_text,
                                   recover_killed_run)
    from tf_models.artifacts.names import artifact_paths

    out = tmp_path / "out"
    out.mkdir()
    final = artifact_paths(str(out), TINY_FT, litert=True)
    for kind in ("savedmodel", "weights", "keras", "report", "litert"):
        if kind == "savedmodel":
            os.makedirs(final[kind])
            with open(os.path.join(final[kind], "saved_model.pb"), "w") as handle:
                handle.write("old\n")
        else:
            with open(final[kind], "w") as handle:
                handle.write("old\n")
    staging = out / f".{TINY_FT}{STAGING_INFIX}killed"
    staging.mkdir()
    staged = artifact_paths(str(staging), TINY_FT)
    os.makedirs(staged["savedmodel"])
    with open(os.path.join(staged["savedmodel"], "saved_model.pb"), "w") as handle:
        handle.write("new\n")
    for kind in ("weights", "keras", "report"):
        with open(staged[kind], "w") as handle:
            handle.write("new\n")
    with open(staging / PLACING_MARKER, "w") as handle:
        handle.write(placing_marker_text(12345, ["litert", "litert_fp16", "preset"]))
    if killed == "after retiring":
        os.makedirs(staging / "previous")
        os.replace(final["litert"], staging / "previous" / os.path.basename(final["litert"]))
    assert recover_killed_run(str(out), TINY_FT) == [str(staging)]
    assert sorted(os.listdir(out)) == sorted(
        os.path.basename(final[k]) for k in ("savedmodel", "weights", "keras", "report"))
    for kind in ("weights", "keras", "report"):
        with open(final[kind]) as handle:
            assert handle.read() == "new\n"
