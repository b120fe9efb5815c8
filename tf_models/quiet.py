"""Pointing file descriptor 2 at /dev/null around native code that prints straight to it.

TensorFlow's start-up (absl, oneDNN, CUDA and ``cuInit`` notices) and LiteRT's runtime
("Created TensorFlow Lite XNNPACK delegate") write from C++ to fd 2, past Python's
``sys.stderr``. The library silences LiteRT's line with this; the console scripts
(``videomae_cli.quiet``) silence TensorFlow's start-up with it before anything imports
TensorFlow, loading this file without running ``tf_models/__init__`` (which imports Keras).
So: stdlib only, no package-relative imports.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_stderr(enabled: bool = True):
    """Point fd 2 at /dev/null inside the block (Python's sys.stderr included)."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
