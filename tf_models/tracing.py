"""How this project traces a Keras model into a TensorFlow graph: ``graph_function``, the one
place that decides the options of every ``tf.function`` it makes (the SavedModel's signatures,
the conversion's parity and reload runners, the LiteRT serving function, the video tools).

Autograph is off. The models are Keras 3 code that runs on JAX and PyTorch too, so they hold
no Python control flow on tensors for autograph to rewrite. With it on, TensorFlow rewrites
every call while tracing, and its rewrite of a ``super()`` call reads the local variables of
every frame up the stack (``frame.f_locals``), which in Python 3.11 leaves a snapshot of them
alive in each frame: a conversion's in-memory Keras model outlived its ``del`` through every
reload check (ViT-B: one W more at the peak; docs/BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Callable, Optional


def graph_function(fn: Optional[Callable] = None, **options):
    """``tf.function(fn, autograph=False, **options)``; without ``fn``, a decorator."""
    import tensorflow as tf

    if fn is None:
        return lambda f: tf.function(f, autograph=False, **options)
    return tf.function(fn, autograph=False, **options)
