"""Shared plumbing of the VideoMAE tasks, and where the model classes are imported from.

Arranged as keras-hub arranges its models, one public class per file:
``VideoMAEBackbone`` (``videomae_backbone.py``, tubelet embedding, sinusoid positions,
transformer blocks), tasks on it (``VideoMAEVideoClassifier``, ``VideoMAEMaskedAutoencoder``)
and the classifier's preprocessor (``VideoMAEVideoClassifierPreprocessor`` with its
``VideoMAEVideoConverter``). Inputs are a video tensor or a dict named like the SavedModel
signature (``{"video": ...}``), so ``fit`` and ``predict`` work as usual.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras

from .layers import FINAL_NORMS, named_variables, shown
from .videomae_backbone import VideoMAEBackbone, gather_tokens, video_input

__all__ = ["FINAL_NORMS", "VideoMAEBackbone", "gather_tokens", "video_input", "BACKBONE_ARGS",
           "TASK_BACKBONE_ARGS", "make_backbone", "BackboneTask", "VideoMAEVideoClassifier"]

BACKBONE_ARGS = ("embed_dim", "depth", "num_heads", "num_frames", "img_size", "patch_size",
                 "tubelet_size", "mlp_ratio", "in_chans", "drop_path_rate", "init_values",
                 "cos_attn", "use_mean_pooling")
# what a task's constructor takes for its backbone: its arguments, and ``final_norm`` when it
# is the task's own (a report's model_config written by videomae-export holds the backbone's
# whole config, final_norm included: those reports load)
TASK_BACKBONE_ARGS = BACKBONE_ARGS + ("final_norm",)


def make_backbone(backbone, arguments: dict, final_norm: Optional[str], task: str):
    """The task's backbone: the one given, or one built from the backbone keyword arguments
    (a ``final_norm`` among them must be the task's own)."""
    said = arguments.pop("final_norm", final_norm)
    if said != final_norm:
        raise ValueError(f"{task} takes a backbone with final_norm={final_norm!r}, not "
                         f"{shown(said)}")
    given = {k: arguments.pop(k) for k in BACKBONE_ARGS if k in arguments}
    if backbone is None:
        return VideoMAEBackbone(**given, final_norm=final_norm, dtype=arguments.get("dtype"),
                                name="backbone")
    if given:
        raise ValueError(f"{task}: pass either a backbone or its arguments "
                         f"({', '.join(sorted(given))}), not both")
    if isinstance(backbone, dict):
        backbone = keras.saving.deserialize_keras_object(backbone)
    if not isinstance(backbone, VideoMAEBackbone):  # a config's "backbone": false, a number
        raise ValueError(f"{task}: backbone must be a VideoMAEBackbone or its serialised "
                         f"config, not {shown(backbone)}")
    if backbone.final_norm != final_norm:
        raise ValueError(f"{task} needs a backbone with final_norm={final_norm!r}, "
                         f"got {backbone.final_norm!r}")
    return backbone


class BackboneTask:
    """Mixin of the tasks: the backbone's shape and upstream-named variables, and what
    ``tf_models.hub.load_preset_model`` reads to build a task from a preset (each task also
    declares keras-hub's ``backbone_cls`` and ``preprocessor_cls``)."""

    TASK_CONFIG: Tuple[str, ...] = ()
    # the constructor arguments that size new task layers when the preset's model is of
    # another class (or the arguments change); None: the task's layers come only from a
    # preset of its own class
    NEW_TASK_ARGS: Optional[Tuple[str, ...]] = ()
    PRESET_WORDS = "task"  # what a preset of this class is, in an error message

    num_frames = property(lambda self: self.backbone.num_frames)
    img_size = property(lambda self: self.backbone.img_size)
    patch_size = property(lambda self: self.backbone.patch_size)
    tubelet_size = property(lambda self: self.backbone.tubelet_size)
    embed_dim = property(lambda self: self.backbone.embed_dim)
    depth = property(lambda self: self.backbone.depth)
    num_patches = property(lambda self: self.backbone.num_patches)

    def task_config(self, config: dict) -> dict:
        """keras-hub's task config (backbone, preprocessor, name) plus ``trainable`` (as
        keras-hub's backbone config has it; its task config has not, so a frozen task came
        back trainable) and ``TASK_CONFIG``."""
        config["trainable"] = self.trainable
        config.update({key: getattr(self, key) for key in self.TASK_CONFIG})
        return config

    def named_variables(self) -> Dict[str, keras.Variable]:
        """Dotted upstream-like names -> variables, what the converter maps onto."""
        return named_variables(self)


from .videomae_video_classifier import VideoMAEVideoClassifier  # noqa: E402
