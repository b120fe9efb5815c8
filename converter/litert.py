"""LiteRT (TensorFlow Lite) export of a converted model, and reloading it for the parity check.

The model's serving function is traced with a dynamic batch, its variables frozen into
constants, and converted with TensorFlow's converter in fp32 (no optimisation flags). The
freezing matters: converting straight from a function or a SavedModel that holds Keras 3
variables keeps them as resource variables (``READ_VARIABLE`` ops), which the interpreter's
default XNNPACK delegate reads as garbage (NaN outputs, seen with TF 2.21).

The fp32 file ``--litert`` ships (``export_litert``) is converted with stand-ins for the
weights, and the weights written into it afterwards: TensorFlow's converter copies every
constant in each pass (MLIR keeps each folded attribute until it is done) and round-trips the
flatbuffer through Python objects, about 25 copies of the weights at its peak. Here each fp32
variable is frozen as a one-value (splat) constant of its shape, a distinct value per
variable, which the converter's passes copy for free; the exporter writes each splat out in
full, and each such buffer is then overwritten in the file with the variable's real bytes,
transposed where the converter transposed it (``FULLY_CONNECTED`` weights). The file is the
converter's own, byte for byte, except that it carries no conversion metadata and identical
weights are not shared (tests/test_litert.py compares it with the plain conversion). Files
whose weights pass ``LITERT_INLINE_LIMIT`` use the converter's buffer-offset layout (the
weights after the flatbuffer, addressed by offset and size), which the pinned runtime reads;
the plain layout cannot pass the flatbuffer's 2 GB limit.

The file keeps the batch dynamic (input shape signature ``[-1, T, H, W, 3]``): the reload
check resizes the input to each case's batch, and so can any user
(``interpreter.resize_tensor_input``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from tf_models.tracing import graph_function

from .kinds import kind_of
from .zoo import Entry


# What ``--litert`` needs over the import baseline: a fixed part and copies of the fp32
# weights W. Measured for the whole conversion (docs/BENCHMARKS.md, first section): ViT-S
# 4.17 W of 84 MB (0.34 GB), ViT-B 2.81 W (0.91 GB), ViT-L 3.46 W (3.9 GB), ViT-H 3.37 W
# (8.1 GB); 512 MiB + 4 W is above each by 19-140 %.
# Was 6 W (and 26 W before the stand-in weights), which refused ViT-g's 4 GB on 24 GiB.
LITERT_FIXED_BYTES = 2**29
LITERT_WEIGHT_COPIES = 4

# Weights beyond this many bytes go after the flatbuffer (buffer-offset layout): a flatbuffer
# addresses at most 2 GiB, and the graph's own tables and other constants take a little
LITERT_INLINE_LIMIT = 2**31 - 2**27


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
    needed = litert_memory_needed(weight_bytes)
    if available is not None and needed > available:
        raise ConversionError(
            f"{name}: --litert needs about {needed / 2**30:.1f} GiB of memory for TensorFlow's "
            f"LiteRT converter and its check ({LITERT_FIXED_BYTES / 2**30:.1f} GiB + "
            f"{LITERT_WEIGHT_COPIES} x the {weight_bytes / 2**30:.2f} GiB of fp32 weights) and "
            f"{available / 2**30:.1f} GiB is available; convert without --litert, or on a "
            f"machine with more memory")


def litert_memory_needed(weight_bytes: int) -> int:
    """Bytes a ``--litert`` conversion needs over the import baseline, for ``weight_bytes`` of
    fp32 weights."""
    return LITERT_FIXED_BYTES + LITERT_WEIGHT_COPIES * weight_bytes


def _serving_function(model, entry: Entry):
    kind = kind_of(entry)
    if not kind.serves_litert:
        raise ValueError(kind.litert_refusal(entry))

    @graph_function(input_signature=kind.signature(entry))
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
    """Write ``NAME.tflite`` (fp32, dynamic batch; uint8 frames in for a
    ``raw_frames`` entry): converted with stand-in weights, the real
    ones then written into their buffers (module docstring). Buffer-offset layout when the
    weights pass ``LITERT_INLINE_LIMIT``.

    When the converter folded a weight into another constant (VideoMAE V2's layer scale
    ``gamma`` is multiplied into the fully connected weight before it), no buffer holds that
    weight alone and the stand-ins cannot be replaced: the file is then the plain conversion
    of the real weights (``litert_bytes``: the converter's full memory cost; no released
    entry uses layer scale)."""
    frozen, stand_ins = freeze_with_stand_ins(_serving_function(model, entry)
                                              .get_concrete_function())
    offset_layout = sum(s.nbytes for s in stand_ins) > LITERT_INLINE_LIMIT
    data = convert_frozen(frozen, offset_layout)
    del frozen
    try:
        places = stand_in_places(data, stand_ins)
    except StandInsFolded:
        places, data = [], litert_bytes(model, entry)
    with open(path, "wb") as handle:
        handle.write(data)
    del data
    write_weights(path, places)


class StandInsFolded(RuntimeError):
    """The converter folded a stand-in into another constant: its buffer cannot be found."""


@dataclass
class StandIn:
    """A variable frozen as a splat constant of its shape: ``value`` everywhere."""

    variable: object  # the tf.Variable behind the Keras variable
    value: np.float32

    @property
    def nbytes(self) -> int:
        return 4 * int(self.variable.shape.num_elements())


@dataclass
class Place:
    """Where a stand-in's buffer lies in the file, and how the variable fills it."""

    offset: int
    nbytes: int
    stand_in: StandIn
    shape: Tuple[int, ...]  # the tensor's shape in the file
    transposed: bool  # a FULLY_CONNECTED weight: [out, in], the Keras kernel is [in, out]

    def real_bytes(self) -> np.ndarray:
        value = self.stand_in.variable.numpy()
        if self.transposed:
            value = value.T
        return np.ascontiguousarray(value, dtype=np.float32).reshape(self.shape)


