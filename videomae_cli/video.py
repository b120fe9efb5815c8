"""``videomae-predict``, ``videomae-evaluate``, ``videomae-extract``: thin click commands over
``tf_models.video`` (``--engine ray``: ``tf_models.video.ray_engine``, imported only then).

TensorFlow is imported inside the commands, after ``quiet.prepare_environment``, so its
start-up lines stay off the terminal unless ``--verbose``. Exit codes: 0 success, 2 bad input
(one ``error:`` line per problem on stderr, no traceback); predict also exits 2 when any video
failed, after classifying the others, and evaluate and extract when no video of the list could
be scored or extracted (a video that fails among others is counted, and the exit is 0; an
empty ``--shard``, with more shards than videos, is success too). Ctrl-C or SIGTERM, from the
command's start (TensorFlow's import and the model's load included), is one ``error:
interrupted`` line and exit 2 (``exits.stoppable``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Optional

import click

from .exits import EXIT_BAD_INPUT, check_root, command, fail as _fail, given, stoppable
from .lifetime import claim_process, framework_imports
from .quiet import prepare_environment, silenced_stderr
from .zoo_table import dataset_choices


def _load_model(model: str, dataset, verbose: bool, features: bool = False,
                engine: str = "local"):
    """Import TensorFlow and load ``model`` with the framework's noise silenced; warm it up.

    ``features``: the encoder's pooled features (videomae-extract) instead of the classifier.
    ``engine="ray"``: this process only reads the model's facts, on the CPU (the actors on
    this node get the accelerators).
    """
    prepare_environment(verbose)
    with silenced_stderr(not verbose):
        with framework_imports():
            from tf_models.video.decode import quiet_ffmpeg
            from tf_models.video.model import ModelError, load_video_model

            if engine == "ray":
                from tf_models.video.ray_engine import hide_accelerators
            if features:
                from tf_models.video.features import load_feature_model as load_video_model
        if engine == "ray":
            hide_accelerators()
        quiet_ffmpeg(verbose)
        try:
            loaded = load_video_model(model, dataset=dataset)
        except ModelError as error:
            loaded = error
        else:
            import numpy as np

            # the first call traces and touches the device: its log lines go here too
            loaded.run(np.zeros((1, loaded.num_frames, loaded.img_size, loaded.img_size, 3),
                                np.float32))
    if isinstance(loaded, Exception):
        raise _fail(str(loaded))
    for note in loaded.notes:
        click.echo(f"note: {note}", err=True)
    return loaded


_DATASETS = click.Choice(dataset_choices())


def _engine_options(command):
    """--engine and the Ray settings, shared by evaluate and extract."""
    options = [
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="local: this machine (threads); ray: a Ray cluster (pip install "
                          "'videomae-convert[ray]')"),
        click.option("--ray-address", default=None,
                     help="--engine ray: the cluster (default: RAY_ADDRESS, else a local one)"),
        click.option("--actors", type=click.IntRange(1), default=1, show_default=True,
                     help="--engine ray: model actors (each loads the model once)"),
        click.option("--gpus-per-actor", type=click.FloatRange(0), default=0.0,
                     show_default=True,
                     help="--engine ray: accelerators per model actor (1: one GPU each)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _check_out_folder(out_dir: Optional[str]) -> None:
    """Before the model loads: an --out that names a file cannot take the results (None: the
    command's default folder, checked when it is made)."""
    if out_dir is not None and os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise _fail(f"{out_dir}: --out is a file, expected a folder (it is made if missing)")


def _check_root(root: str, engine: str) -> None:
    """--root here (``check_root``); with --engine ray the nodes read it, which may see what
    this machine does not."""
    if engine == "local":
        check_root(root)


def _check_engine(engine: str) -> None:
    """--engine against the options that only the other engine reads (they were taken and
    ignored: a --ray-address without --engine ray scored on this machine), then Ray's import."""
    if engine != "ray":
        ray_only = given("ray_address", "actors", "gpus_per_actor")
        if ray_only:
            raise _fail(f"{', '.join(ray_only)}: Ray settings, read with --engine ray only; "
                        f"add --engine ray or drop {'them' if len(ray_only) > 1 else 'it'}")
        return
    if given("workers"):
        raise _fail("--workers: the local engine's decoding threads; with --engine ray, Ray's "
                    "CPU tasks decode: drop --workers")
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise _fail("--engine ray needs Ray Data: pip install 'videomae-convert[ray]' (or "
                    "'ray[data]'), on this machine and every node of the cluster")


@command()
@click.argument("videos", nargs=-1, required=True)
@click.option("--model", "model_spec", required=True,
              help="zoo name, .keras file, SavedModel folder, keras-hub preset folder or "
                   "hf:// / kaggle:// handle, or transformers-format folder or hf:// "
                   "repository, of a fine-tuned (FT) model")
@click.option("--top-k", "k", type=click.IntRange(1), default=5, show_default=True)
@click.option("--views", default=None,
              help="CLIPSxCROPS, e.g. 1x1 (default: the dataset's protocol, 5x3 or 2x3)")
@click.option("--dataset", type=_DATASETS, default=None,
              help="override the dataset (protocol and class names) found for the model")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
              help="views per model call")
