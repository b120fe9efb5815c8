"""The commands' exit codes and their one-line error exit (declared once for every command)."""

from __future__ import annotations

import click

EXIT_CHECK_FAILED = 1  # an artifact that does not reproduce its reference
EXIT_BAD_INPUT = 2  # bad input, an existing output, an output that cannot be written


def fail(message: str, code: int = EXIT_BAD_INPUT) -> "click.exceptions.Exit":
    """Print ``error: MESSAGE`` on stderr; the exception to raise for exit ``code``."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(code)
