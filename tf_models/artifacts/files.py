"""Durable files: fsync of files and folders, removal of either, JSON written atomically, a
lock file next to what it guards (``fcntl.flock``; removed on release, so a finished run leaves
nothing behind), a writer's own temporary name beside its target (``partial_path``; killed
runs' removed by ``remove_dead_partials``), and sections where a stop signal waits until a
file and the record of it change together."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import threading
from typing import Any, List, Optional


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (renames, new files) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """Flush every file below ``path`` (a file or a folder), then every folder, to disk."""
    if not os.path.isdir(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    for root, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_tree(os.path.join(root, name))
        fsync_dir(root)


def fsync_quietly(path: str) -> None:
    """``fsync_tree`` where a filesystem that refuses (or a path gone) is not fatal."""
    with contextlib.suppress(OSError):
        fsync_tree(path)


def remove_path(path: str) -> None:
    """Remove a file, a link or a folder tree; nothing when it is not there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def replaced_when_written(temporary: str, path: str):
    """Write ``temporary`` (beside ``path``: one file system) inside the block; when it ends,
    ``temporary`` is renamed over ``path``, and if anything fails (a stop signal too) it is
    removed instead: ``path`` is whole or as it was."""
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


# ``.NAME.PID-TOKEN.partial.EXT``: hidden beside NAME (one file system, so the rename is atomic),
# ending in NAME's suffix (PIL and Keras choose the format by it)
PARTIAL_INFIX = ".partial"


def partial_path(path: str) -> str:
    """A temporary name for writing ``path``, its writer's own: the pid (so a killed run's
    is known for one: ``remove_dead_partials``) and a random token (two runs, or two calls,
    writing ``path`` at once never share one)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}"
                                f"{PARTIAL_INFIX}{os.path.splitext(name)[1]}")


def remove_dead_partials(path: str) -> List[str]:
    """Remove the ``partial_path`` files of ``path`` whose process is gone (a run killed
    before it could clean up: SIGKILL, a power cut); a live run's are left alone. Returns
    what was removed."""
    folder, name = os.path.split(path)
    pattern = re.compile(re.escape(f".{name}.") + r"(\d+)-[0-9a-f]+"
                         + re.escape(PARTIAL_INFIX + os.path.splitext(name)[1]))
    removed = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    for found in filter(None, map(pattern.fullmatch, names)):
        if not pid_alive(int(found.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, found.group(0)))
                removed.append(os.path.join(folder, found.group(0)))
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (someone else's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def open_no_follow(path: str, mode: str = "w", permissions: int = 0o666):
    """``open(path, mode)`` for writing (``"w"``, ``"wb"``, ``"a"``, ``"ab"``; text in UTF-8),
    but an OSError (ELOOP) where ``path`` is a symbolic link: a file under a predictable name
    in a shared folder (a part, a temporary) is never written through a link planted there,
    which would write where it points. ``permissions``: before the umask (open()'s 0o666)."""
    flags = (os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
             | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC))
    return os.fdopen(os.open(path, flags, permissions), mode,
                     encoding=None if "b" in mode else "utf-8")


def save_json(path: str, data) -> None:
    """Write ``data`` as JSON to ``path`` atomically: its folder made if missing, a temporary
    file written and fsync'd (never through a link: ``open_no_follow``), then renamed over
    ``path`` (removed if anything fails)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with replaced_when_written(f"{path}.tmp{os.getpid()}", path) as temporary:
        with open_no_follow(temporary) as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())


def read_json(path: str) -> Optional[Any]:
    """The JSON document at ``path``; None where it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


# --- stop signals held back ------------------------------------------------------------------

_held = threading.local()  # per thread: Python runs signal handlers in the main thread only


