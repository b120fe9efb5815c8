"""The VideoMAE pre-training task's parts: its decoder and input handling.

The task itself is ``VideoMAEMaskedAutoencoder`` (``videomae_masked_autoencoder.py``).

Inputs: ``{"video": (B, T, H, W, 3) float32, "mask": (B, N) bool}`` or the list
``[video, mask]``; True = masked, the same number of masked tokens in every row (positions
may differ per row). Output: pixels (B, n_masked, 3 * tubelet * patch**2), the normalised
pixels of the masked patches in ascending token order, as upstream (a mask with no masked
token: every token's, ascending, as upstream's decoder). No Python-side assumption
about batch or mask count, so a traced function serves any batch size and mask ratio.

VideoMAE V2's dual masking: an optional ``"decode_mask"`` (B, N) bool, upstream's
``decode_masked_pos`` (True = left out of the decoder). The decoder's mask tokens then sit
where it is False (whatever the encoder mask says there), the same count in every row, and
the output is those tokens' pixels in ascending order. Without it, V1's behaviour.

Token counts (how many tokens the mask hides, how many the decoder gets) are values of the
masks, not shapes. Inside ``static_token_counts(...)`` they are Python ints instead, which is
what XLA needs to compile a step (JAX's jit): the pre-trainer's ``fit`` / ``evaluate`` /
``predict`` on JAX read each batch's counts on the host and compile one step per count
(``count_jit``).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Tuple

import keras
from keras import ops
from keras.src.backend.common.symbolic_scope import in_symbolic_scope

from .finetune import LayerDecayAdamW, decay_paths
from .input_checks import per_row_count
from .layers import (PACKAGE, Block, PlainConfig, check_model_sizes, layer_norm, run_blocks,
                     sinusoid_positions)
from .presets import PRETRAIN_DEFAULTS
from .videomae_backbone import gather_tokens

def pretraining_optimizer(model, batch_size: int = 256, learning_rate=None, **kwargs):
    """An AdamW as upstream pre-trains (``presets.PRETRAIN_DEFAULTS``): betas 0.9 / 0.95,
    eps 1e-8, decoupled weight decay 0.05 on every tensor of ``model`` (frozen ones too) but
    those upstream's ``get_parameter_groups`` skips (``finetune.decays``: 1-D ones, biases,
    the mask token), and the rate ``1.5e-4 * batch_size / 256`` unless ``learning_rate`` (a
    number or a schedule) is given. Upstream warms up and decays the rate on a cosine; pass
    a schedule for that. ``kwargs`` (``beta_2``, ``weight_decay``...) replace the defaults."""
    options = {key: value for key, value in PRETRAIN_DEFAULTS.items()
               if key != "learning_rate_per_256"}
    options.update(kwargs)
    if learning_rate is None:
        learning_rate = PRETRAIN_DEFAULTS["learning_rate_per_256"] * batch_size / 256
    return LayerDecayAdamW({}, decay_paths(model), learning_rate=learning_rate, **options)


class EpochBatches(keras.utils.PyDataset):
    """A ``PyDataset`` whose batches depend on the epoch (new masks every epoch, as upstream
    draws them: ``video.masked_clips.MaskedClips``): ``batch(epoch, index)``, and ``[index]``
    is ``batch(self.epoch, index)``. The pre-trainer's ``fit`` sets ``epoch`` as each of
    Keras's epochs begins, counting on from the value it finds (a second ``fit`` continues;
    a ``validation_data`` one keeps its epoch, so its masks). Keras's own ``on_epoch_end``
    cannot count them: its ``fit`` also calls it around reading a batch for the model's
    build on JAX, and on TensorFlow the next epoch's prefetching starts before it."""

    epoch = 0

    def batch(self, epoch: int, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: batch {index} of {len(self)}")
        return self.batch(self.epoch, index)


class FollowEpochs(keras.callbacks.Callback):
    """Sets ``batches.epoch`` (an ``EpochBatches``) as Keras's epochs begin and end: the
    value at ``fit``'s start, plus the epochs run since. Keras calls ``on_epoch_begin``
    before it makes the epoch's iterator, so every batch of the epoch sees its number."""

    def __init__(self, batches: EpochBatches):
        super().__init__()
        self.batches = batches
        self.start = batches.epoch
        self.first: Optional[int] = None

    def on_epoch_begin(self, epoch, logs=None):
        self.first = epoch if self.first is None else self.first
        self.batches.epoch = self.start + epoch - self.first

    def on_epoch_end(self, epoch, logs=None):
        self.batches.epoch = self.start + epoch - self.first + 1


def visible_first_order(mask):
    """Token indices per row: visible tokens ascending, then masked tokens ascending."""
    tokens = ops.shape(mask)[1]
    key = ops.cast(mask, "int32") * tokens + ops.arange(tokens, dtype="int32")[None, :]
    return ops.argsort(key, axis=-1)  # keys are unique, so stability does not matter


# (masked tokens per row, decoded tokens per row or None) while a step is traced; None: read
# them from the masks' values
_STATIC_COUNTS: contextvars.ContextVar = contextvars.ContextVar("videomae_static_token_counts",
                                                               default=None)


@contextlib.contextmanager
def static_token_counts(n_masked: int, n_decoded: Optional[int] = None) -> Iterator[None]:
    """Pre-trainer calls traced inside take these token counts as constants: ``n_masked`` tokens
    hidden by ``mask`` in every row and, with V2's ``decode_mask``, ``n_decoded`` tokens it
    keeps (False) in every row. For ``jax.jit`` of your own around the pre-trainer
    (``token_counts(mask, decode_mask)`` reads them from a batch); its ``fit`` / ``evaluate`` /
    ``predict`` do this per batch."""
    token = _STATIC_COUNTS.set((int(n_masked), None if n_decoded is None else int(n_decoded)))
    try:
        yield
    finally:
        _STATIC_COUNTS.reset(token)


def token_counts(mask, decode_mask=None) -> Tuple[int, Optional[int]]:
    """A batch's counts, read on the host: (tokens ``mask`` hides, tokens ``decode_mask``
    keeps or None), the same in every row as the pre-trainer requires (one ValueError if
    not)."""
    counts = (per_row_count(mask, keep=False, name="mask"),
              None if decode_mask is None else per_row_count(decode_mask, keep=True,
                                                             name="decode_mask"))
    if counts[0] is None or (decode_mask is not None and counts[1] is None):
        raise ValueError("tf_models.token_counts: takes a batch's (batch, tokens) bool masks "
                         "with their values (numpy or eager tensors), not traced ones")
    return counts


def _refuse_traced_counts(mask) -> None:
    """A clear error where JAX traces the counts (a ``jax.jit`` with no static counts)."""
    if keras.backend.backend() != "jax":
        return
    import jax

    if isinstance(mask, jax.core.Tracer):
        raise ValueError(
            "VideoMAEMaskedAutoencoder under jax.jit: its token counts come from the mask's "
            "values, which a trace does not have; trace it inside "
            "`with tf_models.static_token_counts(n_masked[, n_decoded])` "
            "(tf_models.token_counts(mask, decode_mask) reads them from a batch), or use its "
            "fit / evaluate / predict, which do that")


def video_and_mask(inputs):
    """(video, mask, decode_mask or None) from ``{"video", "mask"[, "decode_mask"]}`` or
    ``[video, mask[, decode_mask]]``, with a clear error."""
    if isinstance(inputs, dict) and {"video", "mask"} <= set(inputs):
        return inputs["video"], inputs["mask"], inputs.get("decode_mask")
    if isinstance(inputs, (list, tuple)) and len(inputs) in (2, 3):
        return inputs[0], inputs[1], (inputs[2] if len(inputs) == 3 else None)
    raise ValueError("VideoMAEMaskedAutoencoder takes {'video': ..., 'mask': ...} or [video, mask] "
                     "(mask: bool (batch, tokens), True = masked), optionally with "
                     "'decode_mask' (True = not decoded)")


@keras.saving.register_keras_serializable(package=PACKAGE)
class PretrainDecoder(PlainConfig, keras.layers.Layer):
    """Blocks -> ``norm`` -> ``head`` applied to the last ``n_masked`` tokens, or to every
    token when ``n_masked`` is 0 (upstream's ``return_token_num > 0`` test, V1 and V2)."""

    SUBLAYERS = ("blocks", "norm", "head")
    CONFIG = ("embed_dim", "depth", "num_heads", "num_outputs", "mlp_ratio", "init_values",
              "cos_attn")

    def __init__(self, embed_dim: int, depth: int, num_heads: int, num_outputs: int,
                 mlp_ratio: float = 4.0, init_values: float = 0.0, cos_attn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.blocks = [Block(embed_dim, num_heads, mlp_ratio, init_values=init_values,
                             cos_attn=cos_attn, dtype=self.dtype_policy, name=f"blocks_{i}")
                       for i in range(depth)]
        self.norm = layer_norm("norm", dtype=self.dtype_policy)
        self.head = keras.layers.Dense(num_outputs, dtype=self.dtype_policy, name="head")

    def build(self, input_shape):
        tokens = (None, None, self.embed_dim)
        for block in self.blocks:
            block.build(tokens)
        self.norm.build(tokens)
        self.head.build(tokens)

    def call(self, x, n_masked, return_hidden_states: bool = False):
        x, hidden = run_blocks(self.blocks, x)
        tokens = ops.shape(x)[1]
        if isinstance(n_masked, int):  # a static count (static_token_counts)
            count = n_masked if n_masked > 0 else tokens
        else:
            count = ops.where(n_masked > 0, n_masked, tokens)  # no branch: any mask, one graph
        x = ops.slice(x, (0, tokens - count, 0), (ops.shape(x)[0], count, self.embed_dim))
        x = self.head(self.norm(x))
        return (x, hidden) if return_hidden_states else x


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedAutoencoding(keras.layers.Layer):
    """The pre-training task's computation as one layer (its functional graph's only node):
    visible tokens through the backbone, ``encoder_to_decoder``, mask tokens, decoder."""

    def __init__(self, backbone, decoder_embed_dim: int, decoder_depth: int,
                 decoder_num_heads: int, **kwargs):
        check_model_sizes(dict(decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                         decoder_num_heads=decoder_num_heads))
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_patches = backbone.num_patches
        self.decoder_embed_dim = decoder_embed_dim
        self.num_outputs = backbone.in_chans * backbone.tubelet_size * backbone.patch_size ** 2
        # upstream's projection into the decoder width has no bias
        self.encoder_to_decoder = keras.layers.Dense(decoder_embed_dim, use_bias=False,
                                                     dtype=self.dtype_policy,
                                                     name="encoder_to_decoder")
        self.decoder = PretrainDecoder(decoder_embed_dim, decoder_depth, decoder_num_heads,
                                       self.num_outputs, backbone.mlp_ratio,
                                       backbone.init_values, backbone.cos_attn,
                                       dtype=self.dtype_policy, name="decoder")
        self.encoder_to_decoder.build((None, None, backbone.embed_dim))
        self.decoder.build((None, None, decoder_embed_dim))
        self.mask_token = self.add_weight(shape=(1, 1, decoder_embed_dim),
                                          initializer="zeros", name="mask_token")
        self.built = True
        # token counts come from the mask's values, which XLA needs static: on JAX the steps
        # are compiled per count (count_jit); TensorFlow's graphs take them dynamic (no XLA)
        self.supports_jit = keras.backend.backend() == "jax" and not keras.config.is_nnx_enabled()

    def call_with_hidden_states(self, video_nthwc, mask, decode_mask=None, training=None):
        """Predictions and the outputs of every encoder block, then every decoder block."""
        order = visible_first_order(mask)
        batch = ops.shape(order)[0]
        static = _STATIC_COUNTS.get()
        if static is None:
            _refuse_traced_counts(mask)
            n_masked = ops.sum(ops.cast(mask[0], "int32"))
        else:
            n_masked = static[0]
        n_visible = self.num_patches - n_masked
        visible_ids = ops.slice(order, (0, 0), (batch, n_visible))
        if decode_mask is None:  # V1: every masked token, in the order's second part
            n_decoded, ids = n_masked, order
        else:  # V2: the tokens decode_mask keeps (False), ascending
            if static is None:
                n_decoded = ops.sum(ops.cast(ops.logical_not(decode_mask[0]), "int32"))
            elif static[1] is None:
                raise ValueError("static_token_counts(n_masked, n_decoded): a decode_mask needs "
                                 "n_decoded, the tokens it keeps (False) per row")
            else:
                n_decoded = static[1]
            decoded_ids = ops.slice(visible_first_order(decode_mask), (0, 0), (batch, n_decoded))
            ids = ops.concatenate([visible_ids, decoded_ids], axis=1)
        x, hidden = self.backbone.encode(video_nthwc, visible_ids, training=training)
        x_vis = self.encoder_to_decoder(self.backbone.final(x))
        tokens = ops.concatenate(
            [x_vis, ops.broadcast_to(ops.cast(self.mask_token, x_vis.dtype),
                                     (batch, n_decoded, self.decoder_embed_dim))], axis=1)
        pos = ops.broadcast_to(sinusoid_positions(self.num_patches, self.decoder_embed_dim,
                                                  x_vis.dtype),
                               (batch, self.num_patches, self.decoder_embed_dim))
        x = tokens + gather_tokens(pos, ids)
        out, decoder_hidden = self.decoder(x, n_masked=n_decoded, return_hidden_states=True)
        return out, list(hidden) + list(decoder_hidden)

    def call(self, video, mask, decode_mask=None, training=None):
        if in_symbolic_scope() and keras.backend.backend() in ("jax", "torch"):
            # Keras's trainer builds the loss and metrics on placeholder inputs, whose token
            # counts say nothing: JAX traces shapes only, PyTorch fills every mask value True
            # (no visible token). One predicted token per row, which broadcasts against any
            # target's count; TensorFlow's graph keeps the count unknown (None) instead
            return ops.zeros((ops.shape(video)[0], 1, self.num_outputs), self.compute_dtype)
        return self.call_with_hidden_states(video, mask, decode_mask, training)[0]

    def compute_output_spec(self, video, mask, decode_mask=None, training=None):
        return keras.KerasTensor((video.shape[0], None, self.num_outputs), dtype=self.compute_dtype)


from .videomae_masked_autoencoder import VideoMAEMaskedAutoencoder  # noqa: E402,F401
