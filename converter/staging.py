"""Where one entry's artifacts wait before they take their final names, and the faults around
that (docs/RELIABILITY.md).

One run at a time per entry and output folder holds ``.NAME.lock`` (a second run stops with
one line). Under the lock, a staging folder ``.NAME.partial-*`` left by a killed run is
removed, or, when the killed run had already started moving checked artifacts into place (its
``PLACING`` marker), the move is finished by the same ``move_into_place`` that placing uses.
Artifacts are fsync'd before the renames and the folder after. A full disk is one line naming
the folder and the space the artifacts need; a file over the size limit (FAT32's, ``ulimit -f``)
one line too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tf_models.artifacts.files import FileLock, LockHeld, fsync_dir, is_locked, remove_path
from tf_models.artifacts.names import LITERT_KINDS, SUFFIXES, artifact_paths

from .errors import OutputError

STAGING_INFIX = ".partial-"
# written into a staging folder (and fsync'd) just before its first rename into place
PLACING_MARKER = "PLACING"
# every kind an entry can have (the quantised .tflite files included: a kind left out here
# would be neither retired by --force nor recovered after a kill), the report last
PLACE_ORDER = ("savedmodel", "weights", "keras") + LITERT_KINDS + ("preset", "report")
assert set(PLACE_ORDER) == set(SUFFIXES), "PLACE_ORDER must name every artifact kind"
# the staging folder holds three copies of the weights (SavedModel, .weights.h5, .keras: see
# writers.save_keras_and_weights), plus the SavedModel's graph and the report; a .tflite file
# and a preset folder one more each
DISK_COPIES = 3
DISK_OVERHEAD_BYTES = 1 << 20


def check_output_dir(out_dir: str, name: str, force: bool = False,
                     allow_present: bool = False) -> None:
    """Fail before any work when ``out_dir`` cannot take the artifacts of ``name``.

    Artifacts already present are an error unless ``force`` (or ``allow_present``, for a
    caller that verifies them itself: that only reads, so the folder is not tried for writing
    then, and a read-only one re-verifies; writing afresh, ``force``, tries it).
    """
    present = artifacts_present(out_dir, name) if out_dir else []
    if present and not force:
        if allow_present:
            return
        raise OutputError(f"{present[0]}: already exists ({len(present)} artifact(s) of {name}"
                          f" present); pass --force to overwrite")
    probe_writable(out_dir)


def missing_folders(out_dir: str) -> List[str]:
    """The folders of ``out_dir`` (absolute, itself first, up to the first one there) that do
    not exist yet: what making it makes."""
    path = os.path.abspath(out_dir)
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def remove_if_empty(folders: Sequence[str]) -> None:
    """Remove each of ``folders`` (the deepest first, as ``missing_folders`` lists them) that
    is empty; the first that is not, or is gone, stops nothing (each is tried)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def probe_writable(out_dir: str, writes: str = "") -> None:
    """Fail in one line when ``out_dir`` cannot be created or written, by trying: the missing
    folders are made and a hidden file written in it, then all of it removed again (so a run
    that fails later leaves no empty folder). Permission bits alone do not say it (root
    passes every ``os.access`` test; /proc, a read-only mount or a name over the system's
    length limit refuse anyway). ``writes``: what the caller writes there, said when it cannot
    (``, where --all writes ...``)."""
    if not out_dir:  # "" would pass as the current folder here and fail at the first write
        raise OutputError("--out is empty, expected a folder; name one (. for this folder)")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"{out_dir}: --out is a file, expected a folder")
    missing = missing_folders(out_dir)
    path = os.path.dirname(missing[-1]) if missing else os.path.abspath(out_dir)
    if os.path.islink(path) and not os.path.exists(path):
        raise OutputError(f"{out_dir}: {path} is a link to {os.readlink(path)}, which does "
                          f"not exist; make that folder or choose another --out")
    if not os.path.isdir(path):
        raise OutputError(f"{out_dir}: {path} is a file, so --out cannot be a folder in it; "
                          f"choose another --out")
    made = []
    # named before it exists, so an interrupt (Ctrl-C, SIGTERM's exception) that lands
    # between its creation and its removal still removes it
    probe = os.path.join(out_dir, f".videomae-probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
                made.append(folder)
            except FileExistsError:  # another run made it meanwhile: not ours to remove
                if not os.path.isdir(folder):
                    raise
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot write there ({error.strerror or error}){writes}; "
                          f"choose another --out") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
        remove_if_empty(made[::-1])


