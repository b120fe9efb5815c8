"""Ctrl-C / SIGTERM in the middle of a conversion: exit 2, one line, nothing left behind."""

import os
import signal
import subprocess
import sys
import time

import pytest

from converter.staging import STAGING_INFIX, probe_writable


def _run_and_stop(tmp_path, out_dir, args, signum=signal.SIGTERM, target="converter.cli:main"):
    """Run ``videomae-convert ARGS`` (or another command's entry point, ``target``; its scratch
    in ``tmp_path/tmp``, which must end up empty) in a process started as ``--all`` starts
    its children, send ``signum`` as soon as a hidden file appears in ``out_dir``: its exit
    code and its stderr."""
    from tf_models.lifetime import framework_child

    scratch = tmp_path / "tmp"  # where the synthetic checkpoints go
    scratch.mkdir()
    with open(tmp_path / "stderr.txt", "w") as err:
        process = subprocess.Popen(
            framework_child(target, *args), stdout=subprocess.DEVNULL,
            stderr=err, stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(scratch)},
            start_new_session=True,  # signalled alone: the test's process group stays out
            # a runner started in the background inherits SIGINT as ignored: undo that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            _wait_for_staging(out_dir, process)
            process.send_signal(signum)
            returncode = process.wait(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
    return returncode, (tmp_path / "stderr.txt").read_text()


def _wait_for_staging(out_dir, process, timeout=600):
    """Until a staging folder ``.NAME.partial-*`` exists (the run is writing artifacts); not
    the lock or the writability probe, which come before any work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"conversion ended (rc {process.returncode}) before it was interrupted")
        try:  # the run's writability probe makes --out and removes it again meanwhile
            if any(p.name.startswith(".") and STAGING_INFIX in p.name
                   for p in out_dir.iterdir()):
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    pytest.fail("no staging folder appeared")


# SIGINT (Python's own KeyboardInterrupt) in the slow tier; the fast tier's SIGTERM case runs
# the same unwinding and cleanup, through the converter's handler
@pytest.mark.parametrize("signum", [signal.SIGTERM,
                                    pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_interrupt_mid_export_leaves_output_folder_as_it_was(tmp_path, signum):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("user file")
    returncode, stderr = _run_and_stop(
        tmp_path, out_dir, ["--synthetic", "--size", "T", "--out", str(out_dir), "--quiet"],
        signum)
    assert returncode == 2
    assert "Traceback" not in stderr
    assert "error: interrupted; no partial artifact was left in" in stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]
    assert (out_dir / "keep.txt").read_text() == "user file"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_interrupt_right_after_the_writability_probe_is_made_removes_it(tmp_path,
                                                                          monkeypatch):
    """Ctrl-C that lands between the probe's creation and its removal (the slow tier's SIGINT
    test once left ``.videomae-probe-*`` in the user's folder): the probe goes anyway, and so do
    the folders the probe made."""
    import threading

    real_close = os.close
    this_thread = threading.get_ident()
    out_dir = tmp_path / "new" / "out"
    probes_at_interrupt = []

    def close_then_interrupt(fd):
        real_close(fd)
        # the probe's handle: this thread's first close once the probe exists (os.close is
        # patched for the whole process; pytest-xdist's threads close files of their own)
        if threading.get_ident() == this_thread and not probes_at_interrupt:
            probes_at_interrupt.append([p.name for p in out_dir.iterdir()])
            raise KeyboardInterrupt
    monkeypatch.setattr(os, "close", close_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        probe_writable(str(out_dir))
    monkeypatch.undo()
    # the interrupt landed where it should: the probe was there, and only it
    assert len(probes_at_interrupt) == 1 and len(probes_at_interrupt[0]) == 1
    assert probes_at_interrupt[0][0].startswith(".videomae-probe-")
    assert list(tmp_path.iterdir()) == []


def test_a_stopped_videomae_export_exits_two_in_one_line_and_leaves_nothing(tmp_path,
                                                                          tiny_converted):
    """``videomae-export`` stops as ``videomae-convert`` does (it exited -15 with its lock and
    staging folder left behind)."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("user file")
    returncode, stderr = _run_and_stop(
        tmp_path, out_dir, ["--model", tiny_converted.paths["keras"], "--out", str(out_dir),
                            "--name", "m", "--litert", "-q"],
        target="videomae_cli.export:export_main")
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: interrupted; no partial artifact was left in {out_dir}"], stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("landing", ["lock taken", "staging folder made"])
def test_a_stop_signal_as_a_run_takes_its_lock_and_staging_folder_leaves_neither(
        tmp_path, monkeypatch, landing):
    """The signal lands just after the lock file or the staging folder is created, before the
    run has recorded it: it stops the run once recorded, and both are removed."""
    import fcntl
    import tempfile

    from converter import get_entry
    from converter.export import StagedArtifacts
    from tf_models import stopping

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("user file")
    landed = []

    def signal_after(real, wanted):
        def call(*args, **kwargs):
            result = real(*args, **kwargs)
            if wanted(args) and not landed:
                landed.append(landing)
                signal.raise_signal(signal.SIGTERM)
            return result
        return call
    if landing == "lock taken":  # the exclusive flock (looking at a lock takes a shared one)
        monkeypatch.setattr(fcntl, "flock", signal_after(
            fcntl.flock, lambda args: args[1] & fcntl.LOCK_EX))
    else:
        monkeypatch.setattr(tempfile, "mkdtemp", signal_after(tempfile.mkdtemp,
                                                              lambda args: True))
    staged = StagedArtifacts(get_entry("TFVideoMAE_T_K400_4x32_FT"), str(out_dir))
    try:
        with stopping.stop_handlers():
            with pytest.raises(stopping.Terminated):
                with staged:
                    pytest.fail("the run went on after the signal")
    finally:
        stopping.Terminated.received = None
    assert landed == [landing]
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]


