"""``videomae-evaluate --engine ray`` and ``videomae-extract --engine ray``: the list on Ray Data.

Imported only for ``--engine ray`` (the extra ``videomae-convert[ray]``); nothing else in the
package imports Ray. The pipeline:

1. ``from_items`` over the videos still to do (resume: the ones already in the results file,
   or whose ``.npy`` exists, are left out);
2. decoding as CPU tasks (``flat_map``, one video per call, ``num_cpus=1``):
   PyAV + OpenCV, upstream's protocol, deterministic per video and view, so a retried task or a
   resumed run makes the same clips; the uint8 views (or frames) travel as ``.npy`` bytes, a
   bad file travels as its one-line error. The stage's code travels by value
   (``ray_decode``), so decoding workers import no TensorFlow;
3. the model as a fixed pool of actors (``ActorPoolStrategy(size=actors)``), each loading the
   artifact once with the loader the local path uses; normalisation happens here, on batches
   of views taken across videos; ``num_gpus=gpus_per_actor`` places an actor on an
   accelerator (it then reserves no CPU, which is left to decoding);
4. the driver streams the outputs and commits each video as it arrives: one fsync'd line in
   ``results.jsonl`` (the local path's records, header and merge), or one ``.npy`` renamed into
   place. A run killed at any point leaves only whole records; the next run with the same
   ``--out`` skips them, so every video is scored once. Ray Data restarts a killed model actor
   and retries its batch; the driver also drops a second output for a video it has written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Callable, Dict, Iterator, Optional, Sequence, Set, Tuple

import numpy as np

from ..artifacts.files import save_json
from ..quiet import silenced_stderr
from .decode import MAX_PIXELS
from .evaluate import (EvaluateError, RunStats, append_record, open_results, pending_items,
                       results_path, run_header)
from .extract import (extract_header, extract_summary, feature_path, open_extract,
                      pending_videos, record_failure, save_features)
from .features import Sampling, array_bytes, bytes_array, segment_clips
from .ray_decode import decode_video, node_id, ship_by_value

# what each stage runs: "logits" (evaluate: the classifier) or "features" (extract)
TASKS = ("logits", "features")


# how long a cluster address may take to accept a connection before it is called unreachable
# (Ray's own client retries for minutes, silently at the log level a run keeps)
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: Optional[str]) -> None:
    """EvaluateError (one line) when ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) does
    not accept a TCP connection; ``auto``, ``local`` and no address are Ray's to find."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        problem = error.strerror or type(error).__name__
        raise EvaluateError(f"--engine ray: nothing answers at {address} ({problem}); start "
                            "the cluster (ray start --head) or give its head's address "
                            "(--ray-address or RAY_ADDRESS)") from None


def _check_not_client(address: Optional[str], given: str) -> None:
    """EvaluateError (one line) for a Ray Client address (``ray://HOST:PORT``): Ray Data's
    streaming executor needs the driver to be a worker of the cluster (it reads its core
    worker), which a Ray Client process is not; ``ray.init`` connects, and the run then ends
    in Ray Data's traceback (exit 1)."""
    if address and address.startswith("ray://"):
        raise EvaluateError(f"--engine ray: {given} {address} is a Ray Client address, which "
                            "Ray Data cannot run on; give the head's address (HEAD_IP:6379, "
                            "the --port of ray start --head), or run the command on a node of "
                            "the cluster with --ray-address auto")


