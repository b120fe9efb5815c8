"""The public entry point: convert one zoo entry from a checkpoint into checked artifacts."""

from __future__ import annotations

import gc
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence


from tf_models.artifacts.files import pid_alive
from tf_models.progress import progress_bar
from tf_models.tracing import graph_function

from . import __version__
from .checkpoint import checkpoint_sha256, read_checkpoint
from .errors import (CheckpointError, ConversionError, OutputError, ParityError,
                     require_tensorflow_backend)
from .export import (StagedArtifacts, artifact_paths, artifacts_present, check_output_dir,
                     outputs_to_numpy, recover_killed_run, verify_artifacts)
from .inspect_checkpoint import check_fits
from .mapping import (check_source_tensors, drop_position_table, map_tensors, prepare_state_dict,
                      take_head_rows, tensor_specs)
from .kinds import (build_tf_model, build_torch_model, expected_source_shapes, kind_of,
                    parity_reference)
from .pages import MappedPages, file_mappings
from .record import ConversionRecord, ParityInputs, ParitySummary, SourceRecord
from .parity import (PARITY_CLIPS, ParityReport, check_parity, compute_reference,
                     float64_outputs, make_cases, check_videos, reference_fingerprints,
                     video_case)
from .sources import resolve_checkpoint
from .staging import is_disk_full, is_file_too_large
from .synthetic import synthetic_path, write_synthetic_checkpoint
from .zoo import Entry, get_entry

# in this order so that at most one copy of the weights is alive while a model runs: the
# torch reference runs (on the checkpoint's own tensors) before the Keras model exists, and
# the checkpoint is released as soon as its tensors are in the Keras variables
PHASES = ("load checkpoint", "build torch", "torch reference", "build keras",
          "map tensors", "keras parity", "write SavedModel", "write .weights.h5",
          "write .keras", "reload savedmodel", "reload weights", "reload keras",
          "move into place")


@dataclass
class ConversionResult:
    """What ``convert`` produced: final artifact paths, the parity report, timings."""

    entry: Entry
    paths: Dict[str, str]
    parity: Optional[ParityReport]
    report: ConversionRecord
    seconds: Dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # artifacts were already present and verified against the source


def library_versions() -> Dict[str, str]:
    import keras
    import numpy
    import tensorflow
    import torch

    # timm is not listed: no conversion imports it (torch_reference needs only torch)
    return {"videomae-convert": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "numpy": numpy.__version__}


class PhaseBar:
    """A progress bar over the conversion phases that also records each phase's time, and
    frees what the last phase let go before the next starts (``release_freed_memory``).

    A full garbage collection scans every object the process tracks: about 0.6 s with torch,
    TensorFlow and Keras imported (800 000 objects), paid between every two phases. The
    objects alive when the run starts, none of them the run's, are collected once and then
    frozen out of the collector's view (``gc.freeze``) until ``close()``; what the run itself
    allocates and drops is still collected between phases.
    """

    def __init__(self, name: str, progress: bool,
                 on_phase: Optional[Callable[[str], None]] = None, litert: bool = False,
                 total: Optional[int] = None, quantize: int = 0):
        if total is None:  # a write and a reload phase per .tflite file
            total = len(PHASES) + 2 * (int(litert) + quantize)
        self.bar = progress_bar(total=total, desc=name, unit="phase", disable=not progress,
                                file=sys.stderr, leave=True)
        self.on_phase = on_phase
        self.seconds: Dict[str, float] = {}
        self.current: Optional[str] = None
        # frozen here unless an enclosing run already froze them (it unfreezes)
        self.froze = gc.get_freeze_count() == 0
        if self.froze:
            gc.collect()
            gc.freeze()
        self.started = time.perf_counter()

    def __call__(self, phase: str) -> None:
        self._close_current()
        release_freed_memory()
        self.current = phase
        self.bar.set_postfix_str(phase)
        if self.on_phase is not None:
            self.on_phase(phase)

    def _close_current(self) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] = round(now - self.started, 3)
            self.bar.update(1)
        self.started = now

    def finish(self) -> None:
        self._close_current()
        self.current = None
        self.close()

    def close(self) -> None:
        """Close the bar and hand the frozen objects back to the collector (idempotent)."""
        self.bar.close()
        if self.froze:
            self.froze = False
            gc.unfreeze()


