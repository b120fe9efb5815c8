"""Training checkpoints: every model and optimizer variable plus the run's position, in one
``.npz`` written atomically (a temporary file named by the writer's pid, fsync, rename), so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.

The model's variables include the random-number state of drop path and dropout (Keras seed
generators) and the optimizer's include its step count, so a resumed run continues bit for bit
where the checkpoint was taken; the data position is (epoch, step) and the batches are a
function of it (``data.TrainSet``). Nothing is pickled: arrays and one JSON string.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Optional

import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT = "videomae-finetune-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; ``str()`` is one line."""


def _numpy(variable) -> np.ndarray:
    import keras

    if keras.backend.backend() == "tensorflow":
        # a MirroredStrategy's variables (mirrored, or aggregated like the optimizer's step
        # count) give their value through numpy(), not through np.array
        return np.asarray(variable.value.numpy())
    return np.asarray(keras.ops.convert_to_numpy(variable.value))


def save_checkpoint(path: str, model, state: dict) -> None:
    """Write ``model``'s and its optimizer's variables and ``state`` to ``path`` atomically."""
    arrays = {f"model_{i}": _numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": _numpy(v)
                   for i, v in enumerate(model.optimizer.variables)})
    state = dict(state, format=FORMAT, model_variables=len(model.variables),
                 optimizer_variables=len(model.optimizer.variables))
    arrays["state"] = np.frombuffer(json.dumps(state).encode("utf-8"), dtype=np.uint8)
    temporary = f"{path}.tmp{os.getpid()}"  # its own name: never another run's half-file
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_state(path: str) -> Optional[dict]:
    """The run state stored in the checkpoint at ``path`` (None when there is none)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(bytes(data["state"]).decode("utf-8"))
    except UNREADABLE as error:
        raise _unreadable(path, error) from None


# what numpy raises for a file that is not a whole .npz: empty (EOFError), cut short or
# overwritten (BadZipFile, zlib.error), not an archive (ValueError), a missing member (KeyError)
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def _unreadable(path: str, error: Exception) -> "CheckpointError":
    return CheckpointError(f"{path}: not a readable videomae-finetune checkpoint "
                           f"({error.__class__.__name__}); remove it to start over")


def restore_checkpoint(path: str, model) -> dict:
    """Assign the checkpoint's variables to ``model`` (optimizer built); return its state."""
    state = read_state(path)
    if state is None or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint; remove it to start over")
    variables, slots = list(model.variables), list(model.optimizer.variables)
    if (state["model_variables"], state["optimizer_variables"]) != (len(variables), len(slots)):
        raise CheckpointError(f"{path}: holds {state['model_variables']} model and "
                              f"{state['optimizer_variables']} optimizer variables, this run "
                              f"has {len(variables)} and {len(slots)}; it belongs to another "
                              f"model: use another --out")
    with np.load(path, allow_pickle=False) as data:
        for prefix, group in (("model", variables), ("optimizer", slots)):
            for i, variable in enumerate(group):
                try:
                    value = data[f"{prefix}_{i}"]
                except UNREADABLE as error:
                    raise _unreadable(path, error) from None
                if tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(f"{path}: {variable.path} is {value.shape} there, "
                                          f"{tuple(variable.shape)} here; use another --out")
                variable.assign(value)
    return state
