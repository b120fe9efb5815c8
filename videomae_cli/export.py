"""``videomae-export``: a thin click command over ``converter.keras_export.export_model``.

Exports a VideoMAE classifier in a Keras file (the ``model.keras`` ``videomae-finetune``
writes, or any classifier's ``.keras``, ``.weights.h5`` with its report, keras-hub preset, or
transformers-format folder or repository)
as a conversion exports a zoo entry: SavedModel, ``NAME.weights.h5``, ``NAME.keras``, with
``--litert`` ``NAME.tflite``, with ``--preset`` the keras-hub preset folder ``NAME.preset/``,
and the report ``NAME.json``, each reloaded and checked before it takes its final name. The
reference is the in-memory Keras model (there is no torch model). ``converter`` imports torch
and TensorFlow, so it is imported only once the command runs, with their start-up lines
silenced. Exit codes: 0 success, 1 an artifact that does not reload as the model, 2 bad input
or an output that exists or cannot be written (one ``error:`` line on stderr).
"""

from __future__ import annotations

import json

import click

from .exits import EXIT_CHECK_FAILED, command, fail as _fail, stoppable
from .lifetime import claim_process, framework_imports
from .quiet import prepare_environment, silenced_stderr


@command()
@click.option("--model", "model_spec", required=True,
              help="the classifier to export: a .keras file (videomae-finetune's model.keras), "
                   "a .weights.h5 with its NAME.json, a keras-hub preset folder, a "
                   "transformers-format folder or hf:// repository, or a zoo name")
@click.option("--out", "out_dir", required=True, help="folder for the artifacts")
@click.option("--name", default=None,
              help="NAME of the artifacts (default: the file's name, 'model' for model.keras; a "
                   "hub handle's entry name)")
@click.option("--litert", is_flag=True,
              help="also write NAME.tflite (LiteRT fp32, dynamic batch), checked like the rest")
@click.option("--litert-quantize", type=click.Choice(("fp16", "int8")), multiple=True,
              help="also write NAME.fp16.tflite / NAME.int8.tflite (fp16 or dynamic-range int8 "
                   "weights; implies --litert; may repeat), measured against the in-memory "
                   "model (with --video: top-1 / top-5 agreement on its clip)")
@click.option("--preset", "kerashub_preset", is_flag=True,
              help="also write NAME.preset/, a keras-hub preset folder whose preprocessor takes "
                   "raw uint8 frames (VideoMAEVideoClassifier.from_preset)")
@click.option("--video", default=None,
              help="a real video: one clip of it joins the random clips of the reload checks")
@click.option("--clips", type=click.IntRange(1), default=2, show_default=True,
              help="seeded random clips the reload checks run")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="seed of the random clips")
@click.option("--force", is_flag=True, help="replace artifacts of NAME already in --out")
@click.option("--json", "as_json", is_flag=True,
              help="last stdout line: JSON with the paths, reference and reload checks")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar")
@click.option("--verbose", is_flag=True, help="let the frameworks' logs through")
def export_command(model_spec, out_dir, name, litert, litert_quantize, kerashub_preset, video,
                   clips, seed, force, as_json, quiet, verbose):
    """Export a (fine-tuned) VideoMAE classifier as checked SavedModel, Keras, LiteRT and
    keras-hub artifacts, as videomae-convert exports a converted one."""
    with stoppable(lambda: "nothing was exported"):  # a stop while the frameworks import
        prepare_environment(verbose, tensorflow_only="videomae-export")
        with silenced_stderr(not verbose), framework_imports():
            from converter.errors import ConversionError, ParityError
            from converter.keras_export import export_model
            from tf_models.stopping import run_stoppably

    try:  # SIGTERM / SIGINT stop it as they stop videomae-convert: one line, nothing left
        result = run_stoppably(lambda on_phase: export_model(
            model_spec, out_dir, name=name, litert=litert, preset=kerashub_preset, force=force,
            video=video, batch=clips, seed=seed, progress=not quiet, on_phase=on_phase,
            litert_quantize=litert_quantize))
    except ParityError as error:
        raise _fail(str(error), EXIT_CHECK_FAILED)
    except ConversionError as error:
        raise _fail(str(error))
    except KeyboardInterrupt:
        raise _fail(f"interrupted; no partial artifact was left in {out_dir}")
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    checks = result.report.reload_checks
    worst = max(check.max_abs for check in checks.values() if check.method != "quantized")
    click.echo(f"{result.target.name}: every artifact reloaded as the in-memory model (max "
               f"|difference| {worst:.2e}, tolerance {result.target.parity_atol:.0e}; "
               f"reference: the Keras model, no torch model)")
    for kind, path in result.paths.items():
        click.echo(f"  {kind:11s} {path}")
    for kind, check in checks.items():
        if check.method == "quantized":
            click.echo(f"  {kind}: {check.quantized_summary()}")


def export_main():
    """Entry point of ``videomae-export``."""
    claim_process()
    export_command(prog_name="videomae-export")


if __name__ == "__main__":
    export_main()