@click.option("--json", "as_json", is_flag=True,
              help="print one JSON object per video (one per line) and nothing else on stdout")
@click.option("--verbose", is_flag=True, help="let TensorFlow's and FFmpeg's logs through")
def predict_command(videos, model_spec, k, views, dataset, batch_size, as_json, verbose):
    """Classify VIDEO files with upstream's test protocol; print the top-k classes."""
    begun = []  # the first video's turn has come: a stop keeps what was printed above

    def interrupted() -> str:
        return ("the videos above were classified, the rest were not" if begun
                else "no video was classified")
    with stoppable(interrupted) as stop_if_signalled:
        failed = _predict(videos, model_spec, k, views, dataset, batch_size, as_json, verbose,
                          stop_if_signalled, begun)
    if failed:
        raise click.exceptions.Exit(EXIT_BAD_INPUT)


def _predict(videos, model_spec, k, views, dataset, batch_size, as_json, verbose,
             stop_if_signalled, begun) -> int:
    """predict's work under its stop handlers: the number of videos that failed."""
    model = _load_model(model_spec, dataset, verbose)
    stop_if_signalled()  # a stop swallowed while the model loaded
    from tf_models.artifacts.files import stop_signals_deferred
    from tf_models.video.decode import VideoError
    from tf_models.video.predict import classify_video

    if views is not None:
        from tf_models.video.protocol import parse_views

        try:
            parse_views(views)
        except ValueError as error:
            raise _fail(str(error))
    failed = 0
    begun.append(True)
    for video in videos:
        stop_if_signalled()  # a stop whose exception was swallowed (tf_models.stopping)
        try:
            record = classify_video(model, video, views=views, k=k, batch_size=batch_size)
        except VideoError as error:
            stop_if_signalled()  # a decoding error caused by a stop is the stop
            click.echo(f"error: {error}", err=True)
            failed += 1
            continue
        except ValueError as error:  # a --views the dataset's sampler cannot make
            raise _fail(str(error))
        if as_json:
            text = json.dumps(record)
        else:
            text = "\n".join([f"{video}  ({model.name}, {record['views']} views)"] + [
                f"  {row['prob']:.4f}  {row['label']}" for row in record["top_k"]])
        with stop_signals_deferred():  # a video's record is printed whole or not at all
            click.echo(text)
    return failed


@command()
@click.option("--model", "model_spec", required=True,
              help="zoo name, .keras file, SavedModel folder, keras-hub preset folder or "
                   "hf:// / kaggle:// handle, or transformers-format folder or hf:// "
                   "repository, of a fine-tuned (FT) model")
@click.option("--list", "list_path", required=True,
              help="upstream's list: 'relative/path.mp4 LABEL' per line (a line starting "
                   "with # is a comment)")
@click.option("--root", default=".", show_default=True, help="folder the list's paths are in")
@click.option("--out", "out_dir", default=None,
              help="results folder (default: videomae-eval/MODEL_NAME); a rerun resumes there")
