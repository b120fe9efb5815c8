"""``VideoClassifier``: the base of video classification tasks, modelled on keras-hub's
``ImageClassifier`` (keras_hub/src/models/image_classifier.py)."""

from __future__ import annotations

import keras
from keras_hub.models import Task

from .compiling import (BuildsBeforeTracing, compile_from_saved_config,
                        load_saved_optimizer_state)
from .input_checks import (NORMALISE_HINT, VALIDATION_DATA, clip_shape, fed_video,
                           first_video, refuse_labels_out_of_range, refuse_no_clips,
                           refuse_other_clip_size, refuse_raw_frames, validation_inputs)
from .layers import PACKAGE
from .shuffled import shuffled_fit_arguments


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoClassifier(BuildsBeforeTracing, Task):
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
        one ``PresetError`` line (``tf_models.kerashub_presets.load_checked``). On this base
        class: ``VideoMAEVideoClassifier.from_preset``, this package's one classifier (every
        preset here holds a VideoMAE backbone), so every preset and argument it takes (zoo
        names, ``offline``, ``drop_path_rate``...) goes the same way, and a preset folder
        declaring a subclass of it still loads as that subclass. Not keras-hub's
        ``find_subclass``, which takes the first registered subclass on that backbone: a
        subclass of one's own, defined anywhere in the process, would be built instead."""
        from .kerashub_presets import load_checked

        if cls.backbone_cls is None:
            from .videomae_video_classifier import VideoMAEVideoClassifier

            return VideoMAEVideoClassifier.from_preset(preset, load_weights=load_weights,
                                                       **kwargs)
        parent = super()
        return load_checked(
            lambda path: parent.from_preset(path, load_weights=load_weights, **kwargs),
            preset, load_weights, kwargs)

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

    def __call__(self, *args, **kwargs):
        # as keras-hub's own refusal of strings in a direct call: raw frames would be read as
        # normalised values (wrong logits, no error)
        video = first_video(args[0] if args else kwargs.get("inputs"))
        refuse_no_clips(video, f"{self.name}:")
        refuse_raw_frames(
            video, f"{self.name}: a direct call",
            "predict / fit / evaluate run the preprocessor on raw frames (a preset folder's "
            "classifier has one), or normalise them yourself (tf_models.video.normalize_views)")
        return super().__call__(*args, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        """keras-hub's ``fit`` after the inputs' checks; arrays are shuffled every epoch as
        Keras's ``shuffle`` says (``tf_models.shuffled``; keras-hub's own batches never are)."""
        self._check_clips(x)
        refuse_labels_out_of_range(y, f"{self.name}:", getattr(self, "num_classes", None))
        self._check_clips(validation_inputs(super().fit, args, kwargs), VALIDATION_DATA)
        x, y, args, kwargs = shuffled_fit_arguments(super().fit, x, y, args, kwargs)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_clips(x)
        refuse_labels_out_of_range(y, f"{self.name}:", getattr(self, "num_classes", None))
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_clips(x)
        return super().predict(x, *args, **kwargs)

    def _check_clips(self, x, where: str = "") -> None:
        """One clear ValueError for an array of clips this model cannot take: another frame
        count, or, with no preprocessor, another frame size (TensorFlow's graph would fail
        deep inside instead, "Incompatible shapes" where the positions are added) or raw
        uint8 frames (they would be taken as normalised values: logits, wrong ones, and no
        error), or no clips (``input_checks.refuse_no_clips``), in every container keras-hub
        reads as arrays: an array or tensor, a dict, a tuple, a (nested) list of clips
        (``input_checks.fed_video``). Datasets pass unchecked. ``where``: what the line
        names after the model's (``input_checks.VALIDATION_DATA``), if anything."""
        who = f"{self.name}:{where}"
        video = fed_video(x)
        refuse_no_clips(video, who)
        frames = getattr(self.backbone, "num_frames", None)
        size = getattr(self.backbone, "img_size", None)
        shape = clip_shape(video, who, frames, getattr(self.backbone, "in_chans", 3),
                           any_channels=self.preprocessor is not None)
        if shape is None or frames is None:
            return
        if self.preprocessor is None:
            refuse_raw_frames(video, who, "this model has no preprocessor: "
                              + NORMALISE_HINT + ", or load a preset folder, whose classifier "
                              "takes raw frames")
            refuse_other_clip_size(shape, who, frames, size,
                                   f"{size} x {size} frames (this model has no preprocessor "
                                   f"to resize them; a preset folder's classifier has one)")
        else:
            refuse_other_clip_size(shape, who, frames, None, "frames of any size")