def _check_authenticated(address: Optional[str], verbose: bool = False) -> None:
    """EvaluateError (one line) when the cluster at ``address`` (``HOST:PORT``) refuses this
    process's authentication token. Ray (2.59 and later) runs token authentication on every
    local instance, writing ``~/.ray/auth_token`` on the first, and ``ray start --head`` turns
    it on where that file exists; a driver given an address sends a token only with
    ``RAY_AUTH_MODE=token`` set. ``ray.init`` alone retries for 20 s, printing Ray's warning
    each second, and ends in "Failed to connect", which reads as no cluster at all. ``auto``,
    ``local`` and no address are Ray's to handle (it authenticates a cluster it finds on this
    machine by itself); a ``ray://`` address is refused before (``_check_not_client``)."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    try:
        from ray._raylet import GcsClient  # what ray.init and `ray status` connect with
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray without token authentication
        return
    try:
        with silenced_stderr(not verbose):  # Ray's C++ warning about the refused token
            GcsClient(address=address)
    except AuthenticationError:
        mode = os.environ.get("RAY_AUTH_MODE", "").lower()
        found = ("the token here is not the cluster's" if mode == "token" else
                 "this process sends none: RAY_AUTH_MODE is not token")
        raise EvaluateError(f"--engine ray: the Ray cluster at {address} requires Ray's token "
                            f"authentication and {found}; set RAY_AUTH_MODE=token and give "
                            "the head's token (its ~/.ray/auth_token copied here, or "
                            "RAY_AUTH_TOKEN), or use --ray-address auto on the head's machine"
                            ) from None
    except Exception:  # anything else (RayError, a timeout...): ray.init reports it, as before
        return


def _check_resources(actors: int, gpus_per_actor: float, fixed: bool,
                     on_note: Callable[[str], None]) -> None:
    """The actors and at least one decoding task must fit the cluster's CPUs and GPUs, or Ray
    Data waits for them forever. A local cluster started here cannot grow: EvaluateError (one
    line); another may be autoscaled: a note, and the run waits."""
    import ray

    have = ray.cluster_resources()
    cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    need_cpus = 1 + (0 if gpus_per_actor else actors)  # an actor holds 1 CPU or its GPUs
    need_gpus = actors * gpus_per_actor
    if cpus >= need_cpus and gpus >= need_gpus:
        return
    message = (f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs; --actors {actors} "
               f"--gpus-per-actor {gpus_per_actor:g} needs {need_cpus} CPUs (each model actor "
               f"without a GPU holds one, decoding at least one more) and {need_gpus:g} GPUs")
    if fixed:
        raise EvaluateError(f"--engine ray: {message}; lower --actors or --gpus-per-actor")
    on_note(f"{message}: the run waits until the cluster has them")


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, verbose: bool = False, actors: int = 1,
                gpus_per_actor: float = 0.0, on_note: Optional[Callable[[str], None]] = None):
    """Connect to the cluster at ``address`` (else ``RAY_ADDRESS``, else start a local one,
    even where another cluster runs on this machine),
    after checking that an address answers; then check that ``actors`` model actors with
    ``gpus_per_actor`` each, and decoding beside them, fit the cluster.

    A connection the caller already made is used as is and left open.
    """
    import ray

    note = on_note or logging.getLogger(__name__).warning
    if ray.is_initialized():
        _check_resources(actors, gpus_per_actor, False, note)
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS")
    _check_not_client(target, "--ray-address" if address else "RAY_ADDRESS")
    _check_reachable(target)
    _check_authenticated(target, verbose)
    try:
        # no address: a new local instance, as documented; Ray's own default joins the newest
        # cluster started on this machine (another user's or job's, which may stop mid-run)
        ray.init(address=target or "local", log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR)
    except ConnectionError as error:
        raise EvaluateError(f"--engine ray: cannot connect to a Ray cluster at {target} "
                            f"({' '.join(str(error).split())[:200]}); start one (ray start "
                            "--head) or leave --ray-address and RAY_ADDRESS unset for a local "
                            "one") from None
    try:
        _check_resources(actors, gpus_per_actor, not target or target == "local", note)
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def cluster_failures(written: set):
    """A run the cluster gave up on (an actor that died in its creation, a task Ray stopped
    retrying, a lost node): one EvaluateError line with the cause, saying what was written and
    that a rerun resumes, instead of Ray's traceback. Ray's task errors also subclass the
    original exception's type, so nothing else may catch them first (an OSError of a worker
    would read as the driver's own)."""
    from ray.exceptions import RayError

    try:
        yield
    except RayError as error:
        raise EvaluateError(f"--engine ray: the cluster stopped the run ({_cause(error)}); "
                            f"{len(written)} videos were done and kept, a rerun resumes from "
                            f"there") from None


