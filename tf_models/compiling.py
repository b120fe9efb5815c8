"""Compiling a task: from a saved ``.keras`` file (its optimizer and that optimizer's state),
and what a compiled task builds before TensorFlow traces its first step.

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


class BuildsBeforeTracing:
    """Mixin for a task: on TensorFlow, what its first training step would create (a new
    optimizer's slots; compiled metrics and loss not yet built) is built before the step is
    traced, not inside it.

    Keras builds them ahead (``_symbolic_build``) only under a distribution strategy; without
    one it leaves them to the first traced step, and ``tf.function`` traces a function that
    created variables a second time: the first step of every ``fit`` and ``train_on_batch``
    with a new optimizer paid two traces (docs/BENCHMARKS.md: a tiny pre-trainer's first
    ``fit`` 8.8-9.3 s, 4.6-6.0 s with one; ``videomae-finetune`` builds its optimizer
    itself, ``train.loop.compile_model``). The build reads only the
    batch's spec (shapes and dtypes: nothing is taken from the data); where Keras's internals
    are not what this expects, Keras builds as before."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        build_before_tracing(self, iterator, data_batch)
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def build_before_tracing(model, iterator=None, data_batch=None) -> None:
    """Keras's ``_symbolic_build`` of ``model`` from ``data_batch`` or, for a ``fit`` /
    ``evaluate`` / ``predict`` over data, its dataset's ``element_spec``, on TensorFlow with no
    distribution strategy (with one, and on JAX and PyTorch, Keras builds first itself)."""
    if (keras.backend.backend() != "tensorflow"
            or getattr(model, "_distribute_strategy", True) is not None
            or not hasattr(model, "_symbolic_build")):
        return
    if data_batch is None:
        # the TensorFlow trainer's epoch iterator holds the dataset it will iterate
        data_batch = getattr(getattr(iterator, "_distributed_dataset", None), "element_spec",
                             None)
        if data_batch is None:
            return
    model._symbolic_build(data_batch=data_batch)
