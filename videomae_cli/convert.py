"""Quiet entry points for ``videomae-convert`` and ``videomae-reconstruct``.

``converter`` imports torch and then TensorFlow at import time, so TensorFlow's start-up lines
(absl, oneDNN, CUDA and ``cuInit`` notices) would reach the terminal before ``converter.cli``
runs any code. These wrappers set the environment and silence fd 2 while it is imported;
``--verbose`` (taken out before the command sees its arguments) lets the lines through.
"""

from __future__ import annotations

import sys

from .quiet import prepare_environment, silenced_stderr


def _import_quietly():
    verbose = "--verbose" in sys.argv[1:]
    if verbose:
        sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != "--verbose"]
    prepare_environment(verbose)
    with silenced_stderr(not verbose):
        from converter import cli
    return cli


def convert_main():
    """Entry point of ``videomae-convert``."""
    _import_quietly().main(prog_name="videomae-convert")


def reconstruct_main():
    """Entry point of ``videomae-reconstruct``."""
    _import_quietly().reconstruct_main(prog_name="videomae-reconstruct")