def _cause(error: BaseException) -> str:
    """The innermost error Ray reports, as ``Type: first line`` (its own text is a traceback
    of the worker, many lines)."""
    from ray.exceptions import RayError

    seen = 0
    while isinstance(error, RayError) and getattr(error, "cause", None) is not None \
            and seen < 10:
        error, seen = error.cause, seen + 1
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, RayError):  # no cause attached: its text ends with the worker's
        text = lines[-1] if lines else type(error).__name__
    else:
        text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:300]


def hide_accelerators() -> None:
    """Keep TensorFlow in this process (the driver, which reads only the model's facts) off
    the GPUs, so the model actors on this node find their memory free."""
    import tensorflow as tf

    with contextlib.suppress(RuntimeError, ValueError):
        tf.config.set_visible_devices([], "GPU")


# --- the stages (run on the cluster) ---------------------------------------------------------

class ModelStage:
    """Model stage (an actor): loads the artifact once, runs batches of views across videos."""

    def __init__(self, spec: str, dataset: Optional[str], task: str, sampling: Sampling,
                 batch_size: int, gpus_per_actor: float = 0.0):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if 0 < gpus_per_actor < 1:
            # actors sharing a GPU: TensorFlow would otherwise map the whole memory at start
            os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        if task == "logits":
            from .model import load_video_model

            self.model = load_video_model(spec, dataset=dataset)
        else:
            from .features import load_feature_model

            self.model = load_feature_model(spec, dataset=dataset)
        self.task, self.sampling, self.batch_size = task, sampling, batch_size
        self.node = node_id()

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from .features import normalize_inputs

        count = len(batch["video"])
        clips = [segment_clips(bytes_array(data), self.sampling) if not error else None
                 for data, error in zip(batch["inputs"], batch["error"])]
        good = [c for c in clips if c is not None]
        tick = time.perf_counter()
        rows = np.zeros((0,))
        if good:
            stacked = np.concatenate(good)
            rows = np.concatenate([
                self.model.run(normalize_inputs(stacked[s:s + self.batch_size], self.sampling))
                for s in range(0, len(stacked), self.batch_size)]).astype(np.float32)
        model_s = time.perf_counter() - tick
        total = max(1, sum(len(c) for c in good))
        outputs, seconds, offset = [], [], 0
        for clip in clips:
            if clip is None:
                outputs.append(b"")
                seconds.append(0.0)
                continue
            outputs.append(array_bytes(rows[offset:offset + len(clip)]))
            seconds.append(model_s * len(clip) / total)
            offset += len(clip)
        return {"video": batch["video"], "label": batch["label"], "error": batch["error"],
                "outputs": np.array(outputs, dtype=object),
                "views": np.array([0 if c is None else len(c) for c in clips]),
                "decode_s": batch["decode_s"], "model_s": np.array(seconds),
                "decode_node": batch["decode_node"],
                "model_node": np.array([self.node] * count, dtype=object)}


def decode_stage(videos, root: str, sampling: Sampling, max_pixels: int = MAX_PIXELS):
    """``videos`` (a Ray Dataset of ``{"video", "label"}`` rows) decoded: one CPU task per
    video (``ray_decode.decode_video``, its code shipped by value, so the tasks import no
    TensorFlow). ``root`` as the user gave it (see ``stream_outputs``)."""
    ship_by_value()
    # flat_map, not map_batches: Ray Data fuses a map_batches task stage into the actor stage
    # that follows when their resources match, which would decode inside the model actors
    return videos.flat_map(decode_video, num_cpus=1,
                           fn_kwargs={"root": os.path.abspath(root), "shown_root": root,
                                      "sampling": sampling, "max_pixels": max_pixels})


