"""The pre-trainer's ``fit`` / ``evaluate`` / ``predict`` compiled on JAX, one step per token count.

How many tokens a mask hides is a value of the mask, not a shape, and XLA compiles for fixed
shapes. Keras's JAX trainer compiles one step function per input shape; here each batch's
token counts are read on the host first (``pretrain.token_counts``, from the batch's first
row) and the step is traced inside ``static_token_counts`` with them, once per count: a
dataset with one mask ratio compiles once, as any model does. The steps, their state, their
sharding under a Keras distribution and ``steps_per_execution`` are the JAX trainer's own;
only the compiling moves here. TensorFlow (graphs take the counts dynamic) and PyTorch (eager)
run as Keras runs them, and so does JAX with ``run_eagerly=True`` or ``jit_compile=False``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import keras

from .pretrain import static_token_counts, token_counts, video_and_mask


def batch_token_counts(data) -> Optional[Tuple[int, Optional[int]]]:
    """The token counts of one batch as the trainer holds it (``x``, ``(x,)``, ``(x, y)``,
    ``(x, y, sample_weight)``); None when ``x`` is not the pre-trainer's input (its trace
    then raises the pre-trainer's own error)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    try:
        _, mask, decode_mask = video_and_mask(x)
    except ValueError:
        return None
    return token_counts(mask, decode_mask)


class JitPerTokenCount:
    """Mixin of ``VideoMAEMaskedAutoencoder``: the JAX trainer's step functions, compiled once
    per (input shapes, token counts). ``jitted_token_counts[kind]``: the counts compiled so
    far for ``"train"``, ``"test"`` and ``"predict"``."""

    def _jit_per_count(self) -> bool:
        return (keras.backend.backend() == "jax" and bool(self.jit_compile)
                and not self.run_eagerly)

    @property
    def jitted_token_counts(self) -> Dict[str, Tuple[Tuple[int, Optional[int]], ...]]:
        return {kind: tuple(compiled) for kind, compiled in self._count_steps().items()}

    def _count_steps(self) -> Dict[str, dict]:
        """kind -> {counts: compiled step}; set past Keras's attribute tracking, which would
        copy a dict into its own tracked one."""
        if "_count_steps_by_kind" not in self.__dict__:
            object.__setattr__(self, "_count_steps_by_kind", {})
        return self.__dict__["_count_steps_by_kind"]

    def _compiled_per_count(self, kind: str, step: Callable, state_shardings) -> Callable:
        """``step(state, data)`` compiled per batch's counts, donating ``state`` as Keras does."""
        import jax

        compiled = self._count_steps()[kind] = {}
        out_shardings = None if state_shardings is None else (None, state_shardings)

        def run(state, data):
            counts = batch_token_counts(data)
            function = compiled.get(counts)
            if function is None:
                def counted(state, data):
                    if counts is None:
                        return step(state, data)
                    with static_token_counts(*counts):
                        return step(state, data)
                function = compiled[counts] = jax.jit(counted, donate_argnums=0,
                                                      out_shardings=out_shardings)
            return function(state, data)

        return run

    def _state_shardings(self, kind: str):
        """The JAX trainer's state shardings under a Keras distribution, per step kind."""
        if keras.distribution.distribution() is None:
            return None
        trainable, non_trainable, optimizer, metrics = self._get_state_sharding_spec()
        return {"train": (trainable, non_trainable, optimizer, metrics),
                "test": (trainable, non_trainable, metrics),
                "predict": (trainable, non_trainable)}[kind]

    def _function_per_count(self, kind: str, method: Callable) -> Callable:
        """What the JAX trainer makes of ``method`` (its ``train_step`` or ``test_step``)."""
        step = self._compiled_per_count(kind, lambda state, data: method(self, state, data),
                                        self._state_shardings(kind))
        return self._make_function(step)

    def make_train_function(self, force=False):
        if not self._jit_per_count():
            return super().make_train_function(force)
        if self.train_function is None or force:
            self.train_function = self._function_per_count("train", type(self).train_step)
        return None

    def make_test_function(self, force=False):
        if not self._jit_per_count():
            return super().make_test_function(force)
        if self.test_function is None or force:
            self.test_function = self._function_per_count("test", type(self).test_step)
        return None

    def make_predict_function(self, force=False):
        if not self._jit_per_count():
            return super().make_predict_function(force)
        if self.predict_function is not None and not force:
            return self.predict_function

        def predict_step(state, data):
            outputs, non_trainable_variables = type(self).predict_step(self, state, data)
            return outputs, (state[0], non_trainable_variables)

        step = self._compiled_per_count("predict", predict_step, self._state_shardings("predict"))
        self.predict_function = self._make_function(step, concatenate_outputs=True)
        return self.predict_function
