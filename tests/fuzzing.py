"""Seeded corruptions of valid checkpoints, and a harness that runs the CLI on each.

The generator (``make_case``) starts from a few valid tiny checkpoints (``make_bases``) and
turns seed ``n`` into one damaged copy: bit flips, truncation, zeroed ranges, zip members
dropped or garbled, wrong containers, dtypes and shapes, NaN / Inf / overflowing values,
non-tensor values, broken safetensors headers, broken ``config.json`` files, folders where
files are expected. The same seed always gives the same bytes.

The product is driven only through its public surface, the ``videomae-convert`` command
line: ``run_case_in_child`` runs it in a child process (forked from a parent that imported
``converter.cli`` once, or a fresh interpreter), ``run_case_in_process`` through click's
CliRunner (fast, for the test suite). ``classify`` turns what a run left behind into one of
``OUTCOMES``. Used by ``tests/test_fuzz.py`` and ``scripts/fuzz.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

# What a run can end as. Only the first two are acceptable.
OUTCOMES = ("converted", "clean error", "traceback", "crash", "hang", "partial artifact",
            "leftover temp")
GOOD_OUTCOMES = ("converted", "clean error")
# categories whose damage leaves no valid checkpoint of the entry (a tensor gone, renamed or
# added, a value that is no tensor, a pickle that runs code, no file), so converting one is a
# fault too; and the control, which must convert. The others (bit flips in tensor data, a
# transposed square tensor, an fp16 copy...) may be valid checkpoints of another model.
NEVER_CONVERTS = ("truncation", "wrong container", "dropped tensor", "renamed tensor",
                  "extra tensor", "non-tensor value", "unsafe pickle", "safetensors header",
                  "folder for file")
MUST_CONVERT = ("unchanged",)


def expected_outcomes(category: str) -> Tuple[str, ...]:
    """The outcomes a case of ``category`` may end in."""
    if category in NEVER_CONVERTS:
        return ("clean error",)
    if category in MUST_CONVERT:
        return ("converted",)
    return GOOD_OUTCOMES
ARTIFACT_PREFIX = "TFVideoMAE_"

# Corruptions whose clean handling needs every tensor's name, shape and dtype checked
# against the entry before torch's load_state_dict or the torch forward sees it (issue 13's
# "check names, shapes and dtypes" fix, done on the `structure` branch). Until that merges
# they may end as a torch traceback; everything else must already be clean.
NEEDS_NAME_SHAPE_DTYPE_CHECK = ("dtype", "shape", "dropped tensor", "renamed tensor",
                                "extra tensor")


@dataclass
class FuzzCase:
    """One corrupted checkpoint: what was done, where it is, how to convert it."""

    seed: int
    category: str
    description: str
    path: str
    mode: str = "FT"
    # the category's clean handling waits on the name/shape/dtype pre-check (see above)
    needs_name_check: bool = False

    def cli_args(self, out_dir: str) -> List[str]:
        return ["--size", "T", "--mode", self.mode, "--checkpoint", self.path, "--out", out_dir,
                "--quiet"]


# What torch says when a tensor's name, shape or dtype reaches load_state_dict or the forward
# unchecked: the traceback the name/shape/dtype pre-check removes (also reachable from other
# categories, e.g. a bit flip inside a key of a legacy pickle)
NAME_CHECK_TRACEBACKS = ("Missing key(s) in state_dict", "Unexpected key(s) in state_dict",
                         "size mismatch for", "While copying the parameter named",
                         "must have the same dtype")


@dataclass
class Outcome:
    case: FuzzCase
    outcome: str
    exit_code: Optional[int]
    seconds: float
    detail: str  # the error line, or what was wrong

    @property
    def waits_on_name_check(self) -> bool:
        """A traceback the name/shape/dtype pre-check (structure branch) is to remove."""
        return self.outcome == "traceback" and (
            self.case.needs_name_check or any(t in self.detail for t in NAME_CHECK_TRACEBACKS))


# --- valid starting points --------------------------------------------------------------------

def _test_helpers():
    """The transformers-naming helpers of the test suite (written independently of
    converter.hf_format)."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import test_hf_format

    return test_hf_format


