"""``finetune``: upstream's fine-tuning recipe on a labelled list of videos, on one device or many,
checkpointed so that a killed run resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, List, Optional, Tuple

import numpy as np

from ..artifacts.files import FileLock, LockHeld, read_json, replaced_when_written, save_json
from ..video.ahead import decoded_ahead
from ..video.evaluate import list_digest
from .augment import RECIPE
from .checkpoint import (CHECKPOINT_NAME, CheckpointError, read_state, restore_checkpoint,
                         save_checkpoint)
from .data import TrainSet, failed_videos
from .devices import all_processes, all_processes_texts, devices_holding, place, step_function

MODEL_NAME = "model.keras"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".finetune.lock"


class FinetuneError(ValueError):
    """A setting, list or output folder a run cannot use; ``str()`` is one line."""


@dataclass
class FinetuneConfig:
    """Everything that defines a run (``run_record``'s fields must match to resume)."""

    model: str
    list_path: str
    num_classes: int
    out: str
    root: str = "."
    epochs: int = 1
    batch_size: int = 8
    lr: Optional[float] = None  # None: upstream's, from the batch (``learning_rates``)
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path_rate: float = 0.1
    dropout: float = 0.0
    seed: int = 0
    dataset: str = "k400"
    num_frames: Optional[int] = None
    img_size: Optional[int] = None
    num_sample: int = RECIPE["num_sample"]
    warmup_epochs: float = RECIPE["warmup_epochs"]
    min_lr: Optional[float] = None  # None: upstream's, from the batch (``learning_rates``)
    clip_grad: Optional[float] = None  # the gradient's global norm limit; None: none (upstream)
    augment: bool = True
    rand_augment: bool = True
    dtype_policy: Optional[str] = None
    save_every: int = 0
    val_list: Optional[str] = None
    val_views: str = "1x1"
    devices: Optional[int] = None
    workers: int = 2
    coordinator: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None


# what a checkpoint must agree on to be resumed (devices and workers may change), with the
# digests and validation protocol ``run_record`` adds
RUN_KEYS = ("model", "num_classes", "epochs", "batch_size", "lr", "layer_decay", "weight_decay",
            "drop_path_rate", "dropout", "seed", "dataset", "num_frames", "img_size",
            "num_sample", "warmup_epochs", "min_lr", "clip_grad", "augment", "rand_augment",
            "dtype_policy")


@dataclass
class FinetuneResult:
    """What a run did; ``to_dict`` is the CLI's ``--json`` line."""

    model: str
    checkpoint: str
    backend: str
    devices: int
    steps: int
    epochs: int
    loss: Optional[float]
    clips_per_s: Optional[float]
    wall_s: float
    resumed_from: int
    failed: List[str] = field(default_factory=list)
    history: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["failed_videos"] = len(self.failed)
        return record


def prepare_out(out: str) -> List[str]:
    """Create ``out`` (and its missing parents) and prove it writable, or raise FinetuneError
    (one line). The probe's name is unique (every host of a run probes the one shared folder
    at once). Returns the folders it made, innermost first, for ``remove_made`` to take back
    when the run fails before writing into them."""
    missing, folder = [], os.path.abspath(out)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    made: List[str] = []
    try:
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
                made.insert(0, folder)
            except FileExistsError:  # another host (or run) made it meanwhile: not ours
                if not os.path.isdir(folder):
                    raise
        handle, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        try:
            os.write(handle, b"ok")
        finally:
            os.close(handle)
            os.remove(probe)
    except OSError as error:
        remove_made(made)
        raise FinetuneError(f"--out {out}: cannot write there ({error.strerror or error}); "
                            "choose a writable folder") from None
    return made


def remove_made(made: List[str]) -> None:
    """Remove the folders ``prepare_out`` made, innermost first, each only while empty (a
    failed run leaves no empty --out; one holding a checkpoint stays)."""
    for folder in made:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def lock_out(out: str, placement) -> Optional[FileLock]:
    """Process 0 takes ``out``'s lock (``.finetune.lock``; not waiting): a second run into the
    same folder is refused in one line on every one of its processes, which all learn the
    outcome (none is left waiting for the others). Returns the lock held (None elsewhere)."""
    lock, code, reason = None, 0, "a file system without locks"
    if placement.shard[0] == 0:
        try:
            lock = FileLock(os.path.join(out, LOCK_NAME)).acquire(wait=False)
        except LockHeld as held:
            code = int(held.holder) if (held.holder or "").isdigit() else -1
        except OSError as error:
            code, reason = -2, error.strerror or str(error)
    code = int(all_processes(placement, [code])[0][0])
    if code == -2:
        raise FinetuneError(f"--out {out}: cannot lock it ({reason}); choose a folder on a "
                            "local or shared file system that takes locks")
    if code:
        who = f" (pid {code})" if code > 0 else ""
        raise FinetuneError(f"--out {out}: another videomae-finetune run{who} is training into "
                            "this folder; wait for it to finish, or use another --out")
    if lock is not None:
        _remove_leftovers(out)
    return lock


def _remove_leftovers(out: str) -> None:
    """Temporary files of killed runs (each run names its own by its pid): the lock is ours,
    so no live run is writing them."""
    for name in os.listdir(out):
        if name.startswith((CHECKPOINT_NAME + ".tmp", SUMMARY_NAME + ".tmp")) or (
                name.startswith(MODEL_NAME[: -len(".keras")] + ".")
                and name.endswith(".partial.keras")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out, name))


