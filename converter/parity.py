"""Numerical parity: the Keras model against the torch reference, on seeded random inputs.

The reference runs in float32 (what a user of upstream gets) on every sample, and in float64
(the "true" answer for these weights) on the first ``FLOAT64_SAMPLES`` samples of each case.
There the tolerance applies to TF's error against float64, and torch fp32's own error is
measured beside it, which gives the tolerance and the per-block check their scale; the other
samples are held to the same limits against torch fp32 (docs/PARITY.md says why that is
enough). Per-block hidden states name the first block where TF's error departs from torch's
rounding noise.

All layout changes between torch (NCTHW) and Keras (NTHWC) happen here and nowhere else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .errors import ConversionError, ParityError
from .zoo import Entry

# A block diverges when TF's error is more than this many times torch fp32's own error
# (plus a 1e-6 relative floor): with a right mapping the two are the same order of magnitude
# (measured on S to H: TF / torch at most 1.45, docs/PARITY.md), so 10 leaves a wide margin.
DIVERGENCE_FACTOR = 10.0

# Samples per case that the float64 reference runs on (the first ones). One is enough to
# measure torch fp32's rounding noise, per output and per block, for these weights and this
# input distribution: the samples are independent draws of the same N(0, 1) clips (and masks
# at the same ratio), so a second float64 run would measure the same scale again, at the
# cost of the most expensive forward pass of a conversion (1.4 x torch fp32's for ViT-B).
FLOAT64_SAMPLES = 1

# Clips per case that a conversion checks (``make_cases``' batch; ``convert(parity_batch=)``
# takes more). One: every run goes one clip at a time through graphs with no data-dependent
# branch, so a second clip is the same proof again on another draw of the same distribution
# (a wrong tensor, op or mask handling shows on any random clip); it cost ViT-B a third of its
# torch reference and Keras parity (docs/PARITY.md, "One clip per case"). Batches of more than
# one stay supported and tested.
PARITY_CLIPS = 1


def ncthw_to_nthwc(video_ncthw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(video_ncthw.transpose(0, 2, 3, 4, 1))


# elements per slice when comparing in float64: large outputs (a PT model's masked pixels are
# 2 x 1408 x 1536 per case) would otherwise take several float64 temporaries of their full size
CHUNK = 1 << 20


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64, one slice at a time (NaN if either holds a NaN)."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.size == 0:
        return 0.0
    return float(np.max([np.max(np.abs(a[i:i + CHUNK].astype(np.float64) - b[i:i + CHUNK]))
                         for i in range(0, a.size, CHUNK)]))


def worst(*values: float) -> float:
    """The largest of ``values``, NaN if any is NaN (Python's ``max`` can drop a NaN)."""
    return float(np.max(values))


def max_abs(a: np.ndarray) -> float:
    """max |a|, one slice at a time."""
    a = np.asarray(a).reshape(-1)
    if a.size == 0:
        return 0.0
    return float(np.max([np.max(np.abs(a[i:i + CHUNK])) for i in range(0, a.size, CHUNK)]))


@dataclass
class Case:
    """One parity input: a video (NCTHW, float32) and, for pre-trained models, a mask; for
    VideoMAE V2's pre-trained models possibly a decode mask too (True = not decoded); for a
    raw-frames entry also the uint8 frames (NTHWC) the video is the normalisation of."""

    name: str
    video_ncthw: np.ndarray
    mask: Optional[np.ndarray] = None
    decode_mask: Optional[np.ndarray] = None
    frames_nthwc: Optional[np.ndarray] = None

    @property
    def video_nthwc(self) -> np.ndarray:
        return ncthw_to_nthwc(self.video_ncthw)

    def samples(self) -> List["Case"]:
        """One case per sample (views, not copies). Parity runs go one sample at a time:
        samples are independent, and this halves the activations alive at once."""
        def row(array, i):
            return None if array is None else array[i:i + 1]
        return [Case(self.name, self.video_ncthw[i:i + 1], row(self.mask, i),
                     row(self.decode_mask, i), row(self.frames_nthwc, i))
                for i in range(self.video_ncthw.shape[0])]


class BlockStates:
    """The reference's state after every block, per sample, kept on disk and read back one
    block at a time.

    They wait from the torch reference run until the Keras run is compared with them: depth x
    batch x tokens x D floats, 116 MB for ViT-B at batch 2 (a third of its weights), which in
    memory would sit on top of the peak of both model runs. The scratch file lives in
    ``folder`` (default: the temporary folder, ``TMPDIR``) and is unnamed from the start
    (``tempfile.TemporaryFile``): nothing is left behind, whatever happens. States are stored
    as float32 (the float64 reference rounded; see ``compute_reference``).
    """

    def __init__(self, folder: Optional[str] = None):
        self.folder = folder or tempfile.gettempdir()
        try:
            self._file = tempfile.TemporaryFile(prefix="videomae-block-states-", dir=self.folder)
        except OSError as error:
            raise self._scratch_error(error) from None
        self._where: Dict[Tuple[int, int], Tuple[int, Tuple[int, ...]]] = {}
        self.scales: List[float] = []  # max |state| per block, over every sample

    def __len__(self) -> int:
        return len(self.scales)

    def put(self, block: int, sample: int, state: np.ndarray) -> None:
        state = np.ascontiguousarray(state, dtype=np.float32)
        try:
            self._file.seek(0, 2)  # writes what the buffer holds: it may fail as a write
            self._where[(block, sample)] = (self._file.tell(), state.shape)
            self._file.write(state.data)
        except OSError as error:
            raise self._scratch_error(error) from None
        scale = float(np.max(np.abs(state))) if state.size else 0.0
        if block == len(self.scales):
            self.scales.append(scale)
        else:
            self.scales[block] = worst(self.scales[block], scale)

    def get(self, block: int, sample: int) -> np.ndarray:
        """The state after ``block`` for ``sample`` (batch of 1), float32."""
        offset, shape = self._where[(block, sample)]
        state = np.empty(shape, dtype=np.float32)
        try:
            self._file.flush()
        except OSError as error:
            raise self._scratch_error(error) from None
        self._file.seek(offset)
        if self._file.readinto(memoryview(state).cast("B")) != state.nbytes:
            raise OSError("block states scratch file was truncated")
        return state

    def close(self) -> None:
        """Delete the scratch file (reading a state afterwards raises)."""
        self._file.close()

    def _scratch_error(self, error: OSError) -> ConversionError:
        return ConversionError(f"{self.folder}: cannot write the parity block states there "
                               f"({error.strerror or error}); free space or set TMPDIR to "
                               f"another folder")


@dataclass
class Reference:
    """Torch outputs for one case: fp32 on every sample, float64 on the first
    ``float64_samples``; named outputs and per-block states."""

    case: Case
    outputs32: Dict[str, np.ndarray]
    outputs64: Dict[str, np.ndarray]  # the first float64_samples samples only
    hidden_err32: List[float]  # torch fp32 error vs float64, per block (max abs)
    # per sample, its block states: the float64 run's (rounded to float32) for the samples
    # float64 ran on, torch fp32's own for the others; None for a reference without blocks
    # (``keras_reference``)
    states: Optional[BlockStates]

    @property
    def float64_samples(self) -> int:
        return len(next(iter(self.outputs64.values())))

    @property
    def out32(self) -> np.ndarray:
        """The primary (first) output in fp32."""
        return next(iter(self.outputs32.values()))

    @property
    def out64(self) -> np.ndarray:
        return next(iter(self.outputs64.values()))

    def best(self, name: str) -> np.ndarray:
        """Output ``name`` for every sample, float64 where it ran, torch fp32 elsewhere."""
        return np.concatenate([self.outputs64[name].astype(np.float64),
                               self.outputs32[name][self.float64_samples:]])

    @functools.cached_property
    def output_stats(self) -> Dict[str, Tuple[float, float, float]]:
        """Per output: (max |fp32|, max |reference| over every sample, max |fp32 - float64|
        where float64 ran), computed once."""
        return {name: (max_abs(out32),
                       worst(max_abs(self.outputs64[name]),
                             max_abs(out32[self.float64_samples:])),
                       max_abs_diff(out32[:self.float64_samples], self.outputs64[name]))
                for name, out32 in self.outputs32.items()}

    def drop_states(self) -> None:
        """Free the block states once the Keras model was compared with them (reloaded
        artifacts are checked on final outputs only)."""
        if self.states is not None:
            self.states.close()


def as_outputs(value, default_name: str = "logits") -> Dict[str, np.ndarray]:
    """A model's output as a dict of named numpy arrays."""
    if isinstance(value, dict):
        return {name: np.asarray(v) for name, v in value.items()}
    return {default_name: np.asarray(value)}


@dataclass
class OutputComparison:
    case: str
    output: str
    max_abs: float          # TF vs torch fp32, every sample: the limit applies to it too
    max_rel: float          # max_abs / max |torch fp32 output|
    tf_err_vs_f64: float    # TF vs float64, the samples float64 ran on: the limit applies
    torch_err_vs_f64: float
    tolerance: float        # the entry's tolerance, for outputs of magnitude up to 1
    limit: float            # tolerance * max(1, max |reference output|)
    passed: bool


@dataclass
class BlockComparison:
    case: str
    block: str
    tf_err_vs_f64: float    # the samples float64 ran on
    torch_err_vs_f64: float
    diverged: bool
    # TF vs torch fp32's state, the other samples (None when float64 ran on every sample)
    tf_err_vs_fp32: Optional[float] = None


@dataclass
class ParityReport:
    """What was compared, how close it matched, and whether it passed."""

    tolerance: float
    outputs: List[OutputComparison] = field(default_factory=list)
    blocks: List[BlockComparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every output within tolerance and no block diverged: a wrong tensor can move the
        final output less than the tolerance (a weak path to the output) while its block's
        state is off by orders of magnitude more than rounding."""
        return all(o.passed for o in self.outputs) and not any(b.diverged for b in self.blocks)

    @property
    def first_divergent_block(self) -> Optional[str]:
        for block in self.blocks:
            if block.diverged:
                return f"{block.block} ({block.case})"
        return None

    @property
    def max_abs(self) -> float:
        return worst(*(o.max_abs for o in self.outputs))

    @property
    def tf_err_vs_f64(self) -> float:
        return worst(*(o.tf_err_vs_f64 for o in self.outputs))

    @property
    def torch_err_vs_f64(self) -> float:
        return worst(*(o.torch_err_vs_f64 for o in self.outputs))

    def to_dict(self) -> dict:
        return {"passed": self.passed, "tolerance": self.tolerance, "max_abs": self.max_abs,
                "tf_err_vs_f64": self.tf_err_vs_f64, "torch_err_vs_f64": self.torch_err_vs_f64,
                "first_divergent_block": self.first_divergent_block,
                "outputs": [asdict(o) for o in self.outputs],
                "blocks": [asdict(b) for b in self.blocks]}

    def summary(self) -> str:
        return (f"max |tf - torch| {self.max_abs:.2e}; error vs float64: "
                f"tf {self.tf_err_vs_f64:.2e}"
                f", torch fp32 {self.torch_err_vs_f64:.2e}; tolerance {self.tolerance:.0e}")

    def raise_if_failed(self, what: str = "parity") -> None:
        if self.passed:
            return
        failed = [f"{o.case}/{o.output}: tf error {_worse(o.tf_err_vs_f64, o.max_abs)} > "
                  f"{o.limit:.1e}" for o in self.outputs if not o.passed]
        where = self.first_divergent_block
        if where:
            block = next(b for b in self.blocks if b.diverged)
            failed.append(f"first divergent block: {where}, tf error "
                          f"{_worse(block.tf_err_vs_f64, block.tf_err_vs_fp32)} "
                          f"vs torch fp32 {block.torch_err_vs_f64:.2e}")
        raise ParityError(f"{what} failed: " + "; ".join(failed), self)


def _worse(vs_f64: float, vs_fp32: Optional[float]) -> str:
    """The larger of TF's errors against float64 and against torch fp32, said which."""
    if np.isnan(vs_f64) and vs_fp32 is not None and not np.isnan(vs_fp32):
        return f"{vs_fp32:.2e}"  # a reference without a float64 run (``keras_reference``)
    if vs_fp32 is None or not (np.isnan(vs_fp32) or vs_fp32 > vs_f64):
        return f"{vs_f64:.2e}"
    return f"{vs_fp32:.2e} (against torch fp32)"


# The decoder's share of the tokens in the random decode-mask case (and the running-cell
# ratio of entries whose pre-training used none): half, as V2's ViT-g pre-training.
DECODE_RATIO = 0.5


def make_cases(entry: Entry, batch: int = PARITY_CLIPS, seed: int = 0) -> List[Case]:
    """Seeded random clips (and, for models that take a mask, tube masks at the entry's ratio
    and at 0.5 that differ per sample). For a ``raw_frames`` entry the clips are seeded
    random uint8 frames and the video is their upstream normalisation (numpy,
    ``tf_models.video.normalize_views``), so the exported raw-frames signatures are checked
    against the torch reference on the same clips as every other artifact.

    A model that also takes a decode mask (VideoMAE V2's pre-trainer) gets two more cases on
    the entry's tube masks: upstream's running-cell decode masks (``runcell``, at the entry's
    decoder mask ratio) and random ones that keep ``DECODE_RATIO`` of the tokens with no
    pattern (``decode``); both decode tokens the encoder saw as well as masked ones, as
    upstream's decoder does."""
    from torch_reference import running_cell_mask, tube_mask

    from .kinds import kind_of

    kind = kind_of(entry)
    rng = np.random.default_rng(seed)
    shape = (batch, 3, entry.num_frames, entry.img_size, entry.img_size)
    frames = None
    if entry.raw_frames:
        from tf_models.video.protocol import normalize_views

        frames = rng.integers(0, 256, (batch, entry.num_frames, entry.img_size,
                                       entry.img_size, 3), dtype=np.uint8)
        video = np.ascontiguousarray(
            normalize_views(frames, entry.mean, entry.std).transpose(0, 4, 1, 2, 3))
    else:
        video = rng.standard_normal(shape, dtype=np.float32)
    if "mask" not in kind.inputs:
        return [Case("clip", video, frames_nthwc=frames)]
    grid = (entry.num_frames, entry.img_size, entry.patch_size, entry.tubelet_size)
    cases = []
    for ratio in (entry.mask_ratio, 0.5):
        cases.append(Case(f"mask{ratio:g}", video, tube_mask(*grid, ratio, batch, rng),
                          frames_nthwc=frames))
    if "decode_mask" in kind.optional_inputs:
        mask = cases[0].mask
        cell_ratio = entry.decoder_mask_ratio or DECODE_RATIO
        cases.append(Case(f"mask{entry.mask_ratio:g}-runcell{cell_ratio:g}", video, mask,
                          running_cell_mask(*grid, cell_ratio, batch, rng),
                          frames_nthwc=frames))
        n_kept = int(DECODE_RATIO * entry.num_patches)
        decode = np.ones((batch, entry.num_patches), dtype=bool)
        for row in decode:
            row[rng.permutation(entry.num_patches)[:n_kept]] = False
        cases.append(Case(f"mask{entry.mask_ratio:g}-decode{DECODE_RATIO:g}", video, mask,
                          decode, frames_nthwc=frames))
    return cases


# the test protocol a real video is sampled with for a ``--video`` clip (dense sampling, one
# clip, one centre crop: any clip of the video serves as an input)
VIDEO_PROTOCOL = ("k400", "1x1")
VIDEO_CASE_PREFIX = "video:"


def check_videos(videos: Sequence[str], quantize: Sequence[str]) -> None:
    """``--video`` files go with ``--litert-quantize`` (their clips measure the quantised
    files' top-k agreement) and must exist: ConversionError (one line) otherwise, before any
    work (``video_case`` then decodes them)."""
    if videos and not quantize:
        raise ConversionError("--video: real videos measure the --litert-quantize files' "
                              "top-k agreement; add --litert-quantize fp16 or int8")
    for path in videos:
        check_video_file(path)


def check_video_file(path: str) -> None:
    """ConversionError (one line) unless the ``--video`` ``path`` is a file."""
    if os.path.isdir(path):
        raise ConversionError(f"--video {path}: is a folder, expected a video file; pass one "
                              f"of its videos")
    if not os.path.isfile(path):
        raise ConversionError(f"--video {path}: no such file")


def video_case(path: str, entry) -> Case:
    """One clip of the real video at ``path`` at ``entry``'s shape (upstream's dense test
    sampling, one clip, centre crop; normalised with the entry's mean / std), NCTHW; for a
    ``raw_frames`` entry its uint8 frames too. ``entry``: a zoo Entry or an export target.
    ConversionError (one line) when the file is not a readable video."""
    from tf_models.video.decode import VideoError, read_views
    from tf_models.video.protocol import normalize_views, protocol_for

    dataset, views = VIDEO_PROTOCOL
    protocol = protocol_for(dataset, entry.num_frames, entry.img_size, views)
    try:
        frames = read_views(path, protocol)
    except VideoError as error:
        raise ConversionError(f"--video {error}") from None
    clip = normalize_views(frames, entry.mean, entry.std)
    return Case(f"{VIDEO_CASE_PREFIX}{os.path.basename(path)}",
                np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3)),
                frames_nthwc=frames if getattr(entry, "raw_frames", False) else None)


