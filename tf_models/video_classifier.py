"""``VideoClassifier``: the base of video classification tasks, modelled on keras-hub's
``ImageClassifier`` (keras_hub/src/models/image_classifier.py)."""

from __future__ import annotations

import keras
from keras_hub.models import Task

from .compiling import compile_from_saved_config, load_saved_optimizer_state
from .layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoClassifier(Task):
    """Base class of video classification tasks: ``(batch, frames, height, width, 3)`` video
    (raw uint8 frames through the task's preprocessor) -> logits ``(batch, num_classes)``.

    As keras-hub's ``ImageClassifier``: a subclass builds a functional model from a backbone
    and a head; ``from_preset`` on this base class finds the subclass a preset declares;
    ``compile`` defaults to Adam, sparse categorical cross-entropy on logits and accuracy.
    """

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True, **kwargs):
        """keras-hub's ``Task.from_preset`` on a preset folder or handle, after checking that
        its configs name only this package's classes, in Keras's safe mode; a bad preset is
        one ``PresetError`` line (``tf_models.kerashub_presets.load_checked``)."""
        from .kerashub_presets import load_checked

        parent = super()
        return load_checked(
            lambda: parent.from_preset(preset, load_weights=load_weights, **kwargs), preset)

    def compile_from_config(self, config):
        compile_from_saved_config(self, config)

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """``keras.Model.compile`` with defaults: Adam(5e-5), sparse categorical
        cross-entropy (from logits unless ``activation`` is softmax), accuracy."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(5e-5)
        if loss == "auto":
            activation = keras.activations.get(getattr(self, "activation", None))
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=activation != keras.activations.softmax)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy()]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        load_saved_optimizer_state(self)
