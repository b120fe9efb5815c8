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

``--litert-quantize fp16|int8`` writes ``NAME.fp16.tflite`` / ``NAME.int8.tflite`` beside the
fp32 file the same way: the converter's post-training options (fp16 weights; dynamic-range
int8 weights, per output channel) run on the stand-in graph, where each quantised stand-in is
still one value (an fp16 splat; int8 127s with the channel scales ``value / 127``), and the
real weights are then written in the file's encoding: fp16 rounded to nearest, int8 as the
converter quantises (scale ``max |w| / 127`` per channel, values rounded half away from zero),
their scales written over the stand-ins' in the flatbuffer. The stand-in values are distinct
in fp16, so the quantised stand-ins stay distinct too. tests/test_litert_quantize.py compares
each file with the converter's own quantisation of the real weights (fp16 byte for byte, int8
tensor by tensor: its shared stand-in buffers were split, ``split_shared_int8_buffers``). A
quantised file is not held to parity: its error against the float64 reference is measured
and bounded (``QUANTIZATIONS``), and its top-1 / top-5 agreement with the reference on real
videos recorded (``prove_quantized``). Each weight is also read back from the written file and
compared with its variable, int8 dequantised within half a step (``proofs.prove_litert_weights``),
which the output bound alone could not: it passes a whole weight matrix zeroed.

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

# ``--litert-quantize`` (modes: ``tf_models.artifacts.names.QUANTIZED_MODES``, which also
# names their files): mode -> what its ``weights`` are, their ``bytes`` each; ``bound``: the
# largest error against the float64 reference a quantised file may show, as a share of the
# reference's largest |output|. Not parity: a sanity bound with room for real weights. Measured on
# synthetic ViT-S: fp16 4.7e-4 of it, int8 1.3e-2; on the tiny test model, two blocks'
# attention projections swapped in the file move the outputs by 0.14 of it (caught in both
# modes), their fc1 swapped by 0.044 and one weight matrix zeroed by 0.023-0.056 (both under
# int8's bound). So each file is also proven by its weights when written
# (``proofs.prove_litert_weights``: every variable read back, int8 within half a step).
QUANTIZATIONS = {"fp16": {"weights": "fp16", "bytes": 2, "bound": 1e-2},
                 "int8": {"weights": "dynamic-range int8", "bytes": 1, "bound": 0.1}}


