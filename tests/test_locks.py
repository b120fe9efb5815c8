"""The lock file (``FileLock``) and the sections where a stop signal waits
(``stop_signals_deferred``): a signal never leaves a lock file that nobody releases, and still
ends a wait for another holder."""

import os
import signal
import threading
import time

import pytest

from tf_models.artifacts.files import (FileLock, LockHeld, defer_stop_signal,
                                       stop_signals_deferred)


class Stopped(BaseException):
    pass


@pytest.fixture
def stop_handler():
    """SIGUSR1 handled like the CLI's stop handler: deferred inside a section, else raised."""
    def handler(signum, frame):
        if defer_stop_signal(signum):
            return
        raise Stopped()
    previous = signal.signal(signal.SIGUSR1, handler)
    yield
    signal.signal(signal.SIGUSR1, previous)


def test_a_stop_signal_inside_a_section_is_raised_as_the_outermost_section_ends(stop_handler):
    ran = []
    with pytest.raises(Stopped):
        with stop_signals_deferred():
            with stop_signals_deferred():
                signal.raise_signal(signal.SIGUSR1)
                ran.append("inner section")
            ran.append("outer section")  # the inner section's end raised nothing
    assert ran == ["inner section", "outer section"]
    with stop_signals_deferred():
        pass  # nothing pending any more: nothing raised
    with pytest.raises(Stopped):  # outside a section: at once
        signal.raise_signal(signal.SIGUSR1)


def test_a_stop_signal_while_the_lock_is_taken_leaves_no_lock_file(tmp_path, monkeypatch,
                                                                   stop_handler):
    import fcntl

    path = tmp_path / "entry.lock"
    real_flock = fcntl.flock

    def flock(fd, operation):
        real_flock(fd, operation)
        if operation & fcntl.LOCK_EX:  # the lock is now ours, not yet recorded
            signal.raise_signal(signal.SIGUSR1)
    monkeypatch.setattr(fcntl, "flock", flock)
    lock = FileLock(str(path))
    with pytest.raises(Stopped):
        lock.acquire(wait=False)
    assert lock.fd is None
    assert list(tmp_path.iterdir()) == []


def test_a_waiting_lock_takes_over_once_the_holder_lets_go(tmp_path):
    path = str(tmp_path / "asset.part.lock")
    holder = FileLock(path).acquire()
    waiter = FileLock(path)
    # flock: another open file, so it waits; a daemon, so a wait that never ends fails the
    # test below instead of holding the process open
    thread = threading.Thread(target=waiter.acquire, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive() and waiter.fd is None
    with pytest.raises(LockHeld):
        FileLock(path).acquire(wait=False)
    holder.release()
    thread.join(timeout=10)
    assert not thread.is_alive() and waiter.fd is not None
    assert open(path).read() == f"{os.getpid()}\n"
    waiter.release()
    assert list(tmp_path.iterdir()) == []


def test_a_stop_signal_ends_a_wait_for_another_holder(tmp_path, stop_handler):
    path = str(tmp_path / "asset.part.lock")
    holder = FileLock(path).acquire()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    # should the signal not end the wait, the holder lets go later and the wait ends then
    too_late = threading.Timer(8, holder.release)
    timer.start()
    too_late.start()
    waiter = FileLock(path)
    started = time.monotonic()
    try:
        with pytest.raises(Stopped):
            waiter.acquire()
    finally:
        timer.cancel()
        too_late.cancel()
    assert time.monotonic() - started < 6
    assert waiter.fd is None
    assert open(path).read() == f"{os.getpid()}\n"  # the holder's file, still held
    with pytest.raises(LockHeld):
        FileLock(path).acquire(wait=False)
    holder.release()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_file_replaced_when_written_is_whole_or_as_it_was(tmp_path, failure):
    """``replaced_when_written``: the new bytes reach the name only once the block ends; a
    failure inside it (an error, or a stop signal's KeyboardInterrupt) leaves the old file
    and no temporary."""
    from tf_models.artifacts.files import replaced_when_written

    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(type(failure)):
        with replaced_when_written(str(tmp_path / ".out.json.partial"), str(path)) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half")
            raise failure
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with replaced_when_written(str(tmp_path / ".out.json.partial"), str(path)) as temporary:
        with open(temporary, "w") as handle:
            handle.write("new")
        assert path.read_text() == "old"  # not before the block ends
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
