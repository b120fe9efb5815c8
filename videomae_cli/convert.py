"""Quiet entry points for ``videomae-convert`` and ``videomae-reconstruct``.

``converter`` imports torch and then TensorFlow at import time: seconds, and TensorFlow's
start-up lines (absl, oneDNN, CUDA and ``cuInit`` notices) on the terminal. So
``convert_main`` parses the command line first, with the options of ``converter/cli_options.py``
and the zoo table of ``tf_models/presets.py``, each loaded on its own (click and the stdlib:
``--help`` and a mistyped option answer at once; ``--list`` too, with
``converter/upstream.py``), and imports ``converter`` only to run the command: with fd 2
silenced while it loads, unless ``--verbose``. ``reconstruct_main`` runs
``reconstruct.reconstruct_command``, which does the same around ``tf_models`` (a Keras
model's reconstruction needs no torch).
"""

from __future__ import annotations

import click

from .exits import OneLineCommand, stoppable
from .lifetime import claim_process, framework_imports
from .quiet import load_stdlib_leaf, prepare_environment, silenced_stderr
from .zoo_table import zoo_table


def _run(**options):
    if options["list_entries"]:  # the zoo's listing needs no framework
        for line in load_stdlib_leaf("converter.upstream").listing(zoo_table(),
                                                                   options["as_json"]):
            click.echo(line)
        return None
    verbose = options["verbose"]
    # a stop while torch and TensorFlow import (seconds) is one line too; the conversion then
    # runs under converter.cli's own handlers
    with stoppable(lambda: "nothing was converted"):
        prepare_environment(verbose, tensorflow_only="videomae-convert")
        with silenced_stderr(not verbose), framework_imports():
            from converter import cli
    return cli.run(**options)


convert_command = load_stdlib_leaf("converter.cli_options").command(
    _run, zoo_table(), load_stdlib_leaf("tf_models.artifacts.names").QUANTIZED_MODES,
    cls=OneLineCommand)


def convert_main():
    """Entry point of ``videomae-convert``."""
    claim_process()
    convert_command(prog_name="videomae-convert")


def reconstruct_main():
    """Entry point of ``videomae-reconstruct`` (torch-free: it never imports ``converter``)."""
    claim_process()
    from .reconstruct import reconstruct_command

    reconstruct_command(prog_name="videomae-reconstruct")


if __name__ == "__main__":
    convert_main()
