"""Fine-tuning as upstream does it: layer-wise learning-rate decay with decoupled weight decay.

Upstream (``optim_factory.py``, ``run_class_finetuning.py``) gives the patch embedding layer id
0, block ``i`` id ``i + 1`` and everything after the blocks (``fc_norm``, ``head``) id
``depth + 1``; each id's learning rate is ``lr * layer_decay ** (depth + 1 - id)``, with
``layer_decay`` in (0, 1] (1: none; ``presets.FINETUNE_BOUNDS``). AdamW's decay is decoupled
and scaled by the same rate, and never applies where upstream's ``get_parameter_groups`` skips
it (``decays``): 1-D tensors (LayerNorm, layer scale), biases and the model's
``no_weight_decay()`` (the pre-trainer's ``mask_token``). Both are decided for every variable
of the model, trainable or frozen when the optimizer is made (and kept in its config), so a
backbone unfrozen later trains with upstream's rates and decay. Each step is
``torch.optim.AdamW``'s (``LayerDecayAdamW.update_step``). Works on every Keras backend.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Dict

import keras
from keras import ops

from .presets import FINETUNE_BOUNDS

# upstream's no_weight_decay() of the models it fine-tunes and pre-trains (modeling_finetune.py:
# pos_embed, cls_token; modeling_pretrain.py adds mask_token), each matched against a whole
# name as get_parameter_groups does. Ours have no cls_token and pos_embed is the fixed sinusoid
# table, not a variable: of these, only the pre-trainer's mask_token (1, 1, D) is one here.
NO_WEIGHT_DECAY = frozenset({"pos_embed", "cls_token", "mask_token"})


def decays(name: str, shape) -> bool:
    """Whether AdamW decays the variable ``name`` (a ``named_variables`` name) of ``shape``:
    upstream's ``get_parameter_groups`` skips 1-D tensors, names ending in ``.bias`` and the
    model's ``no_weight_decay()`` (``NO_WEIGHT_DECAY``)."""
    return len(shape) > 1 and not name.endswith(".bias") and name not in NO_WEIGHT_DECAY


def decay_paths(model) -> list:
    """The paths of every variable of ``model`` (frozen ones too) that AdamW decays
    (``decays``)."""
    return [v.path for name, v in model.named_variables().items() if decays(name, v.shape)]


def checked_setting(name: str, value, spelling: Callable[[str], str] = str) -> float:
    """``value`` as a float when it is a number within ``FINETUNE_BOUNDS[name]``, else a
    one-line ValueError naming the setting (as ``spelling`` writes it), the value and the
    range."""
    bounds = FINETUNE_BOUNDS[name]
    low, high = bounds["min"], bounds.get("max")
    fits = (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > low if bounds.get("min_open") else value >= low)
            and (high is None or value <= high))
    if not fits:
        interval = (("(" if bounds.get("min_open") else "[") + f"{low:g}, "
                    + (f"{high:g}]" if high is not None else "inf)"))
        raise ValueError(f"{spelling(name)} {value!r}: expected a number in {interval}, "
                         "upstream's range")
    return float(value)


def layer_ids(model) -> Dict[str, int]:
    """Variable path -> upstream layer id, for a classifier, pretrainer or backbone."""
    backbone = getattr(model, "backbone", model)
    depth = backbone.depth
    ids: Dict[str, int] = {}
    for name, variable in model.named_variables().items():
        parts = name.split(".")
        if parts[0] == "encoder":
            parts = parts[1:]
        if parts[0] == "patch_embed":
            ids[variable.path] = 0
        elif parts[0] == "blocks":
            ids[variable.path] = int(parts[1]) + 1
        else:
            ids[variable.path] = depth + 1
    return ids


@keras.saving.register_keras_serializable(package="videomae")
class LayerDecayAdamW(keras.optimizers.Adam):
    """AdamW as torch takes its steps, with a learning-rate scale per variable path.

    ``lr_scales``: {variable path: scale}; ``decay_paths``: the paths that get weight decay
    (``weight_decay`` 0 or more). Variables not listed train at the base rate without decay.
    """

    def __init__(self, lr_scales: Dict[str, float], decay_paths, weight_decay: float = 0.05,
                 **kwargs):
        weight_decay = checked_setting("weight_decay", weight_decay)
        super().__init__(**kwargs)
        self.lr_scales = dict(lr_scales)
        self.decay_paths = sorted(decay_paths)
        self._decay_set = set(self.decay_paths)
        self.decoupled_weight_decay = weight_decay

    def build(self, variables):
        super().build(variables)
        # by position: inside update_step a backend may hand over its own variable object
        # (TensorFlow passes the tf.Variable, which has no Keras path)
        self._scales = [self.lr_scales.get(v.path, 1.0) for v in variables]
        self._decays = [v.path in self._decay_set for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        """One step as ``torch.optim.AdamW`` (upstream's optimizer) takes it: the decoupled
        decay, then ``rate / (1 - beta_1 ** t) * m / (sqrt(v / (1 - beta_2 ** t)) + eps)``.
        Keras's Adam adds ``eps`` to the uncorrected ``sqrt(v)``, which moves an element whose
        gradient is near ``eps`` by up to 0.7 x the rate less in the first steps."""
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        rate = ops.cast(learning_rate, dtype) * self._scales[index]
        if self._decays[index] and self.decoupled_weight_decay:
            self.assign_sub(variable, variable * (rate * self.decoupled_weight_decay))
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        momentum, velocity = self._momentums[index], self._velocities[index]
        self.assign_add(momentum, (gradient - momentum) * (1 - self.beta_1))
        self.assign_add(velocity, (ops.square(gradient) - velocity) * (1 - self.beta_2))
        if self.amsgrad:  # torch's amsgrad: the running maximum of v in the denominator
            highest = self._velocity_hats[index]
            self.assign(highest, ops.maximum(highest, velocity))
            velocity = highest
        first = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        second = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        denominator = ops.sqrt(velocity) / ops.sqrt(second) + self.epsilon
        self.assign_sub(variable, momentum * (rate / first) / denominator)

    def get_config(self):
        config = super().get_config()
        config.update(lr_scales=self.lr_scales, decay_paths=self.decay_paths,
                      weight_decay=self.decoupled_weight_decay)
        return config


def layer_decay_optimizer(model, learning_rate=1e-3, layer_decay: float = 0.75,
                          weight_decay: float = 0.05, beta_1: float = 0.9,
                          beta_2: float = 0.999, epsilon: float = 1e-8, **kwargs):
    """An AdamW with upstream's layer-wise learning-rate decay for ``model``.

    ``learning_rate`` may be a schedule. Defaults are upstream's fine-tuning defaults
    (``--layer_decay 0.75 --weight_decay 0.05``, betas 0.9/0.999, eps 1e-8); ``layer_decay``
    outside (0, 1] or a negative ``weight_decay`` is a ValueError. The rates and the decay
    cover every variable of ``model``, frozen ones too: a layer unfrozen before the first step,
    or later with a fresh optimizer from this one's config (``LayerDecayAdamW.from_config(
    optimizer.get_config())``, as Keras asks for a new set of variables), trains with
    upstream's.
    """
    layer_decay = checked_setting("layer_decay", layer_decay)  # weight_decay: the optimizer's
    ids = layer_ids(model)
    top = max(ids.values())
    scales = {path: layer_decay ** (top - layer) for path, layer in ids.items()}
    return LayerDecayAdamW(scales, decay_paths(model), weight_decay=weight_decay,
                           learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                           epsilon=epsilon, **kwargs)