def test_interrupt_between_renames_restores_the_previous_artifacts(tmp_path, monkeypatch,
                                                                   snapshot, tiny_converted):
    """--force over existing artifacts, interrupted after two of the four renames: the old
    artifacts are back, untouched, and no staging folder remains."""
    import converter
    from converter import export
    from conftest import copy_artifacts

    # the existing artifacts: a copy of the session's seed-0 conversion
    out = tmp_path / "out"
    copy_artifacts(tiny_converted, str(out))
    before = snapshot(str(out))
    real_replace = os.replace
    calls = {"moved_in": 0}

    def replace(src, dst):
        if ".partial-" in str(src) and "previous" not in str(src):
            calls["moved_in"] += 1
            if calls["moved_in"] == 3:
                raise KeyboardInterrupt()
        return real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        converter.convert("TFVideoMAE_T_K400_4x32_FT", str(out), synthetic=True, seed=1,
                          force=True, progress=False)
    monkeypatch.undo()
    assert snapshot(str(out)) == before


def test_signal_landing_in_a_gc_callback_stops_the_run_at_the_next_phase():
    """A signal handled while a garbage-collector callback runs (jax registers one) cannot
    raise there: Python would print the exception and go on. The conversion's next phase
    stops instead."""
    import gc

    from tf_models import stopping

    raised = []

    def callback(phase, info):
        try:
            stopping.on_stop_signal(signal.SIGTERM, sys._getframe())
        except BaseException as error:  # what the handler raised, if anything
            raised.append(error)

    stopping.Terminated.received = None
    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    try:
        assert raised == []
        assert stopping.Terminated.received == signal.SIGTERM
        with pytest.raises(stopping.Terminated):
            stopping.stop_if_signalled("write .keras")
    finally:
        stopping.Terminated.received = None
    stopping.stop_if_signalled("write .keras")  # no signal: nothing happens


def _caused_by_a_stop(stopping):
    """What CPython raises when a stop signal lands in a Python call made by a C function
    (seen from TensorFlow's C++ code in CI): a SystemError caused by the signal's exception."""
    try:
        try:
            raise stopping.Terminated()
        except stopping.Terminated as stop:
            raise SystemError("<built-in function __import__> returned a result with an "
                              "exception set") from stop
    except SystemError as error:
        return error


def _chain_lost(stopping):
    """Such a SystemError as CI printed it: re-raised ``from None`` by a traceback filter, its
    context replaced by an unrelated exception, so no chain leads to the signal."""
    error = _caused_by_a_stop(stopping)
    error.__cause__ = None  # what ``raise ... from None`` leaves
    error.__context__ = LookupError("an exception handled where it was re-raised")
    return error


