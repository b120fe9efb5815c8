"""``VideoMAEMaskedAutoencoder``: upstream's VideoMAE pre-training task as a keras-hub task.

Inputs: ``{"video": (B, T, H, W, 3) float32, "mask": (B, N) bool}`` or the list
``[video, mask]``; True = masked, the same number of masked tokens in every row (positions
may differ per row). Output: pixels (B, n_masked, 3 * tubelet * patch**2), the normalised
pixels of the masked patches in ascending token order, as upstream (with no masked token:
every token's, as upstream's decoder). VideoMAE V2's dual
masking: an optional ``"decode_mask"`` (B, N) bool (True = left out of the decoder).

Training (upstream's ``engine_for_pretraining.py``): ``compile()`` defaults to upstream's
AdamW (``pretrain.pretraining_optimizer``) and the mean squared error; the targets are
``tf_models.video.reconstruct.masked_targets(clips01, mask)`` from the clips in [0, 1] whose
normalisation (``normalize_clip``) the model takes (with ``decode_mask``: of the tokens it
keeps, ``masked_targets(clips01, ~decode_mask)``). Sample weights may be per clip
``(batch,)`` or per masked token ``(batch, n_masked)``. ``fit`` and ``evaluate`` also take a
``keras.utils.PyDataset`` of such batches: ``tf_models.video.masked_clips.MaskedClips`` draws
new masks every epoch, as upstream does.
"""

from __future__ import annotations

import inspect
from typing import List, Tuple

import keras
import numpy as np
from keras_hub.models import Task

from .compiling import (BuildsBeforeTracing, compile_from_saved_config,
                        load_saved_optimizer_state)
from .count_jit import JitPerTokenCount
from .hub import load_preset_model
from .input_checks import (PRETRAINER, VALIDATION_DATA, ListedArray, clip_shape,
                           mask_rows_match, per_row_count, refuse_no_clips,
                           refuse_other_clip_size, refuse_raw_frames, validation_inputs)
from .kerashub_presets import keras_hub_loads, load_checked
from .layers import (PACKAGE, check_model_options, check_model_sizes, freeze_if_built_frozen,
                     refuse_unknown_args)
from .pretrain import (EpochBatches, FollowEpochs, MaskedAutoencoding, pretraining_optimizer,
                       video_and_mask)
