"""``videomae-extract``: one ``.npy`` of pooled features per video of a list, resumably.

``OUT/extract.json`` says what the folder holds (model, sampling, list); each video's features
go to ``OUT/<its path in the list, extension .npy>`` (views or segments, D) float32, written to
a temporary name and renamed, so a file that exists is complete and a rerun skips it. Bad
videos are listed, with their one-line error, in ``OUT/failed.jsonl`` and tried again by the
next run. Decoding runs in worker threads here; ``ray_engine.extract_on_ray`` runs the same
steps on a Ray cluster and writes the same files.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..artifacts.checksums import tree_sha256
from ..artifacts.files import replaced_when_written, save_json
from .ahead import decoded_ahead
from .decode import MAX_PIXELS, VideoError
from .evaluate import EvaluateError, RunStats, is_label, list_digest, read_list_lines
from .features import Sampling, pooled_features, read_inputs, segment_clips

HEADER_NAME = "extract.json"
FAILED_NAME = "failed.jsonl"


def read_video_list(path: str) -> List[str]:
    """Video paths of a list: ``relative/path.mp4`` or upstream's ``relative/path.mp4 LABEL``."""
    lines = read_list_lines(path)
    videos, written_by = [], {}
    for number, line in enumerate(lines, 1):
        parts = line.strip().rsplit(None, 1)
        if not parts:
            continue
        has_label = len(parts) == 2 and is_label(parts[1])
        video = parts[0] if has_label else line.strip()
        try:  # every features path is known good before a run writes its header
            target = feature_path("", video)
        except EvaluateError as error:
            raise EvaluateError(f"{path}: {error}") from None
        other = written_by.setdefault(target, (video, number))
        if other[0] != video and os.path.normpath(other[0]) == os.path.normpath(video):
            raise EvaluateError(f"{path}:{number}: {video} names {other[0]} (line {other[1]}) "
                                "another way; write each video's path one way")
        if other[0] != video:  # the same video twice is extracted once; two videos, no
            raise EvaluateError(f"{path}:{number}: {video} and {other[0]} (line {other[1]}) "
                                f"would both write {target}; rename one")
        videos.append(video)
    if not videos:
        raise EvaluateError(f"{path}: the list holds no videos")
    return videos


def feature_path(out_dir: str, video: str) -> str:
    """Where the features of ``video`` (a path in the list) go: its path under OUT, ``.npy``."""
    relative = os.path.normpath(video).lstrip(os.sep)
    if relative.split(os.sep)[0] == "..":  # a first folder '..' (a file '..foo.mp4' stays)
        raise EvaluateError(f"{video}: a list path may not leave --root; use paths below it")
    return os.path.join(out_dir, os.path.splitext(relative)[0] + ".npy")


def extract_header(model, sampling: Sampling, videos: Sequence[str]) -> dict:
    """What an extract folder holds: model (name, and sha256 of its file or folder), sampling
    and list."""
    path = getattr(model, "path", None)
    return {"model": model.name, "model_sha256": tree_sha256(path) if path else None,
            "sampling": sampling.label, "num_frames": model.num_frames,
            "img_size": model.img_size, "list_sha256": list_digest([(v, 0) for v in videos]),
            "list_videos": len(videos)}


def open_extract(out_dir: str, header: dict, videos: Sequence[str]) -> None:
    """Create ``out_dir`` with its header, or check that its header is this run's (another
    run's header alone, with no features beside it, is replaced: nothing is lost); first
    every video's features path, so a list that cannot run leaves no header that would
    refuse its corrected rerun."""
    for video in videos:
        feature_path(out_dir, video)
    if glob.glob(os.path.join(glob.escape(out_dir), "results*.jsonl")):
        raise EvaluateError(f"{out_dir}: holds videomae-evaluate results (and their "
                            "summary.json); use another --out folder for features")
    path = os.path.join(out_dir, HEADER_NAME)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as handle:
                found = json.load(handle)
        except (OSError, ValueError):
            raise EvaluateError(f"{path}: not a videomae-extract header; use another --out "
                                "folder") from None
        mismatch = [f"{key} {found.get(key)!r} (not {header[key]!r})"
                    for key in ("model", "model_sha256", "sampling", "num_frames", "img_size",
                                "list_sha256")
                    if found.get(key) != header[key]
                    and not (key == "model_sha256" and None in (found.get(key), header[key]))]
        # a header alone (a run refused after it began): nothing of that run is lost
        if mismatch and os.listdir(out_dir) != [HEADER_NAME]:
            raise EvaluateError(f"{path}: holds features of another run ({'; '.join(mismatch)})"
                                "; use another --out folder or remove it")
        if not mismatch:
            return
    os.makedirs(out_dir, exist_ok=True)
    save_json(path, header)


