"""Shared fixtures and helpers for the videomae-convert test suite.

Imports as the console scripts do: ``converter`` (torch, then TensorFlow, triton marked
absent; README "Import order"), so timm and torchvision, which some tests use, load after
TensorFlow here as they may in a user's process.

The fast tier (``python -m pytest -n 2``; CI runs it, then the slow tier) must stay near 8
minutes on 2 cores, so conversions are shared: ``tiny_converted``, ``tiny_pt_converted``,
``tiny_encoder_converted`` and ``tiny_forced_seed1`` run once per test run (``once_per_run``:
not once per worker), ``tiny_release``, ``tiny_v2_release`` and ``small_converted`` once on
the one worker their tests run on, and tests that need "artifacts already there" copy them
(``copy_artifacts``) rather than convert.
The slow tier (``--runslow`` / ``-m slow``), and why each test is there:

- test_slow.py, test_pretrain's ViT-S/B/L PT tests, test_video's ViT-S predict tests:
  full-size models (minutes and GBs each). ViT-B and larger are marked full_size (one at a
  time, on one worker); the ViT-S ones run beside that queue, which is the tier's long pole.
- test_export::test_small_artifacts_load_in_a_fresh_process_and_match_torch: ViT-S in three
  formats in a fresh process (~75 s); fast tier: the tiny fresh-process test, and ViT-S
  parity at batch 2 (test_parity), whose conversion reloads all three formats.
- test_release::test_verify_release_recheck_passes_on_the_built_release: two fresh processes;
  fast tier: the wrong-model recheck test, where every asset but the swapped one passes.
  Likewise test_verify_recheck_passes_on_a_release_in_parts; fast tier: the joined .keras
  checked in the test's own process and a publish dry run joining the preset tars
  (test_the_recheck_and_publish_join_the_parts_of_an_asset).
- test_faults: SIGKILL at every phase, during ``--all`` (its process group, or the ``--all``
  process alone), and two runs at once (child conversions each); fast tier: SIGKILL at
  ``write .weights.h5``, between renames, the locked-folder test, and a framework child
  ending when its parent is killed (test_lifetime).
- test_batch::test_all_litert_writes_a_checked_tflite_for_fine_tuned_entries_only: two child
  conversions; fast tier: the child commands test beside it and ``--litert`` on one entry
  (test_litert).
- test_ray: every test that starts Ray (a cluster, a minute or more each): Ray == local for
  evaluate and extract, a driver killed with SIGKILL mid-list, a killed model actor, and a
  two-node cluster that places the model on the GPU node, actors a cluster cannot place
  (refused on a local one, a note on a joined one), a run without an address starting its
  own instance beside a running cluster, a cluster refusing the run's token (a head of its
  own with token authentication); fast tier: the local path's evaluate and
  extract tests (test_video, test_v2_video: the per-video functions Ray's tasks and actors
  call), the local path never importing Ray, the shard refusal, the unreachable address and a Ray
  Client (``ray://``) address.
- test_finetune_cli: the same command on TensorFlow (one device, MirroredStrategy on two
  logical CPUs) and PyTorch, augmentation as a function of (seed, epoch, position), and a
  run stopped by SIGTERM resumed with the model named another way, and two JAX processes
  (gloo) sharing one --out with a bad video in one's share (~20 s, two JAX start-ups and
  compiles); fast tier: JAX on one and two virtual devices, a killed run resumed, a bad video
  skipped, a bad video filled alone in each host's share, the --out lock.
- test_v2_zoo: the distilled V2 S and B entries (K710 and mapped heads) converted from
  synthetic files in V2's layout at full size; fast tier: the tiny V2 entries through the
  same code path, and the mapped head equal to the K710 logits at upstream's rows.
- test_presets' PyTorch and TensorFlow fresh-process cases: fast tier: its JAX case (the same
  child and checks on a backend other than TensorFlow), the same checks on TensorFlow in the
  test's own process
  (test_presets_match_torch_fine_tune_in_bfloat16_pretrain_and_run_video_tools_on_tensorflow),
  and a fresh process importing no torch (test_tf_models' consumer-module test).
- test_interrupt's SIGINT case: fast tier: the SIGTERM case (one handler raises both as
  KeyboardInterrupt; the same unwinding and cleanup). Likewise test_video's evaluate
  interrupt (tf_models.stopping's handler).
- test_video::test_a_stop_while_the_model_loads_is_one_line_and_exit_two (evaluate, extract:
  a child importing TensorFlow and loading the model, 10-20 s each); fast tier:
  test_a_stop_while_tensorflow_imports_is_one_line_and_exit_two (the same handlers, in place
  from the command's start, for all four video commands).
- test_video::test_convert_entry_point_keeps_tensorflow_noise_off_the_terminal (a child
  conversion with --litert); fast tier: test_predict_cli_prints_only_json_and_no_framework_noise
  (the same silencing and noise list, in the predict entry point).
- test_v2_litert::test_litert_writes_a_checked_tflite_for_a_v2_entry (a conversion of its
  own); fast tier: every V2 option through the same LiteRT writer (test_v2_litert) and the
  checked .tflite of a V1 entry (test_litert).

- test_v2_zoo's ViT-g fine-tuned and pre-trained conversions from synthetic files in V2's
  layout (full_size: one at a time; one parity clip each, 7.4 and 8.5 minutes on this 2-core
  machine, ~12 GB of memory and of disk, the artifacts removed once they pass); fast tier:
  the tiny ``Tg`` entries through the same code path (patch 14, mlp_ratio 48/11, decode
  mask; like ViT-g, no layer scale: test_v2_options and test_v2_litert cover it).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX children (test_presets, test_finetune_cli) compile hundreds of small programs (on JAX
# an eager call compiles each op once per shape) for tiny models that then run in
# milliseconds: compiling was most of their time. XLA's CPU compiler is told to spend less on
# each (no LLVM optimisation, the simpler element-wise emitters): test_presets' JAX child took
# 61-68 s of CPU at XLA's defaults, 52 s at level 0, 31 s with both. Both change how fast
# the compiled code runs, not what it computes; TensorFlow on a CPU does not use XLA (Keras
# compiles fit with XLA only where there is an accelerator), so only JAX reads them.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                                   "--xla_cpu_use_fusion_emitters=false")

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# the frameworks, imported by pytest_configure below where tests run
torch = converter = read_checkpoint = write_synthetic_checkpoint = None
build_torch_model = get_entry = None

TINY_FT = "TFVideoMAE_T_K400_4x32_FT"
TINY_PT = "TFVideoMAE_T_K400_4x32_PT"
SMALL_FT = "TFVideoMAE_S_K400_16x224_FT"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- the frameworks --------------------------------------------------------------------------

@pytest.hookimpl(trylast=True)  # after xdist's hook has registered its controller, if any
def pytest_configure(config):
    """Imports the frameworks as the console scripts do, before any test module: in each
    worker, or in the one process of a run without ``-n``. pytest-xdist's controller loads
    this file for its hooks and runs no test; it skips them (13 s of CPU, beside the two
    workers starting)."""
    global torch, converter, read_checkpoint, write_synthetic_checkpoint
    global build_torch_model, get_entry
    if config.pluginmanager.get_plugin("dsession") is not None:
        return
    import torch

    import converter
    from converter.checkpoint import read_checkpoint
    from converter.kinds import build_torch_model
    from converter.synthetic import write_synthetic_checkpoint
    from converter.zoo import get_entry


# --- the slow tier ---------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (full-size models, long end-to-end "
                          "runs)")


def _selected(config, marker: str) -> bool:
    if marker == "slow" and config.getoption("--runslow"):
        return True
    markexpr = config.getoption("markexpr", default="") or ""
    return marker in markexpr and f"not {marker}" not in markexpr


# The fast tier runs on two workers (``-n 2``, pytest-xdist, ``--dist loadgroup`` in
# setup.cfg). A session or module fixture is made once per worker that needs it, so the tests
# sharing an expensive one run on one worker: full-size conversions (marked full_size: one
# at a time, so the slow tier's two workers never hold two of them), those of the session
# conversions below (the first one a test needs names its group), and those of a
# wider-scoped fixture defined in their own module (the module).
SHARED_CONVERSIONS = ("tiny_v2_release", "tiny_release", "small_converted")


def _xdist_group(item):
    if item.get_closest_marker("full_size") is not None:
        return "full_size"  # one at a time: GBs of memory each
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in SHARED_CONVERSIONS:
        if name in info.names_closure:
            return name
    for name in info.names_closure:
        definitions = info.name2fixturedefs.get(name) or ()
        if any(d.scope != "function" and getattr(d.func, "__module__", None)
               == item.module.__name__ for d in definitions):
            return item.module.__name__
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = _xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    if _selected(config, "slow"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with -m slow or --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# --- entries and checkpoints -----------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_entry():
    """The tiny fine-tuned test entry: embed 48, depth 2, 3 heads, 4 frames of 32x32."""
    return get_entry(TINY_FT)


@pytest.fixture(scope="session")
def small_entry():
    return get_entry(SMALL_FT)


@pytest.fixture
def tiny_checkpoint(tiny_entry, tmp_path):
    """Path of a seeded synthetic tiny FT checkpoint in upstream's (DeepSpeed) layout."""
    return write_synthetic_checkpoint(tiny_entry, str(tmp_path / "tiny_ft.pth"), seed=0)