from .shuffled import shuffled_fit_arguments
from .transformers_format import is_transformers_preset, load_transformers_preset
from .videomae import TASK_BACKBONE_ARGS, BackboneTask, make_backbone
from .videomae_backbone import VideoMAEBackbone


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEMaskedAutoencoder(BuildsBeforeTracing, JitPerTokenCount, Task, BackboneTask):
    """Upstream's VideoMAE masked autoencoder: ``model({"video", "mask"})`` -> masked pixels.

    The backbone (upstream's ``encoder.*``, closed by ``encoder.norm``) sees only the visible
    tokens; ``encoder_to_decoder`` (no bias) and ``mask_token`` feed the decoder. The decoder
    shares the backbone's ``mlp_ratio``, ``init_values`` and ``cos_attn``, as upstream's.
    A functional keras-hub ``Task`` with inputs ``video``, ``mask`` and the optional
    ``decode_mask``; ``VideoMAEMaskedAutoencoder(backbone=...)`` or from the backbone's
    keyword arguments. On JAX its ``fit`` / ``evaluate`` / ``predict`` compile one step per
    token count (``count_jit``).
    """

    backbone_cls = VideoMAEBackbone
    SUBLAYERS = (("backbone", "encoder"), "encoder_to_decoder", "decoder")
    OWN_VARIABLES = ("mask_token",)
    TASK_CONFIG = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")
    NEW_TASK_ARGS = None  # the decoder comes only from a pre-trained preset
    PRESET_WORDS = "pre-trained (PT) model"

    def __init__(self, backbone=None, decoder_embed_dim: int = 384, decoder_depth: int = 4,
                 decoder_num_heads: int = 6, preprocessor=None, **kwargs):
        # before anything is built (a config from a file: unknown keys, options of any type)
        refuse_unknown_args(kwargs, VideoMAEMaskedAutoencoder, TASK_BACKBONE_ARGS)
        check_model_options(kwargs)
        check_model_sizes(dict(decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
                               decoder_num_heads=decoder_num_heads))
        backbone = make_backbone(backbone, kwargs, "norm", "VideoMAEMaskedAutoencoder")
        kwargs.pop("dtype", None)
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        core = MaskedAutoencoding(backbone, decoder_embed_dim, decoder_depth, decoder_num_heads,
                                  dtype=backbone.dtype_policy, name="masked_autoencoding")
        # === Functional model ===
        tokens = backbone.num_patches
        inputs = {"video": keras.Input(shape=backbone.input_shape[1:], name="video"),
                  "mask": keras.Input(shape=(tokens,), dtype="bool", name="mask"),
                  "decode_mask": keras.Input(shape=(tokens,), dtype="bool",
                                             name="decode_mask", optional=True)}
        outputs = core(inputs["video"], inputs["mask"], inputs["decode_mask"])
        compile_now = kwargs.pop("compile", True)  # keras-hub's Task compiles in __init__;
        # here once the model is whole (the default optimizer reads its named variables)
        super().__init__(inputs=inputs, outputs=outputs, compile=False, **kwargs)
        freeze_if_built_frozen(self)
        # === Config ===
        self.decoder_embed_dim = decoder_embed_dim
        self.decoder_depth = decoder_depth
        self.decoder_num_heads = decoder_num_heads
        self.core = core
        if compile_now:
            self.compile()

    encoder_to_decoder = property(lambda self: self.core.encoder_to_decoder)
    decoder = property(lambda self: self.core.decoder)
    mask_token = property(lambda self: self.core.mask_token)

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """``keras.Model.compile`` with upstream pre-training's defaults: its AdamW
        (``tf_models.pretraining_optimizer`` at a batch of 256: rate 1.5e-4; pass
        ``pretraining_optimizer(model, batch_size=B)`` for upstream's rate at batch B), the
        mean squared error to ``masked_targets``, no metrics."""
        if optimizer == "auto":
            optimizer = pretraining_optimizer(self)
        if loss == "auto":
            loss = keras.losses.MeanSquaredError()
        if metrics == "auto":
            metrics = None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        load_saved_optimizer_state(self)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        weights = _weights_per_token(sample_weight, y_pred)
        return super().compute_loss(x, y, y_pred, weights, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, y_pred, _weights_per_token(sample_weight, y_pred))

    def compile_from_config(self, config):
        compile_from_saved_config(self, config)

    def get_config(self):
        return self.task_config(super().get_config())

    def call_with_hidden_states(self, video_nthwc, mask, decode_mask=None,
                                training=None) -> Tuple[object, List[object]]:
        """Predictions and the outputs of every encoder block, then every decoder block."""
        return self.core.call_with_hidden_states(video_nthwc, mask, decode_mask, training)

    def __call__(self, inputs, *args, **kwargs):
        full = _full_inputs(inputs)
        self._check_inputs(full, raw_frames=False)
        return super().__call__(full, *args, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        """keras-hub's ``fit`` after the inputs' checks; arrays are shuffled every epoch as
        Keras's ``shuffle`` says (``tf_models.shuffled``; keras-hub's own batches never are).
        A ``keras.utils.PyDataset`` goes to Keras's ``fit`` (keras-hub's would read it as an
        array); an ``EpochBatches`` one (``tf_models.video.masked_clips.MaskedClips``: new
        masks every epoch) has its ``epoch`` set as Keras's epochs begin."""
        if self._keras_takes(x):
            keras_fit = keras.Model.fit.__get__(self)  # Keras's positional order
            self._check_arrays(validation_inputs(keras_fit, args, kwargs), VALIDATION_DATA)
            if isinstance(x, EpochBatches):  # its epoch follows Keras's (FollowEpochs)
                bound = inspect.signature(keras.Model.fit).bind(self, x, y, *args, **kwargs)
                callbacks = bound.arguments.get("callbacks") or []
                bound.arguments["callbacks"] = [*callbacks, FollowEpochs(x)]
                return keras.Model.fit(*bound.args, **bound.kwargs)
            return keras.Model.fit(self, x, y, *args, **kwargs)
        x = _dict_inputs(x)
        self._check_arrays(x)
        self._check_arrays(validation_inputs(super().fit, args, kwargs), VALIDATION_DATA)
        x, y, args, kwargs = shuffled_fit_arguments(super().fit, x, y, args, kwargs)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        if self._keras_takes(x):
            return keras.Model.evaluate(self, x, y, *args, **kwargs)
        x = _dict_inputs(x)
        self._check_arrays(x)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        x = _dict_inputs(x)
        self._check_arrays(x)
        return super().predict(x, *args, **kwargs)

    def _keras_takes(self, x) -> bool:
        """Whether ``x`` is a ``PyDataset``, whose batches go to the model as they are (one
        ValueError line where the model has a preprocessor, which they would skip)."""
        if not isinstance(x, keras.utils.PyDataset):
            return False
        if self.preprocessor is not None:
            raise ValueError(f"{self.name}: a keras.utils.PyDataset's batches reach the model "
                             f"as they are, past its preprocessor; give them already "
                             f"preprocessed to the model without one (preprocessor=None)")
        return True

    def _check_arrays(self, x, where: str = "") -> None:
        """``_check_inputs`` on the inputs of ``fit`` / ``evaluate`` / ``predict`` where they
        are a dict or list (datasets pass: on JAX each batch is checked on the host); raw
        frames pass only through a preprocessor of one's own. An entry that is a (nested)
        Python list is the array it becomes, as the classifier reads one
        (``input_checks.fed_video``): clips by their shape and dtype (``ListedArray``, not
        copied), masks (one bool a token) by their values. ``where``: what the lines name
        after the model's (``input_checks.VALIDATION_DATA``), if anything."""
        if isinstance(x, (dict, list, tuple)):
            inputs = _full_inputs(x)
            if isinstance(inputs["video"], list):
                inputs["video"] = ListedArray.of(inputs["video"])
            for name in ("mask", "decode_mask"):
                if isinstance(inputs[name], list):  # (batch, tokens) bools: small
                    try:
                        inputs[name] = np.asarray(inputs[name])
                    except ValueError:  # numpy's "inhomogeneous shape": rows of two lengths
                        lengths = sorted({len(row) if isinstance(row, (list, tuple)) else 1
                                          for row in inputs[name]})
                        raise ValueError(
                            f"{self.name}:{where} '{name}' must be (batch, tokens) bool, every row "
                            f"one entry per token; got a list whose rows have "
                            f"{', '.join(map(str, lengths))} entries. Make the masks with "
                            f"tf_models.tube_mask") from None
            self._check_inputs(inputs, raw_frames=self.preprocessor is not None, where=where)

    def _check_inputs(self, inputs: dict, raw_frames: bool, where: str = "") -> None:
        """One ValueError line for a batch of no clips, clips of another shape than the model
        takes (``input_checks.clip_shape``; any frame size and channels with ``raw_frames``),
        raw uint8 frames (unless ``raw_frames``), or masks of another row count than the
        clips, of another token count or whose rows differ in count (``input_checks``), where
        the values are at hand; ``where`` as ``_check_arrays``'s."""
        who = f"{self.name}:{where}"
        refuse_no_clips(inputs["video"], who)
        frames, size = self.backbone.num_frames, self.backbone.img_size
        shape = clip_shape(inputs["video"], who, frames, self.backbone.in_chans,
                           any_channels=raw_frames)
        if not raw_frames:
            refuse_raw_frames(inputs["video"], who)
        if shape is not None:  # before: PatchEmbed's error, or a mask's of another batch
            if raw_frames:  # a preprocessor of one's own: its frames, any size
                refuse_other_clip_size(shape, who, frames, None, "frames of any size")
            else:
                refuse_other_clip_size(shape, who, frames, size,
                                       f"{size} x {size} frames (the model's own)")
        masks = PRETRAINER + where
        for name in ("mask", "decode_mask"):
            mask_rows_match(inputs["video"], inputs[name], name, masks)
        tokens = self.backbone.num_patches
        per_row_count(inputs["mask"], keep=False, name="mask", tokens=tokens, who=masks)
        per_row_count(inputs["decode_mask"], keep=True, name="decode_mask", tokens=tokens,
                      who=masks)

    def call(self, inputs, training=None, mask=None):
        # the trainers' steps on JAX call this directly (``stateless_call``), not __call__;
        # ``training`` named here, or Keras would not pass fit's training=True
        return super().call(_full_inputs(inputs), training=training, mask=mask)

    def compute_output_spec(self, inputs, training=None, mask=None):
        # called on Keras inputs (this model inside another functional one): Keras's own
        # graph walk cannot take the absent decode_mask (None), and the count is unknown
        video, _, _ = video_and_mask(inputs)
        return keras.KerasTensor((video.shape[0], None, self.core.num_outputs),
                                 dtype=self.compute_dtype)

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True, **kwargs):
        """A pre-trained model from a keras-hub preset folder or handle (``Task.from_preset``),
        or from a zoo name, release folder, artifact path or URL (``tf_models.hub``), or from a
        transformers-format ``VideoMAEForPreTraining`` folder or ``hf://`` repository."""
        if is_transformers_preset(preset, kwargs.get("offline")):  # model_type videomae
            return load_transformers_preset(cls, preset, load_weights=load_weights, **kwargs)
        if keras_hub_loads(cls, preset, kwargs):
            parent = super()
            return load_checked(
                lambda path: parent.from_preset(path, load_weights=load_weights, **kwargs),
                preset, load_weights, kwargs)
        return load_preset_model(cls, preset, load_weights=load_weights, **kwargs)


