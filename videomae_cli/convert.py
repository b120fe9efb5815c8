"""Quiet entry points for ``videomae-convert`` and ``videomae-reconstruct``.

``converter`` imports torch and then TensorFlow at import time, so TensorFlow's start-up lines
(absl, oneDNN, CUDA and ``cuInit`` notices) would reach the terminal before ``converter.cli``
runs any code. ``convert_main`` sets the environment and silences fd 2 while it is imported;
``--verbose`` (taken out before the command sees its arguments) lets the lines through.
``reconstruct_main`` runs ``reconstruct.reconstruct_command``, which does the same around
``tf_models`` (a Keras model's reconstruction needs no torch).
"""

from __future__ import annotations

import sys

from .lifetime import claim_process, framework_imports
from .quiet import prepare_environment, silenced_stderr


def _import_quietly():
    verbose = "--verbose" in sys.argv[1:]
    if verbose:
        sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != "--verbose"]
    prepare_environment(verbose)
    with silenced_stderr(not verbose), framework_imports():
        from converter import cli
    return cli


def convert_main():
    """Entry point of ``videomae-convert``."""
    claim_process()
    _import_quietly().main(prog_name="videomae-convert")


def reconstruct_main():
    """Entry point of ``videomae-reconstruct`` (torch-free: it never imports ``converter``)."""
    claim_process()
    from .reconstruct import reconstruct_command

    reconstruct_command(prog_name="videomae-reconstruct")
