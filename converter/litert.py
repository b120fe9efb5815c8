"""LiteRT (TensorFlow Lite) export of a converted model, and reloading it for the parity check.

The model's serving function is traced with a dynamic batch, its variables frozen into
constants, and converted with TensorFlow's converter in fp32 (no optimisation flags). The
freezing matters: converting straight from a function or a SavedModel that holds Keras 3
variables keeps them as resource variables (``READ_VARIABLE`` ops), which the interpreter's
default XNNPACK delegate reads as garbage (NaN outputs, seen with TF 2.21).

The file keeps the batch dynamic (input shape signature ``[-1, T, H, W, 3]``): the reload
check resizes the input to each case's batch, and so can any user
(``interpreter.resize_tensor_input``).
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional

import numpy as np

from .kinds import kind_of
from .zoo import Entry


# TensorFlow's LiteRT converter holds about this many copies of the fp32 weights at its peak:
# measured 24.8 W (ViT-S) and 23.4 W (ViT-B) over the import baseline (docs/BENCHMARKS.md),
# freezing the variables into constants and the converter's own passes each copying them
LITERT_WEIGHT_COPIES = 26


def available_memory() -> Optional[int]:
    """Bytes this process can still take: MemAvailable, or less under a cgroup v2 limit;
    None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as handle:
            limit = handle.read().strip()
        with open("/sys/fs/cgroup/memory.current") as handle:
            used = int(handle.read().strip())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_litert_memory(name: str, weight_bytes: int,
                        available: Optional[int] = None) -> None:
    """Refuse ``--litert`` up front (ConversionError, one line) when TensorFlow's converter
    would need more memory than is available, rather than be killed by the kernel after
    minutes of work."""
    from .errors import ConversionError

    available = available_memory() if available is None else available
    needed = LITERT_WEIGHT_COPIES * weight_bytes
    if available is not None and needed > available:
        raise ConversionError(
            f"{name}: --litert needs about {needed / 2**30:.1f} GiB of memory for TensorFlow's "
            f"LiteRT converter ({LITERT_WEIGHT_COPIES} x the {weight_bytes / 2**30:.2f} GiB of "
            f"fp32 weights) and {available / 2**30:.1f} GiB is available; convert without "
            f"--litert, or on a machine with more memory")


def _serving_function(model, entry: Entry):
    import tensorflow as tf

    kind = kind_of(entry)
    if not kind.serves_litert:
        raise ValueError(kind.litert_refusal(entry))

    @tf.function(input_signature=kind.signature(entry))
    def serve(video):
        (video,) = kind.serving_inputs(entry, video)  # raw frames: normalised in the graph
        return kind.named(model(video, training=False))
    return serve


def litert_bytes(model, entry: Entry, optimization: Optional[str] = None) -> bytes:
    """The ``.tflite`` flatbuffer of ``model``: fp32, or ``"fp16"`` / ``"int8"`` (dynamic
    range) post-training quantisation for the benchmark."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    frozen = convert_variables_to_constants_v2(_serving_function(model, entry)
                                               .get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if optimization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif optimization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif optimization is not None:
        raise ValueError(f"unknown optimisation {optimization!r}")
    return converter.convert()


def export_litert(model, entry: Entry, path: str) -> None:
    """Write ``NAME.tflite`` (fp32, dynamic batch; uint8 frames in for a ``raw_frames``
    entry)."""
    data = litert_bytes(model, entry)
    with open(path, "wb") as handle:
        handle.write(data)


def make_interpreter(path: str, num_threads: Optional[int] = None):
    """A LiteRT interpreter: ``ai_edge_litert``'s where installed, else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter warns that it is deprecated
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, num_threads=num_threads)
    return Interpreter(model_path=path, num_threads=num_threads)


def quiet_native_logs():
    """fd 2 pointed at /dev/null inside the block when ``TF_CPP_MIN_LOG_LEVEL`` asks
    TensorFlow to be quiet (the quiet console scripts set it): LiteRT's C++ runtime prints
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." when it first allocates, and no
    setting of its own turns that off. Errors still raise in Python."""
    from tf_models.quiet import silenced_stderr

    return silenced_stderr(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") not in ("", "0"))


def run_litert(interpreter, video_nthwc: np.ndarray) -> List[np.ndarray]:
    """One batch through ``interpreter``, its input resized to the batch; the outputs in the
    file's order (a dict output is flattened in sorted-name order when traced)."""
    inputs = interpreter.get_input_details()
    if tuple(inputs[0]["shape"]) != video_nthwc.shape:
        interpreter.resize_tensor_input(inputs[0]["index"], list(video_nthwc.shape))
    with quiet_native_logs():
        interpreter.allocate_tensors()  # a no-op when nothing changed since the last call
    interpreter.set_tensor(inputs[0]["index"], np.ascontiguousarray(
        video_nthwc, dtype=inputs[0]["dtype"]))  # float32, or uint8 raw frames
    interpreter.invoke()
    return [interpreter.get_tensor(detail["index"]).copy()
            for detail in interpreter.get_output_details()]


def reload_litert(entry: Entry, path: str) -> Callable:
    """``run(case) -> {output name: array}`` through a freshly loaded ``.tflite`` file."""
    interpreter = make_interpreter(path)
    kind = kind_of(entry)
    names = sorted(kind.outputs)

    def run(case):
        (video,) = kind.serving_case_inputs(entry, case)
        return dict(zip(names, run_litert(interpreter, video)))
    return run
