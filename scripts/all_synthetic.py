#!/usr/bin/env python
"""``videomae-convert --all --synthetic`` over a family's entries, as a Markdown table.

    python scripts/all_synthetic.py --family v2 --size S --size B --out all-v2/ \
        [--markdown table.md]

Converts each selected entry from a seeded random checkpoint in upstream's file layout, each
in its own process with every check on (``converter.batch.convert_all``, what ``--all`` runs),
and prints the table docs/BENCHMARKS.md keeps: entry, status, seconds, TF's parity error
against the float64 reference, peak RSS. ViT-g needs its own machine budget (about 16 GB of
disk per entry, see docs/BENCHMARKS.md), so its rows are run separately: ``--size g``.
Re-running resumes (entries whose artifacts verify are skipped, their seconds the check's).

``--name NAME`` (repeat) picks entries by zoo name. ``--discard-artifacts`` removes each
entry's artifacts once its row is in, and moves its JSON report to ``logs/`` beside its log
and outcome: ViT-g's seven fine-tuned entries hold about 85 GB of artifacts, more than a
small disk, and the table needs only the rows. A discarded entry converts again when re-run.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys

import click

import converter  # noqa: F401
from converter.batch import convert_all, format_markdown, select_entries
from converter.zoo import get_entry
from tf_models.artifacts.names import artifact_paths


@click.command()
@click.option("--family", default="v2", show_default=True)
@click.option("--size", "sizes", multiple=True, help="Sizes to convert (repeat); default all.")
@click.option("--mode", default=None)
@click.option("--name", "names", multiple=True, help="Zoo names to convert (repeat).")
@click.option("--discard-artifacts", is_flag=True,
              help="Remove each entry's artifacts once its row is in (its report goes to logs/).")
@click.option("--out", "out_dir", required=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--markdown", "md_path", default=None, help="Also write the table here.")
def main(family, sizes, mode, names, discard_artifacts, out_dir, seed, md_path):
    try:
        picked = [get_entry(name) for name in names]
    except KeyError as error:
        sys.exit(f"error: {error.args[0]}")
    entries = picked or select_entries(sizes, mode, None, family)
    if not entries:
        sys.exit(f"no {family} entry of size {'/'.join(sizes)}")

    def on_row(row):
        print(f"  {row.name}: {row.status} in {row.seconds:.0f}s", flush=True)
        if discard_artifacts and row.status != "failed":
            _discard(out_dir, row.name)
    rows = convert_all(entries, out_dir, synthetic=True, seed=seed, on_row=on_row)
    chosen = ("".join(f" --name {n}" for n in names) if names
              else f" --family {family}" + "".join(f" --size {s}" for s in sizes))
    table = (f"`--all --synthetic{chosen}` (seed {seed}) on "
             f"{platform.machine()}, Python {platform.python_version()}:\n\n"
             + format_markdown(rows) + "\n")
    sys.stdout.write(table)
    if md_path:
        with open(md_path, "w") as handle:
            handle.write(table)
    if any(row.status == "failed" for row in rows):
        sys.exit(1)


def _discard(out_dir, name):
    """Remove ``name``'s artifacts from ``out_dir``; its report moves to ``logs/NAME.json``
    (kept beside the entry's log; a report left alone would make a re-run refuse the folder
    as artifacts that no longer verify)."""
    for kind, path in artifact_paths(out_dir, name, litert=True).items():
        if not os.path.lexists(path):
            continue
        if kind == "report":
            os.replace(path, os.path.join(out_dir, "logs", os.path.basename(path)))
        elif os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


if __name__ == "__main__":
    main()
