#!/usr/bin/env python
"""Fuzz the checkpoint readers through the command line; print a table of outcomes.

    python scripts/fuzz.py                       # 300 cases, seeds 0..299
    python scripts/fuzz.py --cases 50 --start 1000 --category "bit flips"
    python scripts/fuzz.py --fresh --jobs 2      # a new interpreter per case (slower)

Each case is one corrupted copy of a valid tiny checkpoint (tests/fuzzing.py, seeded: the
same seed gives the same bytes), converted with ``videomae-convert --size T --checkpoint
CASE --out EMPTY`` in a child process with a timeout. By default the child is forked from
this process after it imported ``converter.cli`` once (TensorFlow imported, never run), which
saves the ~10 s of imports per case; ``--fresh`` starts ``python -m converter.cli`` instead.
Outcomes: converted / clean error (one ``error:`` line, exit 1 or 2) / traceback / crash
(killed by a signal) / hang (timeout) / partial artifact / leftover temp (anything hidden
left in --out). Exit status 1 when any case is not clean (``--allow-name-check`` forgives
the categories that wait on the name/shape/dtype pre-check).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402
import torch  # noqa: E402,F401  (torch side first)

import fuzzing  # noqa: E402


@click.command()
@click.option("--cases", type=int, default=300, show_default=True, help="How many cases.")
@click.option("--start", type=int, default=0, show_default=True, help="First seed.")
@click.option("--category", "categories", multiple=True,
              type=click.Choice(list(fuzzing.CATEGORIES)), help="Only these categories.")
@click.option("--timeout", type=float, default=180.0, show_default=True,
              help="Seconds before a case counts as a hang.")
@click.option("--fresh", is_flag=True, help="A fresh interpreter per case instead of a fork.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Cases at once (with --fresh).")
@click.option("--work", type=click.Path(), default=None,
              help="Folder for the cases and outputs [default: a new temporary folder].")
@click.option("--keep", is_flag=True, help="Keep the work folder.")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Also write every outcome as JSON here.")
@click.option("--allow-name-check", is_flag=True,
              help="Do not fail on cases that wait on the name/shape/dtype pre-check.")
def main(cases, start, categories, timeout, fresh, jobs, work, keep, json_path,
         allow_name_check):
    """Run seeded corrupted checkpoints through videomae-convert; print the outcomes."""
    work = work or fuzzing.scratch_folder()
    os.makedirs(work, exist_ok=True)
    seeds = range(start, start + cases)
    made = fuzzing.generate_cases_elsewhere(work, list(seeds), list(categories) or None)
    by_seed = {case.seed: case for case in made}
    if not fresh:
        import converter.cli  # noqa: F401  (imported once; each fork reuses it)

    def one(seed):
        case_dir = os.path.join(work, f"case{seed}")
        case = by_seed[seed]
        out_dir = os.path.join(case_dir, "out")
        if fresh:
            outcome = fuzzing.run_case_fresh(case, out_dir, timeout)
        else:
            outcome = fuzzing.run_case_forked(case, out_dir, timeout,
                                              os.path.join(case_dir, "log"))
        click.echo(f"seed {seed:5d} {outcome.outcome:16s} {outcome.seconds:5.1f}s "
                   f"[{case.category}] {case.description[:70]} {outcome.detail[:110]}",
                   err=True)
        if outcome.outcome in fuzzing.expected_outcomes(case.category) and not keep:
            shutil.rmtree(case_dir, ignore_errors=True)
        return outcome

    started = time.perf_counter()
    if fresh and jobs > 1:
        with ThreadPoolExecutor(jobs) as pool:
            outcomes = list(pool.map(one, seeds))
    else:
        outcomes = [one(seed) for seed in seeds]
    click.echo(fuzzing.format_table(outcomes))
    click.echo(f"\n{len(outcomes)} cases (seeds {start}..{start + cases - 1}) in "
               f"{time.perf_counter() - started:.0f}s; work folder {work}")
    if json_path:
        with open(json_path, "w") as handle:
            json.dump([{"seed": o.case.seed, "category": o.case.category,
                        "description": o.case.description, "outcome": o.outcome,
                        "exit_code": o.exit_code, "seconds": round(o.seconds, 2),
                        "detail": o.detail} for o in outcomes], handle, indent=1)
    bad = [o for o in outcomes if o.outcome not in fuzzing.expected_outcomes(o.case.category)
           and not (allow_name_check and o.waits_on_name_check)]
    if not keep and not bad:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