@contextlib.contextmanager
def block_outputs(model: torch.nn.Module, on_block: Callable[[int, torch.Tensor], None]):
    """Call ``on_block(index, output)`` as each transformer block of ``model`` finishes, in
    the order they run (encoder blocks, then decoder blocks): the order of the models'
    ``forward_with_hidden_states`` lists, without keeping any state alive."""
    from torch_reference.modeling_finetune import Block

    count = [0]

    def hook(module, args, output):
        on_block(count[0], output)
        count[0] += 1
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Block)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _run_torch(model: torch.nn.Module, case: Case, dtype: torch.dtype,
               on_block: Optional[Callable[[int, torch.Tensor], None]] = None):
    """(named outputs, block states) of one run. With ``on_block`` each state goes there as it
    is made and the returned list is empty."""
    states: List[np.ndarray] = []
    sink = on_block or (lambda index, state: states.append(state.numpy()))
    video = torch.from_numpy(case.video_ncthw).to(dtype)
    inputs = [video] + [torch.from_numpy(m) for m in (case.mask, case.decode_mask)
                        if m is not None]
    with torch.inference_mode(), block_outputs(model, sink):
        out = model(*inputs)
    if isinstance(out, dict):
        out = {name: value.numpy() for name, value in out.items()}
    else:
        out = out.numpy()
    return as_outputs(out), states


