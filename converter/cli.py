"""``videomae-convert``: a thin click front end over ``converter.convert``.

Exit codes: 0 success, 1 parity failure, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from tf_models import presets
from tf_models.artifacts.names import QUANTIZED_MODES
from tf_models.stopping import Terminated, run_stoppably, stop_handlers

from .cli_options import command


def run(entry_name, list_entries, as_json, family, size, mode, dataset, checkpoint, cache_dir,
        offline, force_download, synthetic, seed, out_dir, all_entries, checkpoint_dir, jobs,
        encoder_only, litert, litert_quantize, videos, raw_frames, force, quiet, verbose,
        outcome_file, phases_fd):
    """The videomae-convert command's work, its options parsed and checked together
    (``cli_options``)."""
    if list_entries:
        _list(as_json)
        return
    # what the options alone refuse was refused before this call (``cli_options``)
    if all_entries:
        _main_all(family, size, mode, dataset, checkpoint_dir, synthetic, seed, out_dir, jobs,
                  force, litert, raw_frames, litert_quantize, videos, quiet)
        return
    size = size[0] if size else None
    from . import ConversionError, ParityError, convert, find_entry, get_entry
    from .record import RunOutcome

    try:
        entry = (get_entry(entry_name) if entry_name
                 else find_entry(size, mode or "FT", dataset or "k400", family))
    except KeyError as error:
        _fail(f"error: {error.args[0]}", 2)

    def fail(message: str, code: int):
        if outcome_file:
            RunOutcome(entry.name, "failed", message).save(outcome_file)
        _fail(message, code)

    def phases_reported(stop_if_signalled):
        """``stop_if_signalled``, and in --all's child each phase's name to its parent."""
        if phases_fd is None:
            return stop_if_signalled
        from .batch import report_phase

        with contextlib.suppress(OSError):  # this process's alone: the parent waits for EOF
            os.set_inheritable(phases_fd, False)

        def reported(phase: str) -> None:
            stop_if_signalled(phase)
            report_phase(phases_fd, phase)
        return reported

    try:
        result = run_stoppably(lambda stop_if_signalled: convert(
            entry, out_dir, checkpoint=checkpoint, synthetic=synthetic, seed=seed, force=force,
            progress=not quiet, encoder_only=encoder_only, cache_dir=cache_dir,
            offline=offline or None, force_download=force_download,
            on_phase=phases_reported(stop_if_signalled),
            litert=litert, raw_frames=raw_frames, litert_quantize=litert_quantize,
            videos=videos))
    except ParityError as error:
        fail(f"error: {error}", 1)
    except ConversionError as error:
        fail(f"error: {error}", 2)
    except KeyboardInterrupt:
        fail(f"error: interrupted; no partial artifact was left in {out_dir}", 2)
    if outcome_file:
        RunOutcome(result.entry.name, "skipped" if result.skipped else "converted",
                   tf_err_vs_f64=result.report.parity.tf_err_vs_f64).save(outcome_file)
    if result.skipped:
        click.echo(f"{result.entry.name}: skipped: artifacts already present and verified "
                   f"against the same source (pass --force to convert again)")
        return
    click.echo(f"{result.entry.name}: parity passed ({result.parity.summary()})")
    for kind, path in result.paths.items():
        click.echo(f"  {kind:11s} {path}")
    for kind, check in result.report.reload_checks.items():
        if check.method == "quantized":
            click.echo(f"  {kind}: {check.quantized_summary()}")


# ``python -m converter.cli``, ``--all``'s children (``batch.py``) and in-process callers; the
# console script builds the same command from the same options (videomae_cli.convert)
# without importing this module first
main = command(run, presets, QUANTIZED_MODES)


def _list(as_json: bool) -> None:
    """Print every zoo entry: a table, or one JSON object per line."""
    from .upstream import listing

    for line in listing(presets, as_json):
        click.echo(line)


def _main_all(family, size, mode, dataset, checkpoint_dir, synthetic, seed, out_dir, jobs,
              force, litert, raw_frames, quantize=(), videos=(), quiet=False):
    import threading

    from .batch import convert_all, format_table, select_entries
    from .errors import ConversionError

    entries = select_entries(size, mode, dataset, family)
    if not entries:
        _fail(f"error: no zoo entry has size {'/'.join(size) or None}, mode {mode}, "
              f"dataset {dataset}"
              + (f", family {family}" if family else ""), 2)
    # each line whole and named by its entry: with --jobs N, N children report at once
    lines = threading.Lock()

    def echo(line: str) -> None:
        with lines:
            click.echo(line)

    def on_start():
        echo(f"converting {len(entries)} entries into {out_dir} ({jobs} at a time)")

    def on_phase(name, phase, seconds):
        echo(f"  {name}: {phase} (at {seconds:.0f}s)")

    finished = []

    def on_row(row):  # with "k of n" entries finished: --all over the zoo runs for hours
        finished.append(row.name)
        echo(f"  {row.name}: {row.status} in {row.seconds:.0f}s"
             + (f" ({row.message})" if row.message else "")
             + f" [{len(finished)} of {len(entries)} done]")
    try:
        with stop_handlers():
            rows = convert_all(entries, out_dir, synthetic=synthetic,
                               checkpoint_dir=checkpoint_dir, jobs=jobs, seed=seed, force=force,
                               on_row=on_row, litert=litert, raw_frames=raw_frames,
                               quantize=quantize, videos=videos, on_start=on_start,
                               on_phase=None if quiet else on_phase)
    except ConversionError as error:
        _fail(f"error: {error}", 2)
    except (KeyboardInterrupt, Terminated):
        _fail("error: interrupted; finished entries are kept, re-run to resume", 2)
    click.echo(format_table(rows))
    if any(row.status == "failed" for row in rows):
        sys.exit(1)


def _fail(message: str, code: int):
    click.echo(message, err=True)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
