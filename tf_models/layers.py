"""VideoMAE building blocks in Keras 3, written with ``keras.ops`` only (backend-neutral).

Every layer builds its variables in ``build`` and names its sublayers after upstream's
modules (``patch_embed.proj``, ``attn.qkv``, ``mlp.fc1`` ...), so ``named_variables`` gives
stable dotted names the converter maps onto.
"""

from __future__ import annotations

from typing import Dict, Tuple

import functools
import inspect
import math
import numbers

import keras
import numpy as np
from keras import ops

from .presets import PRESETS

LAYER_NORM_EPS = 1e-6  # upstream's LayerNorm epsilon; Keras's default 1e-3 drifts logits by ~1e-3
# V2's cosine attention clamps its log logit scale at this literal ("log(1 / 0.01) = 4.6052")
COS_ATTN_MAX_LOG_SCALE = 4.6052
# F.normalize's floor on a vector's length
NORMALIZE_EPS = 1e-12
PACKAGE = "videomae"


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
    """Upstream's fixed position table (1, num_positions, dim): float64 maths, float32 result."""
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    exponents = 2.0 * (np.arange(dim) // 2) / dim
    angles = positions / np.power(10000.0, exponents)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return angles.astype(np.float32)[None]


def shown(value, limit: int = 24) -> str:
    """``repr(value)`` for a one-line error, cut to about ``limit`` characters: a config from
    the internet may give an integer of thousands of digits."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        try:
            text = str(value)
        except ValueError:  # Python writes no integer of more than 4300 digits
            return "an integer of over 4300 digits"
        return text if len(text) <= limit else f"{text[:limit // 2]}... ({len(text)} digits)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit // 2]}... ({len(text)} characters)"


def check_heads(dim, num_heads, names: Tuple[str, str] = ("dim", "num_heads")) -> None:
    """ValueError (one line, the arguments as ``names`` calls them) unless ``dim`` splits into
    ``num_heads`` heads of one width: otherwise attention's reshapes would regroup the
    batch's values (a model that builds and computes something else)."""
    if (isinstance(dim, numbers.Integral) and isinstance(num_heads, numbers.Integral)
            and num_heads > 0 and dim % num_heads == 0):
        return
    raise ValueError(f"{names[0]} {shown(dim)} does not split into {names[1]} "
                     f"{shown(num_heads)} heads of equal width; {names[0]} must be a multiple "
                     f"of {names[1]} (ViT-B: 768 and 12)")


# A model config's sizes that are counts: positive integers (the decoder's, where it has one)
POSITIVE_SIZES = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size",
                  "tubelet_size", "in_chans", "num_classes", "decoder_embed_dim", "decoder_depth",
                  "decoder_num_heads")
# (a clip's length, the patch size along it): a clip is cut into whole patches (upstream's
# Conv3d, stride = kernel, would drop the rest of the frames or pixels without a word)
WHOLE_PATCHES = (("img_size", "patch_size"), ("num_frames", "tubelet_size"))
# (width, heads): each width splits into its heads (``check_heads``)
HEAD_SPLITS = (("embed_dim", "num_heads"), ("decoder_embed_dim", "decoder_num_heads"))
# The zoo entry whose clips make the most tokens: ViT-g's, 16 frames of 224 x 224 in patches
# of 2 x 14 x 14 (2048); a ViT-B's sizes are the examples the lines of ``check_model_sizes`` give
LARGEST_ENTRY = max(PRESETS.values(), key=lambda p: p.num_patches)
EXAMPLE_ENTRY = PRESETS["TFVideoMAE_B_K400_16x224_PT"]
# The most tokens a clip may make: TOKENS_OVER_ZOO times the zoo's most (32768), room for
# longer or larger clips than upstream's (64 frames of 448 x 448 in patches of 16 make 25088).
# A clip's sizes show in no weight, so nothing else bounds a config's: img_size 1000000 is
# 3.9e9 tokens, whose sinusoid table (float64 maths) alone asks for terabytes when the model
# is built. At the bound one head's attention scores for one clip are 4 GiB (float32).
TOKENS_OVER_ZOO = 16
MAX_TOKENS = TOKENS_OVER_ZOO * LARGEST_ENTRY.num_patches


