"""Where training runs: Keras's distribution API on JAX, MirroredStrategy on TensorFlow.

- JAX: ``keras.distribution.DataParallel`` over the first ``devices`` local devices (all by
  default); each global batch is split along its first axis and gradients are averaged across
  devices by XLA. Several hosts: ``keras.distribution.initialize`` (``jax.distributed``) first,
  then each process feeds its contiguous share of every global batch.
- TensorFlow: ``tf.distribute.MirroredStrategy`` on one host (its GPUs, or the CPU split into
  ``devices`` logical CPUs when there is none); each replica gets its slice of the batch.
- PyTorch: one device (Keras's torch distribution is not finished upstream).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np


class DeviceError(ValueError):
    """A device request this backend or machine cannot serve; ``str()`` is one line."""


@dataclass
class Placement:
    """The devices a run trains on and how a step reaches them."""

    backend: str
    devices: int
    names: Tuple[str, ...]
    shard: Tuple[int, int] = (0, 1)   # (this process, processes): its share of each batch
    strategy: object = None           # tf.distribute strategy (TensorFlow only)

    def scope(self):
        """The context models and optimizers must be built in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def place(devices: Optional[int] = None, coordinator: Optional[str] = None,
          num_processes: Optional[int] = None, process_id: Optional[int] = None) -> Placement:
    """Set up training on ``devices`` devices of the current Keras backend (None: all)."""
    import keras

    backend = keras.backend.backend()
    if devices is not None and devices < 1:
        raise DeviceError(f"--devices {devices}: expected at least 1")
    if num_processes is None and (coordinator is not None or process_id is not None):
        # before: taken and ignored, each host then training alone as process 0
        raise DeviceError("--coordinator and --process-id set up several hosts: add "
                          "--num-processes N (with KERAS_BACKEND=jax), or drop them")
    if backend == "jax":
        return _place_jax(devices, coordinator, num_processes, process_id)
    if num_processes:
        raise DeviceError(f"several hosts need the JAX backend (KERAS_BACKEND=jax); this is "
                          f"{backend}")
    if backend == "tensorflow":
        return _place_tensorflow(devices)
    if devices not in (None, 1):
        raise DeviceError(f"--devices {devices}: the {backend} backend trains on one device "
                          f"here; use KERAS_BACKEND=jax for several")
    return Placement(backend, 1, (backend,))


def _place_jax(devices, coordinator, num_processes, process_id) -> Placement:
    import jax
    import keras

    if num_processes and num_processes > 1:
        keras.distribution.initialize(job_addresses=coordinator, num_processes=num_processes,
                                      process_id=process_id)
    found = keras.distribution.list_devices()
    processes = jax.process_count()
    if processes > 1:
        chosen = found if devices is None else found[:devices]
        if devices is not None and devices != len(found):
            raise DeviceError(f"--devices {devices}: with several hosts every device of every "
                              f"host trains ({len(found)})")
    else:
        if devices is not None and devices > len(found):
            raise DeviceError(f"--devices {devices}: this machine has {len(found)} "
                              f"{jax.default_backend()} device(s) (for virtual CPU devices set "
                              f"JAX_NUM_CPU_DEVICES={devices} before starting)")
        chosen = found[:devices] if devices else found
    # one device: no distribution (and none left over from an earlier run in this process)
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=chosen) if len(chosen) > 1 else None)
    return Placement("jax", len(chosen), tuple(chosen),
                     shard=(jax.process_index(), processes))


def _place_tensorflow(devices) -> Placement:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        wanted = len(gpus) if devices is None else devices
        if wanted > len(gpus):
            raise DeviceError(f"--devices {devices}: this machine has {len(gpus)} GPU(s)")
        names = [f"/gpu:{i}" for i in range(wanted)]
    else:
        wanted = devices or 1
        if wanted > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration()] * wanted)
            except RuntimeError:
                pass  # already initialised: use what is there
            found = len(tf.config.list_logical_devices("CPU"))
            if found < wanted:
                raise DeviceError(f"--devices {devices}: TensorFlow started with {found} "
                                  "logical CPU(s) before the split could be made")
        names = [f"/cpu:{i}" for i in range(wanted)]
    if len(names) == 1:
        return Placement("tensorflow", 1, tuple(names))
    strategy = tf.distribute.MirroredStrategy(names)
    return Placement("tensorflow", len(names), tuple(names), strategy=strategy)


def all_processes(placement: Placement, values) -> np.ndarray:
    """``values`` (a few small integers) of every process of the run, one row per process in
    process order: a collective, so every process must call it at the same point. With one
    process, just ``values`` as one row."""
    row = np.asarray(values, dtype=np.int32)
    if placement.shard[1] == 1:
        return row[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(row)).reshape(placement.shard[1], -1)


def all_processes_texts(placement: Placement, texts) -> list:
    """The union of every process's ``texts``, in process order, each once: a collective
    (two gathers), so every process must call it at the same point."""
    if placement.shard[1] == 1:
        return list(dict.fromkeys(texts))
    data = np.frombuffer(json.dumps(list(texts)).encode("utf-8"), dtype=np.uint8)
    longest = int(all_processes(placement, [len(data)]).max())
    rows = all_processes(placement, np.pad(data, (0, longest - len(data)), constant_values=32))
    merged = [text for row in rows
              for text in json.loads(row.astype(np.uint8).tobytes().decode("utf-8"))]
    return list(dict.fromkeys(merged))


def devices_holding(model) -> int:
    """How many devices hold the model's trained weights, read from a variable itself (not
    from the request): the devices of its JAX sharding, the replicas of a TensorFlow mirrored
    variable, else 1. A run reports this, so a distribution that was asked for but not
    applied shows as one device."""
    value = model.trainable_variables[0].value
    sharding = getattr(value, "sharding", None)
    if sharding is not None and hasattr(sharding, "device_set"):  # a jax.Array
        return len(sharding.device_set)
    replicas = getattr(value, "values", None)  # tf.distribute's mirrored variable
    return len(replicas) if isinstance(replicas, tuple) else 1


def step_function(model, placement: Placement) -> Callable[[np.ndarray, np.ndarray], float]:
    """``step(clips, targets) -> loss``: one optimizer step on a (process-local) batch."""
    if placement.strategy is None:
        def step(clips, targets):
            logs = model.train_on_batch(clips, targets, return_dict=True)
            return float(logs["loss"])
        return step

    import tensorflow as tf

    strategy = placement.strategy

    def step(clips, targets):
        replicas = strategy.num_replicas_in_sync
        share = len(clips) // replicas

        def slice_for(context):
            i = context.replica_id_in_sync_group
            return (tf.constant(clips[i * share:(i + 1) * share]),
                    tf.constant(targets[i * share:(i + 1) * share]))

        data = strategy.experimental_distribute_values_from_function(slice_for)
        model.make_train_function()
        model.reset_metrics()
        logs = model.train_function(iter([data]))
        return float(np.asarray(logs["loss"]))
    return step