@contextlib.contextmanager
def float64_forward(model: torch.nn.Module):
    """Let ``model`` run on float64 inputs while holding only one unit's float64 weights.

    Each transformer block (whole) and every other module that owns parameters directly
    casts its parameters to float64 on entry and gets its original float32 tensors back on
    exit, so no float64 copy of the whole model is ever alive (for ViT-H that copy alone
    would be 5 GB). Blocks are cast whole because attention reads ``qkv.weight`` directly.
    """
    from torch_reference.modeling_finetune import Block

    units = []
    for module in model.modules():
        if isinstance(module, Block):
            units.append((module, True))
    inside = {id(m) for block, _ in units for m in block.modules()}
    for module in model.modules():
        if id(module) not in inside and any(True for _ in module.parameters(recurse=False)):
            units.append((module, False))
    stash: Dict[int, list] = {}

    def enter(module, recurse):
        saved = []
        for param in module.parameters(recurse=recurse):
            saved.append((param, param.data))
            param.data = param.data.double()
        stash[id(module)] = saved

    def leave(module):
        for param, data in stash.pop(id(module)):
            param.data = data

    handles = []
    for module, recurse in units:
        handles.append(module.register_forward_pre_hook(
            lambda m, args, recurse=recurse: enter(m, recurse)))
        handles.append(module.register_forward_hook(lambda m, args, out: leave(m)))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def fused_attention(model: torch.nn.Module):
    """Run ``model``'s attention with torch's fused kernel (for the float64 run): the same
    maths without the tokens x tokens score matrix, which in float64 is the largest tensor of
    the run (236 MB per ViT-B block and sample), and about twice as fast."""
    from torch_reference.modeling_finetune import Attention

    modules = [m for m in model.modules() if isinstance(m, Attention)]
    for module in modules:
        module.fused = True
    try:
        yield model
    finally:
        for module in modules:
            module.fused = False


