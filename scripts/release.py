#!/usr/bin/env python
"""Build or verify the release assets of the TF VideoMAE zoo from a conversion folder.

    python scripts/release.py build weights/ release/ --base-url https://example.org/v0.1.0
    python scripts/release.py verify release/ [--recheck]

``build`` verifies every artifact against its conversion report, re-checks each asset in a
fresh process, and writes zipped SavedModels, .weights.h5, .keras, SHA256SUMS,
manifest.json, MODEL_ZOO.md and a model card per entry. ``verify`` fails on any file that
does not match SHA256SUMS / the manifest (``--recheck`` also reloads every asset).
"""

import sys

import click

import converter  # noqa: F401  (torch before tensorflow)
from converter.errors import ConversionError
from converter.release import build_release, verify_release


@click.group()
def cli():
    """Release assets for the TF VideoMAE zoo."""


@cli.command()
@click.argument("conversion_dir", type=click.Path())
@click.argument("release_dir", type=click.Path())
@click.option("--base-url", required=True, help="Where the assets will be downloadable.")
@click.option("--force", is_flag=True, help="Replace an existing release folder.")
def build(conversion_dir, release_dir, base_url, force):
    """Build RELEASE_DIR from the artifacts in CONVERSION_DIR."""
    try:
        manifest = build_release(conversion_dir, release_dir, base_url, force=force,
                                 log=lambda line: click.echo(line, err=True))
    except ConversionError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    click.echo(f"{release_dir}: {len(manifest['entries'])} entries, "
               f"{len(manifest['assets'])} assets")


@cli.command()
@click.argument("release_dir", type=click.Path())
@click.option("--recheck", is_flag=True, help="Also reload every asset in a fresh process.")
def verify(release_dir, recheck):
    """Check RELEASE_DIR against its SHA256SUMS, manifest and MODEL_ZOO.md."""
    try:
        problems = verify_release(release_dir, recheck=recheck)
    except ConversionError as error:
        problems = [str(error)]
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{release_dir}: verified")


if __name__ == "__main__":
    cli()