def release_freed_memory() -> None:
    """Collect garbage and hand memory freed since to the OS (glibc's ``malloc_trim``).

    Called between phases: activations torch freed would otherwise stay in the C heap, unused
    by TensorFlow's own pool, and count in the conversion's peak. A no-op where the C library
    has no ``malloc_trim``.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _find_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


# The synthetic checkpoint goes to a scratch folder in the system temporary folder ($TMPDIR),
# named with the run's pid, removed when the run ends; one left by a killed run is removed
# by the next run that finds its pid gone (``remove_stale_scratch``).
SCRATCH_PREFIX = ".videomae-synthetic-"


def make_scratch() -> str:
    """A new scratch folder for a synthetic checkpoint (``convert`` removed killed runs'
    ones when it started)."""
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")


def remove_stale_scratch(folder: Optional[str] = None) -> List[str]:
    """Remove the scratch folders in ``folder`` (default: the temporary folder) whose run is
    gone (no process has the pid in the name); returns what was removed."""
    folder = folder or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        found = re.fullmatch(re.escape(SCRATCH_PREFIX) + r"(\d+)-\w+", name)
        if found and not pid_alive(int(found.group(1))):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(os.path.join(folder, name))
    return removed


def convert(entry, out_dir: str, checkpoint: Optional[str] = None, synthetic: bool = False,
            seed: int = 0, force: bool = False, progress: bool = True,
            parity_batch: int = PARITY_CLIPS, encoder_only: bool = False,
            cache_dir: Optional[str] = None,
            offline: Optional[bool] = None, force_download: bool = False,
            on_phase: Optional[Callable[[str], None]] = None,
            litert: bool = False, raw_frames: bool = False,
            litert_quantize: Sequence[str] = (), videos: Sequence[str] = ()
            ) -> ConversionResult:
    """Convert ``entry`` (an Entry or its name) and write its checked artifacts to ``out_dir``.

    With ``synthetic=True`` a seeded random checkpoint in upstream's file layout is written
    to a scratch folder (deleted afterwards) and converted: the whole real path without a
    download. ``encoder_only=True`` converts just the encoder (token and pooled features) into
    ``NAME_encoder`` artifacts. ``checkpoint`` is an upstream ``.pth``, a ``.safetensors`` /
    ``.bin`` file or a transformers-format folder; without it the entry's upstream file is
    taken from (or downloaded into) the cache folder. ``on_phase(name)`` is called as each
    of ``PHASES`` starts (the benchmark samples memory per phase with it). ``litert=True``
    also writes and checks ``NAME.tflite`` (fp32, dynamic batch; not for pre-trained
    models). ``raw_frames=True`` puts the preprocessing inside the SavedModel and ``.tflite``:
    they take uint8 frames at the entry's size (scaled to [0, 1], the dataset's mean and std
    in the graph), checked against the torch reference on the normalised frames (the parity
    clips are then seeded uint8 frames); the report's entry says ``raw_frames``.
    ``litert_quantize`` (``"fp16"``, ``"int8"``; implies ``litert``) also writes
    ``NAME.fp16.tflite`` / ``NAME.int8.tflite``, each measured against the float64 reference
    and held to a sanity bound (``litert.QUANTIZATIONS``), not to parity; ``videos`` (real
    video files, with ``litert_quantize``): one clip of each, through the torch model and each
    quantised file, gives the report's top-1 / top-5 agreement. ``parity_batch``: seeded
    random clips per parity case (``parity.PARITY_CLIPS``: one); more are checked the same
    way, float64 on the first and torch fp32 on every one (docs/PARITY.md).
    Raises ConversionError (bad input) or ParityError (mismatch).
    """
    try:
        base = get_entry(entry) if isinstance(entry, str) else entry
    except KeyError as error:  # the zoo's message: the close names, and where all are listed
        raise ConversionError(error.args[0]) from None
    entry = base.encoder_variant() if encoder_only else base
    require_tensorflow_backend("converting")
    entry = entry.raw_frames_variant() if raw_frames else entry
    kind = kind_of(entry)
    if entry.test_only and not synthetic and checkpoint is None:
        raise ConversionError(f"{entry.name}: is a test-only configuration with no upstream "
                              f"file; use --synthetic or --checkpoint")
    from .litert import quantization_modes

    litert_quantize = quantization_modes(litert_quantize)
    litert = litert or bool(litert_quantize)
    if litert and not kind.serves_litert:
        raise ConversionError(kind.litert_refusal(entry))
    if videos and encoder_only:
        raise ConversionError("--video measures a classifier's top-1 / top-5 agreement, and "
                              "--encoder-only writes features: drop --video")
    # read before any work: a file that is not a video is one line now, not after minutes
    check_videos(videos, litert_quantize)
    video_cases = [video_case(path, entry) for path in videos]
    check_output_dir(out_dir, entry.name, force, allow_present=True)
    recover_killed_run(out_dir, entry.name)
    remove_stale_scratch()
    if litert and (force or not artifacts_present(out_dir, entry.name)):
        # before any download or work: the converter's memory is known from the size alone
        from .litert import check_litert_memory

        check_litert_memory(entry.name, _weight_bytes(entry))
    if not synthetic:
        checkpoint = resolve_checkpoint(base, checkpoint, cache_dir=cache_dir, offline=offline,
                                        force_download=force_download, progress=progress)
    if artifacts_present(out_dir, entry.name) and not force:
        return _existing(out_dir, entry, checkpoint, synthetic, seed, litert, litert_quantize,
                         len(video_cases))
    phases = PhaseBar(entry.name, progress, on_phase, litert, quantize=len(litert_quantize))
    scratch = None
    try:
        phases("load checkpoint")
        if synthetic:
            scratch, checkpoint = _write_scratch_checkpoint(base, seed)
        source, torch_state, prepared, notes, checkpoint_pages = _read_checked(
            entry, checkpoint, seed if synthetic else None)

        phases("build torch")
        # built on the meta device and given the checkpoint's own tensors: no second copy
        torch_model = build_torch_model(entry, device="meta")
        torch_model.load_state_dict(torch_state, strict=True, assign=True)
        del torch_state

        phases("torch reference")
        cases = make_cases(entry, batch=parity_batch, seed=seed)
        references = compute_reference(parity_reference(entry, torch_model), cases)
        video_references = float64_outputs(parity_reference(entry, torch_model), video_cases)
        del torch_model
        # the run read the whole checkpoint into memory; let it go before the Keras weights
        # are allocated (mapping reads each tensor back from the file, one at a time)
        checkpoint_pages.release_all()

        phases("build keras")
        tf_model = build_tf_model(entry)
        variables = tf_model.named_variables()

        phases("map tensors")
        # two-way coverage and shapes, every problem listed at once, before any assignment;
        # each tensor's pages of the memory-mapped checkpoint are handed back as soon as its
        # values are in the Keras variable, so the two copies never coexist whole
        map_tensors(prepared, variables, checkpoint, on_consumed=checkpoint_pages.release)
        # the last references to the checkpoint's tensors: its memory map is released here
        del prepared, variables

        with StagedArtifacts(entry, out_dir, force, on_phase=phases, litert=litert,
                             quantize=litert_quantize,
                             video_references=video_references) as staged:
            litert_failure = None
            if litert:
                # before the Keras parity grows TensorFlow's memory pool (the LiteRT check's
                # peak: docs/BENCHMARKS.md); a failure waits for the parity, which names the
                # block where a wrong mapping shows
                try:
                    staged.write_and_check_litert(tf_model, references)
                except ParityError as error:
                    litert_failure = error

            phases("keras parity")
            parity = check_parity(_tf_with_hidden(kind, tf_model), references,
                                  entry.parity_atol, kind.block_layout(entry))
            parity.raise_if_failed(f"parity of {entry.name}")
            if litert_failure is not None:
                raise litert_failure
            for reference in references:  # the reload checks compare final outputs only
                reference.drop_states()

            # the phase timer's own dict: complete up to the last reload check when written
            report = _record(entry, source, parity, notes, references, parity_batch, seed,
                             phases.seconds)
            staged.write(tf_model)
            del tf_model  # the reload checks each build a fresh model; do not hold two
            gc.collect()
            staged.check(references, parity)
            paths = staged.place(report)
        phases.finish()
        return ConversionResult(entry, paths, parity, report, phases.seconds)
    finally:
        phases.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _write_scratch_checkpoint(base: Entry, seed: int):
    """(scratch folder, path) of ``base``'s synthetic checkpoint of ``seed``, written into a
    new scratch folder; a temporary folder that cannot take it (full, a file-size limit, not
    writable) is one ConversionError line naming it and the room the file takes."""
    upstream = base.upstream  # a mapped head's source file: the whole source head
    scratch = None
    try:
        scratch = make_scratch()
        return scratch, write_synthetic_checkpoint(
            upstream, synthetic_path(upstream, seed, scratch), seed)
    except BaseException as error:  # a stop too: the caller never gets the folder to remove
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        if not isinstance(error, (OSError, RuntimeError)):  # torch.save's short write: Runtime
            raise
        folder = tempfile.gettempdir()
        reason = ("no space left on the device" if is_disk_full(error)
                  else "File too large" if is_file_too_large(error)
                  else error.strerror or str(error) if isinstance(error, OSError)
                  else "the file was cut short")
        import numpy as np

        needed = _weight_bytes(upstream) // 4 * np.dtype(upstream.file_layout[1]).itemsize
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free there"
        except OSError:
            free = "free space unknown"
        raise ConversionError(
            f"{folder}: cannot write the --synthetic checkpoint into the temporary folder "
            f"({reason}); it takes about {needed / 2**20:.1f} MB ({free}): free space, or "
            f"set TMPDIR to another folder (a file-size limit, `ulimit -f`, refuses it too)"
        ) from None


def _weight_bytes(entry: Entry) -> int:
    """fp32 bytes of ``entry``'s weights, from its torch model built on the meta device."""
    model = build_torch_model(entry, device="meta")
    return 4 * sum(p.numel() for p in model.parameters())


