"""``videomae-reconstruct``: a thin click command over ``tf_models.video.reconstruct``.

Torch-free: it imports TensorFlow (never torch, timm or torchvision) inside the command, after
``quiet.prepare_environment``, so TensorFlow's start-up lines stay off the terminal unless
``--verbose``. Exit codes: 0 written, 2 bad input (one ``error:`` line on stderr) or a stop:
Ctrl-C or SIGTERM, from the command's start (TensorFlow's import and the model's load
included), is one ``error: interrupted`` line, nothing written (``exits.stoppable``).
"""

from __future__ import annotations

import os

import click

from .exits import command, fail as _fail, stoppable
from .lifetime import framework_imports
from .quiet import prepare_environment, silenced_stderr


@command()
@click.option("--model", "model_path", type=click.Path(), required=True,
              help="A converted pre-trained model: NAME.keras, NAME.weights.h5 (with NAME.json), "
                   "the SavedModel folder NAME/, a keras-hub preset folder or hf:// / "
                   "kaggle:// handle, a transformers-format folder or hf:// repository, or a "
                   "zoo name.")
@click.option("--clip", "clip_path", type=click.Path(), required=True,
              help="A clip: .npy frames (T, H, W, 3), or a video file.")
@click.option("--out", "out_path", type=click.Path(), required=True,
              help="Output image: .png for a strip (original / masked / reconstruction), "
                   ".gif for an animation.")
@click.option("--mask-ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None,
              help="Tube mask ratio (default: the zoo preset's, else 0.9).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Mask seed.")
@click.option("--sampling-rate", type=click.IntRange(1), default=4, show_default=True,
              help="Take every Nth frame of the clip, .npy or video (a smaller step where it is "
                   "too short).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--verbose", is_flag=True, help="let TensorFlow's and FFmpeg's logs through")
def reconstruct_command(model_path, clip_path, out_path, mask_ratio, seed, sampling_rate, force,
                        verbose):
    """Reconstruct a masked clip with a converted pre-trained VideoMAE model."""
    if not out_path.lower().endswith((".png", ".gif")):
        raise _fail(f"{out_path}: expected a .png (a strip) or .gif (an animation) --out")
    if os.path.isdir(out_path):
        raise _fail(f"{out_path}: is a folder; --out names the image file to write")
    if os.path.exists(out_path) and not force:
        raise _fail(f"{out_path}: already exists; pass --force to overwrite")
    with stoppable(lambda: f"{out_path} was not written") as stop_if_signalled:
        prepare_environment(verbose)
        with silenced_stderr(not verbose):
            with framework_imports():
                from tf_models.video.decode import quiet_ffmpeg
                from tf_models.video.reconstruct import ReconstructionError, reconstruct_clip

            quiet_ffmpeg(verbose)
            try:
                result = reconstruct_clip(model_path, clip_path, out_path, mask_ratio, seed,
                                          sampling_rate, stop_if_signalled)
            except ReconstructionError as error:
                result = error
        if isinstance(result, BaseException):
            raise _fail(str(result))
    click.echo(f"wrote {result['path']} (mask ratio {result['mask_ratio']:g}, "
               f"{int(result['mask'][0].sum())} of {result['mask'].shape[1]} tokens masked)")


if __name__ == "__main__":  # python -m videomae_cli.reconstruct: the console script's entry
    from .convert import reconstruct_main

    reconstruct_main()