def make_bases(folder: str, seed: int = 0) -> Dict[str, Tuple[str, str]]:
    """Valid tiny checkpoints in every layout the reader takes: name -> (path, mode)."""
    from converter.synthetic import random_state_dict, upstream_container
    from converter.zoo import get_entry
    import torch_reference

    os.makedirs(folder, exist_ok=True)
    helpers = _test_helpers()
    ft = get_entry("TFVideoMAE_T_K400_4x32_FT")
    pt = get_entry("TFVideoMAE_T_K400_4x32_PT")
    with torch.device("meta"):
        ft_model = torch_reference.VisionTransformer(**ft.model_config())
        pt_model = torch_reference.PretrainVisionTransformer(**pt.model_config())
    ft_state = random_state_dict(ft_model, seed)
    pt_state = random_state_dict(pt_model, seed)
    bases = {}
    path = os.path.join(folder, "ft_deepspeed.pth")
    torch.save(upstream_container(ft, ft_state), path)
    bases["pth"] = (path, "FT")
    path = os.path.join(folder, "pt_model.pth")
    torch.save(upstream_container(pt, pt_state), path)
    bases["pth_pt"] = (path, "PT")
    path = os.path.join(folder, "ft_legacy.pth")
    torch.save(ft_state, path, _use_new_zipfile_serialization=False)
    bases["legacy"] = (path, "FT")
    from safetensors.torch import save_file

    path = os.path.join(folder, "ft_upstream.safetensors")
    save_file({k: v.contiguous() for k, v in ft_state.items()}, path)
    bases["safetensors"] = (path, "FT")
    hf_folder = os.path.join(folder, "ft_transformers")
    helpers.write_transformers_folder(hf_folder, helpers.to_transformers(ft_state),
                                      helpers.hf_config(ft))
    bases["transformers"] = (hf_folder, "FT")
    return bases


def base_state(bases: Dict[str, Tuple[str, str]], name: str) -> dict:
    """The state dict of a base (upstream names; transformers names for that base)."""
    path, _ = bases[name]
    if name == "transformers":
        from safetensors.torch import load_file

        return load_file(os.path.join(path, "model.safetensors"))
    if name == "safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    return loaded.get("module", loaded.get("model", loaded))


# --- byte-level damage ------------------------------------------------------------------------

def _weights_file(base_path: str) -> str:
    return os.path.join(base_path, "model.safetensors") if os.path.isdir(base_path) \
        else base_path


def _copy_base(bases, name: str, case_dir: str) -> Tuple[str, str]:
    """A copy of base ``name`` in ``case_dir``; returns (path to pass, file to damage)."""
    source, _ = bases[name]
    target = os.path.join(case_dir, os.path.basename(source))
    if os.path.isdir(source):
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target, _weights_file(target)


def _edit_bytes(path: str, edit: Callable[[bytearray], bytearray]) -> None:
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    with open(path, "wb") as handle:
        handle.write(edit(data))


def bit_flips(rng, bases, case_dir):
    name = rng.choice(sorted(bases))
    path, target = _copy_base(bases, name, case_dir)
    count = rng.choice([1, 1, 2, 4, 16])
    size = os.path.getsize(target)
    # half the time aim at the first 4 KiB, where headers and the pickle live
    positions = [rng.randrange(min(size, 4096) if rng.random() < 0.5 else size)
                 for _ in range(count)]

    def edit(data):
        for position in positions:
            data[position] ^= 1 << rng.randrange(8)
        return data
    _edit_bytes(target, edit)
    return path, bases[name][1], f"{count} bit(s) flipped in {name} at {positions[:4]}"


