"""``fit`` on arrays, shuffled as Keras shuffles them. keras-hub's ``fit`` (``PipelineModel``)
batches arrays into a dataset of its own, in order (a grain ``MapDataset`` where grain is
installed, else ``tf.data``), and Keras ignores ``shuffle`` for a dataset: every epoch would
see the same batches in the same order, whatever ``shuffle`` says. ``shuffled_fit_arguments``
hands it instead a ``tf.data`` dataset that draws a new order of the samples every epoch
(Keras's default, ``shuffle=True``), gathering each batch from the arrays as it goes (no copy of
the whole data); ``validation_split`` takes the last samples first, as Keras does, before any
shuffling. Any other input (datasets, generators, lists of clips, ``shuffle=False``) goes to
keras-hub as it came."""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np

# the arguments of keras-hub's fit this module reads; any other passes through as given
DATA_ARGS = ("x", "y", "batch_size", "sample_weight", "validation_data", "validation_split",
             "shuffle")
# Keras's default batch size when fit is given arrays and no batch_size
KERAS_BATCH_SIZE = 32


def _array(value, lists: bool = False):
    """``value`` as a numpy array where it is an array or tensor of any backend (``lists``: or
    a list of numbers, labels say) of numbers or booleans, with at least one dimension; else
    None (strings, objects, ragged lists: keras-hub's own route)."""
    if isinstance(value, (list, tuple, dict)) and not lists:
        return None
    if not (isinstance(value, list) or hasattr(value, "__array__")):
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):  # ragged lists, tensors needing grad...
        return None
    numeric = np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    return array if array.ndim and numeric else None


def _arrays(structure, lists: bool = False):
    """``structure`` (an array, a dict or tuple of arrays) with numpy leaves, or None where
    any leaf is something else (a list of clips, a dataset, None...)."""
    if isinstance(structure, dict):
        leaves = {k: _array(v) for k, v in structure.items()}
        return None if not leaves or any(v is None for v in leaves.values()) else leaves
    if isinstance(structure, tuple):
        leaves = tuple(_array(v) for v in structure)
        return None if not leaves or any(v is None for v in leaves) else leaves
    return _array(structure, lists)


def _sliced(structure, start, stop):
    return keras.tree.map_structure(lambda a: a[start:stop], structure)


def _batches(inputs, count: int, batch_size: int):
    """A ``tf.data`` dataset of ``inputs`` (a tuple of numpy structures, ``count`` samples
    each) in batches of ``batch_size``, in a new random order each time it is iterated (each
    epoch): the indices are shuffled, and each batch gathered from the arrays."""
    import tensorflow as tf

    leaves = keras.tree.flatten(inputs)

    def gather(indices):
        return [leaf[indices] for leaf in leaves]

    def batch(indices):
        gathered = tf.numpy_function(gather, [indices], [tf.as_dtype(a.dtype) for a in leaves],
                                     stateful=False)
        for tensor, leaf in zip(gathered, leaves):
            tensor.set_shape((None,) + leaf.shape[1:])
        return keras.tree.pack_sequence_as(inputs, gathered)

    order = tf.data.Dataset.range(count).shuffle(count, reshuffle_each_iteration=True)
    return order.batch(batch_size).map(batch).prefetch(1)


def shuffled_fit_arguments(fit, x, y, args: tuple, kwargs: dict):
    """``(x, y, args, kwargs)`` for ``fit`` (keras-hub's bound ``fit``): where ``x`` is arrays
    (an array or tensor, or a dict or tuple of them; ``y`` and ``sample_weight`` arrays or
    None) and ``shuffle`` is not false, ``x`` becomes the shuffling dataset of
    ``(x, y, sample_weight)`` (``_batches``), ``validation_split``'s last samples become
    ``validation_data``, and ``y``, ``batch_size``, ``sample_weight`` go; else all as given.
    Arguments ``fit`` does not take come back as given, for its own error."""
    try:
        bound = inspect.signature(fit).bind(x, y, *args, **kwargs)
    except TypeError:
        return x, y, args, kwargs
    given = dict(bound.arguments)
    named = {k: v for k, v in given.items() if k != "kwargs"}
    named.update(given.get("kwargs", {}))
    if not named.get("shuffle", True):
        return x, y, args, kwargs
    given_y, given_weights = named.get("y"), named.get("sample_weight")
    features = _arrays(named.get("x"))
    targets = None if given_y is None else _arrays(given_y, lists=True)
    weights = None if given_weights is None else _arrays(given_weights, lists=True)
    if features is None or (given_y is not None and targets is None) or \
            (given_weights is not None and (weights is None or targets is None)):
        return x, y, args, kwargs  # (weights without targets would be read as targets)
    data = tuple(d for d in (features, targets, weights) if d is not None)
    counts = {len(a) for a in keras.tree.flatten(data)}
    if len(counts) != 1 or 0 in counts:  # samples that do not line up, or none: its error
        return x, y, args, kwargs
    count = counts.pop()
    split = named.get("validation_split")
    rest = {k: v for k, v in named.items() if k not in DATA_ARGS}
    if split and named.get("validation_data") is None:  # Keras: the last samples, unshuffled
        cut = int(math.floor(count * (1.0 - split)))
        if not 0 < cut < count:  # too few samples to split: keras-hub's own error says so
            return x, y, args, kwargs
        rest["validation_data"] = _sliced(data, cut, None)
        data, count = _sliced(data, 0, cut), cut
    elif named.get("validation_data") is not None:
        rest["validation_data"] = named["validation_data"]
    batch_size = named.get("batch_size") or KERAS_BATCH_SIZE
    rest["shuffle"] = False  # shuffled here: Keras would warn that it ignores shuffle=True
    return _batches(data, count, batch_size), None, (), rest
