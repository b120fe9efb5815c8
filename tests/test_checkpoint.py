"""Reading checkpoint files: upstream layouts, wrapper prefixes, dtypes, and hostile files."""

import argparse
import builtins
import hashlib
import os
import pickle

import torch
from converter.checkpoint import SAFE_GLOBALS, read_checkpoint
from converter.synthetic import random_state_dict, upstream_container, write_synthetic_checkpoint
from converter.errors import CheckpointError, ConversionError
from converter.kinds import build_torch_model

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_state(tiny_entry):
    return random_state_dict(build_torch_model(tiny_entry), seed=2)


def _save(obj, path, **kwargs):
    torch.save(obj, str(path), **kwargs)
    return str(path)


def _assert_same(found, expected):
    assert set(found) == set(expected)
    for name, tensor in expected.items():
        assert found[name].dtype == torch.float32, name
        assert torch.equal(found[name], tensor), name


def _one_line(error):
    message = str(error)
    assert message and "\n" not in message, repr(message)
    return message


# --- layouts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["model", "module", None])
def test_state_dict_found_under_model_module_or_top_level(tiny_state, tmp_path, key):
    container = dict(tiny_state) if key is None else {key: tiny_state, "epoch": 3}
    loaded = read_checkpoint(_save(container, tmp_path / "c.pth"))
    assert loaded.container_key == key
    _assert_same(loaded.state_dict, tiny_state)


def test_model_key_is_preferred_over_module(tiny_state, tmp_path):
    other = {k: v + 1 for k, v in tiny_state.items()}
    loaded = read_checkpoint(_save({"module": other, "model": tiny_state}, tmp_path / "c.pth"))
    assert loaded.container_key == "model"
    _assert_same(loaded.state_dict, tiny_state)


def test_upstream_fine_tune_container_loads(tiny_entry, tiny_state, tmp_path):
    """DeepSpeed's layout: the weights under 'module' beside optimizer/scheduler bookkeeping."""
    path = _save(upstream_container(tiny_entry, tiny_state), tmp_path / "ft.pth")
    loaded = read_checkpoint(path)
    assert loaded.container_key == "module"
    _assert_same(loaded.state_dict, tiny_state)


def test_synthetic_checkpoint_round_trips_and_records_sha256(tiny_entry, tmp_path):
    path = write_synthetic_checkpoint(tiny_entry, str(tmp_path / "s.pth"), seed=4)
    assert not os.path.exists(path + ".partial")
    loaded = read_checkpoint(path)
    _assert_same(loaded.state_dict,
                 random_state_dict(build_torch_model(tiny_entry), seed=4))
    with open(path, "rb") as handle:
        assert loaded.sha256 == hashlib.sha256(handle.read()).hexdigest()
    assert loaded.path == path
    assert loaded.source_dtypes == ["float32"]
    assert loaded.notes == []


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.",
                                    "_orig_mod.module.", "backbone."])
def test_wrapper_prefixes_are_stripped(tiny_state, tmp_path, prefix):
    wrapped = {prefix + k: v for k, v in tiny_state.items()}
    loaded = read_checkpoint(_save({"module": wrapped}, tmp_path / "p.pth"))
    _assert_same(loaded.state_dict, tiny_state)


def test_prefix_on_only_some_keys_is_kept(tiny_state, tmp_path):
    mixed = dict(tiny_state)
    mixed["module.extra"] = torch.ones(2)
    loaded = read_checkpoint(_save({"model": mixed}, tmp_path / "m.pth"))
    assert "module.extra" in loaded.state_dict
    assert "head.weight" in loaded.state_dict


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast_to_fp32_exactly(tiny_state, tmp_path, dtype):
    half = {k: v.to(dtype) for k, v in tiny_state.items()}
    loaded = read_checkpoint(_save({"module": half}, tmp_path / "h.pth"))
    for name, tensor in half.items():
        found = loaded.state_dict[name]
        assert found.dtype == torch.float32
        assert torch.equal(found, tensor.float()), name
        assert torch.equal(found.to(dtype), tensor), name  # nothing lost on the way up
    expected = str(dtype).replace("torch.", "")
    assert loaded.source_dtypes == [expected]
    assert any(expected in note and "float32" in note for note in loaded.notes)


def test_argparse_namespace_args_are_allowed(tiny_state, tmp_path):
    args = argparse.Namespace(model="pretrain_videomae_base_patch16_224", mask_ratio=0.9,
                              num_frames=16, epochs=1601)
    assert argparse.Namespace in SAFE_GLOBALS
    loaded = read_checkpoint(_save({"model": tiny_state, "epoch": 1599, "args": args},
                                   tmp_path / "a.pth"))
    assert loaded.container_key == "model"
    _assert_same(loaded.state_dict, tiny_state)