# --- running the TF side ---------------------------------------------------------------------

def tf_runner(tf_model):
    """``run_tf(case) -> (logits, hidden_states)`` as numpy, for converter.parity.check_parity."""
    import keras

    def run(case):
        out, hidden = tf_model.call_with_hidden_states(case.video_nthwc)
        return (keras.ops.convert_to_numpy(out),
                [keras.ops.convert_to_numpy(h) for h in hidden])
    return run


def torch_logits_from_checkpoint(entry, checkpoint_path, video_nthwc):
    """Logits of the torch reference loaded (strict) from ``checkpoint_path``."""
    model = build_torch_model(entry)
    model.load_state_dict(read_checkpoint(checkpoint_path).state_dict, strict=True)
    video_ncthw = torch.from_numpy(np.ascontiguousarray(video_nthwc.transpose(0, 4, 1, 2, 3)))
    with torch.inference_mode():
        return model(video_ncthw).numpy()


# --- conversions shared across modules -------------------------------------------------------

def once_per_run(tmp_path_factory, key, make):
    """``make(folder)`` once per test run, however many xdist workers ask for it.

    A session fixture is made once per worker; the tiny conversions below are wanted by
    tests on both workers, so the first worker to ask makes it in a folder the workers share
    (their base folders' parent) under a lock, and the others wait for it and load its result
    (a pickle this run wrote). Without xdist: ``make`` in the session's own folder."""
    import fcntl
    import pickle

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return make(tmp_path_factory.mktemp(key))
    shared = tmp_path_factory.getbasetemp().parent / "shared"
    shared.mkdir(exist_ok=True)
    with open(shared / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        made = shared / f"{key}.pickle"
        if made.exists():
            return pickle.loads(made.read_bytes())
        result = make(shared / key)
        made.write_bytes(pickle.dumps(result))
        return result


@pytest.fixture(scope="session")
def tiny_converted(tmp_path_factory):
    """One synthetic tiny FT conversion (seed 0), shared read-only by every test that needs it."""
    return once_per_run(tmp_path_factory, "tiny_out", lambda out: converter.convert(
        TINY_FT, str(out), synthetic=True, seed=0, progress=False))


@pytest.fixture(scope="session")
def tiny_pt_converted(tmp_path_factory):
    """One synthetic tiny PT conversion (seed 0), shared read-only."""
    return once_per_run(tmp_path_factory, "tiny_pt", lambda out: converter.convert(
        TINY_PT, str(out), synthetic=True, seed=0, progress=False))


@pytest.fixture(scope="session")
def tiny_encoder_converted(tmp_path_factory):
    """One synthetic tiny FT encoder-only conversion (seed 0) with its checked ``.tflite``,
    shared read-only by the encoder-only tests (test_pretrain) and LiteRT's (test_litert)."""
    return once_per_run(tmp_path_factory, "tiny_encoder", lambda out: converter.convert(
        TINY_FT, str(out), synthetic=True, seed=0, encoder_only=True, litert=True,
        progress=False))


@pytest.fixture(scope="session")
def tiny_references(tiny_converted, tmp_path_factory):
    """The conversion's own parity references (seed 0 synthetic checkpoint, cases seed 0)."""
    from converter.checkpoint import read_checkpoint
    from converter.kinds import build_torch_model, parity_reference
    from converter.parity import compute_reference, make_cases
    from converter.synthetic import synthetic_path, write_synthetic_checkpoint

    entry = tiny_converted.entry
    folder = str(tmp_path_factory.mktemp("refs"))
    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, 0, folder), 0)
    torch_model = build_torch_model(entry)
    torch_model.load_state_dict(read_checkpoint(checkpoint).state_dict, strict=True)
    return compute_reference(parity_reference(entry, torch_model),
                             make_cases(entry, batch=2, seed=0))


