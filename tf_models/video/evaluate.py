"""Scoring a labelled list of videos with upstream's test protocol, resumably and in shards.

Results go to ``OUT/results.jsonl`` (``OUT/results-IofN.jsonl`` for shard I of N) as they are
made: a header line saying what run they belong to, then one line per video with its label and
every view's logits (or its error). A killed run resumes where it stopped; shards merge into the
same numbers as one run. The merge is upstream's ``merge()``: softmax per view, mean over a
video's views, top-1 and top-5 in percent; per-class top-1 is added.

Decoding runs in a pool of worker threads (PyAV and OpenCV release the GIL) while the model
runs in the calling thread on batches of views that may span several videos.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..artifacts.checksums import tree_sha256
from .ahead import decoded_ahead
from .decode import MAX_PIXELS, VideoError, read_views
from .labels import class_names, index_names
from .predict import DEFAULT_BATCH, merge_views, model_protocol, top_k
from .protocol import normalize_views


class EvaluateError(ValueError):
    """A list, shard or results folder that cannot be used; ``str()`` is one line."""


@dataclass
class RunStats:
    """Timing of one evaluation run (this process only; resumed videos are not counted)."""

    videos: int = 0
    views: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0      # the model running (calling thread)
    wait_s: float = 0.0       # the calling thread waiting for decoded videos
    decode_s: float = 0.0     # decode + resize + crop + normalise, summed over workers

    def to_dict(self) -> dict:
        wall = max(self.wall_s, 1e-9)
        return {"videos": self.videos, "views": self.views, "wall_s": round(self.wall_s, 3),
                "model_s": round(self.model_s, 3), "wait_s": round(self.wait_s, 3),
                "decode_s": round(self.decode_s, 3),
                "videos_per_s": round(self.videos / wall, 3),
                "views_per_s": round(self.views / wall, 3),
                "decode_wait_share": round(self.wait_s / wall, 3)}


# --- the list --------------------------------------------------------------------------------

def read_list_lines(path: str) -> List[str]:
    """The lines of a video list, a comment (a line whose first character that is not blank
    is ``#``) read as a blank line, so that line numbers stay the file's; EvaluateError (one
    line) when it cannot be read."""
    if os.path.isdir(path):
        raise EvaluateError(f"{path}: is a folder, expected a list file naming its videos (one "
                            "per line, paths below --root); give the folder as --root and the "
                            "list as --list")
    if not os.path.exists(path):
        raise EvaluateError(f"{path}: no such list file; check the --list path")
    try:
        with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark is no path
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluateError(f"{path}: cannot read the list ({error.__class__.__name__}: "
                            f"{error})") from None
    return ["" if line.lstrip().startswith("#") else line for line in lines]


def is_label(text: str) -> bool:
    """An integer written in ASCII digits (``str.isdigit`` also takes ``²``, which int() does
    not)."""
    return re.fullmatch(r"-?[0-9]+", text) is not None


def read_list(path: str, num_classes: Optional[int] = None,
              each_once: bool = True) -> List[Tuple[str, int]]:
    """Upstream's annotation list: ``relative/path.mp4 label`` per line, space separated; each
    video once unless ``each_once`` is False (a training list may repeat a video to sample it
    more often; results are keyed by video, so an evaluated one may not)."""
    lines = read_list_lines(path)
    items, first_at = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)
        if len(parts) != 2 or not is_label(parts[1]):
            raise EvaluateError(f"{path}:{number}: expected 'relative/path.mp4 LABEL', found "
                                f"{line.strip()[:80]!r}")
        fields = parts[0].rsplit(None, 1)
        if len(fields) == 2 and is_label(fields[1]):
            raise EvaluateError(f"{path}:{number}: expected 'relative/path.mp4 LABEL', found "
                                f"three fields {line.strip()[:80]!r} (upstream's rawframe "
                                "lists say 'FOLDER FRAMES LABEL'); list the video files")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise EvaluateError(f"{path}:{number}: label {label} is outside 0..{num_classes - 1}"
                                " of the model's classes")
        # one video however its path is written ('a.mp4', './a.mp4', 'x/../a.mp4'): the file
        # under --root that the run reads
        key = os.path.normpath(parts[0])
        if each_once and key in first_at:
            first, written = first_at[key]
            as_written = "" if written == parts[0] else f" as {written}"
            raise EvaluateError(f"{path}:{number}: {parts[0]} is listed again (first at line "
                                f"{first}{as_written}); list each video once")
        first_at.setdefault(key, (number, parts[0]))
        items.append((parts[0], label))
    if not items:
        raise EvaluateError(f"{path}: the list holds no videos")
    return items


def list_digest(items: Sequence[Tuple[str, int]]) -> str:
    """sha256 of the list's content, so results of another list are never mixed in."""
    digest = hashlib.sha256()
    for video, label in items:
        digest.update(f"{video}\t{label}\n".encode("utf-8"))
    return digest.hexdigest()


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``"2/4"`` -> (2, 4): the second of four shares (1-based)."""
    if text is None:
        return 1, 1
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise EvaluateError(f"--shard {text}: expected I/N, e.g. 2/4")
    index, count = int(parts[0]), int(parts[1])
    if count < 1 or not 1 <= index <= count:
        raise EvaluateError(f"--shard {text}: I must be between 1 and N")
    return index, count


def shard_items(items: Sequence, index: int, count: int) -> list:
    """The deterministic share ``index`` of ``count`` (1-based): every count-th item."""
    return list(items[index - 1::count])


def results_path(out_dir: str, index: int = 1, count: int = 1) -> str:
    name = "results.jsonl" if count == 1 else f"results-{index}of{count}.jsonl"
    return os.path.join(out_dir, name)


# --- the results file ------------------------------------------------------------------------

def read_results(path: str) -> Tuple[Optional[dict], Dict[str, dict], int]:
    """(header, {video: last record}, bytes of complete lines) of a results file.

    A last line cut short by a kill (no newline) is ignored, and overwritten when the run
    resumes; any other line that is not a JSON record is damage the run did not make, and an
    EvaluateError naming it (a resume would otherwise drop every result after it)."""
    header, records, good = None, {}, 0
    with open(path, "rb") as handle:
        data = handle.read()
    *complete, _ = data.split(b"\n")  # after the last newline: nothing, or a line cut short
    for number, raw in enumerate(complete, 1):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            found = raw[:60].decode("utf-8", "replace")
            raise EvaluateError(f"{path}:{number}: expected one JSON record per line, found "
                                f"{found!r}; only a last line cut short (a killed run) is "
                                "dropped: repair or remove it (a video whose line is removed "
                                "is scored again)")
        good += len(raw) + 1
        if header is None and "header" in record:
            header = record["header"]
        elif "video" in record:
            records[record["video"]] = record
    return header, records, good


# what must agree for results to belong to one run; "model_sha256" only where both headers
# have it (results files written before it was recorded carry the model's name alone)
RUN_KEYS = ("model", "model_sha256", "dataset", "views", "num_frames", "img_size",
            "list_sha256")


def _shown(key: str, value):
    # a digest is told apart by its first characters
    return repr(value[:12] + "...") if key.endswith("sha256") and isinstance(value, str) \
        else repr(value)


def _header_mismatch(found: dict, expected: dict, keys: Iterable[str]) -> List[str]:
    return [f"{key} {_shown(key, found.get(key))} (not {_shown(key, expected.get(key))})"
            for key in keys if found.get(key) != expected.get(key)
            and not (key == "model_sha256" and None in (found.get(key), expected.get(key)))]


def open_results(path: str, header: dict) -> Tuple[Dict[str, dict], object]:
    """Open (or resume) the results file at ``path``: (records already there, append handle).

    A new file appears with its header already in it (written to a temporary name, then
    renamed): a run stopped before that, by a kill or a full disk, leaves no file that the
    next run would take for someone else's. An empty file (left so by an earlier version) is
    such a start too, and so is a file of another run that holds its header and no video (a
    run refused after it started, a wrong --ray-address say: nothing of it is lost)."""
    done: Dict[str, dict] = {}
    if os.path.exists(os.path.join(os.path.dirname(path), "extract.json")):
        raise EvaluateError(f"{os.path.dirname(path) or '.'}: holds videomae-extract features "
                            "(and their summary.json); use another --out folder for results")
    resume = os.path.exists(path) and os.path.getsize(path) > 0
    if resume:
        found, done, good = read_results(path)
        if found is None:
            raise EvaluateError(f"{path}: not a results file of videomae-evaluate; use another "
                                "--out folder")
        mismatch = _header_mismatch(found, header, RUN_KEYS + ("shard",))
        if mismatch and done:
            raise EvaluateError(f"{path}: holds results of another run ({'; '.join(mismatch)}); "
                                "use another --out folder or remove it")
        resume = not mismatch
    if resume:
        handle = open(path, "r+b")
        handle.truncate(good)
        handle.seek(good)
    else:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        temporary = f"{path}.tmp{os.getpid()}"
        try:
            with open(temporary, "wb") as handle:
                append_record(handle, {"header": header})
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        handle = open(path, "r+b")
        handle.seek(0, os.SEEK_END)
    return done, handle


def append_record(handle, record: dict) -> None:
    """Append one record line to an open results file and make it durable (fsync)."""
    handle.write((json.dumps(record) + "\n").encode("utf-8"))
    handle.flush()
    os.fsync(handle.fileno())


def run_header(model, protocol, items: Sequence[Tuple[str, int]],
               shard: Tuple[int, int] = (1, 1)) -> dict:
    """The header line of a results file: what model (its name, and the sha256 of the file or
    folder it was read from: another model under the same name is another run), protocol,
    list and shard it holds."""
    path = getattr(model, "path", None)
    return {"model": model.name, "model_sha256": tree_sha256(path) if path else None,
            "dataset": model.dataset, "num_classes": model.num_classes,
            "views": protocol.views_label,
            "num_frames": model.num_frames, "img_size": model.img_size,
            "list_sha256": list_digest(items), "list_videos": len(items),
            "shard": list(shard)}


def pending_items(items: Sequence[Tuple[str, int]], done: Dict[str, dict]) -> list:
    """The items still to score: not in ``done``, or failed there (a failure is tried again)."""
    return [(video, label) for video, label in items
            if video not in done or "error" in done[video]]


# --- scoring ---------------------------------------------------------------------------------

def _load_item(root: str, video: str, protocol, max_pixels: int):
    start = time.perf_counter()
    views = normalize_views(read_views(os.path.join(root, video), protocol, max_pixels),
                            protocol.mean, protocol.std)
    return views, time.perf_counter() - start


def evaluate_list(model, items: Sequence[Tuple[str, int]], root: str, out_dir: str,
                  shard: Tuple[int, int] = (1, 1), views: Optional[str] = None,
                  workers: int = 2, batch_size: int = DEFAULT_BATCH,
                  max_pixels: int = MAX_PIXELS,
                  on_error: Optional[Callable[[str], None]] = None,
                  progress: Optional[Callable[[int], None]] = None,
                  on_total: Optional[Callable[[int, int], None]] = None) -> Tuple[str, RunStats]:
    """Score this shard of ``items`` with ``model`` into ``out_dir``; return (results file, stats).

    Videos already in the results file are skipped (resume); a video that failed before is
    tried again. A bad video is recorded with its one-line error, reported to ``on_error``,
    and the run goes on. ``progress(n)`` is called as n more videos finish; ``on_total(todo,
    done)`` once, before scoring starts.
    """
    protocol = model_protocol(model, views)
    index, count = shard
    path = results_path(out_dir, index, count)
    done, handle = open_results(path, run_header(model, protocol, items, shard))
    mine = shard_items(items, index, count)
    todo = pending_items(mine, done)
    if on_total is not None:
        on_total(len(todo), len(mine) - len(todo))
    stats = RunStats()
    started = time.perf_counter()
    try:
        with contextlib.closing(decoded_ahead(
                todo, lambda item: _load_item(root, item[0], protocol, max_pixels),
                workers)) as ahead:
            batch: List[Tuple[Tuple[str, int], np.ndarray]] = []

            def flush():
                if not batch:
                    return
                stacked = np.concatenate([v for _, v in batch])
                tick = time.perf_counter()
                logits = np.concatenate([model.run(stacked[s:s + batch_size])
                                         for s in range(0, len(stacked), batch_size)])
                stats.model_s += time.perf_counter() - tick
                offset = 0
                for (video, label), video_views in batch:
                    rows = logits[offset:offset + len(video_views)]
                    offset += len(video_views)
                    append_record(handle, {"video": video, "label": label,
                                           "view_logits": rows.tolist()})
                    stats.videos += 1
                    stats.views += len(video_views)
                if progress is not None:
                    progress(len(batch))
                batch.clear()

            for item, future in ahead:
                tick = time.perf_counter()
                try:
                    video_views, decode_s = future.result()
                except VideoError as error:
                    stats.wait_s += time.perf_counter() - tick
                    append_record(handle, {"video": item[0], "label": item[1],
                                           "error": str(error)})
                    if on_error is not None:
                        on_error(str(error))
                    if progress is not None:
                        progress(1)
                    continue
                stats.wait_s += time.perf_counter() - tick
                stats.decode_s += decode_s
                batch.append((item, video_views))
                if sum(len(v) for _, v in batch) >= batch_size:
                    flush()
            flush()
    finally:
        handle.close()
        stats.wall_s = time.perf_counter() - started
    return path, stats


# --- merging ---------------------------------------------------------------------------------

def summarize(records: Iterable[dict], dataset: str, num_classes: Optional[int] = None) -> dict:
    """Upstream's merge over per-video records, plus per-class top-1 and the failures.

    Classes are named as ``dataset``'s, or by index when the model has ``num_classes`` of
    its own (another count: fine-tuned on other classes)."""
    names = class_names(dataset)
    if num_classes is not None and num_classes != len(names):
        names = index_names(num_classes)
    top1, top5, failed = [], [], []
    per_class: Dict[int, List[float]] = collections.defaultdict(list)
    for record in records:
        if "error" in record:
            failed.append({"video": record["video"], "error": record["error"]})
            continue
        probs = merge_views(np.asarray(record["view_logits"], dtype=np.float64))
        label = int(record["label"])
        hit = float(int(np.argmax(probs)) == label)
        top1.append(hit)
        top5.append(float(label in top_k(probs, 5)))
        per_class[label].append(hit)
    return {
        "top1": float(np.mean(top1) * 100) if top1 else None,
        "top5": float(np.mean(top5) * 100) if top5 else None,
        "videos": len(top1),
        "failed": len(failed),
        "per_class": {names[label]: {"index": label, "videos": len(hits),
                                     "top1": float(np.mean(hits) * 100)}
                      for label, hits in sorted(per_class.items())},
        "failed_videos": failed,
    }


def merge_results(folders: Sequence[str]) -> dict:
    """Merge every ``results*.jsonl`` in ``folders`` (shards of one run) into one summary."""
    paths = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise EvaluateError(f"{folder}: no such folder")
        found = sorted(glob.glob(os.path.join(folder, "results*.jsonl")))
        if not found:
            raise EvaluateError(f"{folder}: holds no results*.jsonl from videomae-evaluate")
        paths.extend(found)
    first, records, shards = None, {}, set()
    for path in paths:
        header, done, _ = read_results(path)
        if header is None:
            raise EvaluateError(f"{path}: not a results file of videomae-evaluate")
        if first is None:
            first = header
        mismatch = _header_mismatch(header, first, RUN_KEYS)
        if mismatch:
            raise EvaluateError(f"{path}: results of another run than {paths[0]} "
                                f"({'; '.join(mismatch)})")
        shards.add(tuple(header["shard"]))
        for video, record in done.items():
            # a success anywhere wins over a failure elsewhere
            if video not in records or "error" in records[video]:
                records[video] = record
    counts = {count for _, count in shards}
    summary = summarize(records.values(), first["dataset"], first.get("num_classes"))
    summary.update(model=first["model"], dataset=first["dataset"], views=first["views"],
                   list_videos=first["list_videos"],
                   missing=first["list_videos"] - len(records))
    if len(counts) == 1:
        count = counts.pop()
        summary["shards_missing"] = [f"{i}/{count}" for i in range(1, count + 1)
                                     if (i, count) not in shards]
    return summary