def test_legacy_non_zip_checkpoint_loads(tiny_state, tmp_path):
    path = _save({"model": tiny_state}, tmp_path / "legacy.pth",
                 _use_new_zipfile_serialization=False)
    _assert_same(read_checkpoint(path).state_dict, tiny_state)


# --- hostile files ---------------------------------------------------------------------------

class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class _Opens:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


HOSTILE = [(_RunsShell, "system"), (_Evals, "eval"), (_Opens, "open")]


@pytest.mark.parametrize("payload,global_name", HOSTILE)
@pytest.mark.parametrize("layout", ["bare", "inside_container", "inside_args", "legacy_format"])
def test_hostile_pickle_is_refused_without_running(tiny_state, tmp_path, payload, global_name,
                                                    layout):
    marker = tmp_path / "marker"
    evil = payload(marker)
    kwargs = {}
    if layout == "bare":
        obj = evil
    elif layout == "inside_container":
        obj = {"model": tiny_state, "epoch": 1, "hook": evil}
    elif layout == "inside_args":
        obj = {"model": tiny_state, "args": argparse.Namespace(model="x", trick=evil)}
    else:
        obj = {"model": tiny_state, "hook": evil}
        kwargs["_use_new_zipfile_serialization"] = False
    path = _save(obj, tmp_path / "evil.pth", **kwargs)

    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = _one_line(caught.value)
    assert message.startswith(path)
    assert "refused" in message
    assert global_name in message
    assert not marker.exists(), "the payload ran"


