"""Compiling a task from a saved ``.keras`` file: its optimizer and that optimizer's state.

Keras calls ``compile_from_config`` only for models whose ``compile`` is its own; keras-hub's
``Task`` (and our tasks, with defaults) define their own, so without these a saved model came
back compiled with a fresh default optimizer, its state dropped with a warning.
"""

from __future__ import annotations

import keras


def compile_from_saved_config(model, config: dict) -> None:
    """What ``keras.Model.compile_from_config`` does, for a task with its own ``compile``
    (keras-hub's Task, and ours with defaults), which Keras skips with a warning: a saved
    ``.keras`` model came back compiled with a fresh default optimizer, the saved one's state
    (its step, its moments) dropped. Compiled here with the saved arguments, by the task's
    ``compile``, which calls ``load_saved_optimizer_state``."""
    model.compile(**keras.saving.deserialize_keras_object(config))


def load_saved_optimizer_state(model) -> None:
    """Let ``model.optimizer`` (just compiled) take a saved one's variables as Keras loads a
    file: built first when the saved one was built (an optimizer is built by its first step),
    so that they load; nothing loaded, and no Keras warning that the counts differ, from a
    file saved without an optimizer (the converter's, and a model saved before any step)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(optimizer, "_loads_saved_state", False):
        return
    load = optimizer.load_own_variables

    def load_own_variables(store):
        saved = len(store.keys())
        if saved > len(optimizer.variables) and not optimizer.built and model.built:
            optimizer.build(model.trainable_variables)
        # none saved, or only a step count and a rate that do not fit: nothing worth a
        # warning; state that does not fit: Keras's warning says what it skips
        if saved == len(optimizer.variables) or saved > 2:
            load(store)

    optimizer.load_own_variables = load_own_variables
    optimizer._loads_saved_state = True