@click.option("--shard", default=None, help="I/N: score the I-th of N deterministic shares")
@click.option("--views", default=None, help="CLIPSxCROPS (default: the dataset's protocol)")
@click.option("--dataset", type=_DATASETS, default=None,
              help="override the dataset (protocol and class names) found for the model")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="--engine local: decoding threads running alongside the model")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
              help="views per model call")
@click.option("--json", "as_json", is_flag=True,
              help="stdout: one JSON line with top1, top5, videos, failed (and more)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.option("--verbose", is_flag=True, help="let TensorFlow's and FFmpeg's logs through")
@_engine_options
def evaluate_command(model_spec, list_path, root, out_dir, shard, views, dataset, workers,
                     batch_size, as_json, quiet, verbose, engine, ray_address, actors,
                     gpus_per_actor):
    """Score every view of every video in LIST; print top-1 / top-5 (upstream's merge).

    Merge shards written to several folders with: videomae-evaluate merge DIR [DIR ...]
    """
    if engine == "ray" and shard is not None:
        raise _fail("--shard splits the list by hand for --engine local; with --engine ray "
                    "the cluster shares the work: drop --shard")
    _check_engine(engine)
    _check_root(root, engine)
    _check_out_folder(out_dir)
    begun = []  # the folder the results go to, once scoring has begun

    def interrupted() -> str:
        if not begun:
            return "nothing was scored or written"
        return (f"the videos scored so far are kept in {begun[0]}: run again with the same "
                "--out to resume")
    with stoppable(interrupted) as stop_if_signalled:
        _evaluate(model_spec, list_path, root, out_dir, shard, views, dataset, workers,
                  batch_size, as_json, quiet, verbose, engine, ray_address, actors,
                  gpus_per_actor, stop_if_signalled, begun)


def _evaluate(model_spec, list_path, root, out_dir, shard, views, dataset, workers, batch_size,
              as_json, quiet, verbose, engine, ray_address, actors, gpus_per_actor,
              stop_if_signalled, begun):
    """evaluate's work under its stop handlers."""
    model = _load_model(model_spec, dataset, verbose, engine=engine)
    stop_if_signalled()  # a stop swallowed while the model loaded
    from tf_models.video.evaluate import (EvaluateError, evaluate_list, merge_results,
                                          parse_shard, read_list)
    from tf_models.video.predict import model_protocol

    try:
        from_shard = parse_shard(shard)
        model_protocol(model, views)
        items = read_list(list_path, model.num_classes)
    except (EvaluateError, ValueError) as error:
        raise _fail(str(error))
    out_dir = out_dir or os.path.join("videomae-eval", model.name)
    bar = _ListProgress(model.name if from_shard == (1, 1) else f"{model.name} {shard}",
                        f"already scored in {out_dir}", quiet, stop_if_signalled)
    begun.append(out_dir)
    with bar.running(out_dir, "results"):
        if engine == "ray":
            from tf_models.video.ray_engine import evaluate_on_ray

            stats, facts = evaluate_on_ray(
                model, items, root, out_dir, views=views,
                batch_size=batch_size, actors=actors, gpus_per_actor=gpus_per_actor,
                address=ray_address, verbose=verbose, on_note=bar.on_note,
                **bar.callbacks())[1:]
        else:
            stats, facts = evaluate_list(
                model, items, root, out_dir, shard=from_shard, views=views, workers=workers,
                batch_size=batch_size, **bar.callbacks())[1], None
        summary = merge_results([out_dir])
    summary["run"] = stats.to_dict()
    if engine == "ray":
        summary["run"].update(facts)
    summary_path = os.path.join(out_dir, "summary.json")
    empty_share = bar.totals == [0]
    if empty_share:  # more shards than videos (a job array): this one has nothing to do
        click.echo(f"nothing to score: shard {shard} gets none of the list's {len(items)} "
                   f"videos (more shards than videos); its results file in {out_dir} counts "
                   "it as done for videomae-evaluate merge", err=True)
    elif bar.totals and bar.todo == 0:  # nothing left to score: the run that scored them stays
        click.echo(f"nothing left to score: every video of the list has a result in {out_dir}",
                   err=True)
        summary["run"] = _previous_run(summary_path) or summary["run"]
    _write_summary(summary_path, summary)
    if empty_share and summary["top1"] is None and not as_json:
        return  # no score in the folder: nothing more to say than the line above
    _print_summary(summary, as_json, out_dir)
    if summary["top1"] is None and not empty_share:
        raise click.exceptions.Exit(EXIT_BAD_INPUT)  # every video failed (a wrong --root?)


class _ListProgress:
    """evaluate's and extract's progress bar and lines, as the callbacks their engines take:
    ``on_total(todo, done)`` opens the bar (saying what a resumed run found done),
    ``progress(count)`` moves it, ``on_error`` / ``on_note`` print a line above it."""

    def __init__(self, desc: str, resumed: str, quiet: bool, stop_if_signalled):
        self.desc, self.resumed, self.quiet = desc, resumed, quiet
        self.stop_if_signalled = stop_if_signalled
        self.bars, self.totals = [], []  # one each once on_total came
        self.todo = None

    def callbacks(self) -> dict:
        return {"on_total": self.on_total, "on_error": self.on_error,
                "progress": self.progress}

    def on_total(self, todo: int, done: int) -> None:
        from tf_models.progress import progress_bar

        self.totals.append(todo + done)
        self.todo = todo
        if done:
            click.echo(f"resuming: {done} videos {self.resumed}", err=True)
        self.bars.append(progress_bar(total=todo, unit="video", disable=self.quiet,
                                      file=sys.stderr, dynamic_ncols=True, desc=self.desc))

    def on_error(self, message: str) -> None:
        from tqdm import tqdm

        self.stop_if_signalled()  # a decoding error caused by a stop is the stop
        tqdm.write(f"error: {message}", file=sys.stderr)

    def on_note(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"note: {message}", file=sys.stderr)

    def progress(self, count: int) -> None:
        self.bars[0].update(count)
        self.stop_if_signalled()  # a stop whose exception was swallowed (tf_models.stopping)

    def close(self) -> None:
        """Close the bar, so that a line printed next is not drawn over."""
        for bar in self.bars:
            bar.close()

    @contextlib.contextmanager
    def running(self, out_dir: str, what: str):
        """The engine's run: the bar closed before any line that follows (a stop's too); its
        ``EvaluateError`` or a write's ``OSError`` one ``error:`` line."""
        from tf_models.video.evaluate import EvaluateError

        try:
            yield
        except EvaluateError as error:
            self.close()
            raise _fail(str(error))
        except OSError as error:
            self.close()
            raise _fail(f"{out_dir}: cannot write {what} ({error.strerror or error})")
        finally:
            self.close()


def _previous_run(path: str) -> Optional[dict]:
    """The ``run`` record of the summary at ``path`` (None: none readable)."""
    from tf_models.artifacts.files import read_json

    summary = read_json(path)
    run = summary.get("run") if isinstance(summary, dict) else None
    return run if isinstance(run, dict) else None


def _write_summary(path: str, summary: dict) -> None:
    """Write ``summary`` to ``path`` atomically, making its folder if missing."""
    from tf_models.artifacts.files import save_json

    save_json(path, summary)


def _print_summary(summary: dict, as_json: bool, where: str) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    if summary["top1"] is None:
        click.echo(f"no video could be scored ({summary['failed']} failed)")
    else:
        click.echo(f"top-1 {summary['top1']:.2f}%  top-5 {summary['top5']:.2f}%  "
                   f"({summary['videos']} videos, {summary['failed']} failed; "
                   f"{summary['model']}, {summary['views']} views)")
    if summary.get("missing"):
        click.echo(f"note: {summary['missing']} of the list's {summary['list_videos']} videos "
                   "have no result here" + (f" (shards missing: "
                                            f"{', '.join(summary['shards_missing'])})"
                                            if summary.get("shards_missing") else ""))
    if "run" in summary:
        run = summary["run"]
        click.echo(f"this run: {run['videos']} videos, {run['videos_per_s']:.2f} videos/s, "
                   f"{run['views_per_s']:.1f} views/s, waiting for decoding "
                   f"{100 * run['decode_wait_share']:.0f}% of the time")
        if run.get("engine") == "ray":
            click.echo(f"  ray: decoding {run['decode_s']:.1f} s in CPU tasks, the model "
                       f"{run['model_s']:.1f} s in {run['actors']} actor(s) on "
                       f"{len(run['nodes']['model'])} node(s); first video after "
                       f"{run['first_video_s'] or 0:.1f} s (start-up), then "
                       f"{run['videos_per_s_after_first'] or 0:.2f} videos/s")
    click.echo(f"per-class accuracy and failures: {where}")


@command()
@click.argument("folders", nargs=-1, required=True)
@click.option("--out", "out_path", default=None, help="also write the summary JSON here")
@click.option("--json", "as_json", is_flag=True, help="stdout: the summary as one JSON line")
@click.option("--verbose", is_flag=True, help="let TensorFlow's logs through")
def merge_command(folders, out_path, as_json, verbose):
    """Merge the results of evaluate runs (shards) in FOLDERS into one top-1 / top-5."""
    with stoppable(lambda: "nothing was written"):
        prepare_environment(verbose)
        with silenced_stderr(not verbose), framework_imports():
            from tf_models.video.evaluate import EvaluateError, merge_results  # TensorFlow
        try:
            if out_path:
                _check_summary_path(out_path)
            summary = merge_results(folders)
            if out_path:
                _write_summary(out_path, summary)
        except EvaluateError as error:
            raise _fail(str(error))
        except OSError as error:
            raise _fail(f"{out_path}: cannot write the summary ({error.strerror or error})")
    _print_summary(summary, as_json, out_path or ", ".join(folders))


def _check_summary_path(path: str) -> None:
    """merge's --out: a file to write, or a summary written before (which it replaces); never
    a folder, a results file or anything else that is there."""
    from tf_models.video.evaluate import EvaluateError

    if os.path.isdir(path):
        raise EvaluateError(f"{path}: is a folder; --out names the summary's JSON file (e.g. "
                            f"{os.path.join(path, 'summary.json')})")
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(folder):  # its folders are made: the first one there
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):  # before: "cannot write the summary (File exists)"
            raise EvaluateError(f"{path}: {folder} is a file, so --out cannot be written in "
                                "it; choose another --out")
        return
    try:
        with open(path, encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        found = None
    if not (isinstance(found, dict) and {"top1", "top5", "list_videos"} <= set(found)):
        raise EvaluateError(f"{path}: exists and is not a summary of videomae-evaluate; "
                            "--out writes a new file (or replaces a summary): choose another "
                            "path")


@command()
@click.option("--model", "model_spec", required=True,
              help="zoo name, .keras file (classifier or --encoder-only), keras-hub preset "
                   "folder or hf:// / kaggle:// handle, transformers-format folder or hf:// "
                   "repository, or an --encoder-only SavedModel folder")
@click.option("--list", "list_path", required=True,
              help="one video per line: 'relative/path.mp4' (a trailing label is ignored; a "
                   "line starting with # is a comment)")
@click.option("--root", default=".", show_default=True, help="folder the list's paths are in")
@click.option("--out", "out_dir", required=True,
              help="features folder: one .npy per video; a rerun resumes there")
@click.option("--stride", type=click.IntRange(1), default=None,
              help="per-segment features: clips of the model's T consecutive frames every "
                   "STRIDE frames (upstream V2's TAD features; default: the dataset's views)")
@click.option("--views", default=None,
              help="without --stride: CLIPSxCROPS (default: the dataset's protocol)")
@click.option("--dataset", type=_DATASETS, default=None,
              help="without --stride: the dataset whose views to take")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="--engine local: decoding threads running alongside the model")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
              help="clips per model call")
