"""Writing the artifacts of one entry, reloading each into fresh objects, and only then
moving them to their final names (``StagedArtifacts``); checking artifacts already present
against their report (``verify_artifacts``).

What is written is a zoo ``Entry``'s model (``converter.api.convert``) or any VideoMAE
classifier a ``.keras`` file holds (``converter.keras_export``: an ``ExportTarget``, which
answers the same questions an entry does: name, clip shape, kind, tolerance).

The pieces, each its own module, import downwards only: ``staging`` (paths, the entry's lock,
recovery of a killed run, the one move into place, a full disk), ``writers`` (SavedModel,
``.keras`` and ``.weights.h5``, the keras-hub preset folder), ``proofs`` (reloaders and the
variable proofs). Everything is
first written into a hidden staging folder inside the output folder (same filesystem, so the
final ``os.replace`` is a rename) and removed on any failure. Artifact names:
``tf_models.artifacts.names``.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence

from tf_models.artifacts.checksums import tree_sha256
from tf_models.artifacts.files import fsync_dir, fsync_tree, stop_signals_deferred
from tf_models.artifacts.names import (LITERT_KINDS, SUFFIXES, artifact_paths,
                                       quantization_of, quantized_kind)

from .errors import OutputError
from .hashes import BackgroundHashes
from .parity import ParityReport, Reference
from .proofs import (RELOADERS, VARIABLE_PROOFS, ModelFingerprint, compare_digests,  # noqa: F401
                     fingerprint_model, outputs_to_numpy, prove_artifact, prove_litert_weights,
                     prove_quantized, reload_keras,
                     reload_litert, reload_savedmodel, reload_weights, variable_digests)
from .record import ARTIFACT_KINDS, Artifact, ConversionRecord, RecordError, ReloadCheck
from .staging import (DISK_OVERHEAD_BYTES, PLACE_ORDER, PLACING_MARKER,  # noqa: F401
                      placing_marker_text,
                      STAGING_INFIX, EntryLock, artifacts_present, check_not_locked,
                      check_output_dir, dir_size, disk_full_as_error, disk_full_message,
                      is_disk_full, lock_path, missing_folders, move_into_place, needed_bytes,
                      recover_killed_run, recover_stale_staging, remove_if_empty, staged_paths,
                      staging_folders)
from .writers import (KERAS_ARCHIVE_MEMBERS, KERAS_WORKAROUND_VERSION,  # noqa: F401
                      export_preset, export_savedmodel, keras_weights_through_disk,
                      save_keras_and_weights)
from .zoo import Entry


class StagedArtifacts:
    """The artifacts of one entry in a hidden staging folder inside ``out_dir``.

    Use as a context manager: ``write`` the model, ``check`` every artifact by reloading it
    into fresh objects, then ``place`` them under their final names. Leaving the ``with``
    block removes the staging folder, so a failure or an interrupt leaves nothing behind.
    Splitting the steps lets the caller free its in-memory model before the reload checks.
    ``entry``: a zoo ``Entry`` or an ``ExportTarget``; ``litert`` / ``preset`` add the
    ``.tflite`` file and the keras-hub preset folder, ``quantize`` (``--litert-quantize``
    modes) a quantised ``.tflite`` file each, measured on ``video_references`` for top-k.
    """

    def __init__(self, entry: Entry, out_dir: str, force: bool = False,
                 on_phase: Optional[Callable[[str], None]] = None, litert: bool = False,
                 preset: bool = False, quantize: Sequence[str] = (),
                 video_references: Sequence[Reference] = ()):
        self.entry = entry
        # what is written, checked and placed, in that order (the report goes last)
        self.kinds = (ARTIFACT_KINDS + (("litert",) if litert else ())
                      + tuple(quantized_kind(mode) for mode in quantize)
                      + (("preset",) if preset else ()))
        # the real-video clips a quantised file's top-k agreement is measured on
        self.video_references = video_references
        self.out_dir = out_dir
        self.force = force
        self.on_phase = on_phase or (lambda phase: None)
        self.staging: Optional[str] = None
        self.made: Sequence[str] = ()  # the folders of out_dir this run made (deepest first)
        self.reloads: Dict[str, ReloadCheck] = {}
        # quantised kind -> weights its file was proven by when written (prove_litert_weights;
        # None: the converter's own quantisation, no stand-ins)
        self.weights_proven: Dict[str, Optional[int]] = {}
        # what write() saw of the in-memory model, for the variable proofs of check()
        self.fingerprint: Optional[ModelFingerprint] = None
        self.lock = EntryLock(out_dir, entry.name)
        self.needed = DISK_OVERHEAD_BYTES
        self.fsync_seconds = 0.0
        # each artifact's sha256, hashed in a worker thread as soon as it is written
        self.hashes = BackgroundHashes()

    def __enter__(self) -> "StagedArtifacts":
        check_output_dir(self.out_dir, self.entry.name, self.force)
        self.made = missing_folders(self.out_dir)
        try:
            os.makedirs(self.out_dir, exist_ok=True)
        except OSError as error:  # made since the check, or a fault of the file system
            raise OutputError(f"{self.out_dir}: cannot create it ({error.strerror or error}); "
                              f"choose another --out") from None
        try:
            # a stop signal waits until the lock and the staging folder are recorded here,
            # where the except below (or __exit__) removes them
            with stop_signals_deferred():
                self.lock.acquire()
                # under the lock every staging folder of this entry is a killed run's
                recover_stale_staging(self.out_dir, self.entry.name)
                # a killed run's finished move may have put artifacts in place meanwhile
                check_output_dir(self.out_dir, self.entry.name, self.force)
                self.staging = tempfile.mkdtemp(prefix=f".{self.entry.name}{STAGING_INFIX}",
                                                dir=self.out_dir)
                self.staged = staged_paths(self.staging, self.entry.name)
        except BaseException as error:
            self._clean_up(failed=True)
            if isinstance(error, OSError):  # a full disk or a fault of the file system
                raise OutputError(f"{self.out_dir}: cannot take the lock or staging folder "
                                  f"({error.strerror or error}); free space or choose "
                                  f"another --out") from None
            raise
        return self

    def __exit__(self, failure, *exc) -> None:
        with stop_signals_deferred():  # a second stop waits until the folder is gone
            self._clean_up(failed=failure is not None)

    def _clean_up(self, failed: bool = False) -> None:
        """The staging folder and the lock go; after a failure or a stop, so do the folders
        of ``--out`` this run made, where nothing else is in them (another run's lock or
        staging folder, or artifacts already placed, keep them)."""
        try:
            self.hashes.close()  # nothing reads the staging folder once it is being removed
            if self.staging:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self.lock.release()
            if failed:
                remove_if_empty(self.made)

    def _first_write(self, model) -> None:
        """What the first write of a run needs: the model's fingerprint, and room on disk
        for every artifact (fail before writing gigabytes that cannot fit)."""
        if self.fingerprint is not None:
            return
        self.fingerprint = fingerprint_model(model)
        self.needed = needed_bytes(model, extra_copies=len(self.kinds) - len(ARTIFACT_KINDS))
        free = shutil.disk_usage(self.out_dir).free
        if free < self.needed:
            raise OutputError(disk_full_message(self.out_dir, self.needed))

    def write(self, model) -> None:
        """Write every artifact not written and checked yet (``write_and_check_litert`` may
        have run; a run whose LiteRT check failed never gets here)."""
        self._first_write(model)
        with disk_full_as_error(self.out_dir, self.needed):
            self.on_phase("write SavedModel")
            export_savedmodel(model, self.entry, self.staged["savedmodel"])
            self._hash("savedmodel")
            save_keras_and_weights(model, self.staged["keras"], self.staged["weights"],
                                   self.on_phase)
            self._hash("keras", "weights")
            if "litert" in self.kinds and "litert" not in self.reloads:
                self._write_litert(model)
            if "preset" in self.kinds:
                self.on_phase("write preset")
                export_preset(model, self.entry, self.staged["preset"])
                self._hash("preset")

    def _hash(self, *kinds: str) -> None:
        """Start hashing the written ``kinds`` (``place`` records the checksums)."""
        for kind in kinds:
            self.hashes.start(kind, self.staged[kind])

    def _write_litert(self, model) -> None:
        """The ``.tflite`` file and each quantised one."""
        from .litert import export_litert

        for kind in self.litert_kinds:
            self.on_phase(f"write {SUFFIXES[kind]}")
            stand_ins = export_litert(model, self.entry, self.staged[kind],
                                      quantization_of(kind))
            if quantization_of(kind):
                # proven by its weights now, while the model is in memory
                self.weights_proven[kind] = (prove_litert_weights(
                    self.entry, kind, self.staged[kind], model) if stand_ins else None)
            self._hash(kind)

    @property
    def litert_kinds(self):
        return tuple(kind for kind in self.kinds if kind in LITERT_KINDS)

    def _prove(self, kind: str, references: Sequence[Reference],
               checked: Optional[ParityReport]) -> ReloadCheck:
        self.on_phase(f"reload {kind}")
        if quantization_of(kind):
            return prove_quantized(self.entry, kind, self.staged[kind], references,
                                   self.video_references, self.weights_proven.get(kind))
        return prove_artifact(self.entry, kind, self.staged[kind], references, checked,
                              self.fingerprint, keras_path=self.staged["keras"])

    def write_and_check_litert(self, model, references: Sequence[Reference]) -> None:
        """Write the ``.tflite`` and run its parity clips through it now, while the model is
        the only large thing TensorFlow has held: TensorFlow's oneDNN memory pool keeps what
        it once held, so after the Keras parity and the other reloads the LiteRT
        interpreter's own copies would come on top of that (docs/BENCHMARKS.md). ``check``
        then skips it. Raises ParityError as ``check`` does."""
        self._first_write(model)
        with disk_full_as_error(self.out_dir, self.needed):
            self._write_litert(model)
        # the .tflite's proof runs clips of its own: no in-memory report needed (the
        # in-memory check, which runs every clip, comes next and must pass too)
        for kind in self.litert_kinds:
            self.reloads[kind] = self._prove(kind, references, None)
            gc.collect()

    def check(self, references: Sequence[Reference],
              checked: ParityReport) -> Dict[str, ReloadCheck]:
        """Reload each artifact (one at a time, freed before the next) and prove it computes
        what the checked in-memory model computes (``proofs.prove_artifact``); ``checked`` is
        the in-memory parity report."""
        if self.fingerprint is None:
            raise RuntimeError("check() before write()")
        for kind in self.kinds:
            if kind in self.reloads:  # checked before (write_and_check_litert)
                continue
            self.reloads[kind] = self._prove(kind, references, checked)
            gc.collect()
        return self.reloads

    def place(self, report: ConversionRecord) -> Dict[str, str]:
        """Complete ``report`` (reload checks, sizes, checksums), write it, move all into place."""
        if set(self.reloads) != set(self.kinds):
            raise RuntimeError("place() before every artifact was checked")
        self.on_phase("move into place")
        report.reload_checks = dict(self.reloads)
        report.seconds = dict(report.seconds)  # as written: every phase up to this one
        report.artifacts = {k: Artifact(sha256=self.hashes.sha256(k, self.staged[k]),
                                        bytes=dir_size(self.staged[k])) for k in self.kinds}
        with disk_full_as_error(self.out_dir, self.needed):
            report.save(self.staged["report"])
            # on disk before any rename: a crash after a rename never exposes unwritten
            # data under a final name; the marker lets the next run finish the move
            started = time.perf_counter()
            fsync_tree(self.staging)
            # with force, every earlier artifact goes aside, a .tflite this run does not
            # write included: it would no longer match the other artifacts (named in the
            # marker, so that a run killed before retiring it is finished the same way)
            retire = [k for k in PLACE_ORDER if k not in self.kinds + ("report",)]
            with open(os.path.join(self.staging, PLACING_MARKER), "w") as handle:
                handle.write(placing_marker_text(os.getpid(), retire))
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(self.staging)
            self.fsync_seconds = time.perf_counter() - started
        previous = os.path.join(self.staging, "previous")
        os.makedirs(previous)
        started = time.perf_counter()  # the renames take microseconds; the fsync counts
        try:
            move_into_place(self.staging, self.out_dir, self.entry.name,
                            self.kinds + ("report",), previous=previous, retire=retire)
        except BaseException:
            # an interrupt between two renames: everything is back as it was (the staging
            # folder, with the old artifacts, is removed on exit)
            os.remove(os.path.join(self.staging, PLACING_MARKER))
            raise
        self.fsync_seconds += time.perf_counter() - started
        final = artifact_paths(self.out_dir, self.entry.name, litert=True)
        return {kind: final[kind] for kind in self.kinds + ("report",)}


def verify_artifacts(out_dir: str, entry: Entry, source: dict, litert: bool = False,
                     quantize: Sequence[str] = (), videos: int = 0) -> Optional[str]:
    """None when every artifact of ``entry`` is present, matches the checksums in its report,
    passed parity, and came from ``source`` (``{"sha256": ...}`` or ``{"synthetic_seed": n}``);
    otherwise the reason they do not verify. ``litert``: a ``.tflite`` must be among them;
    ``quantize``: each mode's quantised ``.tflite`` too, its top-k agreement measured on at
    least ``videos`` real-video clips (``--video``)."""
    paths = artifact_paths(out_dir, entry.name, litert=True)
    try:
        report = ConversionRecord.load(paths["report"])
    except RecordError as error:
        return f"its report does not load ({error})"
    if report.name != entry.name:
        return "its report is for another entry"
    if report.parity is None:
        return "its report records no torch parity (an export of a Keras model)"
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
    for mode in quantize:
        kind = quantized_kind(mode)
        if kind not in report.artifacts:
            return f"they were converted without --litert-quantize {mode}"
        check = report.reload_checks.get(kind)
        measured = (check.video_clips if check is not None else None) or 0
        if measured < videos:
            return (f"their {SUFFIXES[kind]}'s top-k agreement was measured on {measured} "
                    f"--video clip(s), not {videos}")
    if bool(report.entry.get("raw_frames")) != entry.raw_frames:
        return f"they were converted {'without' if entry.raw_frames else 'with'} --raw-frames"
    return None


