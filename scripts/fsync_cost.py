#!/usr/bin/env python
"""What flushing the artifacts to disk costs: one synthetic conversion per size, with the time
spent in fsync (files, then folders) measured inside the run.

    python scripts/fsync_cost.py --sizes T,S --out /tmp/fsync-cost

Prints, per size: artifact bytes, fsync seconds, whole conversion seconds, and the ratio.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import click  # noqa: E402

import converter  # noqa: E402
from converter import export, staging  # noqa: E402


@click.command()
@click.option("--sizes", default="T,S", show_default=True)
@click.option("--out", "out_dir", type=click.Path(), required=True)
def main(sizes, out_dir):
    """Convert each size once and report the fsync share of the run."""
    spent = {"fsync": 0.0, "depth": 0}

    def timed(function):
        def wrapper(*args, **kwargs):  # fsync_tree recurses: count the outermost call only
            spent["depth"] += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent["depth"] -= 1
                if spent["depth"] == 0:
                    spent["fsync"] += time.perf_counter() - started
        return wrapper

    # the staging folder is flushed by export (files, then the folder), the output folder by
    # staging's move into place: time the names those modules call
    export.fsync_tree = timed(export.fsync_tree)
    export.fsync_dir = timed(export.fsync_dir)
    staging.fsync_dir = timed(staging.fsync_dir)
    click.echo("| size | artifact MB | fsync s | conversion s | fsync share |")
    click.echo("|---|---|---|---|---|")
    for size in sizes.split(","):
        folder = os.path.join(out_dir, size)
        shutil.rmtree(folder, ignore_errors=True)
        spent["fsync"] = 0.0
        entry = converter.find_entry(size, "FT", "k400")
        started = time.perf_counter()
        result = converter.convert(entry, folder, synthetic=True, progress=False)
        total = time.perf_counter() - started
        megabytes = sum(a.bytes for a in result.report.artifacts.values()) / 2**20
        click.echo(f"| {size} | {megabytes:.1f} | {spent['fsync']:.3f} | {total:.1f} | "
                   f"{100 * spent['fsync'] / total:.2f}% |")


if __name__ == "__main__":
    main()