def _stand_in_value(index: int) -> np.float32:
    # distinct, exact in fp32 for a million variables, and neither 0 nor 1 (which the
    # converter's patterns may fold away)
    return np.float32(1.0 + (index + 1) * 2.0**-20)


def freeze_with_stand_ins(concrete) -> Tuple[object, List[StandIn]]:
    """``concrete`` with its variables frozen into constants, each fp32 one a splat stand-in
    (``StandIn``); other captures keep their values. Uses TensorFlow's own freezing
    (``convert_to_constants``, private) with the variables' values swapped for stand-ins."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants as freezing

    stand_ins: List[StandIn] = []

    class StandInData(freezing._FunctionConverterDataInEager):
        def _eval(self, tensor):
            if isinstance(tensor, tf.Variable) and tensor.dtype == tf.float32:
                stand_ins.append(StandIn(tensor, _stand_in_value(len(stand_ins))))
                return np.array([stand_ins[-1].value], np.float32)
            return super()._eval(tensor)

    data = StandInData(func=concrete, lower_control_flow=True, aggressive_inlining=False)
    graph_def, converted = freezing._replace_variables_by_constants(converter_data=data)
    by_value = {float(s.value): s for s in stand_ins}
    nodes = {node.name: node for node in graph_def.node}
    for name, tensor_data in data.tensor_data.items():
        if tensor_data.numpy.shape != (1,) or float(tensor_data.numpy[0]) not in by_value:
            continue
        stand_in = by_value[float(tensor_data.numpy[0])]
        proto = nodes[name].attr["value"].tensor
        proto.ClearField("tensor_content")  # one value and the full shape: a splat
        proto.float_val[:] = [float(stand_in.value)]
        proto.tensor_shape.CopyFrom(stand_in.variable.shape.as_proto())
    return freezing._construct_concrete_function(concrete, graph_def, converted), stand_ins


def convert_frozen(frozen, offset_layout: bool = False) -> bytes:
    """The converter's flatbuffer of the frozen function, fp32, without the Python passes that
    would copy every buffer again (buffer deduplication, conversion metadata)."""
    import tensorflow as tf
    from tensorflow.lite.python import lite

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.exclude_conversion_metadata = True
    converter._experimental_use_buffer_offset = offset_layout
    original = lite._deduplicate_readonly_buffers
    lite._deduplicate_readonly_buffers = _unchanged  # stand-ins are distinct: nothing to share
    try:
        return converter.convert()
    finally:
        lite._deduplicate_readonly_buffers = original


def _unchanged(model):
    return model


def stand_in_places(data: bytes, stand_ins: List[StandIn]) -> List[Place]:
    """Each stand-in's buffer in the flatbuffer ``data``: found by its value (every element
    equal to it, the size the variable's); StandInsFolded when a stand-in is missing, seen
    twice, or its tensor's shape does not hold the variable (the converter folded it)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    by_value = {float(s.value): s for s in stand_ins}
    fully_connected_weights = set()
    places: Dict[int, Place] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            operator = graph.Operators(o)
            code = model.OperatorCodes(operator.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == \
                    schema.BuiltinOperator.FULLY_CONNECTED and operator.InputsLength() > 1:
                fully_connected_weights.add((g, int(operator.Inputs(1))))
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            index = tensor.Buffer()
            if index in places or tensor.Type() != schema.TensorType.FLOAT32:
                continue
            buffer = model.Buffers(index)
            if buffer.Offset() > 1:  # buffer-offset layout: after the flatbuffer
                offset, nbytes = buffer.Offset(), buffer.Size()
            elif buffer.DataLength():
                offset, nbytes = buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()
            else:
                continue
            if nbytes < 4:
                continue
            values = np.frombuffer(data, np.float32, nbytes // 4, offset)
            stand_in = by_value.get(float(values[0]))
            if stand_in is None or not np.all(values == values[0]):
                continue
            shape = tuple(int(n) for n in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            if nbytes != stand_in.nbytes or 4 * int(np.prod(shape)) != nbytes:
                raise StandInsFolded(f"LiteRT converter: {stand_in.variable.name} became a "
                                   f"{shape} tensor of {nbytes} bytes; cannot write it")
            transposed = ((g, t) in fully_connected_weights
                          and len(stand_in.variable.shape) == 2)
            places[index] = Place(offset, nbytes, stand_in, shape, transposed)
    found = [id(p.stand_in) for p in places.values()]
    missing = [s.variable.name for s in stand_ins if id(s) not in found]
    if missing or len(set(found)) != len(found):
        raise StandInsFolded(f"LiteRT converter: {len(missing)} weights not found as their own "
                           f"buffer (folded into another constant?), e.g. {missing[:3]}")
    return list(places.values())


def write_weights(path: str, places: List[Place]) -> None:
    """Overwrite each stand-in's buffer in the file at ``path`` with its variable's bytes,
    one variable in memory at a time."""
    with open(path, "r+b") as handle:
        for place in places:
            handle.seek(place.offset)
            handle.write(place.real_bytes().data)


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


def allocate_for(interpreter, shape) -> None:
    """Resize ``interpreter``'s input to ``shape`` and allocate (the delegate packs the
    weights here); a no-op when nothing changed since the last call."""
    inputs = interpreter.get_input_details()
    if tuple(inputs[0]["shape"]) != tuple(shape):
        interpreter.resize_tensor_input(inputs[0]["index"], list(shape))
    with quiet_native_logs():
        interpreter.allocate_tensors()


def run_litert(interpreter, video_nthwc: np.ndarray) -> List[np.ndarray]:
    """One batch through ``interpreter``, its input resized to the batch; the outputs in the
    file's order (a dict output is flattened in sorted-name order when traced)."""
    allocate_for(interpreter, video_nthwc.shape)
    inputs = interpreter.get_input_details()
    interpreter.set_tensor(inputs[0]["index"], np.ascontiguousarray(
        video_nthwc, dtype=inputs[0]["dtype"]))  # float32, or uint8 raw frames
    interpreter.invoke()
    return [interpreter.get_tensor(detail["index"]).copy()
            for detail in interpreter.get_output_details()]


def reload_litert(entry: Entry, path: str) -> Callable:
    """``run(case) -> {output name: array}`` through a freshly loaded ``.tflite`` file.

    The interpreter maps the file and reads all of it; XNNPACK then packs the weights into
    its own buffers. So after each allocation the file's pages are handed back
    (``pages.MappedPages``, ``madvise(MADV_DONTNEED)``): what still reads them reads the file
    again, and the weights are not held twice while the clips run."""
    from .pages import MappedPages, file_mappings

    before = file_mappings()
    interpreter = make_interpreter(path)
    pages = MappedPages(before, file_mappings(), path)
    kind = kind_of(entry)
    names = sorted(kind.outputs)

    def run(case):
        (video,) = kind.serving_case_inputs(entry, case)
        allocate_for(interpreter, video.shape)
        pages.release_all()
        return dict(zip(names, run_litert(interpreter, video)))
    run.pages = pages  # for tests: what was handed back
    return run
