"""Writing the artifacts of one entry, reloading each into fresh objects, and only then
moving them to their final names.

Per entry ``NAME`` in the output folder:
  NAME/              SavedModel, ``serving_default`` -> {"logits": ...}
  NAME.weights.h5    Keras weights
  NAME.keras         Keras model file (config + weights)
  NAME.json          report: entry, source and sha256, versions, parity, reload checks
Everything is first written into a hidden temporary folder inside the output folder (same
filesystem, so the final ``os.replace`` is a rename) and removed on any failure.

Faults (docs/RELIABILITY.md): one run at a time per entry and output folder holds
``.NAME.lock`` (``fcntl.flock``; a second run stops with one line). Under the lock, a staging
folder ``.NAME.partial-*`` left by a killed run is removed, or, when the killed run had
already started moving checked artifacts into place (its ``PLACING`` marker), the move is
finished. Artifacts are fsync'd before the renames and the folder after. A full disk is one
line naming the folder and the space the artifacts need.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence
from unittest import mock

import numpy as np

from .errors import OutputError
from .models import build_tf_model
from .parity import Case, ParityReport, Reference, check_outputs
from .zoo import Entry

def artifact_paths(out_dir: str, name: str) -> Dict[str, str]:
    """Final paths of every artifact of ``name`` in ``out_dir``."""
    return {
        "savedmodel": os.path.join(out_dir, name),
        "weights": os.path.join(out_dir, name + ".weights.h5"),
        "keras": os.path.join(out_dir, name + ".keras"),
        "report": os.path.join(out_dir, name + ".json"),
    }


def check_output_dir(out_dir: str, name: str, force: bool = False,
                     allow_present: bool = False) -> None:
    """Fail before any work when ``out_dir`` cannot take the artifacts of ``name``.

    Artifacts already present are an error unless ``force`` (or ``allow_present``, for a
    caller that verifies them itself).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"{out_dir}: --out is a file, expected a folder")
    probe = out_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(os.path.abspath(probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: not writable (no write permission on {probe})")
    present = [p for p in artifact_paths(out_dir, name).values() if os.path.lexists(p)]
    if present and not (force or allow_present):
        raise OutputError(f"{present[0]}: already exists ({len(present)} artifact(s) of {name}"
                          f" present); pass --force to overwrite")


def _signature_specs(entry: Entry):
    import tensorflow as tf

    video = tf.TensorSpec([None, entry.num_frames, entry.img_size, entry.img_size, 3],
                          tf.float32, name="video")
    if entry.mode == "FT" or entry.encoder_only:
        return [video]
    return [video, tf.TensorSpec([None, entry.num_patches], tf.bool, name="mask")]


def export_savedmodel(model, entry: Entry, path: str) -> None:
    """A SavedModel whose ``serving_default`` returns {"logits": ...} with a dynamic batch."""
    import tensorflow as tf

    module = tf.Module()
    # track the variables, not the Keras object: Keras would add its own one-input serving
    # function (wrong for (video, mask)) when a Keras model is a child of the saved module
    module.model_variables = list(model.weights)
    if entry.mode == "FT" or entry.encoder_only:
        @tf.function(input_signature=_signature_specs(entry))
        def serve(video):
            outputs = model(video, training=False)
            # encoder-only models already return {"tokens", "pooled"}
            return outputs if isinstance(outputs, dict) else {"logits": outputs}
    else:
        @tf.function(input_signature=_signature_specs(entry))
        def serve(video, mask):
            return {"logits": model(video, mask, training=False)}
    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": serve})


@contextlib.contextmanager
def keras_weights_through_disk():
    """Make Keras write and read a ``.keras`` file's weights through a temporary file.

    When it judges memory plentiful, Keras builds the weights file in memory and copies it
    into the zip (two extra copies of the weights while saving, one while loading); its other
    path, the one it takes for large models, streams through a temporary ``.h5`` next to the
    file. Same file format either way. Falls back to Keras's own choice if the private hook
    it consults is gone.
    """
    try:
        from keras.src.saving import saving_lib
    except ImportError:
        saving_lib = None
    if saving_lib is None or not hasattr(saving_lib, "is_memory_sufficient"):
        yield
        return
    with mock.patch.object(saving_lib, "is_memory_sufficient", lambda model: False):
        yield


def _inputs(entry: Entry, case: Case) -> tuple:
    return (case.video_nthwc,) if case.mask is None else (case.video_nthwc, case.mask)


def reload_savedmodel(entry: Entry, path: str) -> Callable[[Case], np.ndarray]:
    import tensorflow as tf

    serving = tf.saved_model.load(path).signatures["serving_default"]

    def run(case: Case) -> np.ndarray:
        names = ("video", "mask")
        feeds = {n: tf.constant(x) for n, x in zip(names, _inputs(entry, case))}
        return {name: value.numpy() for name, value in serving(**feeds).items()}
    return run


def reload_keras(entry: Entry, path: str) -> Callable[[Case], np.ndarray]:
    import keras

    with keras_weights_through_disk():
        model = keras.saving.load_model(path, compile=False)
    return _graph_runner(entry, model)


def reload_weights(entry: Entry, path: str) -> Callable[[Case], np.ndarray]:
    model = build_tf_model(entry)
    model.load_weights(path)
    return _graph_runner(entry, model)


def _graph_runner(entry: Entry, model) -> Callable[[Case], np.ndarray]:
    """The reloaded model run through a traced graph, as its SavedModel would be: less memory
    at the peak than eager Keras, and faster from the second sample on."""
    import tensorflow as tf

    graph = tf.function(lambda *inputs: model(*inputs, training=False))
    return lambda case: outputs_to_numpy(graph(*_inputs(entry, case)))


def outputs_to_numpy(outputs):
    """A model's output (a tensor or a dict of them) as numpy."""
    import keras

    if isinstance(outputs, dict):
        return {name: keras.ops.convert_to_numpy(v) for name, v in outputs.items()}
    return keras.ops.convert_to_numpy(outputs)


RELOADERS = {"savedmodel": reload_savedmodel, "weights": reload_weights, "keras": reload_keras}


def dir_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


class StagedArtifacts:
    """The artifacts of one entry in a hidden staging folder inside ``out_dir``.

    Use as a context manager: ``write`` the model, ``check`` every artifact by reloading it
    into fresh objects, then ``place`` them under their final names. Leaving the ``with``
    block removes the staging folder, so a failure or an interrupt leaves nothing behind.
    Splitting the steps lets the caller free its in-memory model before the reload checks.
    """

    def __init__(self, entry: Entry, out_dir: str, force: bool = False,
                 on_phase: Optional[Callable[[str], None]] = None):
        self.entry = entry
        self.out_dir = out_dir
        self.force = force
        self.on_phase = on_phase or (lambda phase: None)
        self.staging: Optional[str] = None
        self.reloads: Dict[str, dict] = {}
        self.lock = EntryLock(out_dir, entry.name)
        self.needed = DISK_OVERHEAD_BYTES
        self.fsync_seconds = 0.0

    def __enter__(self) -> "StagedArtifacts":
        check_output_dir(self.out_dir, self.entry.name, self.force)
        os.makedirs(self.out_dir, exist_ok=True)
        self.lock.acquire()
        try:
            # under the lock every staging folder of this entry is a killed run's
            recover_stale_staging(self.out_dir, self.entry.name)
            # a killed run's finished move may have put artifacts in place meanwhile
            check_output_dir(self.out_dir, self.entry.name, self.force)
            self.staging = tempfile.mkdtemp(prefix=f".{self.entry.name}{STAGING_INFIX}",
                                            dir=self.out_dir)
        except BaseException:
            self.lock.release()
            raise
        self.staged = artifact_paths(self.staging, self.entry.name)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.staging:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self.lock.release()

    def write(self, model) -> None:
        self.needed = needed_bytes(model)
        free = shutil.disk_usage(self.out_dir).free
        if free < self.needed:  # fail before writing gigabytes that cannot fit
            raise OutputError(disk_full_message(self.out_dir, self.needed))
        with disk_full_as_error(self.out_dir, self.needed):
            self.on_phase("write SavedModel")
            export_savedmodel(model, self.entry, self.staged["savedmodel"])
            self.on_phase("write .weights.h5")
            model.save_weights(self.staged["weights"])
            self.on_phase("write .keras")
            with keras_weights_through_disk():
                model.save(self.staged["keras"])

    def check(self, references: Sequence[Reference]) -> Dict[str, dict]:
        """Reload each artifact (one at a time, freed before the next) and re-run parity."""
        for kind, reload in RELOADERS.items():
            self.on_phase(f"reload {kind}")
            run = reload(self.entry, self.staged[kind])
            checked: ParityReport = check_outputs(run, references, self.entry.parity_atol,
                                                  f"reloaded {kind} of {self.entry.name}")
            self.reloads[kind] = {"tf_err_vs_f64": checked.tf_err_vs_f64,
                                  "max_abs": checked.max_abs, "passed": checked.passed}
            del run
            gc.collect()
        return self.reloads

    def place(self, report: dict) -> Dict[str, str]:
        """Complete ``report`` (reload checks, sizes, checksums), write it, move all into place."""
        if set(self.reloads) != set(RELOADERS):
            raise RuntimeError("place() before every artifact was checked")
        self.on_phase("move into place")
        report["reload_checks"] = self.reloads
        report["artifact_bytes"] = {k: dir_size(self.staged[k]) for k in RELOADERS}
        report["artifact_sha256"] = {k: tree_sha256(self.staged[k]) for k in RELOADERS}
        with disk_full_as_error(self.out_dir, self.needed):
            with open(self.staged["report"], "w") as handle:
                json.dump(report, handle, indent=2, sort_keys=False, default=_json_default)
                handle.write("\n")
            # on disk before any rename: a crash after a rename never exposes unwritten
            # data under a final name; the marker lets the next run finish the move
            started = time.perf_counter()
            fsync_tree(self.staging)
            with open(os.path.join(self.staging, PLACING_MARKER), "w") as handle:
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(self.staging)
            self.fsync_seconds = time.perf_counter() - started
        final = artifact_paths(self.out_dir, self.entry.name)
        previous = os.path.join(self.staging, "previous")
        os.makedirs(previous)
        moved_in, moved_aside = [], []
        try:
            for kind in PLACE_ORDER:
                if os.path.lexists(final[kind]):  # only reachable with force
                    aside = os.path.join(previous, os.path.basename(final[kind]))
                    os.replace(final[kind], aside)
                    moved_aside.append((aside, final[kind]))
                os.replace(self.staged[kind], final[kind])
                moved_in.append(final[kind])
        except BaseException:
            # an interrupt between two renames: take back what moved in, put back what was
            # there (the staging folder, with the old artifacts, is removed on exit)
            for path in moved_in:
                _remove(path)
            for aside, original in moved_aside:
                os.replace(aside, original)
            os.remove(os.path.join(self.staging, PLACING_MARKER))
            raise
        started = time.perf_counter()
        fsync_dir(self.out_dir)
        self.fsync_seconds += time.perf_counter() - started
        return final


def export_artifacts(model, entry: Entry, out_dir: str, references: Sequence[Reference],
                     report: dict, force: bool = False,
                     on_phase: Optional[Callable[[str], None]] = None) -> Dict[str, str]:
    """Write, reload-and-recheck, then move every artifact of ``entry`` into ``out_dir``.

    ``report`` (a JSON-able dict) is completed with reload parity, sizes and checksums and
    written last. Returns the final paths. Nothing is left under a final name unless every
    check passed, and the staging folder is always removed.
    """
    with StagedArtifacts(entry, out_dir, force, on_phase) as staged:
        staged.write(model)
        staged.check(references)
        return staged.place(report)


def tree_sha256(path: str) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    from .checkpoint import sha256_file

    if os.path.isfile(path):
        return sha256_file(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}\0{sha256_file(full)}\n".encode())
    return digest.hexdigest()


def verify_artifacts(out_dir: str, entry: Entry, source: dict) -> Optional[str]:
    """None when every artifact of ``entry`` is present, matches the checksums in its report,
    passed parity, and came from ``source`` (``{"sha256": ...}`` or ``{"synthetic_seed": n}``);
    otherwise the reason they do not verify."""
    paths = artifact_paths(out_dir, entry.name)
    try:
        with open(paths["report"]) as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        return f"its report {paths['report']} is missing or unreadable"
    if report.get("entry", {}).get("name") != entry.name:
        return "its report is for another entry"
    if not report.get("parity", {}).get("passed"):
        return "its report does not record a passed parity check"
    recorded = report.get("source", {})
    for key, value in source.items():
        if recorded.get(key) != value:
            return f"it was converted from another source ({key} differs)"
    for kind, digest in report.get("artifact_sha256", {}).items():
        if not os.path.exists(paths[kind]):
            return f"{paths[kind]} is missing"
        if tree_sha256(paths[kind]) != digest:
            return f"{paths[kind]} changed since it was written (sha256 differs)"
    if set(report.get("artifact_sha256", {})) != set(RELOADERS):
        return "its report lists no checksum for every artifact"
    return None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def artifacts_present(out_dir: str, name: str) -> List[str]:
    return [p for p in artifact_paths(out_dir, name).values() if os.path.lexists(p)]


# --- faults: locking, stale staging, durability, a full disk ---------------------------------

STAGING_INFIX = ".partial-"
# written into a staging folder (and fsync'd) just before its first rename into place
PLACING_MARKER = "PLACING"
PLACE_ORDER = ("savedmodel", "weights", "keras", "report")  # the report goes last
# Keras streams a .keras file's weights through a temporary .h5 next to it, so while it is
# written the staging folder holds four copies of the weights (SavedModel, .weights.h5,
# that .h5, the zip); plus the SavedModel's graph and the report
DISK_COPIES = 4
DISK_OVERHEAD_BYTES = 1 << 20


def lock_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, f".{name}.lock")


class EntryLock:
    """An exclusive ``fcntl.flock`` on ``.NAME.lock`` in ``out_dir``: one run per entry and
    output folder. Not waiting: a second run gets an OutputError naming the holder's pid.
    The lock file is removed on release (a killed holder's stays, and is reused)."""

    def __init__(self, out_dir: str, name: str):
        self.out_dir = out_dir
        self.name = name
        self.path = lock_path(out_dir, name)
        self.fd: Optional[int] = None

    def acquire(self) -> "EntryLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise OutputError(locked_message(self.out_dir, self.name, holder)) from None
            # the previous holder may have removed the file between our open and our flock:
            # then this lock is on a file nobody else will see; take the new one
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)  # while still holding it: a waiter re-checks the inode
        os.close(self.fd)
        self.fd = None


