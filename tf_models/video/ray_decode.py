"""The decode stage of ``--engine ray`` (``ray_engine``), shipped to the cluster by value.

A Ray task imports the module of the function it runs. Any module of ``tf_models`` runs the
package's ``__init__``, which registers the Keras classes, so TensorFlow and Keras: in every
decoding worker, about 6 s and 0.9 GB that decoding never uses (PyAV, OpenCV and numpy do
the work), on each of a node's CPUs. ``ship_by_value()`` has Ray's pickler carry the code of
this module and of the modules the stage calls (``SHIPPED``) instead of their import paths,
so a decoding worker imports numpy, PyAV and OpenCV, not ``tf_models``.

What keeps that true: the shipped modules' functions import nothing relative to the package
inside their bodies (a relative import there would load ``tf_models`` in the worker), and
anything else they name is stdlib, numpy, PyAV, OpenCV or one of ``SHIPPED``.
``tests/test_ray.py`` runs the stage as Ray ships it, in a fresh process, and checks.
"""

from __future__ import annotations

import os
import sys
import time

from .. import presets
from . import decode, features, protocol
from .decode import VideoError, quiet_ffmpeg
from .features import Sampling, array_bytes, read_inputs

# the modules whose code travels with the stage: this one, what it calls, the zoo table
# (``Sampling.protocol()`` reads the dataset facts)
SHIPPED = (sys.modules[__name__], features, decode, protocol, presets)


def ship_by_value() -> None:
    """Have Ray's pickler carry ``SHIPPED`` by value from now on (this process)."""
    import ray.cloudpickle

    for module in SHIPPED:
        ray.cloudpickle.register_pickle_by_value(module)


def node_id() -> str:
    """The Ray node this code runs on (hex id)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def decode_video(row: dict, root: str, shown_root: str, sampling: Sampling,
                 max_pixels: int) -> list:
    """Decode stage (a CPU task): the uint8 inputs of one video as ``.npy`` bytes, or its
    one-line error (naming the file under ``shown_root``, as the local path does), with the
    decode time and the node."""
    quiet_ffmpeg()
    tick = time.perf_counter()
    video = str(row["video"])
    try:
        inputs = array_bytes(read_inputs(os.path.join(root, video), sampling, max_pixels))
        error = ""
    except VideoError as problem:
        inputs = b""
        error = os.path.join(shown_root, video) + str(problem)[len(problem.path):]
    return [{"video": row["video"], "label": row["label"], "inputs": inputs, "error": error,
             "decode_s": time.perf_counter() - tick, "decode_node": node_id()}]
