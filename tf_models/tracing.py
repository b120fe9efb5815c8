"""How this project traces a Keras model into a TensorFlow graph: ``graph_function``, the one
place that decides the options of every ``tf.function`` it makes (the SavedModel's signatures,
the conversion's parity and reload runners, the LiteRT serving function, the video tools); and
``inference_function``, the video tools' compiled forward pass on whichever Keras backend runs.

Autograph is off. The models are Keras 3 code that runs on JAX and PyTorch too, so they hold
no Python control flow on tensors for autograph to rewrite. With it on, TensorFlow rewrites
every call while tracing, and its rewrite of a ``super()`` call reads the local variables of
every frame up the stack (``frame.f_locals``), which in Python 3.11 leaves a snapshot of them
alive in each frame: a conversion's in-memory Keras model outlived its ``del`` through every
reload check (ViT-B: one W more at the peak; docs/BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np


def graph_function(fn: Optional[Callable] = None, **options):
    """``tf.function(fn, autograph=False, **options)``; without ``fn``, a decorator."""
    import tensorflow as tf

    if fn is None:
        return lambda f: tf.function(f, autograph=False, **options)
    return tf.function(fn, autograph=False, **options)


def inference_function(fn: Callable, variables: Sequence, frames: int, size: int) -> Callable:
    """``fn(video)`` (a Keras model's inference on a (batch, frames, size, size, 3) float32
    batch) as a numpy -> numpy function, compiled on the Keras backend that runs: a graph on
    TensorFlow (one trace for any batch), ``jax.jit`` on JAX (``variables``, every variable
    ``fn`` reads, passed as arguments rather than baked into the program; a batch padded to
    the next power of two, so that batches of any size share a few compiled programs),
    PyTorch eagerly without gradients."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        graph = graph_function(fn, reduce_retracing=True, input_signature=[
            tf.TensorSpec([None, frames, size, size, 3], tf.float32)])
        return lambda video: graph(tf.constant(video)).numpy()
    if backend == "jax":
        import jax

        variables = list(variables)

        def pure(values, video):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(video)
        compiled = jax.jit(pure)

        def run(video):
            count = len(video)
            padded = 1 << max(count - 1, 0).bit_length()
            if padded != count:
                video = np.concatenate([video, np.zeros((padded - count, *video.shape[1:]),
                                                        video.dtype)])
            return np.asarray(compiled([v.value for v in variables], video))[:count]
        return run
    if backend == "torch":
        import torch

        def run(video):
            with torch.no_grad():
                return keras.ops.convert_to_numpy(fn(video))
        return run
    raise ValueError(f"Keras backend {backend!r}: the video tools run on tensorflow, jax or "
                     "torch")