@click.option("--json", "as_json", is_flag=True, help="stdout: the summary as one JSON line")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.option("--verbose", is_flag=True, help="let TensorFlow's and FFmpeg's logs through")
@_engine_options
def extract_command(model_spec, list_path, root, out_dir, stride, views, dataset, workers,
                    batch_size, as_json, quiet, verbose, engine, ray_address, actors,
                    gpus_per_actor):
    """Write each video's pooled encoder features to OUT/<video path>.npy: (views, D), or
    (segments, D) with --stride."""
    _check_engine(engine)
    if stride is not None and given("views", "dataset"):  # before: --dataset taken, ignored
        raise _fail(f"{' and '.join(given('views', 'dataset'))} with --stride: a video is cut "
                    "into the dataset's views or into segments, not both; drop one")
    _check_root(root, engine)
    _check_out_folder(out_dir)
    begun = []  # scoring has begun: features may be in --out

    def interrupted() -> str:
        if not begun:
            return "nothing was extracted or written"
        return (f"the features written so far are kept in {out_dir}: run again with the same "
                "--out to resume")
    with stoppable(interrupted) as stop_if_signalled:
        summary, sampling = _extract(model_spec, list_path, root, out_dir, stride, views,
                                     dataset, workers, batch_size, quiet, verbose, engine,
                                     ray_address, actors, gpus_per_actor, stop_if_signalled,
                                     begun)
    if as_json:
        click.echo(json.dumps(summary))
    else:
        run = summary["run"]
        click.echo(f"{summary['videos']} videos with features in {out_dir}, "
                   f"{summary['failed']} failed ({sampling.label}); this run: {run['videos']} "
                   f"videos, {run['videos_per_s']:.2f} videos/s, decoding "
                   f"{run['decode_s']:.1f} s, the model {run['model_s']:.1f} s")
    if summary["videos"] == 0:  # every video failed (a wrong --root?), as evaluate
        raise click.exceptions.Exit(EXIT_BAD_INPUT)