def artifacts_present(out_dir: str, name: str) -> List[str]:
    """The artifacts of ``name`` (the report included) that exist in ``out_dir``."""
    return [p for p in artifact_paths(out_dir, name, litert=True).values()
            if os.path.lexists(p)]


# --- the entry's lock ---------------------------------------------------------------------------

def lock_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, f".{name}.lock")


def locked_message(out_dir: str, name: str, holder: Optional[str]) -> str:
    who = f" (pid {holder})" if holder else ""
    return (f"{out_dir}: another videomae-convert run{who} is converting {name} into this "
            f"folder; wait for it to finish, or use another --out")


class EntryLock:
    """The lock ``.NAME.lock`` in ``out_dir``: one run per entry and output folder. Not
    waiting: a second run gets an OutputError naming the holder's pid. The lock file is
    removed on release (a killed holder's stays, and is reused)."""

    def __init__(self, out_dir: str, name: str):
        self.out_dir = out_dir
        self.name = name
        self.path = lock_path(out_dir, name)
        self._lock = FileLock(self.path)

    @property
    def fd(self) -> Optional[int]:
        return self._lock.fd

    def acquire(self) -> "EntryLock":
        try:
            self._lock.acquire(wait=False)
        except LockHeld as held:
            raise OutputError(locked_message(self.out_dir, self.name, held.holder)) from None
        return self

    def release(self) -> None:
        self._lock.release()


def check_not_locked(out_dir: str, name: str) -> None:
    """Fail early (before loading anything) when another run holds the entry's lock. The
    lock itself is taken by StagedArtifacts; this only looks, creating nothing."""
    holder = is_locked(lock_path(out_dir, name))
    if holder is not None:
        raise OutputError(locked_message(out_dir, name, holder or None))


# --- staging folders and the move into place ----------------------------------------------------

def staging_folders(out_dir: str, name: str) -> List[str]:
    """The staging folders of ``name`` in ``out_dir`` (a live run's or killed runs')."""
    if not os.path.isdir(out_dir):
        return []
    prefix = f".{name}{STAGING_INFIX}"
    return sorted(os.path.join(out_dir, p) for p in os.listdir(out_dir) if p.startswith(prefix))


def move_into_place(staging: str, out_dir: str, name: str, kinds: Sequence[str],
                    previous: Optional[str] = None, retire: Sequence[str] = ()) -> None:
    """Rename each staged artifact of ``kinds`` (in that order; one already moved is skipped)
    over its final name in ``out_dir``, then flush ``out_dir``.

    What was at a final name is moved into the folder ``previous`` when given (and, should the
    move be interrupted, everything is put back as it was before the exception goes on), else
    removed. ``retire``: kinds whose final artifact goes aside (or away) with nothing in its
    place, so it cannot outlive the artifacts it matched.
    """
    staged = artifact_paths(staging, name, litert=True)
    final = artifact_paths(out_dir, name, litert=True)
    moved_in: List[str] = []
    moved_aside: List[Tuple[str, str]] = []

    def clear(kind: str) -> None:
        if not os.path.lexists(final[kind]):
            return
        if previous is None:
            remove_path(final[kind])
            return
        aside = os.path.join(previous, os.path.basename(final[kind]))
        os.replace(final[kind], aside)
        moved_aside.append((aside, final[kind]))

    try:
        for kind in retire:
            clear(kind)
        for kind in kinds:
            if os.path.lexists(staged[kind]):
                clear(kind)
                os.replace(staged[kind], final[kind])
                moved_in.append(final[kind])
    except BaseException:
        if previous is not None:  # take back what moved in, put back what was there
            for path in moved_in:
                remove_path(path)
            for aside, original in moved_aside:
                os.replace(aside, original)
        raise
    fsync_dir(out_dir)


def placing_marker_text(pid: int, retire: Sequence[str]) -> str:
    """The PLACING marker: the placing process's pid, then the kinds it retires."""
    return f"{pid}\nretire {' '.join(retire)}\n"


