#!/usr/bin/env python
"""Build or verify the release assets of the TF VideoMAE zoo from a conversion folder.

    python scripts/release.py build weights/ release/ --base-url https://example.org/v0.1.0
    python scripts/release.py verify release/ [--recheck]
    python scripts/release.py publish release/ --to hf://ORG [--dry-run DIR]

``build`` verifies every artifact against its conversion report, re-checks each asset in a
fresh process, and writes zipped SavedModels, .weights.h5, .keras, SHA256SUMS,
manifest.json, MODEL_ZOO.md, a model card and a keras-hub preset (NAME.kerashub.tar) per
entry; a model asset over the part size (``--part-size``, default: under the --base-url
host's file limit, GitHub's 2 GiB) ships as NAME.part-001-of-00N ... instead.
``verify`` fails on any file that does not match SHA256SUMS / the manifest
(``--recheck`` also reloads every asset). ``publish`` uploads every preset of a verified
release through ``keras_hub.upload_preset`` (hf://ORG/NAME or kaggle://OWNER/MODEL/keras/NAME),
each with our model card; ``--dry-run DIR`` writes what would be uploaded into DIR instead.
"""

import os
import sys
import tempfile
import traceback

import click

from videomae_cli.exits import HELP_OPTIONS, fail, stoppable  # stdlib and click only
from videomae_cli.quiet import prepare_environment, silenced_stderr  # stdlib only


def library(verbose: bool):
    """``converter.release`` and ``ConversionError``, imported as a command starts (so
    ``--help`` does not wait for torch and TensorFlow), with TensorFlow's start-up lines
    silenced unless ``--verbose``."""
    with silenced_stderr(not verbose):
        from converter import release
        from converter.errors import ConversionError
    return release, ConversionError


def unexpected(where: str, error: Exception) -> str:
    """One line for an error the library did not expect (a bug, or input nobody checked for):
    never a traceback in a user's terminal, but one kept in a file the line names, for the
    report."""
    first = (str(error).strip().splitlines() or [""])[0][:300]
    kept = ""
    try:
        handle, path = tempfile.mkstemp(prefix="videomae-release-", suffix=".traceback.txt")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("".join(traceback.format_exception(error)))
        kept = f" (traceback in {path})"
    except OSError:
        pass
    return (f"{where}: unexpected {type(error).__name__} ({first}); check the folder's files, "
            f"and report this{kept} if they look right")


@click.group(context_settings=HELP_OPTIONS)  # -h as the console scripts take it
@click.option("--verbose", is_flag=True, help="Let TensorFlow's start-up and log lines through.")
@click.pass_context
def cli(ctx, verbose):
    """Release assets for the TF VideoMAE zoo."""
    prepare_environment(verbose, tensorflow_only="scripts/release.py")
    ctx.obj = verbose


@cli.command()
@click.argument("conversion_dir", type=click.Path())
@click.argument("release_dir", type=click.Path())
@click.option("--base-url", required=True,
              help="Where the assets will be downloadable: an https:// (or http://, file://) "
                   "URL.")
@click.option("--force", is_flag=True, help="Replace an existing release folder.")
@click.option("--part-size", "part_size", default=None, metavar="SIZE",
              help="Ship model assets over SIZE (e.g. 1900MiB) as numbered parts; default: "
                   "under the --base-url host's file limit (GitHub's 2 GiB), else none.")
@click.pass_obj
def build(verbose, conversion_dir, release_dir, base_url, force, part_size):
    """Build RELEASE_DIR from the artifacts in CONVERSION_DIR."""
    with stoppable(lambda: f"{release_dir} was not written (a release there is kept)"
                   ) as stop_if_signalled:
        release, ConversionError = library(verbose)
        try:
            size = None if part_size is None else release.parse_part_size(part_size)
            manifest = release.build_release(conversion_dir, release_dir, base_url,
                                             force=force, part_size=size,
                                             log=lambda line: click.echo(line, err=True))
        except ConversionError as error:
            raise fail(str(error)) from None
        except Exception as error:  # noqa: BLE001  (one line, never a traceback)
            stop_if_signalled()  # an error a stop caused is the stop: no traceback file
            raise fail(unexpected(conversion_dir, error)) from None
    click.echo(f"{release_dir}: {len(manifest['entries'])} entries, "
               f"{len(manifest['assets'])} assets")


@cli.command()
@click.argument("release_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--recheck", is_flag=True, help="Also reload every asset in a fresh process.")
@click.pass_obj
def verify(verbose, release_dir, recheck):
    """Check RELEASE_DIR against its SHA256SUMS, manifest and MODEL_ZOO.md."""
    with stoppable(lambda: f"{release_dir} was not verified") as stop_if_signalled:
        release, ConversionError = library(verbose)
        try:
            problems = release.verify_release(release_dir, recheck=recheck)
        except ConversionError as error:
            problems = [str(error)]
        except Exception as error:  # noqa: BLE001  (one line, never a traceback)
            stop_if_signalled()  # an error a stop caused is the stop: no traceback file
            raise fail(unexpected(release_dir, error), code=1) from None
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{release_dir}: verified")


@cli.command()
@click.argument("release_dir", type=click.Path())
@click.option("--to", "to", required=True, help="hf://ORG or kaggle://OWNER/MODEL.")
@click.option("--dry-run", "dry_run", type=click.Path(), default=None,
              help="Write what would be uploaded into this new folder; upload nothing.")
@click.pass_obj
def publish(verbose, release_dir, to, dry_run):
    """Upload every keras-hub preset of RELEASE_DIR to a model hub."""
    with stoppable(lambda: "presets uploaded before the stop stay uploaded" if dry_run is None
                   else f"{dry_run} was not written") as stop_if_signalled:
        release, ConversionError = library(verbose)
        try:
            plan = release.publish_release(release_dir, to, dry_run=dry_run,
                                           log=lambda line: click.echo(line, err=True))
        except ConversionError as error:
            raise fail(str(error)) from None
        except Exception as error:  # noqa: BLE001  (one line, never a traceback)
            stop_if_signalled()  # an error a stop caused is the stop: no traceback file
            raise fail(unexpected(release_dir, error)) from None
    done = f"written to {dry_run} (dry run)" if dry_run else "uploaded"
    click.echo(f"{release_dir}: {len(plan)} presets {done}")


if __name__ == "__main__":
    cli()
