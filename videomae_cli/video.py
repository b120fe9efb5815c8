"""``videomae-predict`` and ``videomae-evaluate``: thin click commands over ``tf_models.video``.

TensorFlow is imported inside the commands, after ``quiet.prepare_environment``, so its
start-up lines stay off the terminal unless ``--verbose``. Exit codes: 0 success, 2 bad input
(one ``error:`` line per problem on stderr, no traceback); predict also exits 2 when any video
failed, after classifying the others.
"""

from __future__ import annotations

import json
import os
import sys

import click

from .quiet import prepare_environment, silenced_stderr
from .zoo_table import dataset_choices

EXIT_BAD_INPUT = 2


def _fail(message: str) -> "click.exceptions.Exit":
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(EXIT_BAD_INPUT)


def _load_model(model: str, dataset, verbose: bool):
    """Import TensorFlow and load ``model`` with the framework's noise silenced; warm it up."""
    prepare_environment(verbose)
    with silenced_stderr(not verbose):
        from tf_models.video.decode import quiet_ffmpeg
        from tf_models.video.model import ModelError, load_video_model

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
    return loaded


_DATASETS = click.Choice(dataset_choices())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("videos", nargs=-1, required=True)
@click.option("--model", "model_spec", required=True,
              help="zoo name, .keras file or SavedModel folder of a fine-tuned (FT) model")
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
    model = _load_model(model_spec, dataset, verbose)
    from tf_models.video.decode import VideoError
    from tf_models.video.predict import classify_video

    if views is not None:
        from tf_models.video.protocol import parse_views

        try:
            parse_views(views)
        except ValueError as error:
            raise _fail(str(error))
    failed = 0
    for video in videos:
        try:
            record = classify_video(model, video, views=views, k=k, batch_size=batch_size)
        except VideoError as error:
            click.echo(f"error: {error}", err=True)
            failed += 1
            continue
        except ValueError as error:  # a --views the dataset's sampler cannot make
            raise _fail(str(error))
        if as_json:
            click.echo(json.dumps(record))
            continue
        click.echo(f"{video}  ({model.name}, {record['views']} views)")
        for row in record["top_k"]:
            click.echo(f"  {row['prob']:.4f}  {row['label']}")
    if failed:
        raise click.exceptions.Exit(EXIT_BAD_INPUT)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_spec", required=True,
              help="zoo name, .keras file or SavedModel folder of a fine-tuned (FT) model")
@click.option("--list", "list_path", required=True,
              help="upstream's list: 'relative/path.mp4 LABEL' per line")
@click.option("--root", default=".", show_default=True, help="folder the list's paths are in")
@click.option("--out", "out_dir", default=None,
              help="results folder (default: videomae-eval/MODEL_NAME); a rerun resumes there")
@click.option("--shard", default=None, help="I/N: score the I-th of N deterministic shares")
@click.option("--views", default=None, help="CLIPSxCROPS (default: the dataset's protocol)")
@click.option("--dataset", type=_DATASETS, default=None)
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="decoding threads running alongside the model")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True,
              help="views per model call")
@click.option("--json", "as_json", is_flag=True,
              help="stdout: one JSON line with top1, top5, videos, failed (and more)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.option("--verbose", is_flag=True, help="let TensorFlow's and FFmpeg's logs through")
def evaluate_command(model_spec, list_path, root, out_dir, shard, views, dataset, workers,
                     batch_size, as_json, quiet, verbose):
    """Score every view of every video in LIST; print top-1 / top-5 (upstream's merge).

    Merge shards written to several folders with: videomae-evaluate merge DIR [DIR ...]
    """
    model = _load_model(model_spec, dataset, verbose)
    from tqdm import tqdm

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
    bars = []

    def on_total(todo, done):
        if done:
            click.echo(f"resuming: {done} videos already scored in {out_dir}", err=True)
        bars.append(tqdm(total=todo, unit="video", disable=quiet, file=sys.stderr,
                         dynamic_ncols=True,
                         desc=model.name if from_shard == (1, 1) else f"{model.name} {shard}"))

    def on_error(message):
        tqdm.write(f"error: {message}", file=sys.stderr)

    def progress(count):
        bars[0].update(count)

    def close_bars():
        for bar in bars:
            bar.close()

    try:
        _, stats = evaluate_list(model, items, root, out_dir, shard=from_shard, views=views,
                                 workers=workers, batch_size=batch_size, on_error=on_error,
                                 progress=progress, on_total=on_total)
        summary = merge_results([out_dir])
    except EvaluateError as error:
        close_bars()
        raise _fail(str(error))
    except OSError as error:
        close_bars()
        raise _fail(f"{out_dir}: cannot write results ({error.strerror or error})")
    close_bars()
    summary["run"] = stats.to_dict()
    _write_summary(os.path.join(out_dir, "summary.json"), summary)
    _print_summary(summary, as_json, out_dir)


def _write_summary(path: str, summary: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    os.replace(temporary, path)


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
    click.echo(f"per-class accuracy and failures: {where}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folders", nargs=-1, required=True)
@click.option("--out", "out_path", default=None, help="also write the summary JSON here")
@click.option("--json", "as_json", is_flag=True, help="stdout: the summary as one JSON line")
@click.option("--verbose", is_flag=True, help="let TensorFlow's logs through")
def merge_command(folders, out_path, as_json, verbose):
    """Merge the results of evaluate runs (shards) in FOLDERS into one top-1 / top-5."""
    from tf_models.video.evaluate import EvaluateError, merge_results

    try:
        summary = merge_results(folders)
    except EvaluateError as error:
        raise _fail(str(error))
    if out_path:
        _write_summary(out_path, summary)
    _print_summary(summary, as_json, out_path or ", ".join(folders))


def predict_main():
    """Entry point of ``videomae-predict``."""
    predict_command(prog_name="videomae-predict")


def evaluate_main():
    """Entry point of ``videomae-evaluate`` (``videomae-evaluate merge ...`` merges)."""
    if sys.argv[1:2] == ["merge"]:
        prepare_environment("--verbose" in sys.argv)
        with silenced_stderr("--verbose" not in sys.argv):
            import tf_models.video.evaluate  # noqa: F401  (TensorFlow starts here)
        merge_command(args=sys.argv[2:], prog_name="videomae-evaluate merge")
    else:
        evaluate_command(prog_name="videomae-evaluate")
