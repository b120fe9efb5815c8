"""Writing the artifacts of one entry, reloading each into fresh objects, and only then
moving them to their final names.

Per entry ``NAME`` in the output folder:
  NAME/              SavedModel, ``serving_default`` -> the kind's named outputs
  NAME.weights.h5    Keras weights
  NAME.keras         Keras model file (config + weights)
  NAME.json          report: entry, source and sha256, versions, parity, reload checks
Everything is first written into a hidden temporary folder inside the output folder (same
filesystem, so the final ``os.replace`` is a rename) and removed on any failure.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from .errors import OutputError
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
    return lambda case: kind.named(outputs_to_numpy(graph(*kind.case_inputs(case))))


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

    def __enter__(self) -> "StagedArtifacts":
        check_output_dir(self.out_dir, self.entry.name, self.force)
        os.makedirs(self.out_dir, exist_ok=True)
        self.staging = tempfile.mkdtemp(prefix=f".{self.entry.name}.partial-", dir=self.out_dir)
        self.staged = artifact_paths(self.staging, self.entry.name, litert=True)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def write(self, model) -> None:
        self.on_phase("write SavedModel")
        export_savedmodel(model, self.entry, self.staged["savedmodel"])
        self.on_phase("write .weights.h5")
        model.save_weights(self.staged["weights"])
        self.on_phase("write .keras")
        with keras_weights_through_disk():
            model.save(self.staged["keras"])
        if "litert" in self.kinds:
            from .litert import export_litert

            self.on_phase("write .tflite")
            export_litert(model, self.entry, self.staged["litert"])

    def check(self, references: Sequence[Reference]) -> Dict[str, ReloadCheck]:
        """Reload each artifact (one at a time, freed before the next) and re-run parity."""
        for kind in self.kinds:
            self.on_phase(f"reload {kind}")
            run = RELOADERS[kind](self.entry, self.staged[kind])
            checked: ParityReport = check_outputs(run, references, self.entry.parity_atol,
                                                  f"reloaded {kind} of {self.entry.name}")
            self.reloads[kind] = ReloadCheck(tf_err_vs_f64=checked.tf_err_vs_f64,
                                             max_abs=checked.max_abs, passed=checked.passed)
            del run
            gc.collect()
        return self.reloads

    def place(self, report: ConversionRecord) -> Dict[str, str]:
        """Complete ``report`` (reload checks, sizes, checksums), write it, move all into place."""
        if set(self.reloads) != set(self.kinds):
            raise RuntimeError("place() before every artifact was checked")
        self.on_phase("move into place")
        report.reload_checks = dict(self.reloads)
        report.seconds = dict(report.seconds)  # as written: every phase up to this one
        report.artifacts = {k: Artifact(sha256=tree_sha256(self.staged[k]),
                                        bytes=dir_size(self.staged[k])) for k in self.kinds}
        report.save(self.staged["report"])
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
            raise
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
