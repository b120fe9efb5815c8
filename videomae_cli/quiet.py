"""Keeping the frameworks' own log lines off the terminal (stdlib only; import before TF).

TensorFlow prints absl warnings, oneDNN and CUDA notices (a ``cuInit`` error on machines
without a GPU) from C++ straight to file descriptor 2 when it is imported and when it first
touches a device. ``TF_CPP_MIN_LOG_LEVEL=3`` hides most of them; the few printed before the
logger is set up are caught by pointing fd 2 at /dev/null while TensorFlow starts, with the
library's ``tf_models.quiet.silenced_stderr`` (loaded by file: importing the ``tf_models``
package would import Keras, and TensorFlow with it, before the silencing starts).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import warnings


def prepare_environment(verbose: bool, tensorflow_only: str = "") -> None:
    """Set the environment TensorFlow reads at import; call before anything imports it.

    ``tensorflow_only``: the command's name, when it writes TensorFlow artifacts and so runs
    Keras on TensorFlow whatever ``KERAS_BACKEND`` says (a JAX user's shell): another backend
    there is replaced, with a note on stderr."""
    requested = os.environ.get("KERAS_BACKEND", "")
    if tensorflow_only and requested not in ("", "tensorflow"):
        os.environ["KERAS_BACKEND"] = "tensorflow"
        sys.stderr.write(f"note: KERAS_BACKEND={requested}: {tensorflow_only} runs Keras on "
                         f"TensorFlow, whose artifacts it writes (the .keras and .weights.h5 "
                         f"files load on every backend)\n")
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


def load_stdlib_leaf(name: str):
    """The library module ``name`` (``package.module``) that imports nothing of the library
    (the stdlib, or click for ``converter.cli_options``), executed from its file without
    running its package's ``__init__``. Kept out of ``sys.modules``: a later import
    of ``name`` by the library loads it the ordinary way, a second copy (those loaded here
    are stateless, or their state is the console script's alone: ``videomae_cli.lifetime``)."""
    top, *inner = name.split(".")
    # find_spec of a top-level package locates it without running its __init__ (of a dotted
    # name it would import the parents)
    folder = importlib.util.find_spec(top).submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location(f"_videomae_cli_{inner[-1]}",
                                                  os.path.join(folder, *inner) + ".py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


silenced_stderr = load_stdlib_leaf("tf_models.quiet").silenced_stderr