@contextlib.contextmanager
def stop_signals_deferred():
    """A stop signal whose handler asks ``defer_stop_signal`` waits until the outermost such
    block ends, and is raised there again (``signal.raise_signal``): a file created and the
    object that will remove it never disagree (a lock file nobody releases, a staging folder
    nobody removes). For short sections only: never around a wait for another process."""
    depth = getattr(_held, "depth", 0)
    _held.depth = depth + 1
    try:
        yield
    finally:
        _held.depth = depth
        pending = getattr(_held, "pending", None) if depth == 0 else None
        if pending is not None:
            _held.pending = None
            signal.raise_signal(pending)


def defer_stop_signal(signum: int) -> bool:
    """For a stop signal's handler: True when it landed inside ``stop_signals_deferred``
    (the handler then returns; the block's end raises the signal again), else False."""
    if getattr(_held, "depth", 0) == 0:
        return False
    _held.pending = signum
    return True


class LockHeld(OSError):
    """``FileLock.acquire(wait=False)`` while another process holds the lock."""

    def __init__(self, path: str, holder: Optional[str]):
        super().__init__(f"{path}: held by {'pid ' + holder if holder else 'another process'}")
        self.path = path
        self.holder = holder


class FileLock:
    """An exclusive ``fcntl.flock`` on the file ``path``, holding the owner's pid.

    ``acquire(wait=True)`` blocks until the holder lets go (a stop signal ends the wait);
    ``wait=False`` raises LockHeld naming the holder's pid. The file is removed on release (a
    killed holder's stays, and is reused); a waiter that finds it replaced meanwhile takes the
    new one. A stop signal never lands between creating the file and owning it: one that does
    is raised once the lock is recorded, and the lock released (``stop_signals_deferred``).
    """

    def __init__(self, path: str):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self, wait: bool = True) -> "FileLock":
        while True:
            # no stop signal between creating the file and owning it (nor between an
            # exclusive flock and recording it): one that lands there is raised afterwards,
            # and the except below lets the lock go
            try:
                with stop_signals_deferred():
                    holder = self._take()
            except BaseException:
                self.release()
                raise
            if self.fd is not None:
                return self
            if not wait:
                raise LockHeld(self.path, holder)
            fd = self._wait_for_holder()  # outside the section: a stop signal ends the wait
            if fd is None:
                continue
            try:
                with stop_signals_deferred():
                    self._own(fd)
            except BaseException:
                self.release()
                raise
            if self.fd is not None:
                return self

    def _take(self) -> Optional[str]:
        """Take the lock if nobody holds it (``fd`` set); when another process holds it,
        leave ``fd`` unset and return the holder's pid as it wrote it (None if it wrote none)."""
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                         0o644)  # never through a link planted in a shared folder
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock_holder(fd)
                os.close(fd)
                return holder
            except BaseException:  # a filesystem without flock
                os.close(fd)
                raise
            self._own(fd)
        return None

    def _own(self, fd: int) -> None:
        """``fd`` holds the exclusive flock: record it (``fd`` set, our pid written) if it is
        still the file at ``path``, else close it. The previous holder may have removed the
        file between our open and our flock: then this lock is on a file nobody else will
        see, and the caller takes the new one."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or not os.path.samestat(os.fstat(fd), current):
            os.close(fd)
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:  # a full disk: held, so ours to remove
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            os.close(fd)
            raise
        self.fd = fd

    def _wait_for_holder(self) -> Optional[int]:
        """Block until the present holder lets go, creating nothing: the descriptor holding
        the exclusive flock then, or None when the file is gone already."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:  # a stop signal ends the wait
            os.close(fd)
            raise
        return fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # while still holding it: a waiter re-checks the inode
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(fd: int) -> Optional[str]:
    """The pid written into an open lock file, or None."""
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or None
    except OSError:
        return None


def is_locked(path: str) -> Optional[str]:
    """Without creating anything: None when nobody holds the lock at ``path``, else the
    holder's pid (or "" when it wrote none)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return lock_holder(fd) or ""
    finally:
        os.close(fd)
    return None