def _concat(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def compute_reference(model: torch.nn.Module, cases: Sequence[Case],
                      float64_samples: int = FLOAT64_SAMPLES) -> List[Reference]:
    """Run the torch reference in float32 on every sample of every case, and in float64 on
    the first ``float64_samples`` of each, one sample at a time.

    The float64 run casts one unit at a time (``float64_forward``) and uses the fused
    attention kernel (``fused_attention``); the float32 run is upstream's arithmetic exactly.
    Each float64 block state is rounded to float32 (a 6e-8 relative rounding, far below the
    ~1e-6 fp32 errors it is compared with; torch's and TF's block errors are both measured
    against the rounded states) and written to the case's ``BlockStates`` as soon as its block
    finishes; the float32 run then compares each of its states with it on the spot. On the
    samples without a float64 run, the float32 run's own states are kept instead, for the
    Keras run to be compared with. No run holds more than the state it is in. Final outputs
    stay float64. Torch fp32's own per-block error is the max over the float64 samples.
    """
    if float64_samples < 1:
        raise ValueError("the float64 reference must run on at least one sample per case")
    references = []
    for case in cases:
        outputs32, outputs64 = [], []
        states = BlockStates()
        errors: List[float] = []
        for sample, one in enumerate(case.samples()):
            def keep(block, state, sample=sample):
                states.put(block, sample, state.numpy().astype(np.float32))

            def compare(block, state, sample=sample):
                error = max_abs_diff(state.numpy(), states.get(block, sample))
                if block == len(errors):
                    errors.append(error)
                else:
                    errors[block] = worst(errors[block], error)

            if sample < float64_samples:
                outputs64.append(_run_float64(model, one, on_block=keep))
                out32, _ = _run_torch(model, one, torch.float32, on_block=compare)
            else:
                out32, _ = _run_torch(model, one, torch.float32, on_block=keep)
            outputs32.append(out32)
        references.append(Reference(case, _concat(outputs32), _concat(outputs64), errors,
                                    states))
    return references


def float64_outputs(model: torch.nn.Module, cases: Sequence[Case]) -> List[Reference]:
    """The float64 outputs of every sample of ``cases``, and nothing else: no float32 run, no
    block states. The reference of the real-video clips (``--video``), on which only a
    quantised file's top classes are compared with float64's (``proofs.prove_quantized``);
    a float32 run would be there to measure fp32 rounding, which those clips do not hold to
    anything. The references' float32 outputs are empty (0 samples), as a ``keras_reference``'s
    float64 ones are."""
    references = []
    for case in cases:
        outputs64 = _concat([_run_float64(model, one, on_block=_ignore)
                             for one in case.samples()])
        empty = {name: value[:0].astype(np.float32) for name, value in outputs64.items()}
        references.append(Reference(case, empty, outputs64, [], None))
    return references


def _run_float64(model: torch.nn.Module, case: Case,
                 on_block: Callable[[int, torch.Tensor], None]) -> Dict[str, np.ndarray]:
    """The named outputs of one float64 run: one unit's weights cast at a time
    (``float64_forward``), torch's fused attention (``fused_attention``)."""
    with float64_forward(model), fused_attention(model):
        outputs, _ = _run_torch(model, case, torch.float64, on_block=on_block)
    return outputs


def _ignore(block: int, state: torch.Tensor) -> None:
    """An ``on_block`` that keeps nothing."""


def _block_names(count: int, parts: Optional[Sequence[tuple]] = None) -> List[str]:
    if not parts:
        return [f"blocks.{i}" for i in range(count)]
    names = []
    for prefix, depth in parts:
        names.extend(f"{prefix}blocks.{i}" for i in range(depth))
    return names


class _OutputErrors:
    """TF's errors on each output, accumulated one sample at a time (max over samples)."""

    def __init__(self, reference: Reference, output_name: str):
        self.reference = reference
        self.output_name = output_name
        self.max_abs: Dict[str, float] = {}  # vs torch fp32, every sample
        self.tf_err: Dict[str, float] = {}   # vs float64, the samples it ran on

    def add(self, index: int, tf_outputs) -> None:
        """Compare TF's outputs for sample ``index`` (batch of 1) with the reference's."""
        reference = self.reference
        tf_outputs = as_outputs(tf_outputs, self.output_name)
        if set(tf_outputs) != set(reference.outputs32):
            raise ParityError(f"{reference.case.name}: outputs {sorted(tf_outputs)}, expected "
                              f"{sorted(reference.outputs32)}")
        for name, tf_out in tf_outputs.items():
            out32 = reference.outputs32[name][index:index + 1]
            if tf_out.shape != out32.shape:
                raise ParityError(f"{reference.case.name}/{name}: output shape {tf_out.shape} "
                                  f"for one sample, expected {out32.shape}")
            self.max_abs[name] = worst(self.max_abs.get(name, 0.0),
                                       max_abs_diff(tf_out, out32))
            if index < reference.float64_samples:
                out64 = reference.outputs64[name][index:index + 1]
                self.tf_err[name] = worst(self.tf_err.get(name, 0.0),
                                          max_abs_diff(tf_out, out64))

    def finish(self, report: "ParityReport", tolerance: float) -> None:
        case = self.reference.case.name
        for name, (scale32, scale, torch_err) in self.reference.output_stats.items():
            max_abs_, tf_err = self.max_abs[name], self.tf_err.get(name, np.nan)
            # fp32 rounding grows with the magnitude of what is computed: outputs larger than 1
            # (raw token features reach ~10) get the same tolerance relative to their size
            limit = tolerance * max(1.0, scale)
            # against float64 where it ran, against torch fp32 on every sample (whose own
            # error against float64 is 10 x below the tolerance: docs/PARITY.md); a
            # reference without a float64 run (``keras_reference``) holds max_abs alone
            exact = self.reference.float64_samples > 0
            passed = bool(np.isfinite(max_abs_) and max_abs_ <= limit
                          and (not exact or (np.isfinite(tf_err) and tf_err <= limit)))
            report.outputs.append(OutputComparison(
                case, name, max_abs_, max_abs_ / (scale32 or 1.0), tf_err, torch_err, tolerance,
                limit, passed))


def check_parity(run_tf: Callable[[Case], tuple], references: Sequence[Reference],
                 tolerance: float, block_parts: Optional[Sequence[tuple]] = None,
                 output_name: str = "logits") -> ParityReport:
    """Compare TF (``run_tf(case) -> (output, hidden_states)``) with the reference.

    ``run_tf`` is called one sample at a time; each block's error is the max over samples.
    Returns a report; call ``report.raise_if_failed()`` to turn a failure into ParityError.
    """
    report = ParityReport(tolerance=tolerance)
    for reference in references:
        outputs = _OutputErrors(reference, output_name)
        states = reference.states
        # per block, the max over samples: against float64's states / torch fp32's
        against64: Optional[List[float]] = None
        against32: Optional[List[float]] = None
        for index, one in enumerate(reference.case.samples()):
            tf_out, tf_hidden = run_tf(one)
            tf_hidden = list(tf_hidden)
            outputs.add(index, tf_out)
            del tf_out
            if len(tf_hidden) != len(states):
                raise ParityError(f"{reference.case.name}: TF model returned {len(tf_hidden)} "
                                  f"block states, the reference {len(states)}")
            errors = []
            for block, h_tf in enumerate(tf_hidden):
                h_ref = states.get(block, index)
                h_tf = np.asarray(h_tf)
                errors.append(max_abs_diff(h_tf, h_ref) if h_tf.shape == h_ref.shape
                              else np.inf)
                tf_hidden[block] = None  # each TF state is let go once compared
            del tf_hidden
            if index < reference.float64_samples:
                against64 = errors if against64 is None else list(map(worst, against64, errors))
            else:
                against32 = errors if against32 is None else list(map(worst, against32, errors))
        outputs.finish(report, tolerance)
        names = _block_names(len(states), block_parts)
        for block, (name, scale, err32) in enumerate(zip(names, states.scales,
                                                         reference.hidden_err32)):
            # TF's and torch fp32's errors are each about err32 with a right mapping, so TF
            # against torch fp32 is within 2 x err32 of it: the same bound holds with room
            limit = DIVERGENCE_FACTOR * err32 + 1e-6 * scale
            tf_err = against64[block]
            tf_err32 = None if against32 is None else against32[block]
            diverged = not (tf_err <= limit) or (tf_err32 is not None and not tf_err32 <= limit)
            report.blocks.append(BlockComparison(reference.case.name, name, tf_err, err32,
                                                 diverged, tf_err32))
    return report


def check_outputs(run: Callable[[Case], np.ndarray], references: Sequence[Reference],
                  tolerance: float, what: str, output_name: str = "logits") -> ParityReport:
    """Parity of final outputs only (for reloaded artifacts), one sample at a time; raises
    ParityError on failure."""
    report = ParityReport(tolerance=tolerance)
    for reference in references:
        outputs = _OutputErrors(reference, output_name)
        for index, one in enumerate(reference.case.samples()):
            outputs.add(index, run(one))
        outputs.finish(report, tolerance)
    report.raise_if_failed(what)
    return report


def keras_reference(run: Callable[[Case], Dict[str, np.ndarray]], cases: Sequence[Case],
                    tolerance: float, output_name: str = "logits"
                    ) -> Tuple[List[Reference], ParityReport]:
    """The reference of an export without a torch model (``converter.keras_export``): the
    in-memory Keras model's own float32 outputs (``run(case)``, one sample at a time), no
    float64 run and no block states; the reload checks hold each artifact to them within
    ``tolerance`` (``check_outputs``). Also returns the in-memory model's report against its
    own reference (errors 0), which the variable-proved artifacts share."""
    references, report = [], ParityReport(tolerance=tolerance)
    for case in cases:
        parts = [as_outputs(run(one), output_name) for one in case.samples()]
        outputs32 = _concat(parts)
        empty = {name: value[:0].astype(np.float64) for name, value in outputs32.items()}
        reference = Reference(case, outputs32, empty, [], None)
        errors = _OutputErrors(reference, output_name)
        for index, part in enumerate(parts):
            errors.add(index, part)
        errors.finish(report, tolerance)
        references.append(reference)
    return references, report


# --- fingerprints: a compact record of the reference, to re-check artifacts later -------------

FINGERPRINT_SAMPLES = 512


def _sample_indices(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    count = min(FINGERPRINT_SAMPLES, size)
    return np.sort(rng.choice(size, size=count, replace=False))


def output_fingerprint(output: np.ndarray, seed: int = 0) -> dict:
    """Shape plus the float64 reference values at seeded sample positions (JSON-able).

    An artifact whose output is within tolerance of the reference everywhere is within it at
    these positions; a wrong weight moves essentially every output, so it shows here too.
    """
    flat = np.asarray(output, dtype=np.float64).ravel()
    index = _sample_indices(flat.size, seed)
    return {"shape": list(output.shape), "sample_seed": seed,
            "scale": max(1.0, float(np.max(np.abs(flat)))),
            "values": [float(v) for v in flat[index]]}


def fingerprint_error(output: np.ndarray, fingerprint: dict) -> float:
    """Max abs difference between ``output`` and a fingerprint, divided by max(1, the output's
    magnitude) as the parity limit is, so it compares directly with the entry's tolerance
    (inf on a shape mismatch)."""
    if list(np.shape(output)) != fingerprint["shape"]:
        return float("inf")
    flat = np.asarray(output, dtype=np.float64).ravel()
    index = _sample_indices(flat.size, fingerprint["sample_seed"])
    error = float(np.max(np.abs(flat[index] - np.asarray(fingerprint["values"]))))
    return error / fingerprint["scale"]


def reference_fingerprints(references: Sequence[Reference]) -> Dict[str, Dict[str, dict]]:
    """{case: {output: fingerprint}} of the reference outputs (float64 where it ran, torch
    fp32 on the other samples), for the report."""
    return {ref.case.name: {name: output_fingerprint(ref.best(name), seed=i)
                            for i, name in enumerate(ref.outputs32)}
            for ref in references}