def _record(entry: Entry, source: SourceRecord, parity: ParityReport, notes, references,
            parity_batch: int, seed: int, seconds: Dict[str, float]) -> ConversionRecord:
    """The conversion's record, before the artifacts complete it."""
    return ConversionRecord(
        entry=entry.to_dict(), source=source, versions=library_versions(),
        parity=ParitySummary(**parity.to_dict()), notes=notes,
        parity_inputs=ParityInputs(batch=parity_batch, seed=seed,
                                   cases=[r.case.name for r in references],
                                   float64_samples=min(r.float64_samples for r in references)),
        reference_fingerprint=reference_fingerprints(references), seconds=seconds)


def _read_checked(entry: Entry, checkpoint: str, synthetic_seed: Optional[int]):
    """Read ``checkpoint`` for ``entry``, every tensor checked against it (``_check_source``)
    before the reader reads a value or any framework touches one. Returns (source record, the
    torch side's tensors, the mapping's prepared tensors, notes, the checkpoint's memory
    pages)."""
    mappings_before = file_mappings()
    settled: List[str] = []
    loaded = read_checkpoint(
        checkpoint, check=lambda state: _check_source(entry, state, checkpoint, settled))
    pages = MappedPages(mappings_before, file_mappings(), checkpoint)
    source = SourceRecord(sha256=loaded.sha256,
                          path=None if synthetic_seed is not None
                          else os.path.abspath(checkpoint),
                          synthetic_seed=synthetic_seed, layout=loaded.layout,
                          container_key=loaded.container_key, dtypes=loaded.source_dtypes)
    notes = list(loaded.notes) + settled
    take_head_rows(entry, loaded.state_dict, notes)
    torch_state, map_state = kind_of(entry).split_state(entry, loaded.state_dict)
    del loaded
    # the pre-passes run before anything heavy; the torch reference then runs before the
    # Keras model exists, because TensorFlow keeps the memory it once held for itself
    return source, torch_state, prepare_state_dict(map_state), notes, pages