def _extract(model_spec, list_path, root, out_dir, stride, views, dataset, workers, batch_size,
             quiet, verbose, engine, ray_address, actors, gpus_per_actor, stop_if_signalled,
             begun):
    """extract's work under its stop handlers: (summary, sampling)."""
    model = _load_model(model_spec, dataset, verbose, features=True, engine=engine)
    stop_if_signalled()  # a stop swallowed while the model loaded
    from tf_models.video.evaluate import EvaluateError
    from tf_models.video.extract import extract_list, read_video_list
    from tf_models.video.features import Sampling

    sampling = Sampling(model.num_frames, model.img_size, dataset=model.dataset, views=views,
                        stride=stride)
    try:
        if stride is None:
            if model.dataset is None:
                raise EvaluateError(f"{model_spec}: cannot tell the dataset whose views to "
                                    f"take; pass --dataset ({', '.join(dataset_choices())}), "
                                    f"or --stride")
            sampling.protocol()
        videos = read_video_list(list_path)
    except (EvaluateError, ValueError) as error:
        raise _fail(str(error))
    bar = _ListProgress(model.name, f"already extracted in {out_dir}", quiet,
                        stop_if_signalled)
    begun.append(True)
    with bar.running(out_dir, "features"):
        if engine == "ray":
            from tf_models.video.ray_engine import extract_on_ray

            summary = extract_on_ray(model, videos, root, out_dir, sampling,
                                     batch_size=batch_size, actors=actors,
                                     gpus_per_actor=gpus_per_actor, address=ray_address,
                                     verbose=verbose, on_note=bar.on_note, **bar.callbacks())
        else:
            summary = extract_list(model, videos, root, out_dir, sampling, workers=workers,
                                   batch_size=batch_size, **bar.callbacks())
    return summary, sampling


def predict_main():
    """Entry point of ``videomae-predict``."""
    claim_process()
    predict_command(prog_name="videomae-predict")


def evaluate_main():
    """Entry point of ``videomae-evaluate`` (``videomae-evaluate merge ...`` merges)."""
    claim_process()
    if sys.argv[1:2] == ["merge"]:
        merge_command(args=sys.argv[2:], prog_name="videomae-evaluate merge")
    else:
        evaluate_command(prog_name="videomae-evaluate")


def extract_main():
    """Entry point of ``videomae-extract``."""
    claim_process()
    extract_command(prog_name="videomae-extract")


if __name__ == "__main__":  # python -m videomae_cli.video: three commands live here
    click.echo("error: videomae_cli.video holds three commands; run videomae-predict, "
               "videomae-evaluate or videomae-extract", err=True)
    sys.exit(EXIT_BAD_INPUT)