def check_model_sizes(config: dict) -> None:
    """One ValueError line for sizes of a model config (keyword arguments; keys it lacks are
    not checked) that build no working VideoMAE: a count that is not a positive integer, a
    clip not cut into whole patches, a width its heads do not split (``check_heads``), more
    than ``MAX_TOKENS`` tokens. Cheap, so constructors run it before building anything, and
    loaders on a file's config before its model is built."""
    example = EXAMPLE_ENTRY.model_config()
    for key in POSITIVE_SIZES:
        value = config.get(key, 1)
        if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and value > 0):
            raise ValueError(f"{key} must be a positive integer, not {shown(value)}")
    for length, patch in WHOLE_PATCHES:
        if length in config and patch in config and config[length] % config[patch]:
            raise ValueError(f"{length} {shown(config[length])} is not a multiple of {patch} "
                             f"{shown(config[patch])}: the clip would not be cut into whole "
                             f"patches (ViT-B: {example[length]} and {example[patch]})")
    for width, heads in HEAD_SPLITS:
        if width in config and heads in config:
            check_heads(config[width], config[heads], (width, heads))
    if all(key in config for key in ("num_frames", "img_size", "patch_size", "tubelet_size")):
        tokens = (config["num_frames"] // config["tubelet_size"]) * \
            (config["img_size"] // config["patch_size"]) ** 2
        if tokens > MAX_TOKENS:
            raise ValueError(
                f"num_frames {shown(config['num_frames'])} of img_size "
                f"{shown(config['img_size'])} in patches of {shown(config['tubelet_size'])} x "
                f"{shown(config['patch_size'])} x {shown(config['patch_size'])} make "
                f"{shown(tokens)} tokens a clip, more than the {MAX_TOKENS} a model here takes "
                f"({TOKENS_OVER_ZOO} times the zoo's most, "
                f"{LARGEST_ENTRY.num_frames} frames of {LARGEST_ENTRY.img_size} x "
                f"{LARGEST_ENTRY.img_size}); use fewer frames or smaller ones")


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return (isinstance(value, numbers.Real) and not _is_bool(value)
            and math.isfinite(value))


def _is_dtype(value) -> bool:
    if value is None:
        return True
    try:
        keras.dtype_policies.get(value)
    except (ValueError, TypeError, KeyError, AttributeError):
        return False
    return True


# Which LayerNorm closes the encoder (``VideoMAEBackbone``): none, upstream's pre-trained
# encoder's ``norm`` on the tokens, or a fine-tuned one's ``fc_norm`` on the pooled features
FINAL_NORMS = (None, "norm", "fc_norm")
# A model config's options that are not sizes: key -> (what it must be, its test). Nothing
# else bounds them: ``use_mean_pooling="x"`` or ``cos_attn=33`` would build a model (a truthy
# string, a number taken for True), a negative ``drop_path_rate`` would run at training time
OPTION_KINDS = {
    "use_mean_pooling": ("True or False", _is_bool),
    "cos_attn": ("True or False", _is_bool),
    "trainable": ("True or False", _is_bool),
    "drop_path_rate": ("a number from 0 to 1", lambda v: _is_number(v) and 0 <= v <= 1),
    "dropout": ("a number from 0 to 1", lambda v: _is_number(v) and 0 <= v <= 1),
    "init_values": ("a number >= 0 (0: no layer scale)", lambda v: _is_number(v) and v >= 0),
    "mlp_ratio": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "final_norm": (f"one of {FINAL_NORMS}",
                   lambda v: (v is None or isinstance(v, str)) and v in FINAL_NORMS),
    "name": ("None or a string", lambda v: v is None or isinstance(v, str)),
    "dtype": ("None, a dtype policy or its name ('float32', 'mixed_bfloat16'...)", _is_dtype),
    "head_dtype": ("None, a dtype policy or its name ('float32', 'mixed_bfloat16'...)",
                   _is_dtype),
}
# What Keras and keras-hub pass a model's constructor themselves, besides its own arguments
# (``Backbone.get_config``: name, trainable, dtype; ``Task.__init__``: compile)
KERAS_ARGS = ("name", "trainable", "dtype", "compile")


def check_model_options(config: dict) -> None:
    """One ValueError line for an option of a model config (``OPTION_KINDS``; keys it lacks or
    the table does not name are not checked) of the wrong type or range: the key, the value
    and what it must be. Cheap, so constructors run it before building anything."""
    for key, (expected, accepts) in OPTION_KINDS.items():
        if key in config and not accepts(config[key]):
            raise ValueError(f"{key} must be {expected}, not {shown(config[key])}")


def refuse_unknown_args(kwargs: dict, cls, extra: Tuple[str, ...] = ()) -> None:
    """One ValueError line for keyword arguments ``cls``'s constructor does not take (Keras's
    functional models would ignore them without a word: ``decoder_depth`` on a classifier's
    config builds a classifier): the first such key, its value and the arguments it takes
    (its own, ``extra``, ``KERAS_ARGS``)."""
    takes = [name for name in inspect.signature(cls.__init__).parameters
             if name not in ("self", "kwargs")] + list(extra) + list(KERAS_ARGS)
    unknown = sorted(key for key in kwargs if key not in takes)
    if unknown:
        raise ValueError(f"{cls.__name__} takes no argument {unknown[0]!r} (given "
                         f"{shown(kwargs[unknown[0]])}); a config of another model? It takes "
                         f"{', '.join(dict.fromkeys(takes))}")


class DefaultSize(int):
    """A size a config lacks, at the value its constructor gives it (``config_defaults``): a
    size check's error says so."""


class GivenSize(int):
    """A size a config lacks, at the value an argument of ``from_preset`` gives it (a
    handmade or older keras-hub preset's ``task.json``, ``kerashub_presets.absent_task_args``):
    a size check's error says so."""


@functools.lru_cache(maxsize=None)
def config_defaults(cls, with_backbone: bool = True) -> Dict[str, object]:
    """The keyword defaults of ``cls``'s constructor, read from its signature (integers as
    ``DefaultSize``): what a config lacking a key builds. A task's (a class with a
    ``backbone_cls``) include its backbone's with ``with_backbone``, as a task built from
    keyword arguments passes them to its backbone."""
    backbone = next((k.__dict__["backbone_cls"] for k in cls.__mro__
                     if k.__dict__.get("backbone_cls") is not None), None)
    defaults = {}
    for klass in ((backbone,) if with_backbone and backbone is not None else ()) + (cls,):
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            value = parameter.default
            if value is parameter.empty:
                continue
            integer = isinstance(value, int) and not isinstance(value, bool)
            defaults[name] = DefaultSize(value) if integer else value
    return defaults


class PlainConfig:
    """Keeps the constructor arguments named in ``CONFIG`` as attributes and serialises them,
    so ``get_config`` round-trips through ``from_config`` (``cls(**config)``)."""

    CONFIG: Tuple[str, ...] = ()

    def _keep_config(self, arguments: dict) -> None:
        for key in self.CONFIG:
            setattr(self, key, arguments[key])

    def get_config(self):
        return {**super().get_config(), **{key: getattr(self, key) for key in self.CONFIG}}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def sinusoid_positions(num_positions: int, dim: int, dtype: str = "float32"):
    """``sinusoid_table`` as a tensor of ``dtype`` on the current Keras backend.

    On TensorFlow it is computed with ``keras.ops`` in float64 inside the graph: bit-identical
    to the numpy table, and it keeps a 1568 x D constant out of every traced graph (a
    SavedModel would otherwise carry it in ``saved_model.pb``). JAX runs without float64
    unless ``jax_enable_x64`` is set (float64 maths there silently becomes float32), so other
    backends take the numpy table, computed in float64 on the host.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.cast(ops.convert_to_tensor(sinusoid_table(num_positions, dim)), dtype)
    positions = ops.cast(ops.arange(num_positions), "float64")[:, None]
    j = ops.arange(dim)
    exponents = ops.cast(2 * (j // 2), "float64") / dim
    angles = positions / ops.power(ops.convert_to_tensor(10000.0, "float64"), exponents)[None, :]
    table = ops.where(((j % 2) == 0)[None, :], ops.sin(angles), ops.cos(angles))
    return ops.cast(table, dtype)[None]


def embed_tokens(layer, video_nthwc):
    """``layer.patch_embed`` tokens plus upstream's fixed sinusoid positions.

    The table is not a variable: upstream never saves it, so neither do we.
    """
    x = layer.patch_embed(video_nthwc)
    return x + sinusoid_positions(layer.num_patches, layer.embed_dim, x.dtype)


def run_blocks(blocks, x, training=None):
    """``x`` through every block in order: (output, [each block's output])."""
    hidden = []
    for block in blocks:
        x = block(x, training=training)
        hidden.append(x)
    return x, hidden


def freeze_if_built_frozen(model: keras.Model) -> None:
    """Freeze every layer of a functional ``model`` built with ``trainable=False`` (its
    constructor's argument, or a frozen model's saved config): Keras's ``Functional`` takes
    the flag before it tracks the layers it is built from, so they and their variables would
    stay trainable (and a task on a frozen backbone would train it again in ``fit``)."""
    if not model.trainable:
        # Keras's setter, called again now the layers are tracked; not ``model.trainable =
        # False``: on TensorFlow, setting an attribute to the value it has is skipped
        keras.layers.Layer.trainable.fset(model, False)


def layer_norm(name: str, **kwargs) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPS, name=name, **kwargs)


def named_variables(layer: keras.layers.Layer, prefix: str = "") -> Dict[str, keras.Variable]:
    """Dotted names -> variables, walking the sublayers each layer lists in ``SUBLAYERS``.

    A ``SUBLAYERS`` item is an attribute name, or ``(attribute, name)`` to publish the child
    under another name (``""`` merges its variables into the parent's, so a classifier's
    backbone variables read ``blocks.0...`` as upstream's do). Built-in Keras layers end the
    walk with their own variable names (``kernel``, ``bias``, ``gamma``, ``beta``), e.g.
    ``blocks.3.attn.qkv.kernel``.
    """
    children = getattr(layer, "SUBLAYERS", None)
    if children is None:
        return {f"{prefix}{v.name}": v for v in layer.weights}
    found: Dict[str, keras.Variable] = {}
    for child in children:
        attribute, name = child if isinstance(child, tuple) else (child, child)
        value = getattr(layer, attribute)
        child_prefix = f"{prefix}{name}." if name else prefix
        if isinstance(value, list):
            for index, sub in enumerate(value):
                found.update(named_variables(sub, f"{child_prefix}{index}."))
        elif value is not None:
            found.update(named_variables(value, child_prefix))
    for variable in getattr(layer, "OWN_VARIABLES", ()):
        found[f"{prefix}{variable}"] = getattr(layer, variable)
    return found


def token_count(x):
    """``x.shape[1]`` when the traced graph knows it (fine-tuned models: every token), else
    the runtime value (a pre-trained encoder's visible tokens)."""
    return x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenDense(keras.layers.Dense):
    """``keras.layers.Dense`` over ``(batch, tokens, features)``, as one 2-D matmul over every
    token with the batch written as -1.

    The same arithmetic as Keras's Dense on TensorFlow (``tf.tensordot`` also flattens to one
    2-D matmul), but the traced graph's shapes are constants whatever the batch: Dense on a
    3-D input with an open batch computes its reshapes at run time (``Shape``, ``Gather``,
    ``Prod`` per layer), which LiteRT keeps as separate small ops around every
    ``FULLY_CONNECTED``. Other inputs, and a quantised or LoRA layer, take Dense's own path.
    """

    def call(self, inputs, training=None):
        if (len(inputs.shape) != 3 or inputs.shape[-1] is None or self.lora_enabled
                or self.quantization_mode is not None):
            return super().call(inputs, training=training)
        tokens = token_count(inputs)
        x = ops.matmul(ops.reshape(inputs, (-1, inputs.shape[-1])), self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return ops.reshape(x, (-1, tokens, self.units))


@keras.saving.register_keras_serializable(package=PACKAGE)
class PatchEmbed(PlainConfig, keras.layers.Layer):
    """Tubelet embedding: (B, T, H, W, C) -> (B, N, D) tokens in (t, h, w) order."""

    SUBLAYERS = ("proj",)
    CONFIG = ("embed_dim", "patch_size", "tubelet_size")

    def __init__(self, embed_dim: int, patch_size: int = 16, tubelet_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = keras.layers.Conv3D(embed_dim, kernel, strides=kernel, padding="valid",
                                        dtype=self.dtype_policy, name="proj")

    def build(self, input_shape):
        self.proj.build(input_shape)

    def call(self, video_nthwc):
        x = self.proj(video_nthwc)
        grid = x.shape[1:4]
        tokens = int(np.prod(grid)) if None not in grid else -1
        batch = -1 if tokens != -1 else ops.shape(x)[0]
        return ops.reshape(x, (batch, tokens, self.embed_dim))

@keras.saving.register_keras_serializable(package=PACKAGE)
class Attention(PlainConfig, keras.layers.Layer):
    """Multi-head self-attention with one fused ``qkv`` projection (its key bias stays zero).

    ``cos_attn`` is VideoMAE V2's cosine attention: q and k scaled to unit length, logits
    times ``exp(min(scale, 4.6052))`` with a learned per-head ``scale`` (heads, 1, 1),
    initialised at log(10) as upstream.
    """

    SUBLAYERS = ("qkv", "proj")
    CONFIG = ("dim", "num_heads", "cos_attn")

    def __init__(self, dim: int, num_heads: int, cos_attn: bool = False, **kwargs):
        check_heads(dim, num_heads)
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5  # cos_attn: replaced by the learned scale in build
        self.qkv = TokenDense(3 * dim, dtype=self.dtype_policy, name="qkv")
        self.proj = TokenDense(dim, dtype=self.dtype_policy, name="proj")

    @property
    def OWN_VARIABLES(self):  # noqa: N802  (the attribute name named_variables reads)
        return ("scale",) if self.cos_attn else ()

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(input_shape)
        if self.cos_attn:
            self.scale = self.add_weight(
                shape=(self.num_heads, 1, 1), name="scale",
                initializer=keras.initializers.Constant(float(np.log(10.0))))

    def call(self, x):
        tokens = token_count(x)  # the batch is -1: constant shapes when tokens are known
        qkv = ops.reshape(self.qkv(x), (-1, tokens, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))
        if self.cos_attn:
            q, k, v = unit_length(qkv[0]), unit_length(qkv[1]), qkv[2]
            logit_scale = ops.exp(ops.minimum(ops.cast(self.scale, x.dtype),
                                              COS_ATTN_MAX_LOG_SCALE))
            logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * logit_scale
        else:
            q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
            logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        attn = ops.softmax(logits, axis=-1)
        x = ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3))
        return self.proj(ops.reshape(x, (-1, tokens, self.dim)))


def unit_length(x):
    """``x / max(||x||, 1e-12)`` along the last axis, as torch's ``F.normalize``."""
    length = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(length, NORMALIZE_EPS)

@keras.saving.register_keras_serializable(package=PACKAGE)
class Mlp(PlainConfig, keras.layers.Layer):
    SUBLAYERS = ("fc1", "fc2")
    CONFIG = ("dim", "hidden_dim")

    def __init__(self, dim: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.fc1 = TokenDense(hidden_dim, dtype=self.dtype_policy, name="fc1")
        self.fc2 = TokenDense(dim, dtype=self.dtype_policy, name="fc2")

    def build(self, input_shape):
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.hidden_dim,))

    def call(self, x):
        # upstream uses nn.GELU(): the exact erf form; tanh-GELU drifts by ~1e-4
        return self.fc2(ops.gelu(self.fc1(x), approximate=False))

@keras.saving.register_keras_serializable(package=PACKAGE)
class Block(PlainConfig, keras.layers.Layer):
    """Pre-norm transformer block: ``x += attn(norm1(x)); x += mlp(norm2(x))``.

    ``drop_path_rate`` > 0 drops each residual branch per sample while training (stochastic
    depth, as upstream's fine-tuning), scaling the kept ones by ``1 / (1 - rate)``.
    ``init_values`` > 0 adds upstream's layer scale: each branch times a learned per-channel
    ``gamma_1`` / ``gamma_2`` (initialised at ``init_values``). ``cos_attn``: see Attention.
    """

    SUBLAYERS = ("norm1", "attn", "norm2", "mlp")
    CONFIG = ("dim", "num_heads", "mlp_ratio", "drop_path_rate", "init_values", "cos_attn")

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0, init_values: float = 0.0, cos_attn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self._keep_config(locals())
        self.norm1 = layer_norm("norm1", dtype=self.dtype_policy)
        self.attn = Attention(dim, num_heads, cos_attn, dtype=self.dtype_policy, name="attn")
        self.norm2 = layer_norm("norm2", dtype=self.dtype_policy)
        # upstream: int(dim * mlp_ratio), so ViT-g's 48/11 gives int(1408 * 48 / 11) = 6144
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dtype=self.dtype_policy, name="mlp")
        self.seed_generator = keras.random.SeedGenerator() if drop_path_rate > 0 else None
        self.gamma_1 = self.gamma_2 = None

    @property
    def layer_scale(self) -> bool:
        return bool(self.init_values) and self.init_values > 0

    @property
    def OWN_VARIABLES(self):  # noqa: N802  (the attribute name named_variables reads)
        return ("gamma_1", "gamma_2") if self.layer_scale else ()

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.mlp):
            layer.build(input_shape)
        if self.layer_scale:
            init = keras.initializers.Constant(float(self.init_values))
            self.gamma_1 = self.add_weight(shape=(self.dim,), initializer=init, name="gamma_1")
            self.gamma_2 = self.add_weight(shape=(self.dim,), initializer=init, name="gamma_2")

    def compute_output_shape(self, input_shape):
        # a block keeps its input's shape. Declared, Keras's symbolic call (building a
        # functional model, so every build and every reload of a file) takes it from here
        # instead of tracing ``call`` into a scratch graph: 0.2 s per ViT-B block, twelve per
        # encoder (docs/BENCHMARKS.md)
        return input_shape

    def drop_path(self, x, training):
        if not training or self.drop_path_rate <= 0:
            return x
        keep = 1.0 - self.drop_path_rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        kept = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator,
                                                     dtype=x.dtype))
        return x / keep * kept

    def call(self, x, training=None):
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)), training)
            return x + self.drop_path(self.mlp(self.norm2(x)), training)
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)), training)
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)), training)
