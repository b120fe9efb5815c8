"""Proving a written artifact is the checked model: reloaders that run each format in fresh
objects (``RELOADERS``), and the variable proofs for the formats that reload into the same
Keras code (every variable bit-identical, the config equal)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from tf_models.artifacts.resolve import (PresetError, Resolved, load_keras_model,
                                         load_savedmodel)
from tf_models.artifacts.names import LITERT_KINDS, quantization_of
from tf_models.tracing import graph_function

from .errors import ParityError
from .kinds import build_tf_model, kind_of
from .parity import Case, ParityReport, Reference, check_outputs, max_abs, max_abs_diff
from .record import ReloadCheck
from .writers import KERAS_WEIGHTS_MEMBER, keras_weights_through_disk
from .zoo import Entry


# The SavedModel and the .keras file are loaded as every consumer loads them, by the one
# resolver (tf_models.artifacts.resolve); the .weights.h5 file into the kind's own model,
# since an encoder-only model's weights name no class.

def reload_savedmodel(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    """Each case through the signature that serves its inputs (``serving_default``, or the
    kind's ``extra_signature`` for a case with a decode mask)."""
    import tensorflow as tf

    signature = _resolved(entry, path, lambda: load_savedmodel(path))
    kind = kind_of(entry)
    served = {}
    for name in kind.signatures():
        served[name] = signature.keep_alive.signatures.get(name)
        if served[name] is None:
            raise ParityError(f"reloaded savedmodel of {entry.name}: {path}: SavedModel has "
                              f"no {name} signature")

    def run(case: Case) -> Dict[str, np.ndarray]:
        feeds = {n: tf.constant(x)
                 for n, x in zip(kind.case_input_names(case),
                                 kind.serving_case_inputs(entry, case))}
        serve = served[kind.case_signature(case)]
        return {name: value.numpy() for name, value in serve(**feeds).items()}
    return run


def reload_keras(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    with keras_weights_through_disk():
        model = _resolved(entry, path, lambda: load_keras_model(Resolved(path, "keras", None)))
    return _graph_runner(entry, model)


def _resolved(entry: Entry, path: str, load):
    """``load()``, an artifact that does not load being not the checked model (ParityError)."""
    try:
        return load()
    except PresetError as error:
        raise ParityError(f"reloaded artifact of {entry.name}: {error}") from None


def reload_weights(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    model = build_tf_model(entry)
    model.load_weights(path)
    return _graph_runner(entry, model)


def _graph_runner(entry: Entry, model) -> Callable[[Case], Dict[str, np.ndarray]]:
    """The reloaded model run through a traced graph, as its SavedModel would be: less memory
    at the peak than eager Keras, and faster from the second sample on. Outputs named."""
    kind = kind_of(entry)
    graph = graph_function(lambda *inputs: model(kind.keras_inputs(*inputs), training=False))

    def run(case):
        return kind.named(outputs_to_numpy(graph(*kind.case_inputs(case))))
    run.model = model  # the reloaded model itself, for the variable proofs
    return run


def keras_runner(entry: Entry, model) -> Callable[[Case], Dict[str, np.ndarray]]:
    """``run(case) -> {output name: array}`` of an in-memory Keras model, through the traced
    graph the reload checks run reloaded models in (an export's reference runs so)."""
    return _graph_runner(entry, model)


def outputs_to_numpy(outputs):
    """A model's output (a tensor or a dict of them) as numpy."""
    import keras

    if isinstance(outputs, dict):
        return {name: keras.ops.convert_to_numpy(v) for name, v in outputs.items()}
    return keras.ops.convert_to_numpy(outputs)


def reload_litert(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    from .litert import reload_litert as reload

    return reload(entry, path)


def reload_kerashub(entry: Entry, path: str) -> Callable[[Case], Dict[str, np.ndarray]]:
    """A keras-hub preset folder (a release's ``NAME.kerashub.tar`` unpacked, or the
    ``NAME.preset/`` folder ``videomae-export --preset`` writes), loaded as every consumer
    loads it: the one resolver, keras-hub's ``from_preset`` as the declared class, checked and
    in safe mode."""
    model = _resolved(entry, path, lambda: load_keras_model(Resolved(path, "kerashub", None)))
    return _graph_runner(entry, model)


RELOADERS = {"savedmodel": reload_savedmodel, "weights": reload_weights, "keras": reload_keras,
             **{kind: reload_litert for kind in LITERT_KINDS},
             "kerashub": reload_kerashub, "preset": reload_kerashub}


# artifacts that reload into the same Keras code: proven by their variables (check())
VARIABLE_PROOFS = ("weights", "keras", "preset")
# of those, the ones that also store the class and its config (checked equal; the preset's
# preprocessor, which the preset adds, aside)
CONFIG_PROOFS = ("keras", "preset")


def runs_a_clip(kind: str, references: Sequence[Reference]) -> bool:
    """Whether a reloaded artifact of ``CONFIG_PROOFS`` also runs one clip per set of inputs.

    A conversion's ``.keras`` does not: it holds a zoo model, one of this project's classes,
    and that ``load_model`` rebuilds from an equal class and config the function of the model
    that wrote the file is a property of that code, proven for every kind of zoo model by
    ``tests/test_keras_rebuild.py`` (docs/PARITY.md). A keras-hub preset does (keras-hub's
    loader rebuilds it, with the preprocessor it adds), and so does an export's ``.keras``
    (its reference has no float64 run): the model is a user's, maybe of a subclass no test
    here covers."""
    return kind == "preset" or not any(r.float64_samples for r in references)


def variable_digests(model) -> Dict[str, tuple]:
    """{dotted name: (shape, dtype, sha256 of the bytes)} of every variable of ``model``."""
    import keras

    found = {}
    for name, variable in model.named_variables().items():
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        found[name] = (tuple(array.shape), str(array.dtype),
                       hashlib.sha256(array.tobytes()).hexdigest())
    return found


def compare_digests(expected: Dict[str, tuple], found: Dict[str, tuple]) -> List[str]:
    """Every difference: missing / unexpected names, shape, dtype or bytes."""
    problems = [f"- missing {n}" for n in expected if n not in found]
    problems += [f"+ unexpected {n}" for n in found if n not in expected]
    for name in expected:
        if name in found and found[name] != expected[name]:
            (shape, dtype, digest), (shape2, dtype2, digest2) = expected[name], found[name]
            if (shape, dtype) != (shape2, dtype2):
                problems.append(f"! {name}: {shape2} {dtype2}, expected {shape} {dtype}")
            else:
                problems.append(f"! {name}: values differ (sha256 {digest2[:12]}, "
                                f"expected {digest[:12]})")
    return problems


def _config_difference(expected: dict, found: dict) -> str:
    for key in sorted(set(expected) | set(found)):
        if expected.get(key) != found.get(key):
            return f"{key} is {str(found.get(key))[:60]}, expected {str(expected.get(key))[:60]}"
    return "?"


class _OneSample:
    """Sample ``index`` of a reference, shaped like a Reference for ``check_outputs`` (its
    limits still scaled by the whole reference's outputs)."""

    def __init__(self, reference: Reference, sample, index: int = 0):
        self.reference = reference
        self.case = _SingleCase(sample)
        self.outputs32 = {name: out[index:index + 1]
                          for name, out in reference.outputs32.items()}
        self.outputs64 = {name: out[index:index + 1]
                          for name, out in reference.outputs64.items()}

    @property
    def float64_samples(self) -> int:
        return len(next(iter(self.outputs64.values())))

    def __getattr__(self, name):
        return getattr(self.reference, name)


class _SingleCase:
    def __init__(self, sample):
        self.sample = sample
        self.name = sample.name

    def samples(self):
        return [self.sample]


@dataclass
class ModelFingerprint:
    """What the checked in-memory model was, for the variable proofs: every variable's
    digest, its config and its class name."""

    digests: Dict[str, tuple]
    config: dict
    class_name: str


def fingerprint_model(model) -> ModelFingerprint:
    """The fingerprint of ``model`` (taken before it is written and freed)."""
    return ModelFingerprint(variable_digests(model), model.get_config(), type(model).__name__)


def prove_artifact(entry: Entry, kind: str, path: str, references: Sequence[Reference],
                   checked: ParityReport, expected: ModelFingerprint,
                   keras_path: Optional[str] = None) -> ReloadCheck:
    """Reload the artifact ``kind`` at ``path`` into fresh objects and prove it computes what the
    checked in-memory model computes; ParityError when it does not. The SavedModel and the
    ``.tflite`` hold traced graphs, new code: the clips float64 ran on (the first of each
    parity case) run through them, held to float64 and torch fp32; the in-memory model ran
    every clip, and a graph without data-dependent branches computes on a case's other clips
    (independent draws of the same distribution) the function its first clip proves
    (docs/PARITY.md). An export's reference (no float64 run): every clip. ``.weights.h5`` and
    ``.keras`` reload into the same Keras code: every variable must be bit-identical to
    ``expected`` and the ``.keras`` config and class equal to its own (an export's ``.keras``
    also runs one clip: ``runs_a_clip``; docs/PARITY.md); ``checked`` is the in-memory parity
    report, whose errors those two artifacts then share. A ``.weights.h5`` whose bytes are
    those of the weights inside the ``.keras`` file at ``keras_path`` (proven by that file's
    own check, which must run too) is proven by that: nothing to reload (``method: "bytes"``).
    """
    if kind == "weights" and keras_path and same_bytes_as_keras_weights(path, keras_path):
        return ReloadCheck(tf_err_vs_f64=_measured(checked.tf_err_vs_f64),
                           max_abs=checked.max_abs, passed=True, method="bytes", clips=0)
    if kind in VARIABLE_PROOFS:
        return _prove_variables(entry, kind, path, references, checked, expected)
    run = RELOADERS[kind](entry, path)
    runs = _float64_clips(references)
    report = check_outputs(run, runs, entry.parity_atol, f"reloaded {kind} of {entry.name}")
    return ReloadCheck(tf_err_vs_f64=_measured(report.tf_err_vs_f64), max_abs=report.max_abs,
                       passed=report.passed,
                       clips=sum(len(one.case.samples()) for one in runs))


def _float64_clips(references: Sequence[Reference]) -> list:
    """The clips of each case that float64 ran on (``FLOAT64_SAMPLES``: the first), as
    references of one clip each; every clip of a reference without a float64 run (an
    export's ``keras_reference``, whose reload checks are its only checks)."""
    runs = []
    for reference in references:
        if not reference.float64_samples:
            runs.append(reference)
            continue
        samples = reference.case.samples()[:reference.float64_samples]
        runs.extend(_OneSample(reference, sample, index) for index, sample in enumerate(samples))
    return runs


# how far a dequantised int8 weight may lie from its fp32 value, in its channel's steps: half
# a step (round to nearest), and the float32 rounding of ``w / scale`` and ``q * scale`` (a
# few ulps of |w| <= 127 steps, under 2e-5 steps)
INT8_WEIGHT_STEPS = 0.5 + 1e-4


def prove_litert_weights(entry: Entry, kind: str, path: str, model) -> int:
    """Prove by its weights the quantised ``.tflite`` (artifact ``kind``) at ``path`` that
    ``export_litert`` wrote from ``model`` through stand-ins: every float32 variable of
    ``model`` read back from the file once, from a constant named after the variable's layer,
    laid out as the graph reads it (a ``FULLY_CONNECTED`` weight ``[out, in]``, the Keras
    kernel transposed), and equal to the variable in the file's encoding: float32 exactly,
    fp16 exactly ``float16(w)``, int8 dequantised (``(q - zero point) * scale`` per channel)
    within half its channel's step (``INT8_WEIGHT_STEPS``). The output bound cannot see a
    whole weight matrix gone (docs/PARITY.md); this can. ParityError naming every weight not
    found so; the number of weights proven."""
    import keras

    from .litert import read_file_weights

    variables = [v for v in model.weights if str(v.dtype) == "float32"]
    claimed: Dict[int, str] = {}  # id(variable) -> the tensor holding it
    nearest: Dict[int, str] = {}  # id(variable) -> how the closest tensor of its layer differs
    # mapped, not read: the file's pages are the page cache's, handed back under pressure
    for weight in read_file_weights(np.memmap(path, np.uint8, "r")):
        for variable in variables:
            if (id(variable) in claimed or int(np.prod(variable.shape)) != weight.values.size
                    or not _named_after_layer(weight.name, variable.path)):
                continue
            value = keras.ops.convert_to_numpy(variable)
            value = value.T if weight.fully_connected and value.ndim == 2 else value
            off = _steps_off(weight, np.ascontiguousarray(value).reshape(weight.values.shape))
            if off is None:
                claimed[id(variable)] = weight.name
                break
            nearest.setdefault(id(variable), f"{weight.name!r} ({weight.encoding}) {off}")
    problems = [f"- {v.path}: " + nearest.get(id(v), "no tensor of its layer and size")
                for v in variables if id(v) not in claimed]
    if problems:
        raise ParityError(f"{kind} of {entry.name}: {path}: {len(problems)} weight(s) not in "
                          f"the file as written from the checked model: {'; '.join(problems[:5])}"
                          f"{' ...' if len(problems) > 5 else ''}")
    return len(claimed)


def _named_after_layer(tensor_name: str, variable_path: str) -> bool:
    """Whether ``tensor_name`` (``.../blocks_0_1/mlp_1/fc1_1/MatMul``: the op's name scopes,
    each layer's name with a trace's ``_N``) has the variable's layers (``blocks_0/mlp/fc1``)
    as consecutive scopes."""
    layers = variable_path.split("/")[:-1]
    scopes = tensor_name.split("/")

    def same(scope, layer):
        return scope == layer or (scope.startswith(layer + "_")
                                  and scope[len(layer) + 1:].isdigit())
    return any(all(same(s, layer) for s, layer in zip(scopes[start:], layers))
               for start in range(len(scopes) - len(layers) + 1))


def _steps_off(weight, value: np.ndarray) -> Optional[str]:
    """None when the file tensor ``weight`` holds ``value`` (float32, the file's layout) in
    its encoding; otherwise how far it is off."""
    if weight.encoding == "int8":
        if weight.scales is None:
            return "has no scales"
        shape = [1] * value.ndim
        shape[weight.axis] = -1
        scales = weight.scales.reshape(shape)
        stored = weight.values.astype(np.float32)
        if np.any(weight.zero_points):
            stored -= weight.zero_points.reshape(shape).astype(np.float32)
        off = np.abs(stored * scales - value)
        if np.all(off <= INT8_WEIGHT_STEPS * scales):  # a zero or NaN scale fails
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return f"off by up to {float(np.nanmax(off / scales)):.3g} int8 steps"
    expected = value.astype(np.float16) if weight.encoding == "float16" else value
    differ = np.count_nonzero(weight.values != expected)
    return None if not differ else f"differs in {differ} of {value.size} values"


def prove_quantized(entry: Entry, kind: str, path: str, references: Sequence[Reference],
                    video_references: Sequence[Reference] = (),
                    weights_proven: Optional[int] = None) -> ReloadCheck:
    """Measure a ``--litert-quantize`` file (artifact ``kind``, ``litert_fp16`` /
    ``litert_int8``): every parity input through it, its largest error against the
    reference (float64 where that ran) held to the mode's bound (``QUANTIZATIONS``: a share
    of the reference's largest |output|, which rounding stays well inside and gross
    misplacements break); on the real-video clips, how often its top class and its five top
    classes are the reference's. ParityError when the bound is passed. ``weights_proven``:
    what ``prove_litert_weights`` proved when the file was written (recorded)."""
    from .litert import QUANTIZATIONS, reload_litert as reload

    mode = quantization_of(kind)
    run = reload(entry, path)
    errors, errors64, largest = [0.0], [], [0.0]
    for reference in references:
        for index, sample in enumerate(reference.case.samples()):
            found = run(sample)
            for name in reference.outputs32:
                expected = reference.best(name)[index:index + 1]
                errors.append(max_abs_diff(found[name], expected))
                largest.append(max_abs(expected))
                if index < reference.float64_samples:
                    errors64.append(errors[-1])
    tolerance = QUANTIZATIONS[mode]["bound"] * max(largest)
    error = max(errors)
    if not error <= tolerance:  # NaN fails too
        raise ParityError(f"{kind} of {entry.name}: {path}: max |difference| {error:.3e} over "
                          f"the {mode} bound {tolerance:.3e} ({QUANTIZATIONS[mode]['bound']:g} "
                          f"x the largest |output|): a weight written into the wrong place?")
    top1, top5 = [], []
    for reference in video_references if "logits" in kind_of(entry).outputs else ():
        for index, sample in enumerate(reference.case.samples()):
            found = run(sample)["logits"][0]
            expected = reference.best("logits")[index]
            top1.append(np.argmax(found) == np.argmax(expected))
            top5.append(set(np.argsort(-found)[:5]) == set(np.argsort(-expected)[:5]))
    return ReloadCheck(tf_err_vs_f64=max(errors64) if errors64 else None, max_abs=error,
                       passed=True, method="quantized", tolerance=tolerance,
                       video_clips=len(top1),
                       top1_agreement=float(np.mean(top1)) if top1 else None,
                       top5_agreement=float(np.mean(top5)) if top5 else None,
                       weights_proven=weights_proven)


# bytes compared at a time by ``same_bytes_as_keras_weights``
COMPARE_CHUNK = 1 << 24


def same_bytes_as_keras_weights(weights_path: str, keras_path: str) -> bool:
    """Whether the file ``weights_path`` holds byte for byte the ``model.weights.h5`` member
    of the ``.keras`` archive ``keras_path`` (read in slices; False when either is missing
    or unreadable as such)."""
    try:
        with zipfile.ZipFile(keras_path) as archive:
            info = archive.getinfo(KERAS_WEIGHTS_MEMBER)
            if info.file_size != os.path.getsize(weights_path):
                return False
            with archive.open(info) as member, open(weights_path, "rb") as handle:
                while True:
                    expected, found = member.read(COMPARE_CHUNK), handle.read(COMPARE_CHUNK)
                    if expected != found:
                        return False
                    if not expected:
                        return True
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def _measured(error: float):
    """An error against float64, or None where the reference had no float64 run (an export's
    ``keras_reference``)."""
    return None if np.isnan(error) else error


def _prove_variables(entry: Entry, kind: str, path: str, references: Sequence[Reference],
                     checked: ParityReport, expected: ModelFingerprint) -> ReloadCheck:
    what = f"reloaded {kind} of {entry.name}"
    run = RELOADERS[kind](entry, path)
    model = run.model  # a variable-proof reloader hands back its model (_graph_runner)
    problems = compare_digests(expected.digests, variable_digests(model))
    if kind in CONFIG_PROOFS:
        # a preset adds the classifier's preprocessor (raw frames in): the rest is equal
        aside = ("preprocessor",) if kind == "preset" else ()
        problems[:0] = _class_and_config_problems(model, expected, aside)
    if problems:
        raise ParityError(f"{what}: not the checked model: {'; '.join(problems[:5])}"
                          f"{' ...' if len(problems) > 5 else ''}")
    clips = 0
    if kind in CONFIG_PROOFS and runs_a_clip(kind, references):
        for reference in _one_case_per_input_set(entry, references):
            first = next(iter(reference.case.samples()))
            check_outputs(run, [_OneSample(reference, first)], entry.parity_atol, what)
            clips += 1
    return ReloadCheck(tf_err_vs_f64=_measured(checked.tf_err_vs_f64), max_abs=checked.max_abs,
                       passed=True, method="variables", clips=clips)


def _one_case_per_input_set(entry: Entry, references: Sequence[Reference]) -> List[Reference]:
    """The first reference of each set of inputs the cases feed (V2's pre-trainer: with and
    without a decode mask), so the reloaded ``.keras`` runs each of its code paths once."""
    kind, firsts = kind_of(entry), {}
    for reference in references:
        firsts.setdefault(kind.case_input_names(reference.case), reference)
    return list(firsts.values())


def _class_and_config_problems(model, expected: ModelFingerprint,
                               aside: Sequence[str] = ()) -> List[str]:
    if type(model).__name__ != expected.class_name:
        return [f"class {type(model).__name__}, expected {expected.class_name}"]
    found, wanted = ({k: v for k, v in c.items() if k not in aside}
                     for c in (model.get_config(), expected.config))
    if found != wanted:
        return [f"config differs: {_config_difference(wanted, found)}"]
    return []
