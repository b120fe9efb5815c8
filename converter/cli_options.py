"""The options of ``videomae-convert``, declared once for its two front ends.

``command(callback, presets, quantized_modes)`` wraps ``callback`` in them. ``converter.cli``
builds ``python -m converter.cli`` (and its in-process tests) with the package's own zoo
table; the console script (``videomae_cli.convert``) loads this file and
``tf_models/presets.py`` on their own, without their packages, so ``--help`` and a mistyped
option answer before torch and TensorFlow load. Imports click alone: keep it that way.
"""

from __future__ import annotations

from typing import Optional

import click

HELP = ("Convert an official PyTorch VideoMAE (V1 or V2) checkpoint into checked TF / Keras "
        "artifacts: a SavedModel, NAME.weights.h5, NAME.keras and a NAME.json parity report.")

# torch.Generator takes unsigned 64-bit seeds (a larger one raised its OverflowError)
SEED_MAX = 2**64 - 1


def size_choices(presets, include_test: bool = True) -> tuple:
    """The ``--size`` choices from the zoo table ``presets`` (``tf_models/presets.py``): the
    published sizes, then the test-only ones."""
    return tuple(presets.SIZES) + (tuple(presets.TEST_SIZES) if include_test else ())


def command(callback, presets, quantized_modes, cls=click.Command) -> click.Command:
    """``callback(**options)`` as the videomae-convert command, its choices from the zoo table
    ``presets`` and ``quantized_modes`` (``tf_models.artifacts.names.QUANTIZED_MODES``); ``cls``
    the click command class (the console script's makes usage errors one line,
    ``videomae_cli.exits.OneLineCommand``)."""
    @click.command(cls=cls, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--name", "entry_name", default=None,
                  help="A zoo entry by its name (see --list), e.g. TFVideoMAEv2_B_K710_16x224_DL; "
                       "instead of --family/--size/--mode/--dataset.")
    @click.option("--list", "list_entries", is_flag=True,
                  help="List every zoo entry (name, upstream accuracy, views) and exit.")
    @click.option("--json", "as_json", is_flag=True,
                  help="With --list: one JSON object per line and entry.")
    @click.option("--family", type=click.Choice(tuple(presets.FAMILIES)), default=None,
                  help="v1: VideoMAE; v2: VideoMAE V2. [default: v1 where it has the entry]")
    @click.option("--size", type=click.Choice(size_choices(presets)), multiple=True,
                  help="Model size (T and Tg are tiny test-only configs with no upstream file). "
                       "Required unless --name or --all; with --all it may repeat (--size S "
                       "--size B: every entry of those sizes).")
    @click.option("--mode", type=click.Choice(presets.MODES), default=None,
                  help="FT: a classifier (fine-tuned, or distilled: the DL entries); PT: "
                       "pre-trained masked autoencoder. [default: FT; with --all: both]")
    @click.option("--dataset", type=click.Choice(tuple(presets.DATASETS)), default=None,
                  help="Dataset the checkpoint was trained on. [default: k400; with --all: all]")
    @click.option("--checkpoint", type=click.Path(dir_okay=True), default=None,
                  help="Checkpoint to convert, its layout read from the file: upstream's "
                       ".pth, or a transformers-format copy (a folder with config.json, or a "
                       "single model.safetensors / pytorch_model.bin).")
    @click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                  help="Where upstream checkpoints are downloaded when --checkpoint is omitted "
                       "[default: $VIDEOMAE_CONVERT_CACHE or ~/.cache/videomae-convert].")
    @click.option("--offline", is_flag=True, default=None,
                  help="Never download: convert the cached upstream file, or stop saying "
                       "where to put it (also VIDEOMAE_OFFLINE, VIDEOMAE_CONVERT_OFFLINE or "
                       "HF_HUB_OFFLINE=1). --checkpoint, --synthetic and --all download "
                       "nothing anyway.")
    @click.option("--force-download", is_flag=True, help="Download again even when cached.")
    @click.option("--synthetic", is_flag=True,
                  help="Convert a seeded random checkpoint in upstream's file layout.")
    @click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True,
                  help="Seed of the synthetic checkpoint and of the parity inputs.")
    @click.option("--out", "out_dir", type=click.Path(), default=None,
                  help="Output folder for the artifacts. Required unless --list.")
    @click.option("--all", "all_entries", is_flag=True,
                  help="Convert every zoo entry (narrowed by --size/--mode/--dataset/--family), "
                       "each in its own process, and print a summary table.")
    @click.option("--checkpoint-dir", type=click.Path(), default=None,
                  help="With --all: folder of real checkpoints, matched to entries by content.")
    @click.option("--jobs", type=int, default=1, show_default=True,
                  help="With --all: entries converted at once.")
    @click.option("--encoder-only", is_flag=True,
                  help="Export just the encoder (token and pooled features) as NAME_encoder "
                       "artifacts; works for FT and PT checkpoints, including ViT-H PT.")
    @click.option("--litert", is_flag=True,
                  help="Also write NAME.tflite (LiteRT, fp32, dynamic batch), checked like every "
                       "other artifact; fine-tuned and --encoder-only models (with --all: every "
                       "fine-tuned entry).")
    @click.option("--litert-quantize", type=click.Choice(quantized_modes), multiple=True,
                  help="Also write NAME.fp16.tflite / NAME.int8.tflite (LiteRT with fp16 weights, "
                       "or dynamic-range int8 weights: the smaller files to ship; implies "
                       "--litert; may repeat). Each is measured against the float64 reference "
                       "(the report's reload_checks) and held to a sanity bound, not to parity.")
    @click.option("--video", "videos", multiple=True,
                  help="With --litert-quantize: a real video (may repeat); one clip of each "
                       "through the torch model and each quantised file gives the report's top-1 "
                       "and top-5 agreement.")
    @click.option("--raw-frames", is_flag=True,
                  help="The SavedModel (and .tflite) take raw uint8 frames [batch, frames, size, "
                       "size, 3] at the entry's size: scaling to [0, 1] and the dataset's mean/std "
                       "run inside them (for TF Serving and on-device use); checked like the rest.")
    @click.option("--force", is_flag=True, help="Overwrite artifacts already in --out.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
    @click.option("--verbose", is_flag=True,
                  help="Let TensorFlow's start-up and log lines through (read by the console "
                       "script before the frameworks load).")
    @click.option("--outcome-file", type=click.Path(dir_okay=False), default=None, hidden=True,
                  help="Where --all's child writes what it did (a RunOutcome).")
    @click.option("--phases-fd", type=int, default=None, hidden=True,
                  help="Where --all's child writes each phase's name as it starts (the write "
                       "end of its parent's pipe: converter.batch.report_phase).")
    def videomae_convert(**options):
        if options["list_entries"]:
            _refuse_beside_list(click.get_current_context())
        else:
            refusal = options_refusal(**options)
            if refusal:
                click.echo(refusal, err=True)
                raise click.exceptions.Exit(2)
        return callback(**options)
    return videomae_convert


# the options of the upstream download (option name -> flag): they act only where a run
# downloads, one entry with neither --checkpoint nor --synthetic; anywhere else they would be
# ignored without a word (the VIDEOMAE_CONVERT_CACHE variable, being ambient, is). --offline
# is not one: a promise that nothing is downloaded, it holds wherever nothing is (a script
# may pass it always), as the offline variables do
DOWNLOAD_OPTIONS = {"cache_dir": "--cache-dir", "force_download": "--force-download"}


def options_refusal(entry_name, synthetic, checkpoint, checkpoint_dir, all_entries, size,
                    mode, dataset, family, as_json, out_dir, jobs, encoder_only,
                    **options) -> Optional[str]:
    """The one-line error (``error: ...``) of the first options that do not go together, from
    the options alone (no framework, no zoo entry: the console script answers before torch and
    TensorFlow load); None when none. ``--list``'s own: ``_refuse_beside_list``."""
    download = ", ".join(flag for name, flag in DOWNLOAD_OPTIONS.items() if options.get(name))
    if as_json:
        return "error: --json goes with --list"
    if out_dir is None:
        return "error: Missing option '--out'."
    if synthetic and (checkpoint or checkpoint_dir):
        return "error: --synthetic excludes --checkpoint and --checkpoint-dir"
    if entry_name and (all_entries or size or mode or dataset or family):
        return ("error: --name names one entry: drop --all, --family, --size, --mode and "
                "--dataset")
    if all_entries:
        if checkpoint:
            return "error: --all takes --checkpoint-dir DIR, not --checkpoint"
        if download:
            return (f"error: --all converts from --checkpoint-dir or --synthetic and downloads "
                    f"nothing: drop {download}")
        if encoder_only:
            return "error: --encoder-only converts one entry at a time; drop --all"
        if not synthetic and not checkpoint_dir:
            return "error: --all needs --checkpoint-dir DIR or --synthetic"
        if jobs < 1:
            return f"error: --jobs must be at least 1, not {jobs}"
        return None
    if checkpoint_dir:
        return "error: --checkpoint-dir goes with --all; for one entry use --checkpoint"
    if jobs != 1:
        return (f"error: --jobs {jobs} goes with --all (entries converted at once); one entry "
                f"converts in one process: drop --jobs")
    if download and (synthetic or checkpoint):
        return (f"error: {download} {'go' if ',' in download else 'goes'} with the upstream "
                f"download, and {'--synthetic' if synthetic else '--checkpoint'} converts no "
                f"upstream download: drop {download}")
    if not size and entry_name is None:
        return "error: --size is required (or --name, or --all)"
    if len(size) > 1:
        return (f"error: --size {' --size '.join(size)}: one entry has one size; several go "
                f"with --all")
    return None


# what --list goes with; it lists the whole zoo, so any other option would be ignored
LIST_OPTIONS = ("list_entries", "as_json", "quiet", "verbose")


def _refuse_beside_list(ctx: click.Context) -> None:
    """One line and exit 2 when options --list would ignore were given with it (a user who
    writes ``--list --family v2`` expects the V2 entries, and would get every entry)."""
    given = [param.opts[0] for param in ctx.command.params
             if param.name not in LIST_OPTIONS and not param.hidden
             and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        click.echo(f"error: --list lists every zoo entry and takes only --json; drop "
                   f"{', '.join(given)}", err=True)
        raise click.exceptions.Exit(2)