def quantization_modes(modes) -> Tuple[str, ...]:
    """``litert_quantize`` as given (one mode, or several; repeats once) as the tuple of its
    distinct ``QUANTIZATIONS`` modes; ConversionError (one line) for any other value."""
    from .errors import ConversionError

    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    for mode in modes:
        if mode not in QUANTIZATIONS:
            raise ConversionError(f"litert_quantize {mode!r}: not a quantisation; one of "
                                  f"{', '.join(QUANTIZATIONS)}, or several of them")
    return tuple(dict.fromkeys(modes))


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
    minutes of work. Worded for both commands that take ``--litert`` (videomae-convert,
    videomae-export)."""
    from .errors import ConversionError

    available = available_memory() if available is None else available
    needed = litert_memory_needed(weight_bytes)
    if available is not None and needed > available:
        raise ConversionError(
            f"{name}: --litert needs about {needed / 2**30:.1f} GiB of memory for TensorFlow's "
            f"LiteRT converter and its check ({LITERT_FIXED_BYTES / 2**30:.1f} GiB + "
            f"{LITERT_WEIGHT_COPIES} x the {weight_bytes / 2**30:.2f} GiB of fp32 weights) and "
            f"{available / 2**30:.1f} GiB is available; run the command again without "
            f"--litert (its other artifacts need far less), or on a machine with more memory")


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


def litert_bytes(model, entry: Entry, quantization: Optional[str] = None) -> bytes:
    """The ``.tflite`` flatbuffer of ``model`` converted with its real weights (the
    converter's full memory cost): fp32, or a ``QUANTIZATIONS`` mode."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    frozen = convert_variables_to_constants_v2(_serving_function(model, entry)
                                               .get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    _set_quantization(converter, quantization)
    return converter.convert()


def _set_quantization(converter, quantization: Optional[str]) -> None:
    import tensorflow as tf

    if quantization is None:
        return
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantisation {quantization!r}")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "fp16":
        converter.target_spec.supported_types = [tf.float16]


def export_litert(model, entry: Entry, path: str, quantization: Optional[str] = None) -> bool:
    """Write ``NAME.tflite`` (fp32, dynamic batch; uint8 frames in for a
    ``raw_frames`` entry), or with ``quantization`` its ``QUANTIZATIONS`` file: converted with
    stand-in weights, the real ones then written into their buffers (module docstring).
    Buffer-offset layout when the file's weights pass ``LITERT_INLINE_LIMIT``.

    When the converter folded a weight into another constant, no buffer holds that weight
    alone and the stand-ins cannot be replaced: the file is then the plain conversion of the
    real weights (``litert_bytes``: the converter's full memory cost). VideoMAE V2's layer
    scale does this (``gamma`` is multiplied into the fully connected weight before it), and
    so does its cosine attention (the learned logit ``scale`` is only read through
    ``exp(min(scale, log 100))``, which the converter computes into a constant); no released
    entry uses either. True when the stand-ins were written, False for the plain
    conversion."""
    frozen, stand_ins = freeze_with_stand_ins(_serving_function(model, entry)
                                              .get_concrete_function())
    width = QUANTIZATIONS[quantization]["bytes"] if quantization else 4
    offset_layout = sum(s.nbytes for s in stand_ins) * width // 4 > LITERT_INLINE_LIMIT
    data = convert_frozen(frozen, offset_layout, quantization)
    del frozen
    if quantization == "int8":
        data = split_shared_int8_buffers(data)
    try:
        places = stand_in_places(data, stand_ins)
    except StandInsFolded:
        places, data = [], litert_bytes(model, entry, quantization)
    with open(path, "wb") as handle:
        handle.write(data)
    del data
    write_weights(path, places)
    return bool(places)


def split_shared_int8_buffers(data: bytes) -> bytes:
    """``data`` with each int8 tensor given a buffer of its own where several shared one.

    Every int8 stand-in quantises to the same 127s (only its scales say which stand-in it
    is), and the converter keeps one buffer per distinct constant, so same-shape weights
    share one. The flatbuffer is rebuilt through the schema's object API (as the
    converter's own Python passes do) with a copy of the buffer for each extra tensor; the
    file is the int8 weights (a quarter of the fp32 bytes) and the graph. Its buffers are
    inline: the buffer-offset layout starts at 1.875 GiB of file weights, 7.5 GB of fp32
    weights in int8 (ViT-g has 4 GB)."""
    from tensorflow.lite.python import schema_py_generated as schema

    import flatbuffers

    flat = schema.Model.GetRootAsModel(data, 0)
    shared = set()
    for g in range(flat.SubgraphsLength()):
        graph, seen = flat.Subgraphs(g), set()
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.Type() == schema.TensorType.INT8 and tensor.Buffer():
                (shared if tensor.Buffer() in seen else seen).add(tensor.Buffer())
    if not shared:
        return data
    model = schema.ModelT.InitFromObj(flat)
    for graph in model.subgraphs:
        seen = set()
        for tensor in graph.tensors:
            if tensor.buffer not in shared:
                continue
            if tensor.buffer in seen:
                if model.buffers[tensor.buffer].data is None:  # not for a zoo model (above)
                    raise ValueError("int8 weights in the buffer-offset layout: not supported")
                copy = schema.BufferT()
                copy.data = model.buffers[tensor.buffer].data.copy()
                model.buffers.append(copy)
                tensor.buffer = len(model.buffers) - 1
            else:
                seen.add(tensor.buffer)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


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
    encoding: str = "float32"  # or "float16", "int8" (a quantised file)
    scales_offset: Optional[int] = None  # int8: where the channel scales lie in the file
    channel_axis: int = 0  # int8: the axis the scales are per

    def real_bytes(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The variable in the file's layout and encoding, and for int8 its scales."""
        value = self.stand_in.variable.numpy()
        if self.transposed:
            value = value.T
        value = np.ascontiguousarray(value, dtype=np.float32).reshape(self.shape)
        if self.encoding == "float16":
            return value.astype(np.float16), None
        if self.encoding == "int8":
            return quantize_int8(value, self.channel_axis)
        return value, None


# the converter's floor on a channel's largest |w| (half its 1e-6 smallest range): all-zero and
# near-zero channels get scale 5e-7 / 127 (found by comparing files)
INT8_SMALLEST_RANGE = np.float32(5e-7)


def quantize_int8(value: np.ndarray, axis: int) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per slice along ``axis``, as TensorFlow's converter quantises weights
    (dynamic range): scale ``max |w| / 127`` in float32, ``w / scale`` rounded half away from
    zero; a slice whose largest |w| is under ``INT8_SMALLEST_RANGE`` takes that instead."""
    moved = np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)
    largest = np.maximum(np.max(np.abs(moved), axis=1), INT8_SMALLEST_RANGE)
    scales = (largest / np.float32(127)).astype(np.float32)
    ratio = moved / scales[:, None]
    rounded = np.sign(ratio) * np.floor(np.abs(ratio) + np.float32(0.5))
    quantized = np.clip(rounded, -127, 127).astype(np.int8)
    shape = (value.shape[axis],) + tuple(np.delete(value.shape, axis))
    return np.ascontiguousarray(np.moveaxis(quantized.reshape(shape), 0, axis)), scales


# stand-in values: fp16 numbers from just above 1 upwards (exact in fp32 too), so a stand-in
# stays distinct and unfolded (neither 0 nor 1) in every QUANTIZATIONS encoding
_FIRST_STAND_IN_BITS = int(np.float16(1).view(np.uint16)) + 1
_LAST_STAND_IN_BITS = int(np.finfo(np.float16).max.view(np.uint16))


def _stand_in_value(index: int) -> np.float32:
    bits = _FIRST_STAND_IN_BITS + index
    if bits > _LAST_STAND_IN_BITS:
        raise ValueError(f"{index + 1} weights: more than the distinct fp16 stand-ins")
    return np.float32(np.uint16(bits).view(np.float16))


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


def convert_frozen(frozen, offset_layout: bool = False,
                   quantization: Optional[str] = None) -> bytes:
    """The converter's flatbuffer of the frozen function, fp32 or a ``QUANTIZATIONS`` mode,
    without the Python passes that would copy every buffer again (buffer deduplication,
    conversion metadata)."""
    import tensorflow as tf
    from tensorflow.lite.python import lite

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    _set_quantization(converter, quantization)
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
    equal to it, the size the variable's; an int8 buffer by its 127s and its scales
    ``value / 127``); StandInsFolded when a stand-in is missing, seen twice, or its tensor's
    shape does not hold the variable (the converter folded it)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    by_value = {float(s.value): s for s in stand_ins}
    encodings = {schema.TensorType.FLOAT32: ("float32", np.float32),
                 schema.TensorType.FLOAT16: ("float16", np.float16),
                 schema.TensorType.INT8: ("int8", np.int8)}
    places: Dict[int, Place] = {}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        fully_connected_weights = _fully_connected_weights(model, graph, schema)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            index = tensor.Buffer()
            if index in places or tensor.Type() not in encodings:
                continue
            encoding, dtype = encodings[tensor.Type()]
            buffer = model.Buffers(index)
            if buffer.Offset() > 1:  # buffer-offset layout: after the flatbuffer
                offset, nbytes = buffer.Offset(), buffer.Size()
            elif buffer.DataLength():
                offset, nbytes = buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()
            else:
                continue
            width = np.dtype(dtype).itemsize
            if nbytes < width:
                continue
            values = np.frombuffer(data, dtype, nbytes // width, offset)
            scales_offset, axis = None, 0
            if encoding == "int8":
                quantization = tensor.Quantization()
                if values[0] != 127 or quantization is None or not quantization.ScaleLength():
                    continue
                scales = quantization.ScaleAsNumpy()
                if not np.all(scales == scales[0]):
                    continue
                key = float(np.float16(float(scales[0]) * 127))  # value / 127, back on the grid
                scales_offset = quantization._tab.Vector(quantization._tab.Offset(8))
                axis = quantization.QuantizedDimension()
            else:
                key = float(values[0])
            stand_in = by_value.get(key)
            if stand_in is None or not np.all(values == values[0]):
                continue
            shape = tuple(int(n) for n in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            if nbytes * 4 != stand_in.nbytes * width or width * int(np.prod(shape)) != nbytes:
                raise StandInsFolded(f"LiteRT converter: {stand_in.variable.name} became a "
                                   f"{shape} tensor of {nbytes} bytes; cannot write it")
            transposed = t in fully_connected_weights and len(stand_in.variable.shape) == 2
            places[index] = Place(offset, nbytes, stand_in, shape, transposed, encoding,
                                  scales_offset, axis)
    found = [id(p.stand_in) for p in places.values()]
    missing = [s.variable.name for s in stand_ins if id(s) not in found]
    if missing or len(set(found)) != len(found):
        raise StandInsFolded(f"LiteRT converter: {len(missing)} weights not found as their own "
                           f"buffer (folded into another constant?), e.g. {missing[:3]}")
    return list(places.values())


def _fully_connected_weights(model, graph, schema) -> set:
    """The tensor index of every ``FULLY_CONNECTED`` weight in ``graph``: its second input,
    or in an fp16 file the constant the ``DEQUANTIZE`` feeding that input reads."""
    dequantized, weights = {}, set()
    for o in range(graph.OperatorsLength()):
        operator = graph.Operators(o)
        code = model.OperatorCodes(operator.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.DEQUANTIZE and operator.OutputsLength():
            dequantized[int(operator.Outputs(0))] = int(operator.Inputs(0))
        elif builtin == schema.BuiltinOperator.FULLY_CONNECTED and operator.InputsLength() > 1:
            weights.add(int(operator.Inputs(1)))
    return {dequantized.get(t, t) for t in weights}


def write_weights(path: str, places: List[Place]) -> None:
    """Overwrite each stand-in's buffer in the file at ``path`` with its variable's bytes in
    the file's encoding (and an int8 weight's scales over the stand-in's), one variable in
    memory at a time."""
    with open(path, "r+b") as handle:
        for place in places:
            values, scales = place.real_bytes()
            handle.seek(place.offset)
            handle.write(values.data)
            if scales is not None:
                handle.seek(place.scales_offset)
                handle.write(scales.data)


@dataclass
class FileWeight:
    """A constant tensor of a ``.tflite`` file that may hold a weight, read back from it."""

    name: str
    encoding: str  # "float32", "float16" or "int8"
    values: np.ndarray  # the tensor's stored values, its shape (a view of the file)
    fully_connected: bool  # a FULLY_CONNECTED weight: [out, in]
    scales: Optional[np.ndarray] = None  # int8: per slice along ``axis``
    zero_points: Optional[np.ndarray] = None
    axis: int = 0


def read_file_weights(data) -> List[FileWeight]:
    """Every float32, float16 and int8 constant of the flatbuffer ``data`` (bytes or a mapped
    file), inline or in the buffer-offset layout, in the file's own shape and encoding."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    encodings = {schema.TensorType.FLOAT32: ("float32", np.float32),
                 schema.TensorType.FLOAT16: ("float16", np.float16),
                 schema.TensorType.INT8: ("int8", np.int8)}
    found = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        fully_connected_weights = _fully_connected_weights(model, graph, schema)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if tensor.Type() not in encodings:
                continue
            encoding, dtype = encodings[tensor.Type()]
            buffer = model.Buffers(tensor.Buffer())
            if buffer.Offset() > 1:
                offset, nbytes = buffer.Offset(), buffer.Size()
            elif buffer.DataLength():
                offset, nbytes = buffer._tab.Vector(buffer._tab.Offset(4)), buffer.DataLength()
            else:
                continue  # not a constant
            shape = tuple(int(n) for n in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            count = int(np.prod(shape))
            if count * np.dtype(dtype).itemsize != nbytes:
                continue
            weight = FileWeight(tensor.Name().decode(), encoding,
                                np.frombuffer(data, dtype, count, offset).reshape(shape),
                                t in fully_connected_weights)
            quantization = tensor.Quantization()
            if encoding == "int8" and quantization is not None and quantization.ScaleLength():
                weight.scales = quantization.ScaleAsNumpy().astype(np.float32)
                weight.zero_points = (quantization.ZeroPointAsNumpy().astype(np.int64)
                                      if quantization.ZeroPointLength()
                                      else np.zeros(len(weight.scales), np.int64))
                weight.axis = quantization.QuantizedDimension()
            found.append(weight)
    return found


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
    names = kind.litert_outputs

    def run(case):
        (video,) = kind.serving_case_inputs(entry, case)
        allocate_for(interpreter, video.shape)
        pages.release_all()
        return dict(zip(names, run_litert(interpreter, video)))
    run.pages = pages  # for tests: what was handed back
    return run