def _check_source(entry: Entry, state_dict, checkpoint: str, notes: List[str]) -> None:
    """Every name, shape and dtype of the checkpoint's tensors against ``entry``, all
    problems in one line, from their metadata: before the reader upcasts or scans a value,
    torch loads a tensor or a pre-pass combines two, so a file of another model, an edited
    one or one declaring huge tensors stops here. Only a stored sinusoid table is read
    (``drop_position_table`` drops it, noting so, when it is upstream's)."""
    import torch

    # against the upstream file's own entry (a mapped head's file holds the source head)
    check_fits(entry.upstream, state_dict, checkpoint, encoder_only=entry.encoder_only,
               requested=entry)
    drop_position_table(state_dict, notes)
    # what the torch side will load, as shapes: the head's rows taken, the kind's split made
    shapes = {name: torch.empty(t.shape, dtype=t.dtype, device="meta")
              for name, t in state_dict.items()}
    take_head_rows(entry, shapes, [])
    torch_state, _ = kind_of(entry).split_state(entry, shapes)
    check_source_tensors(tensor_specs(torch_state), expected_source_shapes(entry), checkpoint)


def _existing(out_dir: str, entry: Entry, checkpoint: Optional[str], synthetic: bool,
              seed: int, litert: bool = False, quantize: Sequence[str] = (), videos: int = 0
              ) -> ConversionResult:
    """Artifacts already present: a skipped result when they verify (``videos``: the
    quantised files measured on that many ``--video`` clips at least), else OutputError."""
    if synthetic:
        source = {"synthetic_seed": seed}
    else:
        if not os.path.exists(checkpoint):
            raise CheckpointError(f"{checkpoint}: no such file")
        source = {"sha256": checkpoint_sha256(checkpoint)}
    paths = artifact_paths(out_dir, entry.name, litert=True)
    reason = verify_artifacts(out_dir, entry, source, litert=litert, quantize=quantize,
                              videos=videos)
    if reason is not None:
        raise OutputError(f"{paths['report']}: artifacts of {entry.name} already exist and "
                          f"{reason}; pass --force to overwrite")
    record = ConversionRecord.load(paths["report"])
    paths = {k: paths[k] for k in list(record.artifacts) + ["report"]}
    return ConversionResult(entry, paths, None, record, skipped=True)


def _tf_with_hidden(kind, tf_model):
    """``run(case) -> (outputs, block states)`` as numpy, through one traced graph: graph
    execution frees each intermediate as soon as it is used, eager Keras holds more (ViT-B:
    0.2 W less at the peak), and the second sample runs faster."""
    graph = graph_function(tf_model.call_with_hidden_states)

    def run(case):
        out, hidden = graph(*kind.case_inputs(case))
        return kind.named(outputs_to_numpy(out)), [h.numpy() for h in hidden]
    return run