def written_by_process_zero(placement, path: str, write: Callable[[], None]) -> None:
    """``write()`` on process 0 only (the others' files would race it in a shared --out).
    With several processes each learns whether it worked, and where it did not every one
    fails, process 0 with its own error and the others naming ``path`` (before, they went on
    to wait in the next step's collective for a process that had left)."""
    error = None
    if placement.shard[0] == 0:
        try:
            write()
        except Exception as caught:  # a stop signal is not caught: it ends this process
            error = caught
    if placement.shard[1] > 1:
        failed = bool(all_processes(placement, [error is not None])[0][0])
        if failed and error is None:
            raise FinetuneError(f"{path}: process 0 could not write it (its error line says "
                                "why); rerun the same command on every host to resume")
    if error is not None:
        raise error


def build_model(config: FinetuneConfig):
    """The classifier to train: ``config.model`` (zoo name, ``.keras`` or preset) with a new
    head of ``num_classes`` when needed, drop path and dropout, at the requested clip shape."""
    from ..hub import PresetError
    from ..videomae import VideoMAEVideoClassifier

    shape = {k: v for k, v in (("num_frames", config.num_frames), ("img_size", config.img_size))
             if v is not None}
    try:
        return VideoMAEVideoClassifier.from_preset(config.model, num_classes=config.num_classes,
                                              drop_path_rate=config.drop_path_rate,
                                              dropout=config.dropout, progress=False, **shape)
    except PresetError as error:
        raise FinetuneError(str(error)) from None


def learning_rates(config: FinetuneConfig) -> Tuple[float, float]:
    """(peak, floor) of the schedule: ``config.lr`` and ``config.min_lr`` as given, else
    upstream's (``RECIPE``: 1e-3 and 1e-6 per 256 videos) scaled as run_class_finetuning.py
    scales them, by the videos of a global step (``batch_size / num_sample``) / 256."""
    videos = config.batch_size / max(config.num_sample, 1)
    peak = RECIPE["lr_per_256"] * videos / 256 if config.lr is None else config.lr
    floor = RECIPE["min_lr_per_256"] * videos / 256 if config.min_lr is None else config.min_lr
    return float(peak), float(floor)


