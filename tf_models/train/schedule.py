"""Upstream's learning-rate schedule: linear warm-up from 0, then a half cosine to ``min_lr``.

From upstream's ``utils.cosine_scheduler`` (per iteration, ``start_warmup_value`` 0): warm-up
``linspace(0, base, warmup_steps)``, then ``min + (base - min) / 2 * (1 + cos(pi * i / n))``
over the remaining ``n`` steps.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="videomae")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up for ``warmup_steps`` then cosine decay to ``min_lr`` at ``total_steps``."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 1e-6):
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(warmup_steps, total_steps))
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        # linspace(0, base, warm): step i -> base * i / (warm - 1)
        warmup = self.base_lr * step / max(warm - 1, 1)
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (
            1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}