def test_raw_pickle_with_a_global_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "raw.pkl"
    with open(path, "wb") as handle:
        pickle.dump(_RunsShell(marker), handle, protocol=2)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    message = _one_line(caught.value)
    assert "refused" in message and "system" in message
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_raw_pickle_of_any_protocol_is_refused(tmp_path, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "raw.pkl"
    with open(path, "wb") as handle:
        pickle.dump(_RunsShell(marker), handle, protocol=protocol)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    _one_line(caught.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refusal_message_names_the_global_and_never_advises_unsafe_loading(tmp_path):
    path = tmp_path / "raw.pkl"
    with open(path, "wb") as handle:
        pickle.dump(_RunsShell(tmp_path / "marker"), handle, protocol=4)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    message = str(caught.value)
    assert "weights_only" not in message or "False" not in message
    assert "system" in message


# --- unreadable files ------------------------------------------------------------------------

def test_missing_file_is_a_one_line_error(tmp_path):
    path = str(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = _one_line(caught.value)
    assert path in message and "no such file" in message
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, ConversionError)


def test_empty_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    assert "empty" in _one_line(caught.value)


def test_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(tmp_path))
    assert "folder" in _one_line(caught.value)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_file_is_a_one_line_error(tiny_checkpoint, tmp_path, fraction):
    with open(tiny_checkpoint, "rb") as handle:
        data = handle.read()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    message = _one_line(caught.value)
    assert message.startswith(str(path))
    assert "not a readable PyTorch checkpoint" in message


@pytest.mark.parametrize("content", [b"hello, this is not a checkpoint\n", b"\x00" * 64,
                                     b"PK\x03\x04 not really a zip"])
def test_non_checkpoint_file_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(str(path))
    message = _one_line(caught.value)
    assert message.startswith(str(path))
    assert "Traceback" not in message


@pytest.mark.parametrize("obj,phrase", [
    ([torch.zeros(2)], "list"),
    ({"epoch": 3, "optimizer": None}, "no state dict"),
    ({}, "no state dict"),
])
def test_checkpoint_without_a_state_dict_is_refused(tmp_path, obj, phrase):
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(_save(obj, tmp_path / "x.pth"))
    assert phrase in _one_line(caught.value)


def test_non_tensor_entry_in_state_dict_is_refused(tiny_state, tmp_path):
    state = dict(tiny_state)
    state["blocks.0.attn.scale"] = 0.125
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(_save({"model": state}, tmp_path / "x.pth"))
    assert "blocks.0.attn.scale" in _one_line(caught.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weight_is_refused_naming_the_tensor(tiny_state, tmp_path, bad):
    state = dict(tiny_state)
    poisoned = state["blocks.1.mlp.fc1.weight"].clone()
    poisoned[3, 5] = bad
    state["blocks.1.mlp.fc1.weight"] = poisoned
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(_save({"module": state}, tmp_path / "nan.pth"))
    message = _one_line(caught.value)
    assert "blocks.1.mlp.fc1.weight" in message
    assert "NaN" in message or "Inf" in message


def test_nan_in_fp16_weight_is_refused(tiny_state, tmp_path):
    state = {k: v.half() for k, v in tiny_state.items()}
    state["head.bias"] = state["head.bias"].clone()
    state["head.bias"][0] = float("nan")
    with pytest.raises(CheckpointError, match="head.bias"):
        read_checkpoint(_save({"module": state}, tmp_path / "nan16.pth"))


def test_mapped_pages_hand_back_only_the_checkpoint_and_lose_nothing(tmp_path):
    """Releasing a memory-mapped checkpoint tensor's pages keeps its values (they are read
    from the file again); a tensor that is not in the checkpoint's mapping is left alone."""
    import torch

    from converter.checkpoint import read_checkpoint
    from converter.pages import MappedPages, file_mappings

    path = str(tmp_path / "big.pth")
    torch.save({"model": {"w": torch.arange(1 << 20, dtype=torch.float32),
                          "b": torch.ones(3)}}, path)
    before = file_mappings()
    state = read_checkpoint(path).state_dict
    pages = MappedPages(before, file_mappings(), path)
    # another file's mappings never count, whatever appeared during the load
    assert not MappedPages(before, file_mappings(), str(tmp_path / "other.pth")).ranges
    expected = torch.arange(1 << 20, dtype=torch.float32)
    if not pages.ranges:
        pytest.skip("no /proc/self/maps here: release is a no-op")
    assert all(lo < hi for lo, hi in pages.ranges)
    pages.release(state["w"])
    assert pages.released >= (1 << 22) - 2 * 4096  # all whole pages of a 4 MB tensor
    assert torch.equal(state["w"], expected)
    anonymous = expected.clone()
    pages.release(anonymous)  # not from the file: untouched
    assert torch.equal(anonymous, expected)
    assert pages.released < (1 << 22) + 4096
    pages.release_all()  # every page of the file's mapping: still the same values
    assert torch.equal(state["w"], expected) and torch.equal(state["b"], torch.ones(3))


# --- tensors checked from their metadata before any value is read ---------------------------

class _Storage:
    """A storage record of a hand-written zip checkpoint: its key and declared elements."""

    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _View:
    """Pickles as torch's own rebuild of a tensor: a storage, offset, size and stride, as the
    file declares them (torch checks only the furthest element they reach)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, {})

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _CheckpointPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _write_zip_checkpoint(path, obj, records):
    """A zip checkpoint laid out as torch.save lays one out, with ``records`` (key -> bytes)
    as its storages: for tensors torch.save itself would never write."""
    import io
    import zipfile

    buffer = io.BytesIO()
    _CheckpointPickler(buffer, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, data in records.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return str(path)


def _stride_zero_file(tmp_path, numel):
    """One float stored; ``w`` declares ``numel`` elements over it with stride 0."""
    import struct

    storage = _Storage("0", 1)
    return _write_zip_checkpoint(tmp_path / "stride0.pth",
                                 {"model": {"w": _View(storage, 0, (numel,), (0,))}},
                                 {"0": struct.pack("<f", 1.0)})


@pytest.fixture
def no_value_read(monkeypatch):
    """Fails the test if the reader reads a tensor's values (its upcast and NaN scan)."""
    import converter.checkpoint as checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor's values were read")

    monkeypatch.setattr(checkpoint, "upcast_checked", refuse)


def test_stride_zero_tensor_larger_than_its_storage_is_refused_before_its_values_are_read(
        tmp_path, no_value_read):
    # 1M elements (4 MB) over one stored float: before, the NaN scan read all of them; the
    # same trick at 2**40 elements ate the machine
    path = _stride_zero_file(tmp_path, 1 << 20)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = _one_line(caught.value)
    assert message.startswith(path) and "entry w declares shape (1048576,)" in message
    assert "storage of 1 element" in message and "damaged or crafted" in message
    assert caught.value.exit_code == 2


def test_a_huge_declared_tensor_is_refused_by_describe_too(tmp_path):
    from converter.checkpoint import describe

    path = _stride_zero_file(tmp_path, 1 << 40)  # describe never reads values, old or new
    with pytest.raises(CheckpointError, match=r"entry w declares shape \(1099511627776,\)"):
        describe(path)


def test_genuine_views_into_a_shared_storage_still_load(tmp_path):
    """A tensor torch.save wrote lies within its storage, a view of part of it included."""
    weight = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"w": weight.t(), "b": weight.view(-1)[4:8], "c": weight[1:, ::2]}
    loaded = read_checkpoint(_save({"model": state}, tmp_path / "views.pth"))
    for name, tensor in state.items():
        assert torch.equal(loaded.state_dict[name], tensor), name


def _meta(tensor):
    return torch.empty(tensor.shape, device="meta")


def _nested(tensor):
    return torch.nested.nested_tensor([tensor.reshape(-1)[:2], tensor.reshape(-1)[:3]])


def _quantized(tensor):
    return torch.quantize_per_tensor(tensor, 0.1, 0, torch.qint8)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("reader", ["read_checkpoint", "describe"])
@pytest.mark.parametrize("make, found", [
    (_meta, "is a meta tensor with no data in the file"),
    (lambda t: t.to_sparse(), "is a sparse_coo tensor, expected a dense one"),
    (_nested, "is a nested tensor, expected a plain (dense) tensor"),
    (_quantized, "has dtype qint8, expected float16, bfloat16, float32 or float64"),
    (lambda t: t.to(torch.float8_e4m3fn), "has dtype float8_e4m3fn"),
], ids=["meta", "sparse", "nested", "quantized", "float8"])
def test_tensor_the_reader_cannot_read_is_one_line_naming_it(tiny_state, tmp_path, reader,
                                                            make, found):
    import converter.checkpoint as checkpoint

    state = dict(tiny_state)
    state["head.weight"] = make(state["head.weight"])
    path = _save({"module": state}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError) as caught:
        getattr(checkpoint, reader)(path)
    message = _one_line(caught.value)
    assert message.startswith(path) and f"entry head.weight {found}" in message, message


@pytest.mark.parametrize("container", ["model", None])
@pytest.mark.parametrize("reader", ["read_checkpoint", "describe"])
def test_a_key_that_is_not_a_string_is_one_line(tiny_state, tmp_path, container, reader):
    import converter.checkpoint as checkpoint

    state = dict(tiny_state)
    state[1] = torch.zeros(2)
    path = _save(state if container is None else {container: state}, tmp_path / "key.pth")
    with pytest.raises(CheckpointError) as caught:
        getattr(checkpoint, reader)(path)
    message = _one_line(caught.value)
    assert message.startswith(path) and "key 1 is an int, expected tensor names" in message


def test_names_and_shapes_are_checked_against_the_entry_before_any_value(tiny_checkpoint,
                                                                         tmp_path):
    """A renamed tensor beside a NaN: the conversion names the renamed tensor (from the
    names alone); before, the NaN scan of every value came first."""
    from conftest import assert_one_line_error, run_cli

    container = torch.load(tiny_checkpoint, weights_only=True)
    state = container["module"]
    state["blocks.0.mlp.fc1.weight"] = state["blocks.0.mlp.fc1.weight"].clone()
    state["blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    state["blocks.1.norm2.weight_renamed"] = state.pop("blocks.1.norm2.weight")
    path = _save(container, tmp_path / "edited.pth")
    result = run_cli(["--size", "T", "--mode", "FT", "--dataset", "k400", "--checkpoint", path,
                      "--out", str(tmp_path / "out"), "-q"])
    assert_one_line_error(result, 2)
    line = result.stderr.strip()
    assert "+ unexpected blocks.1.norm2.weight_renamed" in line, line
    assert "- missing blocks.1.norm2.weight" in line and "NaN" not in line


# --- zip members as torch.save writes them ---------------------------------------------------

def _rezip(source, target, compressed):
    """``source``'s members written again, those ``compressed(name)`` says deflated."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            method = zipfile.ZIP_DEFLATED if compressed(info.filename) else zipfile.ZIP_STORED
            new.writestr(info.filename, old.read(info.filename), compress_type=method)
    return str(target)


@pytest.mark.parametrize("which", ["data", "every"])
def test_compressed_zip_member_is_refused_not_read_as_tensor_values(tiny_state, tmp_path,
                                                                    which):
    """Memory-mapped, a deflated record's compressed bytes were read as the tensor's values
    (a silent garbage checkpoint); a file re-zipped whole got a misleading error."""
    original = _save({"model": tiny_state}, tmp_path / "stored.pth")
    path = _rezip(original, tmp_path / "deflated.pth",
                  lambda name: which == "every" or "/data/" in name)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = _one_line(caught.value)
    assert message.startswith(path) and "is compressed" in message
    assert "stored as torch.save writes them" in message


def test_a_pickle_over_the_bound_is_refused_from_the_zip_directory(tiny_state, tmp_path,
                                                                   monkeypatch):
    import converter.checkpoint as checkpoint

    path = _save({"model": tiny_state}, tmp_path / "c.pth")
    monkeypatch.setattr(checkpoint, "MAX_PICKLE_BYTES", 1024, raising=False)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = _one_line(caught.value)
    assert "data.pkl declares" in message and "bytes of pickle" in message


# --- a config.json beside a plain file is another tool's -------------------------------------

@pytest.mark.parametrize("config", ['["some", "other", "tool"]', "[" * 100000 + "]" * 100000,
                                    "not json"], ids=["list", "deep", "text"])
def test_config_json_beside_a_pth_file_is_not_read(tiny_state, tmp_path, config):
    path = _save({"model": tiny_state}, tmp_path / "ft.pth")
    (tmp_path / "config.json").write_text(config)
    _assert_same(read_checkpoint(path).state_dict, tiny_state)
