"""Writing the artifacts of one entry, reloading each into fresh objects, and only then
moving them to their final names.

Per entry ``NAME`` in the output folder:
  NAME/              SavedModel, ``serving_default`` -> the kind's named outputs
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
import os
import shutil
import tempfile
import time
import zipfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import OutputError, ParityError
from .kinds import build_tf_model, kind_of
from .parity import Case, ParityReport, Reference, check_outputs
from .record import ARTIFACT_KINDS, Artifact, ConversionRecord, RecordError, ReloadCheck
from .zoo import Entry

def artifact_paths(out_dir: str, name: str, litert: bool = False) -> Dict[str, str]:
    """Final paths of the artifacts of ``name`` in ``out_dir``; the ``.tflite`` that
    ``--litert`` adds only with ``litert``."""
    paths = {
        "savedmodel": os.path.join(out_dir, name),
        "weights": os.path.join(out_dir, name + ".weights.h5"),
        "keras": os.path.join(out_dir, name + ".keras"),
        "report": os.path.join(out_dir, name + ".json"),
    }
    if litert:
        paths["litert"] = os.path.join(out_dir, name + ".tflite")
    return paths


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
    present = [p for p in artifact_paths(out_dir, name, litert=True).values()
               if os.path.lexists(p)]
    if present and not (force or allow_present):
        raise OutputError(f"{present[0]}: already exists ({len(present)} artifact(s) of {name}"
                          f" present); pass --force to overwrite")


# --- faults: locking, stale staging, durability, a full disk ---------------------------------

STAGING_INFIX = ".partial-"
# written into a staging folder (and fsync'd) just before its first rename into place
PLACING_MARKER = "PLACING"
PLACE_ORDER = ("savedmodel", "weights", "keras", "litert", "report")  # the report goes last
# the staging folder holds three copies of the weights (SavedModel, .weights.h5, .keras: see
# save_keras_and_weights), plus the SavedModel's graph and the report
DISK_COPIES = 3
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
            staged = artifact_paths(folder, name, litert=True)
            final = artifact_paths(out_dir, name, litert=True)
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


def export_savedmodel(model, entry: Entry, path: str) -> None:
    """A SavedModel whose ``serving_default`` takes the kind's inputs by name and returns its
    named outputs ({"logits"}, {"pixels"} or {"tokens", "pooled"}), batch dimension open."""
    import tensorflow as tf

    kind = kind_of(entry)
    module = tf.Module()
    # track the variables, not the Keras object: Keras would add its own one-input serving
    # function (wrong for (video, mask)) when a Keras model is a child of the saved module
    module.model_variables = list(model.weights)

    @tf.function(input_signature=kind.signature(entry))
    def serve(*inputs):
        return kind.named(model(kind.keras_inputs(*inputs), training=False))
    module.serve = serve
    tf.saved_model.save(module, path, signatures={"serving_default": serve})


# The Keras version ``keras_weights_through_disk`` was written against. The test
# test_keras_still_builds_small_weights_in_memory fails once Keras no longer takes the
# in-memory path for a model that fits (or drops the hook): then the workaround can go.
KERAS_WORKAROUND_VERSION = "3.15"


@contextlib.contextmanager
def keras_weights_through_disk():
    """Make Keras write and read a ``.keras`` file's weights through a temporary file.

    When it judges memory plentiful (``saving_lib.is_memory_sufficient``, a private hook),
    Keras builds the weights file in memory and copies it into the zip (two extra copies of
    the weights while saving, one while loading); its other path, the one it takes for large
    models, streams through a temporary ``.h5`` next to the file. Same file format either
    way. The hook answers "not sufficient" inside the block and is restored on exit; without
    the hook, Keras's own choice stands.
    """
    try:
        from keras.src.saving import saving_lib
    except ImportError:
        saving_lib = None
    original = getattr(saving_lib, "is_memory_sufficient", None)
    if original is None:
        yield
        return
    saving_lib.is_memory_sufficient = _never_sufficient
    try:
        yield
    finally:
        saving_lib.is_memory_sufficient = original


def _never_sufficient(model) -> bool:
    return False


# The members of a ``.keras`` archive, in the order Keras writes them, which are also the
# files of its unzipped form (``model.save(folder, zipped=False)``).
KERAS_ARCHIVE_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")
KERAS_WEIGHTS_MEMBER = "model.weights.h5"


def _is_keras_archive_layout(folder: str) -> bool:
    """Whether ``folder`` holds the archive's members and nothing else but an empty
    ``assets`` folder (Keras makes one when given an absolute path; an archive gets no entry
    for it)."""
    names = set(os.listdir(folder))
    assets = os.path.join(folder, "assets")
    if "assets" in names and os.path.isdir(assets) and not os.listdir(assets):
        names.discard("assets")
    return names == set(KERAS_ARCHIVE_MEMBERS)


def save_keras_and_weights(model, keras_path: str, weights_path: str,
                           on_phase: Callable[[str], None] = lambda phase: None) -> str:
    """Write ``model`` as ``.keras`` and ``.weights.h5`` while serialising its weights once.

    A ``.keras`` file is a zip archive of ``metadata.json``, ``config.json`` and
    ``model.weights.h5`` (stored, not compressed), and that member holds byte for byte what
    ``save_weights`` writes (tests/test_export.py checks both against Keras's own writers).
    So Keras writes its unzipped form once, into a folder next to ``weights_path``; the
    three files are zipped as Keras zips them, and the weights member is then renamed to
    ``weights_path``. The weights are serialised once and copied once, instead of
    serialised twice (the second time through a temporary ``.h5`` and then a copy).

    Should a Keras version write another set of files, the two are written the usual way,
    each by its own Keras writer. Returns "one write" or "two writes". ``on_phase`` hears
    "write .weights.h5" and then "write .keras".
    """
    folder = weights_path + ".unzipped"
    on_phase("write .weights.h5")
    model.save(folder, zipped=False)
    on_phase("write .keras")
    try:
        if not _is_keras_archive_layout(folder):
            with keras_weights_through_disk():
                model.save(keras_path)
            model.save_weights(weights_path)
            return "two writes"
        with zipfile.ZipFile(keras_path, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in KERAS_ARCHIVE_MEMBERS:
                archive.write(os.path.join(folder, name), name)
        os.replace(os.path.join(folder, KERAS_WEIGHTS_MEMBER), weights_path)
        return "one write"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def reload_savedmodel(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    import tensorflow as tf

    serving = tf.saved_model.load(path).signatures["serving_default"]
    kind = kind_of(entry)

    def run(case: Case) -> Dict[str, np.ndarray]:
        feeds = {n: tf.constant(x) for n, x in zip(kind.inputs, kind.case_inputs(case))}
        return {name: value.numpy() for name, value in serving(**feeds).items()}
    return run


def reload_keras(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    import keras

    with keras_weights_through_disk():
        model = keras.saving.load_model(path, compile=False)
    return _graph_runner(entry, model)


def reload_weights(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    model = build_tf_model(entry)
    model.load_weights(path)
    return _graph_runner(entry, model)


def _graph_runner(entry: Entry, model) -> Callable[[Case], Dict[str, np.ndarray]]:
    """The reloaded model run through a traced graph, as its SavedModel would be: less memory
    at the peak than eager Keras, and faster from the second sample on. Outputs named."""
    import tensorflow as tf

    kind = kind_of(entry)
    graph = tf.function(lambda *inputs: model(kind.keras_inputs(*inputs), training=False))

    def run(case):
        return kind.named(outputs_to_numpy(graph(*kind.case_inputs(case))))
    run.model = model  # the reloaded model itself, for the variable proofs
    return run


def outputs_to_numpy(outputs):
    """A model's output (a tensor or a dict of them) as numpy."""
    import keras

    if isinstance(outputs, dict):
        return {name: keras.ops.convert_to_numpy(v) for name, v in outputs.items()}
    return keras.ops.convert_to_numpy(outputs)


def reload_litert(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    from .litert import reload_litert as reload

    return reload(entry, path)


RELOADERS = {"savedmodel": reload_savedmodel, "weights": reload_weights, "keras": reload_keras,
             "litert": reload_litert}


# artifacts that reload into the same Keras code: proven by their variables (check())
VARIABLE_PROOFS = ("weights", "keras")


def variable_digests(model) -> Dict[str, tuple]:
    """{dotted name: (shape, dtype, sha256 of the bytes)} of every variable of ``model``."""
    import keras

    found = {}
    for name, variable in model.named_variables().items():
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        found[name] = (tuple(array.shape), str(array.dtype),
                       hashlib.sha256(array.tobytes()).hexdigest())
    return found


def compare_digests(expected: Dict[str, tuple], found: Dict[str, tuple]) -> List[str]:
    """Every difference: missing / unexpected names, shape, dtype or bytes."""
    problems = [f"- missing {n}" for n in expected if n not in found]
    problems += [f"+ unexpected {n}" for n in found if n not in expected]
    for name in expected:
        if name in found and found[name] != expected[name]:
            (shape, dtype, digest), (shape2, dtype2, digest2) = expected[name], found[name]
            if (shape, dtype) != (shape2, dtype2):
                problems.append(f"! {name}: {shape2} {dtype2}, expected {shape} {dtype}")
            else:
                problems.append(f"! {name}: values differ (sha256 {digest2[:12]}, "
                                f"expected {digest[:12]})")
    return problems


def _config_difference(expected: dict, found: dict) -> str:
    for key in sorted(set(expected) | set(found)):
        if expected.get(key) != found.get(key):
            return f"{key} is {str(found.get(key))[:60]}, expected {str(expected.get(key))[:60]}"
    return "?"


class _OneSample:
    """One sample of a reference, shaped like a Reference for ``check_outputs``."""

    def __init__(self, reference: Reference, sample):
        self.reference = reference
        self.case = _SingleCase(sample)

    def __getattr__(self, name):
        return getattr(self.reference, name)


class _SingleCase:
    def __init__(self, sample):
        self.sample = sample
        self.name = sample.name

    def samples(self):
        return [self.sample]


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
                 on_phase: Optional[Callable[[str], None]] = None, litert: bool = False):
        self.entry = entry
        # what is written, checked and placed, in that order (the report goes last)
        self.kinds = ARTIFACT_KINDS + (("litert",) if litert else ())
        self.out_dir = out_dir
        self.force = force
        self.on_phase = on_phase or (lambda phase: None)
        self.staging: Optional[str] = None
        self.reloads: Dict[str, ReloadCheck] = {}
        # what write() saw of the in-memory model, for the variable proofs of check()
        self.digests: Optional[Dict[str, tuple]] = None
        self.config: Optional[dict] = None
        self.class_name: Optional[str] = None
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
        self.staged = artifact_paths(self.staging, self.entry.name, litert=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.staging:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self.lock.release()

    def write(self, model) -> None:
        self.digests = variable_digests(model)
        self.config = model.get_config()
        self.class_name = type(model).__name__
        self.needed = needed_bytes(model)
        free = shutil.disk_usage(self.out_dir).free
        if free < self.needed:  # fail before writing gigabytes that cannot fit
            raise OutputError(disk_full_message(self.out_dir, self.needed))
        with disk_full_as_error(self.out_dir, self.needed):
            self.on_phase("write SavedModel")
            export_savedmodel(model, self.entry, self.staged["savedmodel"])
            save_keras_and_weights(model, self.staged["keras"], self.staged["weights"],
                                   self.on_phase)
            if "litert" in self.kinds:
                from .litert import export_litert

                self.on_phase("write .tflite")
                export_litert(model, self.entry, self.staged["litert"])

    def check(self, references: Sequence[Reference],
              checked: ParityReport) -> Dict[str, ReloadCheck]:
        """Reload each artifact (one at a time, freed before the next) and prove it computes
        what the checked in-memory model computes.

        The SavedModel and the ``.tflite`` hold traced graphs, new code: every parity input
        runs through them. ``.weights.h5`` and ``.keras`` reload into the same Keras code:
        every variable must be bit-identical to the in-memory model's (``write`` took their
        digests) and the ``.keras`` config equal to its config, and one clip runs through
        the reloaded ``.keras`` to prove the code path (docs/PARITY.md). ``checked`` is the
        in-memory parity report, whose errors those two artifacts then share.
        """
        if self.digests is None:
            raise RuntimeError("check() before write()")
        for kind in self.kinds:
            self.on_phase(f"reload {kind}")
            if kind in VARIABLE_PROOFS:
                self.reloads[kind] = self._check_variables(kind, references, checked)
            else:
                run = RELOADERS[kind](self.entry, self.staged[kind])
                report: ParityReport = check_outputs(run, references, self.entry.parity_atol,
                                                     f"reloaded {kind} of {self.entry.name}")
                self.reloads[kind] = ReloadCheck(tf_err_vs_f64=report.tf_err_vs_f64,
                                                 max_abs=report.max_abs, passed=report.passed)
                del run
            gc.collect()
        return self.reloads

    def _check_variables(self, kind: str, references: Sequence[Reference],
                         checked: ParityReport) -> ReloadCheck:
        what = f"reloaded {kind} of {self.entry.name}"
        run = RELOADERS[kind](self.entry, self.staged[kind])
        model = run.model  # a variable-proof reloader hands back its model (_graph_runner)
        problems = compare_digests(self.digests, variable_digests(model))
        if kind == "keras":
            if type(model).__name__ != self.class_name:
                problems.insert(0, f"class {type(model).__name__}, expected {self.class_name}")
            elif model.get_config() != self.config:
                difference = _config_difference(self.config, model.get_config())
                problems.insert(0, f"config differs: {difference}")
        if problems:
            raise ParityError(f"{what}: not the checked model: {'; '.join(problems[:5])}"
                              f"{' ...' if len(problems) > 5 else ''}")
        clips = 0
        if kind == "keras":  # one clip through the reloaded code path
            first = next(iter(references[0].case.samples()))
            one = _OneSample(references[0], first)
            check_outputs(run, [one], self.entry.parity_atol, what)
            clips = 1
        del model, run
        return ReloadCheck(tf_err_vs_f64=checked.tf_err_vs_f64, max_abs=checked.max_abs,
                           passed=True, method="variables", clips=clips)

    def place(self, report: ConversionRecord) -> Dict[str, str]:
        """Complete ``report`` (reload checks, sizes, checksums), write it, move all into place."""
        if set(self.reloads) != set(self.kinds):
            raise RuntimeError("place() before every artifact was checked")
        self.on_phase("move into place")
        report.reload_checks = dict(self.reloads)
        report.seconds = dict(report.seconds)  # as written: every phase up to this one
        report.artifacts = {k: Artifact(sha256=tree_sha256(self.staged[k]),
                                        bytes=dir_size(self.staged[k])) for k in self.kinds}
        with disk_full_as_error(self.out_dir, self.needed):
            report.save(self.staged["report"])
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
        final = artifact_paths(self.out_dir, self.entry.name, litert=True)
        previous = os.path.join(self.staging, "previous")
        os.makedirs(previous)
        moved_in, moved_aside = [], []
        try:
            # with force, every earlier artifact goes aside, a .tflite this run does not
            # write included: it would no longer match the other artifacts
            for kind in [k for k in final if k not in self.kinds + ("report",)]:
                if os.path.lexists(final[kind]):
                    aside = os.path.join(previous, os.path.basename(final[kind]))
                    os.replace(final[kind], aside)
                    moved_aside.append((aside, final[kind]))
            for kind in self.kinds + ("report",):  # the report goes last
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
        return {kind: final[kind] for kind in self.kinds + ("report",)}


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


def verify_artifacts(out_dir: str, entry: Entry, source: dict,
                     litert: bool = False) -> Optional[str]:
    """None when every artifact of ``entry`` is present, matches the checksums in its report,
    passed parity, and came from ``source`` (``{"sha256": ...}`` or ``{"synthetic_seed": n}``);
    otherwise the reason they do not verify. ``litert``: a ``.tflite`` must be among them."""
    paths = artifact_paths(out_dir, entry.name, litert=True)
    try:
        report = ConversionRecord.load(paths["report"])
    except RecordError as error:
        return f"its report does not load ({error})"
    if report.name != entry.name:
        return "its report is for another entry"
    if not report.parity.passed:
        return "its report does not record a passed parity check"
    for key, value in source.items():
        if getattr(report.source, key) != value:
            return f"it was converted from another source ({key} differs)"
    for kind, artifact in report.artifacts.items():
        if kind not in paths:
            return f"its report lists an unknown artifact {kind!r}"
        if not os.path.exists(paths[kind]):
            return f"{paths[kind]} is missing"
        if tree_sha256(paths[kind]) != artifact.sha256:
            return f"{paths[kind]} changed since it was written (sha256 differs)"
    if not set(ARTIFACT_KINDS) <= set(report.artifacts):
        return "its report lists no checksum for every artifact"
    if litert and "litert" not in report.artifacts:
        return "they were converted without --litert"
    return None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def artifacts_present(out_dir: str, name: str) -> List[str]:
    return [p for p in artifact_paths(out_dir, name, litert=True).values()
            if os.path.lexists(p)]
