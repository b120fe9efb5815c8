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
"""

from __future__ import annotations

import platform
import sys

import click

import converter  # noqa: F401  (torch first, then tensorflow: the package's import order)
from converter.batch import convert_all, format_markdown, select_entries


@click.command()
@click.option("--family", default="v2", show_default=True)
@click.option("--size", "sizes", multiple=True, help="Sizes to convert (repeat); default all.")
@click.option("--mode", default=None)
@click.option("--out", "out_dir", required=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--markdown", "md_path", default=None, help="Also write the table here.")
def main(family, sizes, mode, out_dir, seed, md_path):
    entries = select_entries(sizes, mode, None, family)
    if not entries:
        sys.exit(f"no {family} entry of size {'/'.join(sizes)}")

    def on_row(row):
        print(f"  {row.name}: {row.status} in {row.seconds:.0f}s", flush=True)
    rows = convert_all(entries, out_dir, synthetic=True, seed=seed, on_row=on_row)
    table = (f"`--all --synthetic --family {family}"
             + "".join(f" --size {s}" for s in sizes) + f"` (seed {seed}) on "
             f"{platform.machine()}, Python {platform.python_version()}:\n\n"
             + format_markdown(rows) + "\n")
    sys.stdout.write(table)
    if md_path:
        with open(md_path, "w") as handle:
            handle.write(table)
    if any(row.status == "failed" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