def truncation(rng, bases, case_dir):
    name = rng.choice(sorted(bases))
    path, target = _copy_base(bases, name, case_dir)
    size = os.path.getsize(target)
    keep = rng.choice([0, 1, 7, 8, 64, rng.randrange(size), size - 1, size // 2])
    _edit_bytes(target, lambda data: data[:keep])
    return path, bases[name][1], f"{name} cut to {keep} of {size} bytes"


def zeroed_range(rng, bases, case_dir):
    name = rng.choice(sorted(bases))
    path, target = _copy_base(bases, name, case_dir)
    size = os.path.getsize(target)
    start = rng.randrange(size)
    length = rng.choice([1, 8, 512, 4096, size])
    stop = min(size, start + length)

    def edit(data):
        data[start:stop] = bytes(stop - start)
        return data
    _edit_bytes(target, edit)
    return path, bases[name][1], f"{name} bytes {start}..{stop} zeroed"


def _rewrite_zip(source: str, target: str, change: Callable[[str, bytes], Optional[bytes]]):
    """Copy a zip member by member; ``change(name, data)`` returns new data or None (drop)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(info, data)


def zip_member_dropped(rng, bases, case_dir):
    name = rng.choice(["pth", "pth_pt"])
    source, mode = bases[name]
    with zipfile.ZipFile(source) as archive:
        members = archive.namelist()
    victim = rng.choice(members)
    path = os.path.join(case_dir, os.path.basename(source))
    _rewrite_zip(source, path, lambda member, data: None if member == victim else data)
    return path, mode, f"{name} without zip member {victim}"


def zip_member_garbled(rng, bases, case_dir):
    name = rng.choice(["pth", "pth_pt"])
    source, mode = bases[name]
    with zipfile.ZipFile(source) as archive:
        members = archive.namelist()
    victim = rng.choice(members + [m for m in members if m.endswith("data.pkl")] * 4)
    how = rng.choice(["random", "shorter", "longer", "empty"])

    def change(member, data):
        if member != victim:
            return data
        if how == "random":
            return bytes(rng.randrange(256) for _ in range(len(data)))
        if how == "shorter":
            return data[: len(data) // 2]
        if how == "longer":
            return data + data[:64]
        return b""
    path = os.path.join(case_dir, os.path.basename(source))
    _rewrite_zip(source, path, change)
    return path, mode, f"{name} with zip member {victim} {how}"


# --- structure-level damage (re-saved with torch.save / safetensors) --------------------------

def _save_like(bases, name: str, state: dict, case_dir: str, container=None) -> str:
    """Save ``state`` the way base ``name`` was saved (or ``container`` as a .pth)."""
    source, _ = bases[name]
    if container is not None or name in ("pth", "pth_pt", "legacy"):
        path = os.path.join(case_dir, os.path.basename(source) if container is None
                            else "checkpoint.pth")
        if container is None:
            loaded = torch.load(source, map_location="cpu", weights_only=False)
            if isinstance(loaded, dict) and ("module" in loaded or "model" in loaded):
                key = "module" if "module" in loaded else "model"
                container = dict(loaded, **{key: state})
            else:
                container = state
        torch.save(container, path, _use_new_zipfile_serialization=name != "legacy")
        return path
    from safetensors.torch import save_file

    if name == "transformers":
        folder = os.path.join(case_dir, os.path.basename(source))
        shutil.copytree(source, folder)
        save_file({k: v.contiguous() for k, v in state.items()},
                  os.path.join(folder, "model.safetensors"))
        return folder
    path = os.path.join(case_dir, os.path.basename(source))
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def _tensor_base(rng, bases):
    name = rng.choice(sorted(bases))
    state = dict(base_state(bases, name))
    return name, state, rng.choice(sorted(state))


def wrong_container(rng, bases, case_dir):
    state = base_state(bases, "pth")
    kind = rng.choice(["list", "tensor", "int", "string", "no tensors", "empty dict",
                       "nested twice", "unknown key", "tuple", "None"])
    container = {
        "list": lambda: list(state.values()),
        "tensor": lambda: torch.zeros(3),
        "int": lambda: 7,
        "string": lambda: "model",
        "no tensors": lambda: {"epoch": 3, "args": None},
        "empty dict": lambda: {},
        "nested twice": lambda: {"module": {"module": state}},
        "unknown key": lambda: {"weights": state, "epoch": 1},
        "tuple": lambda: (state, 1),
        "None": lambda: None,
    }[kind]()
    return _save_like(bases, "pth", {}, case_dir, container=container), "FT", \
        f"container is {kind}"


FUZZ_DTYPES = (torch.int32, torch.int64, torch.int8, torch.uint8, torch.bool, torch.complex64,
               torch.float16, torch.bfloat16, torch.float64)


def wrong_dtype(rng, bases, case_dir):
    name, state, victim = _tensor_base(rng, bases)
    dtype = rng.choice(FUZZ_DTYPES)
    if name in ("safetensors", "transformers") and dtype == torch.complex64:
        dtype = torch.int16  # safetensors stores no complex numbers
    state[victim] = state[victim].to(dtype)
    return _save_like(bases, name, state, case_dir), bases[name][1], \
        f"{name}: {victim} stored as {dtype}"


def wrong_shape(rng, bases, case_dir):
    name, state, victim = _tensor_base(rng, bases)
    tensor = state[victim]
    how = rng.choice(["scalar", "flattened", "extra dim", "row dropped", "transposed",
                      "empty"])
    if how == "scalar":
        new = tensor.reshape(-1)[0].clone()
    elif how == "flattened":
        new = tensor.reshape(-1).clone()
    elif how == "extra dim":
        new = tensor.unsqueeze(0).clone()
    elif how == "row dropped":
        new = tensor[:-1].clone() if tensor.shape[0] > 1 else tensor.reshape(-1)[:0].clone()
    elif how == "transposed" and tensor.dim() >= 2 and tensor.shape[0] != tensor.shape[-1]:
        new = tensor.transpose(0, -1).contiguous()
    else:
        new = torch.zeros((0,) + tuple(tensor.shape[1:]))
    state[victim] = new
    return _save_like(bases, name, state, case_dir), bases[name][1], \
        f"{name}: {victim} {how} {tuple(tensor.shape)} -> {tuple(new.shape)}"


def dropped_tensor(rng, bases, case_dir):
    name, state, victim = _tensor_base(rng, bases)
    del state[victim]
    return _save_like(bases, name, state, case_dir), bases[name][1], f"{name}: {victim} dropped"


def renamed_tensor(rng, bases, case_dir):
    name, state, victim = _tensor_base(rng, bases)
    new_name = rng.choice([victim + "_x", victim.replace(".", "_", 1), "x." + victim,
                           victim.upper()])
    state[new_name] = state.pop(victim)
    return _save_like(bases, name, state, case_dir), bases[name][1], \
        f"{name}: {victim} renamed {new_name}"


def extra_tensor(rng, bases, case_dir):
    name, state, victim = _tensor_base(rng, bases)
    extra = rng.choice(["blocks.99.mlp.fc1.weight", "pos_embed", "unexpected", "head.extra"])
    state[extra] = torch.randn(3, 3)
    return _save_like(bases, name, state, case_dir), bases[name][1], f"{name}: extra {extra}"


def bad_values(rng, bases, case_dir):
    name, state, victim = _tensor_base(rng, bases)
    tensor = state[victim].clone().float()
    flat = tensor.reshape(-1)
    index = rng.randrange(flat.numel())
    how = rng.choice(["nan", "inf", "-inf", "float64 overflow", "huge", "all nan"])
    if how == "nan":
        flat[index] = float("nan")
    elif how == "inf":
        flat[index] = float("inf")
    elif how == "-inf":
        flat[index] = float("-inf")
    elif how == "all nan":
        tensor.fill_(float("nan"))
    elif how == "huge":
        flat[index] = 3e38  # finite in float32; overflows once multiplied
    if how == "float64 overflow":
        tensor = tensor.double()
        tensor.reshape(-1)[index] = 1e300  # finite in float64, inf once cast to float32
    state[victim] = tensor
    return _save_like(bases, name, state, case_dir), bases[name][1], \
        f"{name}: {victim}[{index}] {how}"


def non_tensor_value(rng, bases, case_dir):
    name = rng.choice(["pth", "pth_pt", "legacy"])
    state = dict(base_state(bases, name))
    victim = rng.choice(sorted(state))
    value = rng.choice([3, 2.5, "weights", None, [1, 2], (torch.zeros(2),), {"a": 1},
                        b"bytes"])
    state[victim] = value
    return _save_like(bases, name, state, case_dir), bases[name][1], \
        f"{name}: {victim} is {type(value).__name__}"


def unsafe_pickle(rng, bases, case_dir):
    how = rng.choice(["numpy array", "os.system", "eval"])
    state = dict(base_state(bases, "pth"))
    victim = rng.choice(sorted(state))
    if how == "numpy array":
        state[victim] = state[victim].numpy()
        container = {"module": state}
    else:
        container = {"module": state, "hook": _Evil(how)}
    path = os.path.join(case_dir, "checkpoint.pth")
    torch.save(container, path)
    return path, "FT", f"pickle with {how}"


class _Evil:
    """Pickles as a call to a dangerous global (never unpickled by the converter)."""

    def __init__(self, how):
        self.how = how

    def __reduce__(self):
        if self.how == "os.system":
            return (os.system, ("echo pwned > /dev/null",))
        return (eval, ("1+1",))


def _safetensors_parts(path: str) -> Tuple[dict, bytes]:
    with open(path, "rb") as handle:
        data = handle.read()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]


def _write_safetensors(path: str, header, body: bytes, length: Optional[int] = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw) if length is None else length) + raw + body)


def safetensors_header(rng, bases, case_dir):
    name = rng.choice(["safetensors", "transformers"])
    path, target = _copy_base(bases, name, case_dir)
    header, body = _safetensors_parts(target)
    tensors = sorted(k for k in header if k != "__metadata__")
    victim = rng.choice(tensors)
    how = rng.choice(["length past end", "length huge", "length zero", "offsets past end",
                      "offsets reversed", "not json", "dtype unknown", "shape mismatch",
                      "header list", "overlapping offsets"])
    length = None
    if how == "length past end":
        length = os.path.getsize(target) + rng.randrange(1, 1 << 20)
    elif how == "length huge":
        length = (1 << 63) - 1
    elif how == "length zero":
        length = 0
    elif how == "offsets past end":
        begin, end = header[victim]["data_offsets"]
        header[victim]["data_offsets"] = [begin + len(body), end + len(body)]
    elif how == "offsets reversed":
        begin, end = header[victim]["data_offsets"]
        header[victim]["data_offsets"] = [end, begin]
    elif how == "dtype unknown":
        header[victim]["dtype"] = "X9"
    elif how == "shape mismatch":
        header[victim]["shape"] = [s * 2 for s in header[victim]["shape"]] or [2]
    elif how == "overlapping offsets":
        other = rng.choice(tensors)
        header[victim]["data_offsets"] = header[other]["data_offsets"]
        header[victim]["shape"] = header[other]["shape"]
        header[victim]["dtype"] = header[other]["dtype"]
    if how == "not json":
        header = b"{not json" + bytes(rng.randrange(256) for _ in range(16))
    elif how == "header list":
        header = [1, 2, 3]
    _write_safetensors(target, header, body, length)
    return path, "FT", f"{name}: safetensors header {how} ({victim})"


def broken_config(rng, bases, case_dir):
    path, _ = _copy_base(bases, "transformers", case_dir)
    config_path = os.path.join(path, "config.json")
    with open(config_path) as handle:
        config = json.load(handle)
    how = rng.choice(["not json", "empty", "list", "binary", "hidden_size", "heads",
                      "layers", "missing", "folder", "null values", "string numbers"])
    text: Optional[bytes] = None
    if how == "not json":
        text = b'{"hidden_size": 48,'
    elif how == "empty":
        text = b""
    elif how == "list":
        text = b"[1, 2]"
    elif how == "binary":
        text = bytes(rng.randrange(256) for _ in range(64))
    elif how == "hidden_size":
        config["hidden_size"] = rng.choice([0, -1, 47, 96, 768])
    elif how == "heads":
        config["num_attention_heads"] = rng.choice([0, 5, 7, 48, -3])
    elif how == "layers":
        config["num_hidden_layers"] = rng.choice([0, 1, 5])
    elif how == "null values":
        config = {k: None for k in config}
    elif how == "string numbers":
        config = {k: str(v) for k, v in config.items()}
    if how == "missing":
        os.remove(config_path)
    elif how == "folder":
        os.remove(config_path)
        os.makedirs(config_path)
    else:
        with open(config_path, "wb") as handle:
            handle.write(text if text is not None else json.dumps(config).encode())
    return path, "FT", f"transformers config.json {how}"


def folder_for_file(rng, bases, case_dir):
    how = rng.choice(["empty folder", "weights file is a folder", "config only",
                      "pth is a folder", "symlink loop", "missing path"])
    path = os.path.join(case_dir, "ckpt")
    if how == "empty folder":
        os.makedirs(path)
    elif how == "weights file is a folder":
        os.makedirs(os.path.join(path, "model.safetensors"))
        shutil.copyfile(os.path.join(bases["transformers"][0], "config.json"),
                        os.path.join(path, "config.json"))
    elif how == "config only":
        os.makedirs(path)
        shutil.copyfile(os.path.join(bases["transformers"][0], "config.json"),
                        os.path.join(path, "config.json"))
    elif how == "pth is a folder":
        path = os.path.join(case_dir, "checkpoint.pth")
        os.makedirs(path)
    elif how == "symlink loop":
        path = os.path.join(case_dir, "loop.pth")
        os.symlink(path, path)
    else:
        path = os.path.join(case_dir, "nothing-here.pth")
    return path, "FT", how


def unchanged(rng, bases, case_dir):
    """A control: the base itself must convert."""
    name = rng.choice(sorted(bases))
    path, _ = _copy_base(bases, name, case_dir)
    return path, bases[name][1], f"{name} unchanged"


# name -> generator; the seed picks one in turn, so every category gets its share
CATEGORIES: Dict[str, Callable] = {
    "bit flips": bit_flips,
    "truncation": truncation,
    "zeroed range": zeroed_range,
    "zip member dropped": zip_member_dropped,
    "zip member garbled": zip_member_garbled,
    "wrong container": wrong_container,
    "dtype": wrong_dtype,
    "shape": wrong_shape,
    "dropped tensor": dropped_tensor,
    "renamed tensor": renamed_tensor,
    "extra tensor": extra_tensor,
    "bad values": bad_values,
    "non-tensor value": non_tensor_value,
    "unsafe pickle": unsafe_pickle,
    "safetensors header": safetensors_header,
    "broken config.json": broken_config,
    "folder for file": folder_for_file,
    "unchanged": unchanged,
}


def make_case(seed: int, bases: Dict[str, Tuple[str, str]], case_dir: str,
              categories: Optional[List[str]] = None) -> FuzzCase:
    """Case ``seed``: its category is ``categories[seed % len]``; its damage comes from a
    ``random.Random(seed)``, so a seed always gives the same file."""
    names = categories or list(CATEGORIES)
    category = names[seed % len(names)]
    rng = random.Random(seed)
    os.makedirs(case_dir, exist_ok=True)
    path, mode, description = CATEGORIES[category](rng, bases, case_dir)
    return FuzzCase(seed, category, description, path, mode,
                    needs_name_check=category in NEEDS_NAME_SHAPE_DTYPE_CHECK)


def generate_cases(work: str, seeds: List[int],
                   categories: Optional[List[str]] = None) -> List[FuzzCase]:
    """Bases in ``work/bases``, case ``n`` in ``work/case{n}/in``."""
    bases = make_bases(os.path.join(work, "bases"))
    return [make_case(seed, bases, os.path.join(work, f"case{seed}", "in"), categories)
            for seed in seeds]


def generate_cases_elsewhere(work: str, seeds: List[int],
                             categories: Optional[List[str]] = None) -> List[FuzzCase]:
    """``generate_cases`` in a spawned interpreter: a process that later forks must not have
    run torch operations itself (a child forked after them can hang in torch's threads)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(generate_cases, (work, list(seeds), categories))


# --- judging a run ----------------------------------------------------------------------------

# lines TensorFlow / absl print on stderr at import, whatever the run does
_NOISE = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000",
          "To enable the following instructions")


def error_lines(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(_NOISE)]


def classify(case: FuzzCase, out_dir: str, exit_code: Optional[int], stderr: str,
             seconds: float, timed_out: bool = False) -> Outcome:
    """What the run left: see ``OUTCOMES``. ``exit_code`` < 0 means killed by that signal."""
    def result(outcome, detail):
        return Outcome(case, outcome, exit_code, seconds, detail)

    if timed_out:
        return result("hang", f"no exit after {seconds:.0f}s")
    if exit_code is not None and exit_code < 0:
        return result("crash", f"killed by signal {-exit_code}")
    lines = error_lines(stderr)
    if "Traceback (most recent call last)" in stderr:
        tail = lines[-1] if lines else ""
        return result("traceback", tail[:300])
    present = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
    hidden = [p for p in present if not p.startswith(ARTIFACT_PREFIX)]
    artifacts = [p for p in present if p.startswith(ARTIFACT_PREFIX)]
    if exit_code == 0:
        if len(artifacts) != 4:
            return result("partial artifact", f"exit 0 with {artifacts}")
        if hidden:
            return result("leftover temp", f"{hidden}")
        return result("converted", "")
    if artifacts:
        return result("partial artifact", f"exit {exit_code} left {artifacts}")
    if hidden:
        return result("leftover temp", f"exit {exit_code} left {hidden}")
    if exit_code in (1, 2) and len(lines) == 1 and lines[0].startswith("error:"):
        return result("clean error", lines[0][:300])
    return result("traceback", f"exit {exit_code}, stderr: {' | '.join(lines)[-300:]}")


# --- running the command line -----------------------------------------------------------------

def run_case_in_process(case: FuzzCase, out_dir: str) -> Outcome:
    """Run through click's CliRunner in this process (no crash or hang detection)."""
    from click.testing import CliRunner

    from converter.cli import main

    started = time.perf_counter()
    result = CliRunner().invoke(main, case.cli_args(out_dir))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(["Traceback (most recent call last):\n"]
                          + traceback.format_exception(result.exception))
    return classify(case, out_dir, result.exit_code, stderr, time.perf_counter() - started)


def child_environment() -> Dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    return env


def run_case_fresh(case: FuzzCase, out_dir: str, timeout: float) -> Outcome:
    """Run ``python -m converter.cli`` in a new interpreter (slow: ~10 s of imports)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "converter.cli"] + case.cli_args(out_dir)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=child_environment(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if expired.stderr else ""
        return classify(case, out_dir, None, stderr, time.perf_counter() - started, True)
    return classify(case, out_dir, done.returncode, done.stderr, time.perf_counter() - started)


def run_case_forked(case: FuzzCase, out_dir: str, timeout: float, log_dir: str) -> Outcome:
    """Fork this process (which imported ``converter.cli`` but ran nothing in TensorFlow),
    run the CLI's ``main`` in the child with its output in files, wait with a timeout."""
    from converter.cli import main

    os.makedirs(log_dir, exist_ok=True)
    err_path = os.path.join(log_dir, f"case{case.seed}.stderr")
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            with open(err_path, "w") as err, open(os.devnull, "w") as null:
                os.dup2(err.fileno(), 2)
                os.dup2(null.fileno(), 1)
                os.setpgid(0, 0)
                try:
                    main(args=case.cli_args(out_dir), prog_name="videomae-convert")
                    code = 0
                except SystemExit as done:
                    code = done.code if isinstance(done.code, int) else 1
                except BaseException:
                    traceback.print_exc()
                    code = 1
                sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = started + timeout
    timed_out = False
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        if time.perf_counter() > deadline:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = None
            break
        time.sleep(0.05)
    code = None if status is None else os.waitstatus_to_exitcode(status)
    with open(err_path, errors="replace") as handle:
        stderr = handle.read()
    return classify(case, out_dir, code, stderr, time.perf_counter() - started, timed_out)


def format_table(outcomes: List[Outcome]) -> str:
    """Counts per category and outcome, then one line per bad case."""
    categories = sorted({o.case.category for o in outcomes})
    counts = {c: {k: 0 for k in OUTCOMES} for c in categories}
    for o in outcomes:
        counts[o.case.category][o.outcome] += 1
    width = max(len(c) for c in categories + ["category", "total"])
    lines = ["category".ljust(width) + " | " + " | ".join(OUTCOMES),
             "-" * width + "-|-" + "-|-".join("-" * len(k) for k in OUTCOMES)]
    for c in categories + ["total"]:
        row = counts[c] if c != "total" else {
            k: sum(counts[x][k] for x in categories) for k in OUTCOMES}
        lines.append(c.ljust(width) + " | "
                     + " | ".join(str(row[k]).rjust(len(k)) for k in OUTCOMES))
    bad = [o for o in outcomes if o.outcome not in expected_outcomes(o.case.category)]
    waiting = sum(o.waits_on_name_check for o in bad)
    lines.append(f"not clean: {len(bad)}, of which {waiting} wait on the name/shape/dtype "
                 f"pre-check and {len(bad) - waiting} do not")
    if bad:
        lines.append("")
        lines.append("not clean:")
        for o in bad:
            flag = " (waits on the name/shape/dtype check)" if o.waits_on_name_check else ""
            lines.append(f"  seed {o.case.seed} [{o.case.category}] {o.case.description}: "
                         f"{o.outcome}{flag}: {o.detail}")
    return "\n".join(lines)


def scratch_folder(prefix: str = "videomae-fuzz-") -> str:
    return tempfile.mkdtemp(prefix=prefix)



# --- the consumer side: corrupted presets, .keras and .weights.h5 files ----------------------
# What a user downloads is damaged or hostile here, and loaded through ``from_preset``; every
# case must load (a flipped weight byte may still load) or end in one PresetError line.

CONSUMER_ENTRY = "TFVideoMAE_T_K400_4x32_FT"
CONSUMER_KINDS = ("preset", "keras", "weights")
HOSTILE_CLASSES = ({"class_name": "Lambda", "module": "keras.layers", "registered_name": None,
                    "config": {"function": {"class_name": "__lambda__", "config": {}}}},
                   {"class_name": "Exploit", "module": "os", "registered_name": "os>system",
                    "config": {}},
                   {"class_name": "Functional", "module": "keras", "registered_name": "Functional",
                    "config": {}})
CONSUMER_CATEGORIES = ("bit flips", "truncation", "file deleted", "hostile class",
                       "config value")


def make_consumer_bases(folder: str) -> Dict[str, str]:
    """A tiny classifier as a keras-hub preset folder, a ``.keras`` and a ``.weights.h5``."""
    import tf_models
    from tf_models.kerashub_presets import save_zoo_preset

    preset = tf_models.get_preset(CONSUMER_ENTRY)
    model = tf_models.VideoMAEVideoClassifier(**preset.model_config())
    bases = {"preset": os.path.join(folder, "preset"),
             "keras": os.path.join(folder, f"{CONSUMER_ENTRY}.keras"),
             "weights": os.path.join(folder, f"{CONSUMER_ENTRY}.weights.h5")}
    save_zoo_preset(model, preset, bases["preset"])
    model.save(bases["keras"])
    model.save_weights(bases["weights"])
    return bases


def make_consumer_case(seed: int, bases: Dict[str, str], case_dir: str) -> FuzzCase:
    """Seed ``n`` -> one damaged copy of a base (kind ``n % 3``, category ``n // 3 % 5``)."""
    rng = random.Random(seed)
    kind = CONSUMER_KINDS[seed % len(CONSUMER_KINDS)]
    category = CONSUMER_CATEGORIES[(seed // len(CONSUMER_KINDS)) % len(CONSUMER_CATEGORIES)]
    os.makedirs(case_dir, exist_ok=True)
    target = os.path.join(case_dir, os.path.basename(bases[kind]))
    if kind == "preset":
        shutil.copytree(bases[kind], target)
        files = sorted(os.listdir(target))
        victim = os.path.join(target, rng.choice(files))
        configs = [os.path.join(target, n) for n in files if n.endswith(".json")]
    else:
        shutil.copyfile(bases[kind], target)
        victim, configs = target, []
    if category == "bit flips" or (category in ("hostile class", "config value") and not configs):
        data = bytearray(open(victim, "rb").read())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        open(victim, "wb").write(bytes(data))
        description = f"bit flips in {os.path.basename(victim)}"
    elif category == "truncation":
        data = open(victim, "rb").read()
        open(victim, "wb").write(data[:rng.randrange(len(data))])
        description = f"{os.path.basename(victim)} truncated"
    elif category == "file deleted":
        os.remove(victim)
        description = f"{os.path.basename(victim)} deleted"
    else:
        path = rng.choice(configs)
        config = json.load(open(path))
        holders = [d for d in _dicts(config) if isinstance(d.get("config"), dict)]
        holder = rng.choice(holders)
        if category == "hostile class":
            holder["config"]["extra"] = dict(rng.choice(HOSTILE_CLASSES))
        else:
            key = rng.choice(sorted(holder["config"]))
            holder["config"][key] = rng.choice([-1, 0, 10 ** 9, "x", None, [1, 2], 0.5])
        json.dump(config, open(path, "w"))
        description = f"{category} in {os.path.basename(path)}"
    return FuzzCase(seed, category, description, target)


def _dicts(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


def run_consumer_case(case: FuzzCase) -> Outcome:
    """Load the damaged file with ``VideoMAEVideoClassifier.from_preset``: "converted" when it
    loads, "clean error" for one PresetError line, "traceback" for anything else."""
    import tf_models

    start = time.time()
    try:
        tf_models.VideoMAEVideoClassifier.from_preset(case.path, offline=True, progress=False) \
            if not os.path.isdir(case.path) else \
            tf_models.VideoMAEVideoClassifier.from_preset(case.path)
    except tf_models.PresetError as error:
        lines = str(error).splitlines()
        good = len(lines) == 1
        return Outcome(case, "clean error" if good else "traceback", 1, time.time() - start,
                       lines[0] if lines else "")
    except Exception:  # noqa: BLE001  (what the fuzzer is looking for)
        return Outcome(case, "traceback", 1, time.time() - start, traceback.format_exc(limit=3))
    return Outcome(case, "converted", 0, time.time() - start, "loaded")
