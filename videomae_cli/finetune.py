"""``videomae-finetune``: a thin click command over ``tf_models.train.finetune``.

The backend is Keras's (``KERAS_BACKEND``: ``jax`` for ``keras.distribution`` over every local
device, ``tensorflow`` (default) for MirroredStrategy on one host, ``torch`` for one device).
Nothing heavy is imported until the command runs. Exit codes: 0 success, 2 bad input or an
output that cannot be written (one ``error:`` line on stderr, no traceback). A bad video is one
``skipped:`` line on stderr and the run goes on; the summary counts them.
"""

from __future__ import annotations

import json
import os
import sys

import click

from .exits import check_root, command, fail as _fail, given, stoppable
from .lifetime import claim_process, framework_imports
from .quiet import prepare_environment, silenced_stderr
from .zoo_table import dataset_choices, finetune_bounds


@command()
@click.option("--model", "model_spec", required=True,
              help="zoo name, .keras file, keras-hub preset folder or hf:// / kaggle:// "
                   "handle, or transformers-format folder or hf:// repository, of a PT or FT "
                   "model to start from")
@click.option("--list", "list_path", required=True,
              help="training list: 'relative/path.mp4 LABEL' per line (as videomae-evaluate)")
@click.option("--root", default=".", show_default=True, help="folder the lists' paths are in")
@click.option("--num-classes", type=click.IntRange(1), required=True)
@click.option("--out", "out_dir", required=True,
              help="folder for checkpoint.npz, model.keras, summary.json; a rerun resumes; "
                   "locked while a run trains; with several hosts, one folder they share")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
              help="global batch in clips (all devices, all hosts)")
@click.option("--lr", type=float, default=None,
              help="peak learning rate, used as given (default: upstream's 1e-3 per 256 "
                   "videos, times --batch-size / --num-sample / 256; from an upstream script: "
                   "its --lr x batch_size x GPUs / 256)")
@click.option("--min-lr", type=float, default=None,
              help="the cosine schedule's floor, approached at the last step (default: "
                   "upstream's 1e-6 per 256 videos, scaled as --lr)")
@click.option("--warmup-epochs", type=click.FloatRange(0), default=5, show_default=True)
@click.option("--layer-decay", type=click.FloatRange(**finetune_bounds("layer_decay")),
              default=0.75, show_default=True,
              help="each block's learning rate is this times the next one's (upstream's "
                   "layer-wise decay; 1: none)")
@click.option("--weight-decay", type=click.FloatRange(**finetune_bounds("weight_decay")),
              default=0.05, show_default=True, help="AdamW's decoupled weight decay (0: none)")
@click.option("--clip-grad", type=click.FloatRange(**finetune_bounds("clip_grad")),
              default=None,
              help="scale the gradient down to this global norm when over it (upstream's "
                   "--clip_grad; V2's ViT-g scripts: 5.0; default: no clipping)")
@click.option("--drop-path-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="dropout before the head (upstream --fc_drop_rate; V2 --head_drop_rate)")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="seeds Keras, NumPy and Python (whose seeds Keras takes from 0 to 2**32 - 1)")
@click.option("--dataset", type=click.Choice(dataset_choices()), default="k400",
              show_default=True,
              help="recipe: the dataset's sampler and rate (upstream's test-time ones: dense "
                   "with flips for Kinetics, UCF101, HMDB51; ssv2 segments, no flip)")
@click.option("--num-frames", type=click.IntRange(1), default=None,
              help="frames per clip (default: the model's)")
@click.option("--img-size", type=click.IntRange(1), default=None,
              help="clip size in pixels (default: the model's)")
@click.option("--num-sample", type=click.IntRange(1), default=2, show_default=True,
              help="repeated augmentation: clips drawn from each decoded video")
@click.option("--no-augment", is_flag=True,
              help="centre crops, no RandAugment / flip / erasing / mixup")
@click.option("--no-rand-augment", is_flag=True, help="skip RandAugment only")
@click.option("--mixed-precision", is_flag=True, help="train in mixed_bfloat16")
@click.option("--save-every", type=click.IntRange(0), default=0, show_default=True,
              help="also checkpoint every N steps (0: at the end of each epoch only)")
@click.option("--val-list", default=None,
              help="list scored after each epoch with upstream's test protocol")
@click.option("--val-views", default="1x1", show_default=True,
              help="CLIPSxCROPS of the validation protocol (5x3: upstream's K400 test)")
@click.option("--devices", type=click.IntRange(1), default=None,
              help="devices to train on (default: every local device on JAX, every GPU on "
                   "TensorFlow)")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="decoding threads running ahead of training")
@click.option("--coordinator", default=None,
              help="several hosts (JAX): HOST:PORT of process 0, for keras.distribution."
                   "initialize")
@click.option("--num-processes", type=click.IntRange(1), default=None,
              help="several hosts (JAX): how many processes train together")
@click.option("--process-id", type=click.IntRange(0), default=None,
              help="several hosts (JAX): this process's index, 0 to --num-processes - 1")