def _weights_per_token(sample_weight, y_pred):
    """Sample weights as ``(batch, 1)`` per clip or ``(batch, n_masked)`` per token, from
    ``(batch,)`` or ``(batch, n_masked)`` (any trailing 1s): Keras multiplies them into the
    loss's ``(batch, n_masked)`` values (a loss takes the mean over the pixels), which a
    ``(batch,)`` vector fails to broadcast against or, where the batch equals the masked
    count, weighs as tokens instead of clips (no error). Reshaped by the predictions' batch:
    TensorFlow may trace weights of unknown rank."""
    if sample_weight is None:
        return None
    return keras.ops.reshape(sample_weight, (keras.ops.shape(y_pred)[0], -1))


def _dict_inputs(x):
    """``[video, mask]`` or ``[video, mask, decode_mask]`` (a list or tuple) as the dict, which
    is what ``fit`` / ``evaluate`` / ``predict`` hand on (keras-hub's pipeline read a list of
    arrays of two shapes as one array: numpy's "inhomogeneous shape" error); anything else as
    given."""
    if not isinstance(x, (list, tuple)):
        return x
    return {name: value for name, value in _full_inputs(x).items() if value is not None}


def _full_inputs(inputs) -> dict:
    """The functional model's input dict from a dict or list, ``decode_mask`` None if absent."""
    video, mask, decode_mask = video_and_mask(inputs)
    return {"video": video, "mask": mask, "decode_mask": decode_mask}