def test_a_stop_signal_where_python_can_only_report_it_is_not_printed(monkeypatch):
    """A stop signal's exception (or one it caused, its chain to the signal kept or lost)
    raised inside a destructor or a callback from C++ code can only be reported
    (``sys.unraisablehook``, or ``sys.excepthook`` where C++ code prints it), not raised; inside
    a run it is not printed (the next phase stops the run), while other such exceptions still
    reach the hook before it."""
    from tf_models import stopping

    class RaisesWhenFreed:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error

    reported, excepted = [], []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    monkeypatch.setattr(sys, "excepthook", lambda *args: excepted.append(args[0]))
    previous_excepthook = sys.excepthook
    try:
        with stopping.stop_handlers():
            stopping.Terminated.received = signal.SIGTERM
            RaisesWhenFreed(stopping.Terminated())  # freed at once: its __del__ raises
            RaisesWhenFreed(_caused_by_a_stop(stopping))
            RaisesWhenFreed(ValueError("not a signal"))
            RaisesWhenFreed(_chain_lost(stopping))
            caused = _caused_by_a_stop(stopping)
            sys.excepthook(type(caused), caused, caused.__traceback__)
            lost = _chain_lost(stopping)
            sys.excepthook(type(lost), lost, lost.__traceback__)
            sys.excepthook(ValueError, ValueError("not a signal"), None)
            assert signal.getsignal(signal.SIGTERM) is stopping.on_stop_signal
        assert [type(r.exc_value) for r in reported] == [ValueError]
        assert excepted == [ValueError]
        assert sys.unraisablehook == reported.append  # put back
        assert sys.excepthook is previous_excepthook
        assert signal.getsignal(signal.SIGTERM) is not stopping.on_stop_signal
    finally:
        stopping.Terminated.received = None


def test_stopping_a_batch_stops_its_running_child_and_starts_no_other(tmp_path):
    """SIGTERM to ``--all`` while its first child converts: the child is stopped too (its
    own one-line stop, nothing of its entry left) instead of finishing its entry, and no
    further entry starts."""
    out_dir = tmp_path / "out"
    # signalled once the first child's lock or staging folder appears
    returncode, stderr = _run_and_stop(
        tmp_path, out_dir, ["--all", "--synthetic", "--size", "T", "--out", str(out_dir)])
    assert returncode == 2
    assert "Traceback" not in stderr
    assert "error: interrupted; finished entries are kept, re-run to resume" in stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["logs"]
    logs = sorted((out_dir / "logs").iterdir())
    assert len(logs) == 2  # one entry started: its log and its outcome
    child_log = next(p for p in logs if p.suffix == ".log").read_text()
    assert "error: interrupted; no partial artifact was left in" in child_log
    assert list((tmp_path / "tmp").iterdir()) == []  # the child's synthetic checkpoint too


def test_a_stopped_run_removes_the_folders_it_made_for_out_and_keeps_the_rest(tmp_path):
    """``--out`` that did not exist: a run stopped (or failed) after making it removes it,
    and the folders above it that it made (before: Ctrl-C left them empty, the error line
    saying nothing was left); a folder that was there, or one another run's lock or staging
    folder is in, stays, and so does one a finished run placed its artifacts in."""
    from converter import get_entry
    from converter.export import StagedArtifacts

    entry = get_entry("TFVideoMAE_T_K400_4x32_FT")
    (tmp_path / "there").mkdir()
    for out_dir in (tmp_path / "there" / "new" / "out", tmp_path / "there"):
        with pytest.raises(KeyboardInterrupt):
            with StagedArtifacts(entry, str(out_dir)):
                assert out_dir.is_dir()
                raise KeyboardInterrupt
        assert [p.name for p in tmp_path.iterdir()] == ["there"]
        assert list((tmp_path / "there").iterdir()) == []
    out_dir = tmp_path / "there" / "shared"
    with StagedArtifacts(get_entry("TFVideoMAE_T_K400_4x32_PT"), str(out_dir)):
        with pytest.raises(RuntimeError):  # another entry's run fails meanwhile
            with StagedArtifacts(entry, str(out_dir)):
                raise RuntimeError("failed")
        assert out_dir.is_dir()  # the first run's lock and staging folder are in it
    with StagedArtifacts(entry, str(out_dir)):
        pass
    assert out_dir.is_dir()  # a run that ended well keeps its --out