@click.option("--json", "as_json", is_flag=True,
              help="last stdout line: JSON with devices, steps, loss, model (and more)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.option("--verbose", is_flag=True, help="let the frameworks' logs through")
def finetune_command(model_spec, list_path, root, num_classes, out_dir, epochs, batch_size, lr,
                     min_lr, warmup_epochs, layer_decay, weight_decay, clip_grad,
                     drop_path_rate, dropout, seed, dataset, num_frames, img_size, num_sample,
                     no_augment, no_rand_augment, mixed_precision, save_every, val_list, val_views,
                     devices, workers, coordinator, num_processes, process_id, as_json, quiet,
                     verbose):
    """Fine-tune a VideoMAE model on the videos in LIST with upstream's recipe."""
    if val_list is None and given("val_views"):  # before: taken and ignored
        raise _fail("--val-views: the views of --val-list's validation; add --val-list or drop "
                    "--val-views")
    check_root(root)  # before the frameworks import and the model loads
    with stoppable(lambda: "nothing was trained or written"):  # while the frameworks import
        prepare_environment(verbose)
        with silenced_stderr(not verbose), framework_imports():
            from tqdm import tqdm

            from tf_models.progress import progress_bar
            from tf_models.stopping import run_stoppably
            from tf_models.train import (CheckpointError, DeviceError, FinetuneConfig,
                                         FinetuneError, TrainDataError, finetune)
            from tf_models.train.checkpoint import CHECKPOINT_NAME

    config = FinetuneConfig(
        model=model_spec, list_path=list_path, root=root, num_classes=num_classes,
        out=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, min_lr=min_lr,
        warmup_epochs=warmup_epochs, layer_decay=layer_decay, weight_decay=weight_decay,
        clip_grad=clip_grad,
        drop_path_rate=drop_path_rate, dropout=dropout, seed=seed, dataset=dataset,
        num_frames=num_frames, img_size=img_size, num_sample=num_sample,
        augment=not no_augment, rand_augment=not no_rand_augment,
        dtype_policy="mixed_bfloat16" if mixed_precision else None, save_every=save_every,
        val_list=val_list, val_views=val_views, devices=devices, workers=workers,
        coordinator=coordinator, num_processes=num_processes, process_id=process_id)
    bar = []

    def on_step(step, total, loss):
        if not bar and warmup_epochs >= epochs:  # upstream's scheduler refuses it (an assert)
            click.echo(f"note: --warmup-epochs {warmup_epochs:g} is not less than --epochs "
                       f"{epochs}: the rate rises the whole run, to --lr at its last step, and "
                       f"never decays (upstream: 5 warm-up epochs of 30 or more); pass more "
                       f"--epochs or fewer --warmup-epochs", err=True)
        if not bar:
            bar.append(progress_bar(total=total, initial=step - 1, unit="step",
                                    disable=quiet, file=sys.stderr, dynamic_ncols=True,
                                    desc="fine-tune"))
        bar[0].set_postfix(loss=f"{loss:.4f}", refresh=False)
        bar[0].update(1)

    def on_error(message):
        tqdm.write(f"skipped: {message}", file=sys.stderr)

    def on_resume(step):
        click.echo(f"resuming from the checkpoint in {out_dir} at step {step}", err=True)

    def work(stop_if_signalled):
        def after_step(step, total, loss):
            on_step(step, total, loss)
            stop_if_signalled()  # a stop whose exception was swallowed (a gc callback: jax's)
        return finetune(config, on_step=after_step, on_error=on_error, on_resume=on_resume)
    try:  # SIGTERM / SIGINT: one line, as videomae-convert (tf_models.stopping)
        result = run_stoppably(work)
    except (FinetuneError, DeviceError, CheckpointError, TrainDataError) as error:
        raise _fail(str(error))
    except OSError as error:
        raise _fail(f"{out_dir}: cannot write ({error.strerror or error}); free space or "
                    "choose another --out")
    except KeyboardInterrupt:
        if not os.path.exists(os.path.join(out_dir, CHECKPOINT_NAME)):  # stopped before one
            raise _fail("interrupted before the first checkpoint; nothing was written")
        raise _fail(f"interrupted; {out_dir}/checkpoint.npz (the last finished epoch or "
                    "--save-every step) is kept: run the same command again to resume")
    finally:
        for item in bar:
            item.close()
    if result.resumed_from and result.steps == result.resumed_from:
        click.echo(f"nothing left to train: every step is in {out_dir}/checkpoint.npz; "
                   "model.keras written from it again", err=True)
    summary = result.to_dict()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{result.steps} steps on {result.devices} {result.backend} device(s), "
               f"last epoch loss {result.loss:.4f}, {len(result.failed)} video(s) skipped")
    for record in result.history:
        if record.get("val_top1") is not None:
            failed = record.get("val_failed") or 0
            click.echo(f"epoch {record['epoch']}: val top-1 {record['val_top1']:.2f}%  "
                       f"top-5 {record['val_top5']:.2f}%" + (
                           f"  ({failed} of {failed + record['val_videos']} validation videos "
                           "failed to decode, not counted)" if failed else ""))
    click.echo(f"model: {result.model}")
    click.echo(f"to export it as SavedModel, .tflite and preset, checked: videomae-export "
               f"--model {result.model} --out DIR --litert --preset")


def finetune_main():
    """Entry point of ``videomae-finetune``: SIGTERM (a scheduler's stop) ends a run as Ctrl-C
    does, one line and exit 2, the checkpoint kept (``finetune_command``)."""
    claim_process()
    finetune_command(prog_name="videomae-finetune")


if __name__ == "__main__":
    finetune_main()
