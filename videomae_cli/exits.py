"""The commands' exit codes and their one-line errors (declared once for every command): the
commands' own (``fail``), click's usage errors (``OneLineCommand``), and a stop signal's
(``stoppable``)."""

from __future__ import annotations

import contextlib
import os
from typing import Callable, List

import click
from click.core import ParameterSource

from .quiet import load_stdlib_leaf

# loaded on its own (its package's __init__ imports Keras): the handlers are in place before
# the commands import TensorFlow
_stopping = load_stdlib_leaf("tf_models.stopping")

EXIT_CHECK_FAILED = 1  # an artifact that does not reproduce its reference
EXIT_BAD_INPUT = 2  # bad input, an existing output, an output that cannot be written
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


def fail(message: str, code: int = EXIT_BAD_INPUT) -> "click.exceptions.Exit":
    """Print ``error: MESSAGE`` on stderr; the exception to raise for exit ``code``. Inside
    ``stoppable`` after a stop signal, the error is the signal's fallout (a model loader that
    turned it into its own error): the stop is raised instead, and reported as one."""
    _stopping.stop_if_signalled()
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(code)


@contextlib.contextmanager
def stoppable(interrupted: Callable[[], str]):
    """The whole of a command's body under ``tf_models.stopping``'s handlers, TensorFlow's
    import and the model's load included (they are most of a short run): SIGTERM or SIGINT
    anywhere in the block, or anything raised because of one, ends the command with one line,
    ``error: interrupted; WHAT``, and exit 2, as ``videomae-convert`` (not click's "Aborted!",
    exit 1, or SIGTERM's silent -15). ``interrupted()`` says WHAT (what was kept, what was not
    done), asked when the stop comes. Yields ``stop_if_signalled``: call it as each phase or
    item starts, so a stop whose exception was swallowed (``tf_models.stopping``) stops there."""
    try:
        with _stopping.stop_handlers():
            yield _stopping.stop_if_signalled
    except BaseException as error:
        if _stopping.Terminated.received is None and not isinstance(error, KeyboardInterrupt):
            raise
        click.echo(f"error: interrupted; {interrupted()}", err=True)
        raise click.exceptions.Exit(EXIT_BAD_INPUT) from None
    finally:
        _stopping.Terminated.received = None  # a later command in this process starts afresh


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


def given(*names: str) -> List[str]:
    """The options among ``names`` (their parameter names) that the running command was given
    (on its command line or through an environment variable), as their flags, e.g.
    ``["--actors"]``: for refusing an option that means something only beside another, which
    would otherwise be taken and ignored."""
    context = click.get_current_context()
    flags = {param.name: param.opts[-1] for param in context.command.params}
    return [flags[name] for name in names
            if context.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                      ParameterSource.ENVIRONMENT)]


def check_root(root: str) -> None:
    """Before the model loads: a --root that is no folder here fails every video of the list
    (one error line each, or a run's first step), so it is one line now."""
    if not os.path.isdir(root):
        found = "is a file" if os.path.exists(root) else "no such folder"
        raise fail(f"--root {root}: {found}, expected the folder the list's paths are in; "
                   "check the path")