def copy_artifacts(result, dest):
    """A private copy of a session conversion's artifacts in ``dest`` (a test may change it)."""
    os.makedirs(dest, exist_ok=True)
    for path in result.paths.values():
        target = os.path.join(dest, os.path.basename(path))
        if os.path.isdir(path):
            shutil.copytree(path, target)
        else:
            shutil.copy2(path, target)
    return str(dest)


@pytest.fixture(scope="session")
def tiny_forced_seed1(tiny_converted, tmp_path_factory):
    """A copy of the session's seed-0 artifacts, with a user's notes.txt beside them, replaced
    by a forced conversion of seed 1: (folder, snapshot_tree before, result). test_export
    checks the replacement; test_release takes its seed-1 .keras as the 'wrong model'."""
    def make(folder):
        out = copy_artifacts(tiny_converted, folder / "forced")
        with open(os.path.join(out, "notes.txt"), "w") as handle:
            handle.write("keep me\n")
        before = snapshot_tree(out)
        return out, before, converter.convert(TINY_FT, out, synthetic=True, seed=1, force=True,
                                              progress=False)
    return once_per_run(tmp_path_factory, "forced", make)


RELEASE_BASE_URL = "https://example.org/videomae/v0.0.1/"  # the trailing slash must not double up


TINY_RELEASE_EXPORT = "my_classifier"


