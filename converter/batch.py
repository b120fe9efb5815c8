"""Converting many zoo entries: one child process per entry, a summary table at the end.

Each entry runs ``converter.cli.main`` in its own process (``framework_child``: started as
the console scripts start), so one failure (or a large model's memory) cannot spoil the
others, and its peak memory is measured on its own (``os.wait4``). Re-running resumes: the
child skips entries whose artifacts verify. As each of its phases starts, a child writes the
phase's name into a pipe of its own (``report_phase``), which its parent relays
(``on_phase``): a long entry shows where it is, as a single conversion's bar does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Union

from tf_models.artifacts.files import FileLock, LockHeld
from tf_models.lifetime import framework_child

from .errors import ConversionError, OutputError
from .kinds import kind_of
from .parity import check_videos
from .staging import probe_writable
from .record import RunOutcome
from .zoo import DATASETS, TEST_SIZES, TEST_ZOO, ZOO, Entry

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
# in the log folder: held by the one ``--all`` run writing there
BATCH_LOCK = ".all.lock"


@dataclass
class BatchRow:
    """One line of the summary: what happened to one entry."""

    name: str
    status: str                 # converted / skipped / failed
    tf_err_vs_f64: Optional[float]
    seconds: float
    peak_rss_mb: Optional[float]
    message: str = ""
    log: Optional[str] = None


def select_entries(size: Union[None, str, Sequence[str]] = None, mode: Optional[str] = None,
                   dataset: Optional[str] = None, family: Optional[str] = None) -> List[Entry]:
    """Zoo entries narrowed by whichever of size / mode / dataset / family are given (the
    test-only tiny entries only when asked for by their size). ``size`` may be several sizes
    (``("S", "B")``: every V2 entry but ViT-g's), in zoo order."""
    sizes = (size,) if isinstance(size, str) else tuple(size or ())
    pool = [e for e in TEST_ZOO.values() if e.size in sizes]
    if not sizes or set(sizes) - set(TEST_SIZES):
        pool = list(ZOO.values()) + pool
    return [e for e in pool
            if (not sizes or e.size in sizes) and (mode is None or e.mode == mode)
            and (dataset is None or e.dataset == dataset)
            and (family is None or e.family == family)]


def _candidate_files(folder: str) -> Iterable[str]:
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
            yield path
        elif os.path.isfile(path) and name.endswith(CHECKPOINT_SUFFIXES):
            yield path


def match_checkpoints(folder: str, entries: List[Entry],
                      unreadable: Optional[List[str]] = None) -> Dict[str, str]:
    """Entry name -> checkpoint path, matched by each file's contents (size from the embedding
    width, mode from the key names, dataset from the head's class count), not its name.

    PT files of the same size are told apart by the folder only when one dataset fits; two
    files for one entry are an error naming both. A candidate that cannot be read (damaged,
    not a checkpoint) matches nothing; its one-line error goes to ``unreadable``.
    """
    from .checkpoint import describe
    from .inspect_checkpoint import infer_checkpoint

    if not os.path.isdir(folder):
        raise ConversionError(f"{folder}: --checkpoint-dir is not a folder")
    wanted = {e.name: e for e in entries}
    found: Dict[str, str] = {}
    for path in _candidate_files(folder):
        try:
            info = infer_checkpoint(describe(path).state_dict)
        except ConversionError as error:  # the rows of unmatched entries name it
            if unreadable is not None:
                unreadable.append(str(error))
            continue
        except Exception as error:  # whatever else a hostile file raises: one file, not the run
            if unreadable is not None:
                lines = str(error).strip().splitlines()
                unreadable.append(f"{path}: not a readable checkpoint ({type(error).__name__}"
                                  f"{': ' + lines[0] if lines else ''})")
            continue
        for entry in _entries_for(info, wanted.values(), path):
            if entry.name in found:
                raise ConversionError(f"{path}: also matches {entry.name}, already matched by "
                                      f"{found[entry.name]}; keep one of them in {folder}")
            found[entry.name] = path
    return found


def _entries_for(info, entries: Iterable[Entry], path: str) -> List[Entry]:
    """Entries a checkpoint fits. A PT file has no head, so its dataset is ambiguous: it is
    matched when its file name names the dataset tag, or when only one candidate remains."""
    # a mapped head's entry converts its source entry's file (same ``upstream``)
    fits = [e for e in entries if e.size == info.size and e.mode == info.mode
            and (info.mode == "PT" or e.upstream.dataset == info.dataset)]
    if len({e.upstream.name for e in fits}) > 1:
        lowered = os.path.basename(path).lower()
        named = [e for e in fits if _named_by(e, lowered)]
        fits = named if len({e.upstream.name for e in named}) == 1 else []
    return fits


def _named_by(entry: Entry, file_name: str) -> bool:
    """Whether a lower-cased file name names ``entry`` among entries the same shape: a PT
    file by its dataset, a V2 fine-tuned file by its K710 stage (``..._k710_it_k400_ft``) or
    by the stage's absence."""
    if entry.mode == "PT":
        return any(word in file_name for word in DATASETS[entry.dataset].spellings())
    stages = {e.stage for e in ZOO.values() if e.stage}
    staged = any(word in file_name for stage in stages for word in DATASETS[stage].spellings())
    return staged == (entry.stage is not None)


def _child_command(entry: Entry, out_dir: str, checkpoint: Optional[str], synthetic: bool,
                   seed: int, force: bool, outcome: str, litert: bool = False,
                   raw_frames: bool = False, quantize: Sequence[str] = (),
                   videos: Sequence[str] = ()) -> List[str]:
    command = framework_child("converter.cli:main", "--name", entry.name, "--out", out_dir,
                              "--seed", str(seed), "--quiet", "--outcome-file", outcome)
    command += ["--synthetic"] if synthetic else ["--checkpoint", checkpoint]
    if force:
        command.append("--force")
    if (litert or quantize) and kind_of(entry).serves_litert:
        command.append("--litert")
        for mode in quantize:
            command += ["--litert-quantize", mode]
        for video in videos:
            command += ["--video", os.path.abspath(video)]
    if raw_frames:
        command.append("--raw-frames")
    return command


def report_phase(fd: int, phase: str) -> None:
    """The child's side of the phase pipe: ``phase`` as one line, in one write (whole even
    beside other writers: a pipe's writes up to 4 KiB are atomic). Progress only: a parent
    that stopped reading does not stop the conversion."""
    try:
        os.write(fd, f"{phase}\n".encode("utf-8"))
    except OSError:
        pass


def _relay_phases(fd: int, name: str, started: float, on_phase, children) -> None:
    """The parent's side: ``on_phase(name, phase, seconds since the child started)`` for each
    line of the pipe ``fd`` until the child's end closes (it exits), then close ``fd``."""
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            if line.strip() and not children.stopping:
                on_phase(name, line.strip(), time.perf_counter() - started)


class _Children:
    """The running children of one ``convert_all``: once it is stopping (a stop signal or
    any error in the parent), each running child gets SIGTERM, which it handles like its own
    (its staging folder removed, exit 2), and no new child starts."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set = set()
        self.stopping = False

    def start(self, command: List[str], **options) -> Optional[subprocess.Popen]:
        with self._lock:
            if self.stopping:
                return None
            process = subprocess.Popen(command, **options)
            self._running.add(process)
            return process

    def finished(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(process)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for process in self._running:
                # os.kill, not send_signal: that would poll, and could reap the child before
                # its thread's wait4 does (which then loses its status and peak memory)
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass  # exited; its thread is collecting it


def _run_one(entry: Entry, out_dir: str, log_dir: str, checkpoint: Optional[str],
             synthetic: bool, seed: int, force: bool, litert: bool = False,
             raw_frames: bool = False, quantize: Sequence[str] = (),
             videos: Sequence[str] = (), *, children: _Children,
             on_phase=None) -> Optional[BatchRow]:
    """Convert ``entry`` in a child process; None when ``children`` is already stopping.
    ``on_phase(name, phase, seconds)`` as each of the child's phases starts."""
    if children.stopping:
        return None  # before its log is truncated (``start`` says so again under its lock)
    log = os.path.join(log_dir, f"{entry.name}.log")
    outcome_path = os.path.join(log_dir, f"{entry.name}.outcome.json")
    if os.path.exists(outcome_path):
        os.remove(outcome_path)  # a previous run's; this child writes its own
    started = time.perf_counter()
    command = _child_command(entry, out_dir, checkpoint, synthetic, seed, force, outcome_path,
                             litert, raw_frames, quantize, videos)
    # the phase pipe's write end goes to the child alone: the read end sees its end when the
    # child exits
    phases = os.pipe() if on_phase else None
    relay = None
    try:
        with open(log, "w") as handle:
            process = children.start(
                command + (["--phases-fd", str(phases[1])] if phases else []),
                stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                pass_fds=phases[1:] if phases else ())
            if process is None:
                return None
            if phases:
                os.close(phases[1])
                relay = threading.Thread(target=_relay_phases, daemon=True, args=(
                    phases[0], entry.name, started, on_phase, children))
                phases = None  # both ends handed on
                relay.start()
            try:
                # wait4 on this child's pid gives its own peak RSS, even with several jobs
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                children.finished(process)
            returncode = os.waitstatus_to_exitcode(status)
    finally:
        for fd in phases or ():
            os.close(fd)
        if relay is not None:
            # the child's last phases shown before its row; bounded, should a process the
            # child forked still hold the write end
            relay.join(timeout=5)
    seconds = time.perf_counter() - started
    peak_mb = usage.ru_maxrss / 1024.0  # Linux reports kilobytes
    outcome = RunOutcome.load(outcome_path)
    if returncode < 0:  # killed: its log ends wherever it was (TensorFlow's start-up lines)
        return BatchRow(entry.name, "failed", None, seconds, peak_mb,
                        _killed_message(-returncode, peak_mb, log), log)
    if outcome is None or (returncode != 0) != (outcome.status == "failed"):
        # no outcome: the child died before it could say (a crash); its log says why
        with open(log) as handle:
            lines = [line.strip() for line in handle if line.strip()]
        last = lines[-1] if lines else f"exit status {returncode}"
        return BatchRow(entry.name, "failed", None, seconds, peak_mb, last, log)
    message = outcome.message
    kind = kind_of(entry)
    if (litert or quantize) and not kind.serves_litert and outcome.status != "failed":
        message = "; ".join(m for m in (message, f"no .tflite: {kind.title}") if m)
    return BatchRow(entry.name, outcome.status, outcome.tf_err_vs_f64, seconds, peak_mb,
                    message, log)


def _killed_message(signum: int, peak_mb: float, log: str) -> str:
    """A row's message for a child ended by signal ``signum``."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    why = (f" (the out-of-memory killer, at {peak_mb / 1024:.1f} GB, or another process)"
           if signum == signal.SIGKILL else "")
    return f"killed by {name}{why}; its log: {log}"


def convert_all(entries: List[Entry], out_dir: str, synthetic: bool = False,
                checkpoint_dir: Optional[str] = None, jobs: int = 1, seed: int = 0,
                force: bool = False, on_row=None, litert: bool = False,
                raw_frames: bool = False, quantize: Sequence[str] = (),
                videos: Sequence[str] = (), on_start=None, on_phase=None) -> List[BatchRow]:
    """Convert ``entries`` into ``out_dir``, ``jobs`` child processes at a time.

    ``litert``: also a checked ``NAME.tflite`` for every entry LiteRT can serve (fine-tuned
    ones; a pre-trained entry's row says it has none); ``quantize`` / ``videos``: their
    ``--litert-quantize`` files too, measured on those videos. ``raw_frames``: every SavedModel and
    ``.tflite`` takes uint8 frames (``convert(raw_frames=True)``).

    Real checkpoints come from ``checkpoint_dir`` (matched by content); entries with no
    matching file are reported as failed. Logs go to ``out_dir/logs/NAME.log``.
    ``on_start()`` is called once the run is past its refusals (the options, the checkpoint
    folder, ``out_dir`` and its lock: each a ConversionError), before the first row;
    ``on_row(row)`` as each entry finishes; ``on_phase(name, phase, seconds)`` as each of an
    entry's conversion phases (``api.PHASES``) starts, ``seconds`` after its child started
    (from the threads that wait for the children: several at once with ``jobs`` > 1). If
    this process stops (a stop signal, any error), its running children get SIGTERM and stop
    too, and no other starts.
    """
    if not synthetic and checkpoint_dir is None:
        raise ConversionError("--all needs --checkpoint-dir DIR or --synthetic")
    if jobs < 1:
        raise ConversionError(f"--jobs must be at least 1, not {jobs}")
    check_videos(videos, quantize)  # each child decodes them; a missing one fails here, once
    # a file, or a folder that cannot be made or written: one line (a read-only folder too,
    # where every entry would be verified and skipped: the logs and the lock need writing)
    probe_writable(out_dir, writes=f", where --all writes {os.path.join(out_dir, 'logs')} "
                                   f"and its lock, even for entries already converted")
    unreadable: List[str] = []
    matched = {} if synthetic else match_checkpoints(checkpoint_dir, entries, unreadable)
    log_dir = os.path.join(out_dir, "logs")
    try:
        os.makedirs(log_dir, exist_ok=True)
    except OSError as error:  # logs/ is a file, or a fault of the file system
        reason = error.strerror or error
        raise ConversionError(f"{log_dir}: cannot make the log folder ({reason}); move what "
                              f"is there or choose another --out") from None
    # one --all per output folder: a second one would truncate the running one's logs and
    # take its children's outcome files (a single entry's run is locked out per entry)
    lock = FileLock(os.path.join(log_dir, BATCH_LOCK))
    try:
        lock.acquire(wait=False)
    except LockHeld as held:
        who = f" (pid {held.holder})" if held.holder else ""
        raise OutputError(f"{out_dir}: another videomae-convert --all run{who} is converting "
                          f"into this folder; wait for it to finish, or use another "
                          f"--out") from None
    except OSError as error:  # a full disk, or a file system without flock
        raise OutputError(f"{log_dir}: cannot take the lock of --all there "
                          f"({error.strerror or error}); free space or choose another "
                          f"--out") from None
    try:
        if on_start:
            on_start()
        return _convert_matched(entries, out_dir, log_dir, matched, unreadable, synthetic,
                                checkpoint_dir, jobs, seed, force, on_row, litert, raw_frames,
                                quantize, videos, on_phase)
    finally:
        lock.release()


def _convert_matched(entries, out_dir, log_dir, matched, unreadable, synthetic,
                     checkpoint_dir, jobs, seed, force, on_row, litert, raw_frames, quantize,
                     videos, on_phase=None) -> List[BatchRow]:
    """``convert_all``'s conversions, under its lock."""
    rows: Dict[str, BatchRow] = {}
    todo = []
    for entry in entries:
        if not synthetic and entry.name not in matched:
            also = (f"; {len(unreadable)} file(s) there could not be read, the first: "
                    f"{unreadable[0]}" if unreadable else "")
            rows[entry.name] = BatchRow(entry.name, "failed", None, 0.0, None,
                                        f"no checkpoint in {checkpoint_dir} matches "
                                        f"{entry.name}{also}")
            if on_row:
                on_row(rows[entry.name])
        else:
            todo.append(entry)

    children = _Children()

    def work(entry: Entry) -> Optional[BatchRow]:
        row = _run_one(entry, out_dir, log_dir, matched.get(entry.name), synthetic, seed, force,
                       litert, raw_frames, quantize, videos, children=children,
                       on_phase=on_phase)
        if on_row and row is not None and not children.stopping:
            on_row(row)
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            for row in pool.map(work, todo):
                rows[row.name] = row
        except BaseException:
            # before the pool waits for its threads: they wait for the children, which now
            # stop as this process does instead of finishing their entries
            children.stop()
            raise
    return [rows[e.name] for e in entries]


def format_markdown(rows: List[BatchRow]) -> str:
    """The summary as a Markdown table (entry, status, seconds, parity error against float64,
    peak RSS), for the docs."""
    lines = ["| entry | status | seconds | tf error vs float64 | peak RSS | note |",
             "|---|---|---:|---:|---:|---|"]
    for row in rows:
        err = f"{row.tf_err_vs_f64:.2e}" if row.tf_err_vs_f64 is not None else "-"
        rss = f"{row.peak_rss_mb / 1024:.2f} GB" if row.peak_rss_mb else "-"
        note = row.message.replace("|", "/")
        lines.append(f"| {row.name} | {row.status} | {row.seconds:.0f} | {err} | {rss} | "
                     f"{note} |")
    return "\n".join(lines)


def format_table(rows: List[BatchRow]) -> str:
    """The summary as a fixed-width text table."""
    header = f"{'entry':36s} {'status':9s} {'tf err':>9s} {'time':>8s} {'peak RSS':>9s}  message"
    lines = [header, "-" * len(header)]
    for row in rows:
        err = f"{row.tf_err_vs_f64:.1e}" if row.tf_err_vs_f64 is not None else "-"
        rss = f"{row.peak_rss_mb / 1024:.1f} GB" if row.peak_rss_mb else "-"
        lines.append(f"{row.name:36s} {row.status:9s} {err:>9s} {row.seconds:7.0f}s {rss:>9s}"
                     f"  {row.message}")
    counts = {s: sum(r.status == s for r in rows) for s in ("converted", "skipped", "failed")}
    lines.append(f"{counts['converted']} converted, {counts['skipped']} skipped, "
                 f"{counts['failed']} failed")
    return "\n".join(lines)