def save_features(path: str, features: np.ndarray) -> None:
    """Write ``features`` to ``path`` (.npy) atomically: a file that exists is complete."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # removed if anything stops the write (a stop signal too): no half-written file is left
    with replaced_when_written(f"{path}.tmp{os.getpid()}", path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, np.asarray(features, dtype=np.float32), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())


def pending_videos(videos: Sequence[str], out_dir: str) -> List[str]:
    """The videos of the list whose features file is not there yet (each once)."""
    seen, todo = set(), []
    for video in videos:
        if video not in seen and not os.path.exists(feature_path(out_dir, video)):
            todo.append(video)
        seen.add(video)
    return todo


def record_failure(out_dir: str, video: str, message: str) -> None:
    """Append a failed video and its one-line error to ``OUT/failed.jsonl``."""
    with open(os.path.join(out_dir, FAILED_NAME), "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"video": video, "error": message}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def extract_summary(videos: Sequence[str], out_dir: str, stats: RunStats) -> dict:
    """Counts of the folder after a run, the failures still without features, and the run."""
    missing = [v for v in dict.fromkeys(videos)
               if not os.path.exists(feature_path(out_dir, v))]
    errors = {}
    failed_path = os.path.join(out_dir, FAILED_NAME)
    if os.path.exists(failed_path):
        with open(failed_path, encoding="utf-8") as handle:
            for line in handle:
                try:  # only the messages of the summary: a damaged line loses its message
                    record = json.loads(line) if line.endswith("\n") else None
                except ValueError:
                    record = None
                if isinstance(record, dict) and isinstance(record.get("video"), str):
                    errors[record["video"]] = str(record.get("error"))
    return {"videos": len(dict.fromkeys(videos)) - len(missing), "failed": len(missing),
            "failed_videos": [{"video": v, "error": errors.get(v, "not extracted yet")}
                              for v in missing],
            "run": stats.to_dict()}


def _load(root: str, video: str, sampling: Sampling, max_pixels: int):
    start = time.perf_counter()
    clips = segment_clips(read_inputs(os.path.join(root, video), sampling, max_pixels),
                          sampling)
    return clips, time.perf_counter() - start


def extract_list(model, videos: Sequence[str], root: str, out_dir: str, sampling: Sampling,
                 workers: int = 2, batch_size: int = 16, max_pixels: int = MAX_PIXELS,
                 on_error: Optional[Callable[[str], None]] = None,
                 progress: Optional[Callable[[int], None]] = None,
                 on_total: Optional[Callable[[int, int], None]] = None) -> dict:
    """Write the pooled features of every video of ``videos`` not yet in ``out_dir``.

    ``model`` is a ``features.FeatureModel``. Returns the summary (``extract_summary``), also
    written to ``OUT/summary.json``.
    """
    open_extract(out_dir, extract_header(model, sampling, videos), videos)
    todo = pending_videos(videos, out_dir)
    if on_total is not None:
        on_total(len(todo), len(dict.fromkeys(videos)) - len(todo))
    stats = RunStats()
    started = time.perf_counter()
    with contextlib.closing(decoded_ahead(
            todo, lambda video: _load(root, video, sampling, max_pixels), workers)) as ahead:
        for video, future in ahead:
            tick = time.perf_counter()
            try:
                clips, decode_s = future.result()
            except VideoError as error:
                stats.wait_s += time.perf_counter() - tick
                record_failure(out_dir, video, str(error))
                if on_error is not None:
                    on_error(str(error))
                if progress is not None:
                    progress(1)
                continue
            stats.wait_s += time.perf_counter() - tick
            stats.decode_s += decode_s
            tick = time.perf_counter()
            features = pooled_features(model, clips, sampling, batch_size)
            stats.model_s += time.perf_counter() - tick
            save_features(feature_path(out_dir, video), features)
            stats.videos += 1
            stats.views += len(clips)
            if progress is not None:
                progress(1)
    stats.wall_s = time.perf_counter() - started
    summary = extract_summary(videos, out_dir, stats)
    save_json(os.path.join(out_dir, "summary.json"), summary)
    return summary
