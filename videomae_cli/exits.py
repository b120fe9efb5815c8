"""The commands' exit codes and their one-line errors (declared once for every command): the
commands' own (``fail``) and click's usage errors (``OneLineCommand``)."""

from __future__ import annotations

import click

EXIT_CHECK_FAILED = 1  # an artifact that does not reproduce its reference
EXIT_BAD_INPUT = 2  # bad input, an existing output, an output that cannot be written
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


def fail(message: str, code: int = EXIT_BAD_INPUT) -> "click.exceptions.Exit":
    """Print ``error: MESSAGE`` on stderr; the exception to raise for exit ``code``."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(code)


class _OneLineUsageError(click.ClickException):
    """A usage error shown as the commands' own errors are: one line, exit 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class OneLineCommand(click.Command):
    """A click command whose usage errors (an unknown option, a bad value, a missing argument)
    are one line, ``error: ... See 'PROG --help'.``, with exit 2, instead of click's usage block
    (``Usage:``, ``Try ...``, a blank line, ``Error: ...``): as every other error of the
    commands. ``--help`` and everything else are click's."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:
            prog = error.ctx.command_path if error.ctx is not None else info_name
            raise _OneLineUsageError(
                f"{error.format_message()} See '{prog} --help'.") from None


def command(**settings):
    """``click.command`` as every console script declares it: ``OneLineCommand``, ``-h`` beside
    ``--help``."""
    return click.command(cls=OneLineCommand, context_settings=HELP_OPTIONS, **settings)