def _lock_holder(fd: int) -> Optional[str]:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or None
    except OSError:
        return None


def locked_message(out_dir: str, name: str, holder: Optional[str]) -> str:
    who = f" (pid {holder})" if holder else ""
    return (f"{out_dir}: another videomae-convert run{who} is converting {name} into this "
            f"folder; wait for it to finish, or use another --out")


def check_not_locked(out_dir: str, name: str) -> None:
    """Fail early (before loading anything) when another run holds the entry's lock. The
    lock itself is taken by StagedArtifacts; this only looks, creating nothing."""
    try:
        fd = os.open(lock_path(out_dir, name), os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(locked_message(out_dir, name, _lock_holder(fd))) from None
    finally:
        os.close(fd)


def recover_killed_run(out_dir: str, name: str) -> List[str]:
    """Before anything else: take the entry's lock (an OutputError when another run holds
    it), deal with what a killed run left (``recover_stale_staging``), let the lock go. The
    conversion takes it again to write. Without staging folders nothing is created."""
    check_not_locked(out_dir, name)
    if not staging_folders(out_dir, name) or not os.access(out_dir, os.W_OK):
        return []  # the usual case: nothing to recover, and no lock file is made
    lock = EntryLock(out_dir, name).acquire()
    try:
        return recover_stale_staging(out_dir, name)
    finally:
        lock.release()


def staging_folders(out_dir: str, name: str) -> List[str]:
    """The staging folders of ``name`` in ``out_dir`` (a live run's or killed runs')."""
    if not os.path.isdir(out_dir):
        return []
    prefix = f".{name}{STAGING_INFIX}"
    return sorted(os.path.join(out_dir, p) for p in os.listdir(out_dir) if p.startswith(prefix))


def recover_stale_staging(out_dir: str, name: str) -> List[str]:
    """Deal with the staging folders a killed run of ``name`` left in ``out_dir``; call only
    while holding the entry's lock (so none of them belongs to a live run).

    A folder with the PLACING marker was killed while moving checked artifacts into place:
    the move is finished (each artifact still staged replaces the final one). Every stale
    folder is then removed. Returns what was found.
    """
    found = staging_folders(out_dir, name)
    for folder in found:
        if os.path.exists(os.path.join(folder, PLACING_MARKER)):
            staged = artifact_paths(folder, name)
            final = artifact_paths(out_dir, name)
            for kind in PLACE_ORDER:
                if os.path.lexists(staged[kind]):
                    if os.path.lexists(final[kind]):
                        _remove(final[kind])
                    os.replace(staged[kind], final[kind])
            fsync_dir(out_dir)
        shutil.rmtree(folder, ignore_errors=True)
    return found


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


def needed_bytes(model) -> int:
    """About the most disk the staging folder of ``model``'s artifacts takes at once."""
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)
    return DISK_COPIES * weights + DISK_OVERHEAD_BYTES


def is_disk_full(error: BaseException) -> bool:
    """True when ``error`` (or one it came from) says the device or quota is full: an
    OSError with ENOSPC / EDQUOT, or TensorFlow's and h5py's wrappers of one."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if "No space left on device" in text or "Disk quota exceeded" in text \
                or "errno = 28" in text:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def disk_full_message(out_dir: str, needed: int) -> str:
    try:
        free = f"{shutil.disk_usage(out_dir).free / 2**20:.1f} MB"
    except OSError:
        free = "unknown"
    return (f"{out_dir}: no space left on the device: the artifacts need about "
            f"{needed / 2**20:.1f} MB while they are written ({free} free there); free some "
            f"space or use another --out")


@contextlib.contextmanager
def disk_full_as_error(out_dir: str, needed: int):
    """Turn a full disk inside the block into one OutputError line."""
    try:
        yield
    except Exception as error:
        if is_disk_full(error):
            raise OutputError(disk_full_message(out_dir, needed)) from None
        raise
