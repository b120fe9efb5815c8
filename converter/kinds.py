"""One spec per model kind: what a converted model takes, returns and is built from.

Three kinds exist. A fine-tuned checkpoint becomes a ``classifier`` (video -> logits); a
pre-training checkpoint an ``autoencoder`` (video + tube mask -> the masked patches'
normalised pixels; VideoMAE V2's also takes an optional decode mask, served by a second
SavedModel signature); ``--encoder-only`` turns either into ``features`` (video -> per-token
and pooled features). Everything that differs between them is stated once, here: the inputs
and their SavedModel signature, the output names, the torch reference and the Keras model
built for an entry, the block layout named by per-block parity, and which of the
checkpoint's tensors each side gets, whether LiteRT serves it and how a model card describes
it. ``kind_of(entry)`` is the one place that decides.

A new kind (a video-text head, say) is one more ``ModelKind`` and one more line in
``kind_of``; nothing else branches on the mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

import tf_models
import torch_reference
from torch_reference.modeling_pretrain import PretrainVisionTransformerEncoder

from .checkpoint import strip_encoder_prefix
from .zoo import Entry

StateDict = Dict[str, torch.Tensor]
# (prefix, depth) per stack of transformer blocks, in the order they run
BlockLayout = Optional[Tuple[Tuple[str, int], ...]]


def litert_output_name(index: int) -> str:
    """What a ``.tflite`` file calls its ``index``-th output (TensorFlow's converter names a
    signature-less function's outputs after their Identity ops)."""
    return f"Identity_{index}" if index else "Identity"


class CardText(NamedTuple):
    """What a model card says about one kind, as Markdown lines per section."""

    architecture: List[str]   # after the encoder's line: the head or decoder
    contract: List[str]       # after the ``video`` input: other inputs and the outputs
    accuracy: List[str]       # the "Accuracy (reported upstream)" section


@dataclass(frozen=True)
class ModelKind:
    """What a kind of converted model is. Inputs and outputs are in signature order."""

    name: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    # the upstream model for an entry, shaped like its checkpoint (strict loading)
    torch_builder: Callable[[Entry], torch.nn.Module]
    # what parity compares the Keras model with: the upstream model, outputs named
    reference: Callable[[torch.nn.Module], torch.nn.Module]
    # the Keras model for an entry, variables created and unassigned
    keras_builder: Callable[[Entry], object]
    # the stacks of blocks, named in per-block parity reports (None: ``blocks.N``)
    block_layout: Callable[[Entry], BlockLayout]
    # (what the torch reference loads, what the mapping converts) from a checkpoint
    split_state: Callable[[Entry, StateDict], Tuple[StateDict, StateDict]]
    # whether a pre-training checkpoint must carry its decoder
    needs_decoder: bool
    # how a model card names the kind ("VideoMAE ViT-B {title} on Kinetics-400") and its text
    title: str
    card: Callable[[Entry], CardText]
    # why LiteRT cannot serve this kind (``--litert`` refuses with it); None: LiteRT serves it
    no_litert: Optional[str] = None
    # inputs the model may also take (after ``inputs``, in this order): the Keras model's
    # optional inputs, served by the SavedModel's second signature ``extra_signature``
    optional_inputs: Tuple[str, ...] = ()
    extra_signature: Optional[str] = None

    @property
    def serves_litert(self) -> bool:
        """Whether ``--litert`` writes a ``.tflite`` for this kind."""
        return self.no_litert is None

    def litert_refusal(self, entry: Entry) -> str:
        """The one-line refusal of ``--litert`` for ``entry`` of this kind."""
        served = ", ".join(kind.title for kind in KINDS if kind.serves_litert)
        return f"{entry.name}: --litert serves these kinds: {served}; not a {self.title}: " \
               f"{self.no_litert}"

    @property
    def litert_outputs(self) -> Tuple[str, ...]:
        """The outputs in a ``.tflite`` file's order: a dict output is flattened in sorted-name
        order when traced, and the file, which carries no signature, names them ``Identity``,
        ``Identity_1``... (``litert_output_name``)."""
        return tuple(sorted(self.outputs))

    def named(self, outputs) -> dict:
        """A model's outputs as {name: value}: a single tensor gets this kind's one name."""
        if isinstance(outputs, dict):
            return dict(outputs)
        (name,) = self.outputs
        return {name: outputs}

    def signature(self, entry: Entry, extra: bool = False) -> list:
        """The input specs of the SavedModel's ``serving_default`` (and ``.tflite``; with
        ``extra``: of its ``extra_signature``, which takes the optional inputs too), batch
        dimension left open; ``video`` is uint8 frames for a ``raw_frames`` entry."""
        import tensorflow as tf

        tokens = [None, entry.num_patches]
        video_dtype = tf.uint8 if entry.raw_frames else tf.float32
        specs = {"video": tf.TensorSpec([None, entry.num_frames, entry.img_size,
                                         entry.img_size, 3], video_dtype, name="video"),
                 "mask": tf.TensorSpec(tokens, tf.bool, name="mask"),
                 "decode_mask": tf.TensorSpec(tokens, tf.bool, name="decode_mask")}
        return [specs[name] for name in self.inputs + (self.optional_inputs if extra else ())]

    def signatures(self) -> Dict[str, Tuple[str, ...]]:
        """{SavedModel signature name: its inputs in order}: ``serving_default`` and, for a
        kind with optional inputs, ``extra_signature``."""
        found = {"serving_default": self.inputs}
        if self.extra_signature:
            found[self.extra_signature] = self.inputs + self.optional_inputs
        return found

    def serving_inputs(self, entry: Entry, *tensors) -> tuple:
        """A serving function's inputs (signature order) as the model takes them: for a
        ``raw_frames`` entry the uint8 ``video`` normalised in the graph as upstream does
        (/255, the dataset's mean and std: ``tf_models``' ``normalize_frames``)."""
        if not entry.raw_frames:
            return tensors
        from tf_models.videomae_video_converter import normalize_frames

        return tuple(normalize_frames(t, entry.mean, entry.std) if name == "video" else t
                     for name, t in zip(self.inputs + self.optional_inputs, tensors))

    def serving_case_inputs(self, entry: Entry, case) -> tuple:
        """A parity case's arrays as an exported signature takes them: ``case_inputs``, with
        the case's uint8 frames as ``video`` for a ``raw_frames`` entry."""
        arrays = self.case_inputs(case)
        if not entry.raw_frames:
            return arrays
        return tuple(case.frames_nthwc if name == "video" else array
                     for name, array in zip(self.case_input_names(case), arrays))

    def video_contract(self, entry: Entry) -> str:
        """The model card's line on the ``video`` input."""
        shape = f"`[batch, {entry.num_frames}, {entry.img_size}, {entry.img_size}, 3]`"
        if not entry.raw_frames:
            return f"- `video`: float32 {shape}, channels-last."
        return (f"- `video`: **uint8** RGB frames {shape}, channels-last, into the SavedModel"
                f"{' and the .tflite' if self.serves_litert else ''} (the preprocessing "
                f"below runs inside them); the `.keras` / `.weights.h5` model takes them "
                f"float32, preprocessed.")

    def keras_inputs(self, *arrays):
        """Arrays in input order as the Keras model takes them: the video alone, or a dict
        named like the signature (``{"video", "mask"[, "decode_mask"]}``), Keras's convention
        for several."""
        if len(arrays) == 1:
            return arrays[0]
        return dict(zip(self.inputs + self.optional_inputs, arrays))

    def case_inputs(self, case) -> tuple:
        """A parity case's arrays in input order (the video channels-last): the required
        inputs, then the optional ones the case has."""
        return tuple(getattr(case, name) if name != "video" else case.video_nthwc
                     for name in self.case_input_names(case))

    def case_input_names(self, case) -> Tuple[str, ...]:
        """The inputs a parity case feeds: the required ones and the optional ones it has."""
        return self.inputs + tuple(name for name in self.optional_inputs
                                   if getattr(case, name, None) is not None)

    def case_signature(self, case) -> str:
        """The SavedModel signature that serves ``case``."""
        names = self.case_input_names(case)
        return next(sig for sig, inputs in self.signatures().items() if inputs == names)


class NamedOutputs(torch.nn.Module):
    """A torch model whose single output is returned as {name: output}, as the Keras side
    names it; hooks and dtype casts reach the wrapped model's modules unchanged."""

    def __init__(self, model: torch.nn.Module, name: str):
        super().__init__()
        self.model = model
        self.name = name

    def forward(self, *inputs):
        return {self.name: self.model(*inputs)}


def _same(entry: Entry, state: StateDict) -> Tuple[StateDict, StateDict]:
    return state, state


def _no_blocks_named(entry: Entry) -> BlockLayout:
    return None


# --- fine-tuned classifier: video -> logits ---------------------------------------------------

def _classifier_torch(entry: Entry):
    return torch_reference.VisionTransformer(**entry.model_config())


def _classifier_keras(entry: Entry):
    return tf_models.VideoMAEVideoClassifier(**entry.model_config(), name=entry.name,
                                            compile=False)  # artifacts carry no optimizer


def _classifier_card(entry: Entry) -> CardText:
    top5 = f"Top-5 {entry.top5}" if entry.top5 is not None else "no Top-5 published"
    accuracy = (f"Top-1 {entry.top1}, {top5} ({entry.eval_views} views)."
                if entry.top1 else "No accuracy is reported upstream for this entry.")
    return CardText(
        [f"- Head: mean pooling -> fc_norm -> linear, {entry.num_classes} classes."],
        [f"- Output `logits`: `[batch, {entry.num_classes}]`."], [accuracy])


_NO_HEAD = ("No classification head: the fine-tuned entry of the same row reports the "
            "accuracy.")

CLASSIFIER = ModelKind("classifier", ("video",), ("logits",), _classifier_torch,
                       lambda model: NamedOutputs(model, "logits"), _classifier_keras,
                       _no_blocks_named, _same, needs_decoder=False,
                       title="fine-tuned classifier", card=_classifier_card)


# --- pre-trained masked autoencoder: video + mask -> pixels of the masked patches ---------------

def _autoencoder_torch(entry: Entry):
    return torch_reference.PretrainVisionTransformer(**entry.model_config())


def _autoencoder_keras(entry: Entry):
    return tf_models.VideoMAEMaskedAutoencoder(**entry.model_config(), name=entry.name,
                                               compile=False)  # artifacts carry no optimizer


def _autoencoder_blocks(entry: Entry) -> BlockLayout:
    return (("encoder.", entry.dims["depth"]), ("decoder.", entry.dims["decoder_depth"]))


def _autoencoder_card(entry: Entry) -> CardText:
    dims = entry.dims
    return CardText(
        [f"- Decoder: embed dim {dims['decoder_embed_dim']}, {dims['decoder_depth']} blocks, "
         f"{dims['decoder_num_heads']} heads; predicts {entry.pixels_per_patch} normalised "
         "pixels per masked patch."],
        [f"- `mask`: bool `[batch, {entry.num_patches}]`, True = masked, the same count in "
         f"every row (tube masking at ratio {entry.mask_ratio} in pre-training).",
         f"- Output `pixels`: `[batch, n_masked, {entry.pixels_per_patch}]`, per-patch "
         "normalised pixels of the masked patches in ascending token order."],
        [_NO_HEAD])


AUTOENCODER = ModelKind("autoencoder", ("video", "mask"), ("pixels",), _autoencoder_torch,
                        lambda model: NamedOutputs(model, "pixels"), _autoencoder_keras,
                        _autoencoder_blocks, _same, needs_decoder=True,
                        title="pre-trained (masked autoencoder)", card=_autoencoder_card,
                        no_litert="a pre-trained model's output length depends on its mask, "
                                  "which LiteRT's static planning does not serve")


# --- VideoMAE V2's pre-trained masked autoencoder: the same, plus an optional decode mask ------

DUAL_MASKING_SIGNATURE = "dual_masking"


def _dual_masking_card(entry: Entry) -> CardText:
    card = _autoencoder_card(entry)
    cells = (f" (running-cell masking at ratio {entry.decoder_mask_ratio} in pre-training)"
             if entry.decoder_mask_ratio else "")
    contract = card.contract + [
        f"- `decode_mask` (optional; the SavedModel's `{DUAL_MASKING_SIGNATURE}` signature, "
        f"the `.keras` model's optional input): bool `[batch, {entry.num_patches}]`, True = "
        f"left out of the decoder, the same count in every row{cells}. With it the decoder "
        "predicts every token where it is False, visible ones included, in ascending token "
        "order; `decode_mask = ~mask` is the default behaviour."]
    return CardText(card.architecture, contract, card.accuracy)


DUAL_AUTOENCODER = dataclasses.replace(
    AUTOENCODER, name="dual-masking autoencoder", card=_dual_masking_card,
    optional_inputs=("decode_mask",), extra_signature=DUAL_MASKING_SIGNATURE)


# --- encoder features (--encoder-only): video -> tokens, pooled ---------------------------------
# from a fine-tuned checkpoint (the whole model loads; its head is not converted) or from a
# pre-training checkpoint (its encoder.* tensors, prefix stripped, for both sides)

def _features_torch(entry: Entry):
    config = entry.model_config()
    if entry.mode == "FT":
        model = torch_reference.VisionTransformer(**config, num_classes=entry.num_classes)
    else:
        model = PretrainVisionTransformerEncoder(**config)
    return model


def _features_keras(entry: Entry):
    config = entry.model_config()
    # a fine-tuned model's own pre-head norm: fc_norm, or (V2 without mean pooling) norm
    mean_pooled = config.get("use_mean_pooling", True)
    final_norm = "fc_norm" if entry.mode == "FT" and mean_pooled else "norm"
    return tf_models.VideoMAEBackbone(**config, final_norm=final_norm, name=entry.name)


def _features_state(entry: Entry, state: StateDict) -> Tuple[StateDict, StateDict]:
    if entry.mode == "FT":
        return state, {k: v for k, v in state.items() if not k.startswith("head.")}
    encoder = strip_encoder_prefix(state)
    return encoder, encoder


def _features_card(entry: Entry) -> CardText:
    width = entry.dims["embed_dim"]
    return CardText(
        [], [f"- Outputs `tokens`: `[batch, {entry.num_patches}, {width}]`, "
             f"`pooled`: `[batch, {width}]`."], [_NO_HEAD])


FEATURES = ModelKind("features", ("video",), ("tokens", "pooled"), _features_torch,
                     torch_reference.EncoderFeatures, _features_keras, _no_blocks_named,
                     _features_state, needs_decoder=False, title="encoder (features)",
                     card=_features_card)
KINDS = (CLASSIFIER, AUTOENCODER, DUAL_AUTOENCODER, FEATURES)


def kind_of(entry: Entry) -> ModelKind:
    """The kind of model ``entry`` converts to."""
    if entry.encoder_only:
        return FEATURES
    if entry.mode == "FT":
        return CLASSIFIER
    # upstream V2's pre-trainer takes forward(x, mask, decode_mask=None)
    return DUAL_AUTOENCODER if entry.family == "v2" else AUTOENCODER


# --- the builders, for callers that hold an entry -------------------------------------------------

def build_torch_model(entry: Entry, device: str = "cpu") -> torch.nn.Module:
    """The upstream model for ``entry`` (eval mode, fp32), shaped like the tensors the kind
    gives the torch side (``split_state``): load with ``load_state_dict(state, strict=True)``.

    ``device="meta"`` builds it without allocating or initialising any weight; load it with
    ``load_state_dict(state, strict=True, assign=True)`` to adopt the checkpoint's tensors.
    """
    with torch.device(device):
        return kind_of(entry).torch_builder(entry).eval()


def parity_reference(entry: Entry, model: torch.nn.Module) -> torch.nn.Module:
    """What the Keras model of ``entry`` is compared with: ``model`` with named outputs."""
    return kind_of(entry).reference(model)


def build_tf_model(entry: Entry):
    """The Keras model for ``entry``, variables created (unassigned)."""
    return kind_of(entry).keras_builder(entry)


def expected_source_shapes(entry: Entry) -> Dict[str, Tuple[int, ...]]:
    """Upstream's tensor names and shapes for ``entry``'s torch side, from a meta build."""
    return {name: tuple(t.shape)
            for name, t in build_torch_model(entry, device="meta").state_dict().items()}