@pytest.fixture(scope="session")
def tiny_release(tiny_pt_converted, tmp_path_factory):
    """A release (converter.release.build_release) of the tiny K400 FT and PT entries, built
    once and shared read-only by test_release and test_presets: the FT entry converted here
    with ``--litert --litert-quantize int8`` (so its two ``.tflite`` files ship too), the PT
    one copied from the session's conversion, and a ``videomae-export`` of the FT model
    (``TINY_RELEASE_EXPORT``) beside them: (release folder, manifest, build log, conversion
    folder, {name: result})."""
    from converter.release import build_release

    conv_dir = str(tmp_path_factory.mktemp("release_conversions") / "weights")
    results = {TINY_FT: converter.convert(TINY_FT, conv_dir, synthetic=True, seed=0,
                                          litert_quantize=("int8",), progress=False),
               TINY_PT: tiny_pt_converted}
    copy_artifacts(tiny_pt_converted, conv_dir)
    # beside them, a videomae-export of the FT model (a user's model: reference "keras", no
    # parity, no zoo name), which the build leaves out with one logged line (test_release)
    from converter.keras_export import export_model

    export_model(results[TINY_FT].paths["keras"], conv_dir, name=TINY_RELEASE_EXPORT, batch=1,
                 progress=False)
    release_dir = str(tmp_path_factory.mktemp("release_parent") / "release")
    log = []
    manifest = build_release(conv_dir, release_dir, RELEASE_BASE_URL, log=log.append)
    return release_dir, manifest, log, conv_dir, results


TINY_V2_K710 = "TFVideoMAEv2_Tg_K710_4x28_DL"
TINY_V2_MAPPED = "TFVideoMAEv2_Tg_K710toK400_4x28_DL"
TINY_V2_HMDB51 = "TFVideoMAEv2_Tg_K710-HMDB51_4x28_FT"


@pytest.fixture(scope="session")
def tiny_v2_release(tmp_path_factory):
    """The tiny V2 classifiers (a K710 head, the K400 head mapped from it, HMDB51 after K710;
    synthetic, seed 0, one parity clip each) converted into one folder and built into a
    release, shared read-only by test_v2_video (the zoo names served): (release folder,
    {name: result})."""
    from converter.release import build_release

    conv_dir = str(tmp_path_factory.mktemp("v2_release_conversions") / "weights")
    results = {name: converter.convert(name, conv_dir, synthetic=True, seed=0, progress=False,
                                       parity_batch=1)
               for name in (TINY_V2_K710, TINY_V2_MAPPED, TINY_V2_HMDB51)}
    release_dir = str(tmp_path_factory.mktemp("v2_release_parent") / "release")
    build_release(conv_dir, release_dir, RELEASE_BASE_URL, log=lambda line: None)
    return release_dir, results


@pytest.fixture(scope="session")
def small_converted(tmp_path_factory):
    """One synthetic ViT-S FT conversion (seed 0, parity batch 2): ~1 minute on 2 cores."""
    out = tmp_path_factory.mktemp("small_out")
    return converter.convert(SMALL_FT, str(out), synthetic=True, seed=0, progress=False,
                             parity_batch=2)


# --- loading the artifacts in a process without torch ----------------------------------------