def stream_outputs(items: Sequence[Tuple[str, int]], root: str, spec: str,
                   dataset: Optional[str], task: str, sampling: Sampling, batch_size: int,
                   actors: int, gpus_per_actor: float, views_per_video: int,
                   max_pixels: int = MAX_PIXELS, verbose: bool = False) -> Iterator[dict]:
    """Run the pipeline over ``items`` on the connected cluster; yield one dict per video as
    the model stage finishes it (any order). ``root`` as the user gave it: the tasks read
    below its absolute path (their working folder differs), messages name it as given."""
    import ray.data

    for handler in logging.getLogger("ray.data").handlers:  # its file log keeps everything
        if type(handler).__name__ == "PlainRayHandler":
            handler.setLevel(logging.INFO if verbose else logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = False
    decoded = decode_stage(
        ray.data.from_items([{"video": v, "label": int(label)} for v, label in items],
                            override_num_blocks=len(items)), root, sampling, max_pixels)
    videos_per_call = max(1, math.ceil(batch_size / max(1, views_per_video)))
    scored = decoded.map_batches(
        ModelStage, batch_size=videos_per_call,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus_per_actor or None, num_cpus=0 if gpus_per_actor else 1,
        fn_constructor_kwargs={"spec": spec, "dataset": dataset, "task": task,
                               "sampling": sampling, "batch_size": batch_size,
                               "gpus_per_actor": gpus_per_actor})
    for number, block in enumerate(scored.iter_batches(batch_size=None, batch_format="numpy")):
        for i in range(len(block["video"])):
            yield dict({key: column[i] for key, column in block.items()}, block=number)


def _spec_for_cluster(spec: str) -> str:
    # an artifact path is read by every actor: make it absolute (actors' working folder differs)
    return os.path.abspath(spec) if os.path.exists(spec) else spec


def _finish(stats: RunStats, started: float, actors: int) -> None:
    stats.wall_s = time.perf_counter() - started
    # the model actors' idle share: waiting for decoding (and for their start)
    stats.wait_s = max(0.0, stats.wall_s - stats.model_s / max(1, actors))


class _Clock:
    """When the outputs arrive: the first block (cluster and actors starting, one batch) and
    how many videos (failed ones too) came in it and in all."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first_s: Optional[float] = None
        self.first_videos = self.videos = 0

    def arrived(self, row: dict) -> None:
        if row["block"] == 0:
            self.first_s = self.first_s or time.perf_counter() - self.started
            self.first_videos += 1
        self.videos += 1


def ray_facts(stats: RunStats, actors: int, nodes: Dict[str, Set[str]], clock: _Clock) -> dict:
    """What a Ray run adds to its ``run`` record: the engine, the actors, the nodes that
    decoded and ran the model, the time to the first output and the rate after it."""
    steady, later = None, clock.videos - clock.first_videos
    if clock.first_s is not None and later > 0 and stats.wall_s > clock.first_s:
        steady = round(later / (stats.wall_s - clock.first_s), 3)
    return {"engine": "ray", "actors": actors, "nodes": {k: sorted(v) for k, v in nodes.items()},
            "first_video_s": None if clock.first_s is None else round(clock.first_s, 3),
            "videos_per_s_after_first": steady}


# --- evaluate ---------------------------------------------------------------------------------

def evaluate_on_ray(model, items: Sequence[Tuple[str, int]], root: str, out_dir: str,
                    spec: Optional[str] = None, views: Optional[str] = None,
                    batch_size: int = 16, actors: int = 1, gpus_per_actor: float = 0.0,
                    address: Optional[str] = None, max_pixels: int = MAX_PIXELS,
                    on_error: Optional[Callable[[str], None]] = None,
                    progress: Optional[Callable[[int], None]] = None,
                    on_total: Optional[Callable[[int, int], None]] = None,
                    verbose: bool = False,
                    on_note: Optional[Callable[[str], None]] = None
                    ) -> Tuple[str, RunStats, dict]:
    """``evaluate.evaluate_list`` on a Ray cluster: the same ``results.jsonl`` records.

    ``model`` (a VideoModel loaded here) gives the header and protocol; each actor loads
    ``spec`` (default: ``model.source``). Returns (results file, stats, ``ray_facts``: the
    nodes that decoded and ran the model this run, and when the first video was done).
    """
    from .predict import model_protocol

    protocol = model_protocol(model, views)
    sampling = Sampling(model.num_frames, model.img_size, dataset=model.dataset, views=views)
    path = results_path(out_dir)
    done, handle = open_results(path, run_header(model, protocol, items))
    todo = pending_items(items, done)
    if on_total is not None:
        on_total(len(todo), len(items) - len(todo))
    stats, nodes, written = RunStats(), {"decode": set(), "model": set()}, set()
    clock = _Clock()
    try:
        if todo:
            with ray_session(address, verbose, actors, gpus_per_actor, on_note), \
                    cluster_failures(written):
                for row in stream_outputs(todo, root, _spec_for_cluster(spec or model.source),
                                          model.dataset, "logits", sampling, batch_size,
                                          actors, gpus_per_actor, protocol.num_views,
                                          max_pixels, verbose):
                    video, label = str(row["video"]), int(row["label"])
                    if video in written:
                        continue
                    written.add(video)
                    clock.arrived(row)
                    nodes["decode"].add(str(row["decode_node"]))
                    stats.decode_s += float(row["decode_s"])
                    if row["error"]:
                        append_record(handle, {"video": video, "label": label,
                                               "error": str(row["error"])})
                        if on_error is not None:
                            on_error(str(row["error"]))
                    else:
                        nodes["model"].add(str(row["model_node"]))
                        logits = bytes_array(row["outputs"])
                        append_record(handle, {"video": video, "label": label,
                                               "view_logits": logits.tolist()})
                        stats.videos += 1
                        stats.views += len(logits)
                        stats.model_s += float(row["model_s"])
                    if progress is not None:
                        progress(1)
    finally:
        handle.close()
        _finish(stats, clock.started, actors)
    return path, stats, ray_facts(stats, actors, nodes, clock)


# --- extract ----------------------------------------------------------------------------------

def extract_on_ray(model, videos: Sequence[str], root: str, out_dir: str, sampling: Sampling,
                   spec: Optional[str] = None, batch_size: int = 16, actors: int = 1,
                   gpus_per_actor: float = 0.0, address: Optional[str] = None,
                   max_pixels: int = MAX_PIXELS,
                   on_error: Optional[Callable[[str], None]] = None,
                   progress: Optional[Callable[[int], None]] = None,
                   on_total: Optional[Callable[[int, int], None]] = None,
                   verbose: bool = False,
                   on_note: Optional[Callable[[str], None]] = None) -> dict:
    """``extract.extract_list`` on a Ray cluster: the same ``.npy`` files and summary.

    The summary's ``run`` also names the nodes that decoded and ran the model.
    """
    open_extract(out_dir, extract_header(model, sampling, videos), videos)
    todo = pending_videos(videos, out_dir)
    if on_total is not None:
        on_total(len(todo), len(dict.fromkeys(videos)) - len(todo))
    views_per_video = sampling.protocol().num_views if sampling.stride is None else 1
    stats, nodes, written = RunStats(), {"decode": set(), "model": set()}, set()
    clock = _Clock()
    try:
        if todo:
            with ray_session(address, verbose, actors, gpus_per_actor, on_note), \
                    cluster_failures(written):
                for row in stream_outputs([(v, 0) for v in todo], root,
                                          _spec_for_cluster(spec or model.source),
                                          model.dataset, "features", sampling, batch_size,
                                          actors, gpus_per_actor, views_per_video, max_pixels,
                                          verbose):
                    video = str(row["video"])
                    if video in written:
                        continue
                    written.add(video)
                    clock.arrived(row)
                    nodes["decode"].add(str(row["decode_node"]))
                    stats.decode_s += float(row["decode_s"])
                    if row["error"]:
                        record_failure(out_dir, video, str(row["error"]))
                        if on_error is not None:
                            on_error(str(row["error"]))
                    else:
                        nodes["model"].add(str(row["model_node"]))
                        features = bytes_array(row["outputs"])
                        save_features(feature_path(out_dir, video), features)
                        stats.videos += 1
                        stats.views += len(features)
                        stats.model_s += float(row["model_s"])
                    if progress is not None:
                        progress(1)
    finally:
        _finish(stats, clock.started, actors)
    summary = extract_summary(videos, out_dir, stats)
    summary["run"].update(ray_facts(stats, actors, nodes, clock))
    save_json(os.path.join(out_dir, "summary.json"), summary)
    return summary
