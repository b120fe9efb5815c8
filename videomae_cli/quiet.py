"""Keeping the frameworks' own log lines off the terminal (stdlib only; import before TF).

TensorFlow prints absl warnings, oneDNN and CUDA notices (a ``cuInit`` error on machines
without a GPU) from C++ straight to file descriptor 2 when it is imported and when it first
touches a device. ``TF_CPP_MIN_LOG_LEVEL=3`` hides most of them; the few printed before the
logger is set up are caught by pointing fd 2 at /dev/null while TensorFlow starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings


def prepare_environment(verbose: bool) -> None:
    """Set the environment TensorFlow reads at import; call before anything imports it."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        # TensorFlow's Python-side warnings (LiteRT's converter: "Please consider providing
        # the trackable_obj argument ...") go through absl's Python logger
        # (a filter, not a level: absl resets its logger's level when it initialises)
        logging.getLogger("absl").addFilter(_errors_only)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


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