FRESH_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf
    import keras
    import tf_models

    paths, config, clip_path, out_dir = json.loads(sys.argv[1])
    video = np.load(clip_path)

    serving = tf.saved_model.load(paths["savedmodel"]).signatures["serving_default"]
    savedmodel = serving(video=tf.constant(video))["logits"].numpy()
    savedmodel_one = serving(video=tf.constant(video[:1]))["logits"].numpy()

    loaded = keras.saving.load_model(paths["keras"], compile=False)
    keras_file = keras.ops.convert_to_numpy(loaded(video))

    fresh = tf_models.VideoMAEVideoClassifier(**config)
    fresh.load_weights(paths["weights"])
    weights = keras.ops.convert_to_numpy(fresh(video))

    for name, value in [("savedmodel", savedmodel), ("savedmodel_one", savedmodel_one),
                        ("keras", keras_file), ("weights", weights)]:
        np.save(os.path.join(out_dir, name + ".npy"), value)
    json.dump(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "timm")),
              open(os.path.join(out_dir, "modules.json"), "w"))
""")


def fresh_process_logits(paths, config, video_nthwc, work_dir, timeout=600):
    """Load the three artifact formats in a new Python process that imports no torch.

    Returns ({format: logits}, torch-family modules that process imported).
    """
    work_dir = str(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    clip_path = os.path.join(work_dir, "clip.npy")
    np.save(clip_path, video_nthwc)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    # the checkout first, so the process loads this tree even without an editable install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    argument = json.dumps([paths, config, clip_path, work_dir])
    done = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, argument], cwd=work_dir, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"fresh process failed:\n{done.stderr[-4000:]}"
    outputs = {name: np.load(os.path.join(work_dir, name + ".npy"))
               for name in ("savedmodel", "savedmodel_one", "keras", "weights")}
    with open(os.path.join(work_dir, "modules.json")) as handle:
        modules = json.load(handle)
    return outputs, modules


def random_clip_nthwc(entry, batch=2, seed=1234):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, entry.num_frames, entry.img_size, entry.img_size, 3),
                               dtype=np.float32)


FRESH_TOLERANCE = 1e-5


def check_fresh_process_matches_torch(result, entry, work_dir, seed=0):
    """Load the three formats of ``result`` (a synthetic conversion with ``seed``) in a fresh
    process without torch, run a new clip, and compare with the torch reference loaded
    strictly from the same synthetic checkpoint: max abs <= 1e-5 for each format."""
    from converter.synthetic import synthetic_path
    from converter.checkpoint import sha256_file

    work_dir = str(work_dir)
    clip = random_clip_nthwc(entry, batch=2, seed=99)
    outputs, torch_modules = fresh_process_logits(
        result.paths, entry.model_config(), clip, os.path.join(work_dir, "fresh"))
    assert torch_modules == [], f"the fresh process imported {torch_modules}"

    # regenerated bit for bit from its seed (same file name: torch.save records it)
    checkpoint = write_synthetic_checkpoint(entry, synthetic_path(entry, seed, work_dir), seed)
    assert sha256_file(checkpoint) == result.report.source.sha256
    expected = torch_logits_from_checkpoint(entry, checkpoint, clip)
    assert expected.shape == (2, entry.num_classes)
    for kind in ("savedmodel", "keras", "weights"):
        found = outputs[kind]
        assert found.shape == expected.shape, kind
        error = float(np.max(np.abs(found - expected)))
        assert error <= FRESH_TOLERANCE, f"{kind}: max abs {error:.2e} vs torch"
    # the serving signature has a dynamic batch: one clip alone gives the same row
    np.testing.assert_allclose(outputs["savedmodel_one"][0], outputs["savedmodel"][0],
                               atol=FRESH_TOLERANCE, rtol=0)


@pytest.fixture(scope="session")
def check_fresh_process():
    return check_fresh_process_matches_torch


def snapshot_tree(root):
    """{relative path: (bytes, mtime_ns)} of every file below ``root``."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = (handle.read(), os.stat(path).st_mtime_ns)
    return found


@pytest.fixture(scope="session")
def snapshot():
    return snapshot_tree


# --- a misbehaving HTTP server on the loopback interface ----------------------------------

@pytest.fixture
def fault_server(tmp_path):
    """A FaultServer (tests/http_faults.py) serving ``tmp_path/served`` on 127.0.0.1, with
    fault modes (404/500, dropped connections, wrong lengths, corrupt bytes, redirect loops,
    stalls) set per request by ``fault_server.plan(...)``."""
    from http_faults import FaultServer

    with FaultServer(tmp_path / "served") as server:
        yield server


# --- the command line ------------------------------------------------------------------------

def run_cli(args):
    """``videomae-convert ARGS`` through click's CliRunner."""
    from click.testing import CliRunner

    from converter.cli import main

    return CliRunner().invoke(main, args)


def assert_one_line_error(result, code):
    """The run exited ``code`` with exactly one stderr line, starting 'error:', no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]