def with_rates(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` with the rates it trains at (``learning_rates``) in place of None: what the
    run records, so a resumed run is compared on its rates (an old run's default 1e-3 against
    upstream's scaled one now), and what its result says."""
    peak, floor = learning_rates(config)
    return replace(config, lr=peak, min_lr=floor)


def compile_model(model, config: FinetuneConfig, total_steps: int, steps_per_epoch: int):
    """Layer-decay AdamW on upstream's warm-up + cosine schedule (``learning_rates``),
    soft-target cross-entropy; with ``clip_grad``, the gradient of all weights together
    scaled down to that norm when over it before each step (upstream's ``--clip_grad``:
    ``clip_grad_norm_`` over the model's parameters)."""
    import keras

    from ..finetune import layer_decay_optimizer
    from .schedule import WarmupCosine

    peak, floor = learning_rates(config)
    schedule = WarmupCosine(peak, total_steps,
                            warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)),
                            min_lr=floor)
    optimizer = layer_decay_optimizer(model, learning_rate=schedule,
                                      layer_decay=config.layer_decay,
                                      weight_decay=config.weight_decay,
                                      global_clipnorm=config.clip_grad)
    # soft (mixup / smoothed) targets: replace the task's default sparse accuracy metric
    # (metrics=None would keep the metrics of the compile a keras-hub task runs on creation)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=[])
    optimizer.build(model.trainable_variables)
    return model


def _float32_config(config):
    """``config`` with every ``dtype`` a mixed-precision policy (``mixed_bfloat16``, as a name
    or a serialised DTypePolicy, at any depth: the backbone's sits inside the task's) made
    ``float32``."""
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    found = {}
    for key, value in config.items():
        name = value if isinstance(value, str) else (
            value.get("config", {}).get("name") if isinstance(value, dict)
            and value.get("class_name") == "DTypePolicy" else None)
        mixed = key == "dtype" and isinstance(name, str) and name.startswith("mixed_")
        found[key] = "float32" if mixed else _float32_config(value)
    return found


def save_model(model, path: str) -> str:
    """The trained classifier as a plain ``.keras`` (float32, no optimizer), written atomically."""
    import keras

    from ..videomae import VideoMAEVideoClassifier

    previous = keras.config.dtype_policy(), keras.distribution.distribution()
    keras.config.set_dtype_policy("float32")
    # built and saved on this process's device alone: under a distribution over several
    # processes every value placed is first checked equal on all of them (a collective), and
    # only process 0 saves
    keras.distribution.set_distribution(None)
    try:
        clean = VideoMAEVideoClassifier.from_config(_float32_config(model.get_config()))
        keras.config.set_dtype_policy(previous[0])
        for target, source in zip(clean.weights, model.weights):
            target.assign(keras.ops.convert_to_numpy(source.value))
        # Keras saves only to a name ending in .keras
        with replaced_when_written(f"{path[: -len('.keras')]}.{os.getpid()}.partial.keras",
                                   path) as partial:
            clean.save(partial)
    finally:
        keras.config.set_dtype_policy(previous[0])
        keras.distribution.set_distribution(previous[1])
    return path


def validate(model, items, root: str, dataset: str, views: str, devices: int,
             workers: int = 2) -> dict:
    """Top-1 / top-5 (%) of ``items`` under upstream's test protocol (``views``), upstream's
    merge (softmax per view, mean per video); failed videos are counted, not scored. At most
    ``2 * workers`` videos are decoded ahead of the model (memory stays bounded whatever the
    list's length), and a stop leaves without waiting for them."""
    from ..video.decode import VideoError, read_views
    from ..video.predict import merge_views, top_k
    from ..video.protocol import normalize_views, protocol_for

    protocol = protocol_for(dataset, model.num_frames, model.img_size, views)
    top1, top5, failed = [], [], 0

    def load(video):
        return normalize_views(read_views(os.path.join(root, video), protocol))

    with contextlib.closing(decoded_ahead(items, lambda item: load(item[0]),
                                          workers)) as ahead:
        for (_, label), future in ahead:
            try:
                views_array = future.result()
            except VideoError:
                failed += 1
                continue
            count = len(views_array)
            padded = -count % devices
            if padded:
                views_array = np.concatenate([views_array, views_array[:1].repeat(padded, 0)])
            logits = np.asarray(model.predict_on_batch(views_array))[:count]
            probs = merge_views(logits.astype(np.float64))
            top1.append(float(int(np.argmax(probs)) == label))
            top5.append(float(label in top_k(probs, 5)))
    return {"val_top1": float(np.mean(top1) * 100) if top1 else None,
            "val_top5": float(np.mean(top5) * 100) if top5 else None,
            "val_videos": len(top1), "val_failed": failed}


def finetune(config: FinetuneConfig, on_step: Optional[Callable[[int, int, float], None]] = None,
             on_error: Optional[Callable[[str], None]] = None,
             on_resume: Optional[Callable[[int], None]] = None) -> FinetuneResult:
    """Fine-tune ``config.model`` on ``config.list_path``; checkpoint, resume, save the model.

    ``on_step(step, total, loss)`` after every optimizer step, ``on_error(line)`` once per bad
    video (skipped: its place in the batch goes to the next video of the epoch that decodes,
    ``data.TrainSet``), ``on_resume(step)`` when a checkpoint in ``out`` is picked up. Keras's
    global dtype policy and distribution, which the run sets, are as they were when it returns
    or raises. ``out`` is locked for the run; with several processes only process 0 writes
    into it (it must be one folder they all share), the others reading the same checkpoint.
    """
    import keras

    policy, distribution = keras.config.dtype_policy(), keras.distribution.distribution()
    try:
        return _finetune(config, on_step, on_error, on_resume)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.distribution.set_distribution(distribution)


def _same_file(there, here) -> bool:
    """The model named ``there`` in a checkpoint and ``here`` now are one local file or folder
    (``weights/m.keras`` and its absolute path); zoo names and handles are compared as
    written."""
    return isinstance(there, str) and isinstance(here, str) and os.path.exists(here) \
        and os.path.exists(there) and os.path.samefile(there, here)


def _finetune(config: FinetuneConfig, on_step, on_error, on_resume) -> FinetuneResult:
    from ..finetune import checked_setting
    from ..video.evaluate import EvaluateError, read_list
    from ..video.protocol import protocol_for

    config = with_rates(config)
    try:
        settings = ("layer_decay", "weight_decay") + (
            ("clip_grad",) if config.clip_grad is not None else ())  # None: no clipping
        for name in settings:  # before anything is read or made
            checked_setting(name, getattr(config, name), lambda n: "--" + n.replace("_", "-"))
        items = read_list(config.list_path, config.num_classes, each_once=False)
        val_items = (read_list(config.val_list, config.num_classes, each_once=False)
                     if config.val_list else None)
        if val_items:  # now, not after the first epoch's training
            protocol_for(config.dataset, views=config.val_views)
    except (EvaluateError, ValueError) as error:  # ValueError: views '0x3': expected ...
        raise FinetuneError(str(error)) from None
    made = prepare_out(config.out)
    try:
        return _locked_run(config, items, val_items, on_step, on_error, on_resume)
    except BaseException:  # a stop too: a run that wrote nothing leaves no folder behind
        remove_made(made)
        raise


def _locked_run(config: FinetuneConfig, items, val_items, on_step, on_error,
                on_resume) -> FinetuneResult:
    from ..video.decode import quiet_ffmpeg

    quiet_ffmpeg()
    placement = place(config.devices, config.coordinator, config.num_processes,
                      config.process_id)
    if config.batch_size % placement.devices:
        raise FinetuneError(f"--batch-size {config.batch_size}: the global batch is split "
                            f"over {placement.devices} devices, so it must be a multiple of it")
    if config.clip_grad is not None and placement.backend == "tensorflow" \
            and placement.devices > 1:
        raise FinetuneError(f"--clip-grad {config.clip_grad:g}: on TensorFlow with "
                            f"{placement.devices} devices Keras clips each device's share of "
                            "the gradient before adding them up, not their sum as upstream "
                            "does; use --devices 1, or KERAS_BACKEND=jax")
    processes = placement.shard[1]
    if (config.batch_size // max(config.num_sample, 1)) % processes:
        raise FinetuneError(f"--batch-size {config.batch_size}: each of the {processes} "
                            f"processes decodes an equal share of the videos of a step, so "
                            f"--batch-size / --num-sample must be a multiple of {processes}")
    lock = lock_out(config.out, placement)
    try:
        return _train(config, placement, items, val_items, on_step, on_error, on_resume)
    finally:
        if lock is not None:
            lock.release()


def run_record(config: FinetuneConfig, items, val_items) -> dict:
    """What a checkpoint must agree on to be resumed: ``RUN_KEYS``, the lists' content and
    the size of every video they name under ``root`` (so a moved --root with the same files
    resumes, and a file replaced under the same name does not)."""
    run = {key: getattr(config, key) for key in RUN_KEYS}
    run["list_sha256"] = list_digest(items)
    run["val_list_sha256"] = list_digest(val_items) if val_items else None
    run["val_views"] = config.val_views if val_items else None
    run["videos_sha256"] = videos_digest(config.root, list(items) + list(val_items or []))
    return run


def videos_digest(root: str, items) -> str:
    """sha256 of (video, size in bytes) for each video ``items`` name under ``root``, once
    each, in list order; a missing file counts as size -1."""
    digest, done = hashlib.sha256(), set()
    for video, _ in items:
        if video in done:
            continue
        done.add(video)
        try:
            size = os.stat(os.path.join(root, video)).st_size
        except OSError:
            size = -1
        digest.update(f"{video}\t{size}\n".encode("utf-8"))
    return digest.hexdigest()


# how a changed digest is named in the refusal (the digests themselves say nothing)
DIGEST_CHANGES = {"list_sha256": "--list's lines differ",
                  "val_list_sha256": "--val-list's lines differ (or it was added or dropped)",
                  "videos_sha256": "the videos the lists name under --root differ (a size, or "
                                   "a file missing or new)"}


def _run_differences(found: dict, run: dict) -> List[str]:
    """How ``run`` differs from the run recorded in a checkpoint; keys it does not record
    (written before they were recorded) are not compared."""
    differ = []
    for key, value in run.items():
        if key not in found or found[key] == value:
            continue
        if key == "model" and _same_file(found[key], value):
            continue
        differ.append(DIGEST_CHANGES.get(key) or f"{key} {found[key]!r} there, {value!r} now")
    return differ


def _read_agreed_state(placement, checkpoint: str) -> Optional[dict]:
    """``read_state(checkpoint)`` on every process; with several, all must find the same
    checkpoint (step), or every one fails the same way: a --out that is not one folder
    they share would have them resume from different steps."""
    error, state = None, None
    try:
        state = read_state(checkpoint)
    except CheckpointError as caught:
        error = caught
    mine = [-1, 0] if error else [0, 0] if state is None else [1, int(state.get("global_step",
                                                                                -1))]
    found = all_processes(placement, mine)
    if error is not None:
        raise error
    differ = [i for i in range(len(found)) if list(found[i]) != list(found[0])]
    if differ:
        def seen(row):
            return ("an unreadable checkpoint" if row[0] < 0 else "no checkpoint"
                    if row[0] == 0 else f"one at step {row[1]}")
        i = differ[0]
        raise FinetuneError(f"{checkpoint}: process {i} finds {seen(found[i])}, process 0 "
                            f"{seen(found[0])}; with several hosts --out must be one folder "
                            "all of them share")
    return state


def _train(config: FinetuneConfig, placement, items, val_items, on_step, on_error,
           on_resume) -> FinetuneResult:
    import keras

    run = run_record(config, items, val_items)
    checkpoint = os.path.join(config.out, CHECKPOINT_NAME)
    state = _read_agreed_state(placement, checkpoint)
    if state is not None and state.get("run") != run:
        differ = _run_differences(state.get("run") or {}, run)
        if differ:
            raise FinetuneError(f"{checkpoint}: belongs to another run ("
                                f"{'; '.join(differ[:3])}); use another --out, or remove it to "
                                "start over")

    if config.dtype_policy:
        keras.config.set_dtype_policy(config.dtype_policy)
    keras.utils.set_random_seed(config.seed)
    with placement.scope():
        model = build_model(config)
        trainset = TrainSet(items, config.root, config.num_classes, model.num_frames,
                            model.img_size, dataset=config.dataset, seed=config.seed,
                            num_sample=config.num_sample, augment=config.augment,
                            rand_augment=config.rand_augment)
        try:
            steps_per_epoch = trainset.steps_per_epoch(config.batch_size)
        except ValueError as error:
            raise FinetuneError(str(error)) from None
        total = steps_per_epoch * config.epochs
        compile_model(model, config, total, steps_per_epoch)
        if state is not None:
            state = restore_checkpoint(checkpoint, model)
            if on_resume is not None:
                on_resume(state["global_step"])
        else:
            state = {"epoch": 0, "step": 0, "global_step": 0, "loss_sum": 0.0,
                     "loss_steps": 0, "history": [], "failed": []}
        state["run"] = run  # recorded as this run spells it (a model path, new keys)
        resumed_from = state["global_step"]
        train_step = step_function(model, placement)
        seen = set(state["failed"])

        def save(epoch, step):
            # each process meets the bad videos of its own share: the checkpoint lists all
            state["failed"] = all_processes_texts(placement, state["failed"])
            seen.update(state["failed"])
            state.update(epoch=epoch, step=step)
            written_by_process_zero(placement, checkpoint,
                                    lambda: save_checkpoint(checkpoint, model, state))

        started, first_step_s, timed_clips = time.perf_counter(), None, 0
        for epoch in range(state["epoch"], config.epochs):
            start = state["step"] if epoch == state["epoch"] else 0
            # closed as soon as the loop is left (a stop): queued decodes are dropped then,
            # not when the exception's frames are freed
            with contextlib.closing(trainset.batches(epoch, start, config.batch_size,
                                                     config.workers,
                                                     placement.shard)) as batches:
                for batch in batches:
                    for message in failed_videos(batch.failed, seen):
                        state["failed"].append(message)
                        if on_error is not None:
                            on_error(message)
                    tick = time.perf_counter()
                    loss = train_step(batch.clips, batch.targets)
                    if first_step_s is None:
                        first_step_s = time.perf_counter() - tick  # compiling: not throughput
                        started = time.perf_counter()
                    else:
                        timed_clips += config.batch_size
                    state["global_step"] += 1
                    state["loss_sum"] += loss
                    state["loss_steps"] += 1
                    if on_step is not None:
                        on_step(state["global_step"], total, loss)
                    last = batch.step + 1 == steps_per_epoch
                    if config.save_every and state["global_step"] % config.save_every == 0 \
                            and not last:
                        save(epoch, batch.step + 1)
            record = {"epoch": epoch + 1, "loss": state["loss_sum"] / max(state["loss_steps"], 1)}
            if val_items:
                record.update(validate(model, val_items, config.root, config.dataset,
                                       config.val_views, placement.devices, config.workers))
            state["history"].append(record)
            state.update(loss_sum=0.0, loss_steps=0)
            save(epoch + 1, 0)
        wall = time.perf_counter() - started
        model_path = os.path.join(config.out, MODEL_NAME)
        written_by_process_zero(placement, model_path, lambda: save_model(model, model_path))
    history = state["history"]
    summary_path = os.path.join(config.out, SUMMARY_NAME)
    timing = {"clips_per_s": round(timed_clips / wall, 3) if timed_clips else None,
              "wall_s": round(wall, 3)}
    if resumed_from and state["global_step"] == resumed_from:  # nothing was left to train
        timing = _previous_timing(summary_path) or timing  # the run that trained it stays
    result = FinetuneResult(
        model=model_path, checkpoint=checkpoint, backend=placement.backend,
        devices=devices_holding(model), steps=state["global_step"], epochs=config.epochs,
        loss=history[-1]["loss"] if history else None, **timing,
        resumed_from=resumed_from, failed=list(state["failed"]), history=history)
    written_by_process_zero(placement, summary_path,
                            lambda: save_json(summary_path, result.to_dict()))
    return result


def _previous_timing(path: str) -> Optional[dict]:
    """``clips_per_s`` and ``wall_s`` of the summary at ``path`` (None: none readable)."""
    summary = read_json(path)
    if not isinstance(summary, dict) or "clips_per_s" not in summary \
            or not isinstance(summary.get("wall_s"), (int, float)):
        return None
    return {"clips_per_s": summary["clips_per_s"], "wall_s": summary["wall_s"]}