def placing_marker_retire(folder: str) -> List[str]:
    """The kinds the run that wrote ``folder``'s PLACING marker retires (none in a marker
    written before it named them; kinds this version does not know are left out)."""
    try:
        with open(os.path.join(folder, PLACING_MARKER), encoding="utf-8",
                  errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    words = next((line.split()[1:] for line in lines if line.startswith("retire")), [])
    return [kind for kind in PLACE_ORDER if kind in words]


def recover_stale_staging(out_dir: str, name: str) -> List[str]:
    """Deal with the staging folders a killed run of ``name`` left in ``out_dir``; call only
    while holding the entry's lock (so none of them belongs to a live run).

    A folder with the PLACING marker was killed while moving checked artifacts into place:
    the move is finished (each artifact still staged replaces the final one, and what the
    marker says the run retires goes). Every stale folder is then removed. Returns what was
    found.
    """
    found = staging_folders(out_dir, name)
    for folder in found:
        if os.path.exists(os.path.join(folder, PLACING_MARKER)):
            move_into_place(folder, out_dir, name, PLACE_ORDER,
                            retire=placing_marker_retire(folder))
        shutil.rmtree(folder, ignore_errors=True)
    return found


def recover_killed_run(out_dir: str, name: str) -> List[str]:
    """Before anything else: take the entry's lock (an OutputError when another run holds
    it), deal with what a killed run left (``recover_stale_staging``), let the lock go. The
    conversion takes it again to write. Without staging folders nothing is created."""
    check_not_locked(out_dir, name)
    if not staging_folders(out_dir, name) or not os.access(out_dir, os.W_OK):
        return []  # the usual case: nothing to recover, and no lock file is made
    lock = EntryLock(out_dir, name)
    try:
        lock.acquire()
        return recover_stale_staging(out_dir, name)
    finally:
        lock.release()


# --- a full disk ----------------------------------------------------------------------------------

def needed_bytes(model, extra_copies: int = 0) -> int:
    """About the most disk the staging folder of ``model``'s artifacts takes at once
    (``extra_copies``: optional artifacts that each hold the weights once more)."""
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    return (DISK_COPIES + extra_copies) * weights + DISK_OVERHEAD_BYTES


# what a refused write says, as an errno and in the text of TensorFlow's and h5py's wrappers
# of one: no room on the device or in the quota; a file over the largest size the file system
# (FAT32: 4 GiB) or the process (``ulimit -f``) allows
_DISK_FULL = ((errno.ENOSPC, errno.EDQUOT),
              ("No space left on device", "Disk quota exceeded", "errno = 28"))
_FILE_TOO_LARGE = ((errno.EFBIG,), ("File too large", "errno = 27"))


def _caused_by(error: BaseException, errnos, texts) -> bool:
    """True when ``error`` (or one it came from) is an OSError with one of ``errnos``, or
    says one of ``texts``."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in errnos:
            return True
        text = str(error)
        if any(words in text for words in texts):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def is_disk_full(error: BaseException) -> bool:
    """True when ``error`` (or one it came from) says the device or quota is full: an
    OSError with ENOSPC / EDQUOT, or TensorFlow's and h5py's wrappers of one."""
    return _caused_by(error, *_DISK_FULL)


def is_file_too_large(error: BaseException) -> bool:
    """True when ``error`` (or one it came from) says a file grew past the size limit of its
    file system or of the process (EFBIG)."""
    return _caused_by(error, *_FILE_TOO_LARGE)


def disk_full_message(out_dir: str, needed: int) -> str:
    try:
        free = f"{shutil.disk_usage(out_dir).free / 2**20:.1f} MB"
    except OSError:
        free = "unknown"
    return (f"{out_dir}: no space left on the device: the artifacts need about "
            f"{needed / 2**20:.1f} MB while they are written ({free} free there); free some "
            f"space or use another --out")


def file_too_large_message(out_dir: str) -> str:
    return (f"{out_dir}: an artifact is larger than a file there may be (File too large: the "
            f"file system's limit, such as FAT32's 4 GiB, or the shell's `ulimit -f`); use "
            f"--out on another file system or raise the limit")


@contextlib.contextmanager
def disk_full_as_error(out_dir: str, needed: int):
    """Turn a full disk, or a file over the size limit, inside the block into one
    OutputError line."""
    try:
        yield
    except Exception as error:
        if is_disk_full(error):
            raise OutputError(disk_full_message(out_dir, needed)) from None
        if is_file_too_large(error):
            raise OutputError(file_too_large_message(out_dir)) from None
        raise


def dir_size(path: str) -> int:
    """Bytes of a file, or of every file below a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def staged_paths(staging: str, name: str) -> Dict[str, str]:
    """The artifact paths inside a staging folder."""
    return artifact_paths(staging, name, litert=True)
