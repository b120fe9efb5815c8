"""Scratch folders beside a release (``scripts/release.py``): the half-built release
(``.release-partial-PID-*``), the old release moved aside for the instant a forced build swaps
the new one in (``.release-old-PID-*``), and the folder a ``publish --dry-run`` is written in
(``.publish-partial-PID-*``), a release's parts joined for a recheck (``.release-join-PID-*``),
and in TMPDIR the checker child's and publish's unpacked assets (``TEMP_PREFIXES``). At full
size each holds GBs.

Each is owned through an exclusive ``fcntl.flock`` on ``FOLDER.lock`` beside it, taken before
the folder exists and let go only once the folder is gone. So a folder whose lock nobody holds
was left by a process that is gone (SIGKILL, a power cut), never by a live build, whatever pid
namespace or host that build runs in; the next build or dry run into the same folder removes
it (``remove_stale_scratch``), and puts an old release back when the swap was cut between its
two renames. A folder without a lock file (an earlier version's, or a file system without
flock) cannot be told from a live one's: it is kept, with a logged line. TMPDIR's are removed
by the next build, publish or ``verify --recheck``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import tempfile
from typing import Dict, List, Tuple

from tf_models.artifacts.files import FileLock, LockHeld

PARTIAL, OLD, PUBLISH_PARTIAL = ".release-partial-", ".release-old-", ".publish-partial-"
RELEASE_JOIN = ".release-join-"  # beside a release: its parts joined for a recheck
PREFIXES = (PARTIAL, OLD, PUBLISH_PARTIAL, RELEASE_JOIN)  # beside a release
# in TMPDIR: the checker child's unpacked assets, publish's unpacked presets
RELEASE_CHECK, PUBLISH_SCRATCH = ".videomae-release-check-", ".videomae-publish-"
TEMP_PREFIXES = (RELEASE_CHECK, PUBLISH_SCRATCH)
LOCK_SUFFIX = ".lock"
_owned: Dict[str, FileLock] = {}  # this process's scratch folders -> the locks it holds


def make_scratch_folder(prefix: str, parent: str) -> str:
    """A new folder ``parent/PREFIX`` + ``PID-RANDOM``, owned by this process until
    ``remove_scratch_folder``. It gets the mode ``mkdir`` gives (the umask's), not mkdtemp's
    0700: it becomes an output folder once written, and a release folder others cannot list
    is one a web server run by another user cannot serve."""
    while True:
        folder = os.path.join(parent, f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
        lock = FileLock(folder + LOCK_SUFFIX)
        try:
            lock.acquire(wait=False)  # before the folder exists: never a moment unowned
        except LockHeld:
            continue
        except OSError:  # a file system without flock: the folder is never taken for stale
            with contextlib.suppress(OSError):
                os.remove(lock.path)
            lock = None
        try:
            os.mkdir(folder)
        except BaseException as error:
            if lock is not None:
                lock.release()
            if isinstance(error, FileExistsError):
                continue
            raise
        if lock is not None:
            _owned[folder] = lock
        return folder


def make_temp_scratch(prefix: str) -> str:
    """``make_scratch_folder`` in TMPDIR (``tempfile.gettempdir()``), readable by this user
    only (a shared folder); the next release run removes it once its owner is gone
    (``remove_stale_scratch(tempfile.gettempdir(), log, TEMP_PREFIXES)``)."""
    folder = make_scratch_folder(prefix, tempfile.gettempdir())
    os.chmod(folder, 0o700)
    return folder


def remove_scratch_folder(folder: str) -> None:
    """Remove a folder of ``make_scratch_folder`` (gone already is fine: moved into place),
    then let its lock go. Should part of it stay (no permission), its lock file stays too, no
    longer held: the next build removes what is left."""
    shutil.rmtree(folder, ignore_errors=True)
    lock = _owned.pop(folder, None)
    if lock is None:
        return
    if not os.path.lexists(folder):
        lock.release()
    elif lock.fd is not None:
        os.close(lock.fd)  # the flock goes, the file stays
        lock.fd = None


def _abandoned(lock_path: str) -> bool:
    """Whether nobody holds the lock at ``lock_path`` (False when that cannot be told: a file
    this user cannot open, a file system without flock)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held by a live process
        return False
    finally:
        os.close(fd)
    return True


def _put_back(aside: str, parent: str, log) -> None:
    """A ``.release-old-`` folder holds the release it moved aside under that release's own
    name: put it back where nothing took its place (the swap was cut between its renames)."""
    for name in os.listdir(aside):
        target = os.path.join(parent, name)
        if not os.path.lexists(target):
            os.replace(os.path.join(aside, name), target)
            log(f"{target}: put back from {aside}, where a forced build stopped (killed, or "
                f"the machine stopped) while swapping in its new release had moved it")


def remove_stale_scratch(parent: str, log, prefixes: Tuple[str, ...] = PREFIXES) -> List[str]:
    """Remove the scratch folders in ``parent`` whose owner is gone (``prefixes``: those
    beside a release, or ``TEMP_PREFIXES`` in TMPDIR; their lock file not held), each with
    one logged line, and their lock files; a ``.release-old-`` one's release goes back in
    place first when nothing took it. Returns the removed folders. Folders whose owner
    cannot be told are kept, with one logged line each."""
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(parent, name)
        if not name.startswith(prefixes):
            continue
        if not name.endswith(LOCK_SUFFIX):
            if os.path.isdir(path) and not os.path.lexists(path + LOCK_SUFFIX):
                log(f"{path}: kept, though it may be a stopped build's scratch folder: it has "
                    f"no lock file (an earlier version's, or a file system without flock), so "
                    f"whether its build still runs cannot be told; remove it if none does")
            continue
        folder = path[: -len(LOCK_SUFFIX)]
        # the folder first, then the lock: an owner locks before it makes its folder and
        # removes it before it lets go, so a folder seen here and then no lock held is stale
        present = os.path.isdir(folder) and not os.path.islink(folder)
        if not _abandoned(path):
            continue
        if present:
            if name.startswith(OLD):
                _put_back(folder, parent, log)
            shutil.rmtree(folder, ignore_errors=True)
            pid = re.fullmatch(r"\.[a-z-]+-(\d+)-[0-9a-f]+", os.path.basename(folder))
            done = "could not be removed" if os.path.lexists(folder) else "removed"
            log(f"{folder}: {done}, a scratch folder left by a stopped release build or "
                f"publish (pid {pid.group(1) if pid else '?'}, gone: killed, or the machine "
                f"stopped)")
            if done == "removed":
                removed.append(folder)
        if not os.path.lexists(folder):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return removed
