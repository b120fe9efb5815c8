"""``from_preset``: any model argument (``tf_models.artifacts.resolve``) -> the requested class.

The stored model is resolved, verified and loaded by the one resolver; this module turns it
into the class asked for by what the classes declare, as keras-hub's tasks do:
``backbone_cls`` (the backbone a task is built on), ``preprocessor_cls`` and ``NEW_TASK_ARGS``
(the arguments that size new task layers, or None when a task's layers can only come from a
preset of its own class). No class is named here. Torch-free.
"""

from __future__ import annotations

from typing import Dict, Optional

from .artifacts.checksums import parse_sums, sha256_file  # noqa: F401  (re-exported)
from .artifacts.resolve import (PresetError, Resolved, cache_dir, fetch_asset,  # noqa: F401
                                load_keras_model, resolve_artifact, zoo_url)

# every model argument resolves the same way; the old name stays
resolve_preset = resolve_artifact


def copy_matching(source: Dict[str, object], target: Dict[str, object], what: str) -> None:
    """Assign every ``target`` variable from the ``source`` variable of the same name; every
    one must exist there with the same shape (a backbone is never half-loaded)."""
    missing = [name for name, variable in target.items()
               if name not in source or tuple(source[name].shape) != tuple(variable.shape)]
    if missing:
        raise PresetError(f"{what}: the stored model has no matching {', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''}; it is not a VideoMAE model "
                          f"of these dimensions")
    for name, variable in target.items():
        variable.assign(source[name].value)


def _backbone_args(backbone_cls) -> tuple:
    """A backbone's constructor arguments that say its shape (its final norm is the task's)."""
    return tuple(k for k in backbone_cls.CONFIG if k != "final_norm")


def _task_variables(model) -> Dict[str, object]:
    """The task's own variables (head, decoder...): its named variables not in its backbone."""
    in_backbone = {id(v) for v in model.backbone.weights}
    return {k: v for k, v in model.named_variables().items() if id(v) not in in_backbone}


def load_preset_model(cls, preset: str, offline: Optional[bool] = None, progress: bool = True,
                      load_weights: bool = True, **overrides):
    """``cls.from_preset``: the model of ``preset`` as ``cls``, with ``overrides`` applied.

    A backbone class (no ``backbone_cls``) gets the stored encoder, its final norm as stored.
    A task of the stored model's class is the stored model (or, with ``overrides``, a new one
    given its variables; new ``NEW_TASK_ARGS`` sizes give new task layers). A task of another
    class gets the stored backbone and new task layers, sized by its ``NEW_TASK_ARGS`` (a
    classifier from a PT preset needs ``num_classes``: its ``fc_norm`` and head are new, and
    the encoder comes without ``encoder.norm``, as upstream's fine-tuning drops it).
    ``overrides`` are constructor arguments (``num_classes``, ``dropout``,
    ``drop_path_rate``...). For mixed precision set Keras's global policy first.
    ``load_weights=False``: the same model with new weights, as keras-hub's ``from_preset``
    (``resolve.load_keras_model``); a zoo name is then built from its row, nothing downloaded.
    A keras-hub preset whose ``task.json`` lacks a key of its task (``num_classes``) takes
    it from ``overrides`` (``kerashub_presets.absent_task_args``).
    A task keeps the stored model's preprocessor, or a keras-hub preset's ``preprocessor.json``
    beside a stored model without one, when it is of the class the task declares
    (``_kept_preprocessor``, ``kerashub_presets.preset_preprocessor``): a new head or options
    do not change how frames are prepared, as keras-hub's own ``from_preset`` keeps it.
    """
    check_overrides(cls, preset, overrides)
    resolved = resolve_artifact(preset, offline=offline, progress=progress,
                                weights=load_weights)  # a zoo name's row needs no download
    model = model_as(cls, load_keras_model(resolved, offline, load_weights, overrides), preset,
                     **overrides)
    if resolved.kind == "kerashub" and getattr(model, "preprocessor", False) is None:
        from .kerashub_presets import hub_access, preset_preprocessor

        with hub_access(resolved.path, offline):
            found = preset_preprocessor(resolved.path, getattr(cls, "preprocessor_cls", None))
        if found is not None:  # beside a stored model without one (a backbone's preset)
            model.preprocessor = with_image_size(found, model.backbone.img_size)
    model.preset = resolved.preset
    return model


# what every Keras model's constructor takes besides its own arguments
LAYER_ARGS = ("name", "dtype", "trainable")


def _arguments(cls) -> set:
    """The keyword arguments ``cls`` takes: its constructor's named ones, a task's backbone's
    too (its ``**kwargs`` reach Keras's ``Model``, which ignores names it does not know)."""
    import inspect

    names = set(LAYER_ARGS)
    for each in (cls, getattr(cls, "backbone_cls", None)):
        if each is not None:
            names |= {name for name, p in inspect.signature(each.__init__).parameters.items()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self", "backbone"}  # the backbone is the preset's


def check_overrides(cls, preset: str, overrides: dict) -> None:
    """PresetError naming an override ``cls`` does not take (a misspelt ``num_classes`` would
    otherwise be ignored), before anything is fetched."""
    unknown = sorted(set(overrides) - _arguments(cls))
    if unknown:
        raise PresetError(f"{preset}: {cls.__name__}.from_preset takes no argument "
                          f"{', '.join(unknown)}; it takes {', '.join(sorted(_arguments(cls)))}, "
                          f"offline and progress")


def model_as(cls, source, preset: str, **overrides):
    """``source`` (a loaded VideoMAE model) as ``cls``, with ``overrides`` applied, by the rules
    of ``load_preset_model``; ``preset`` names it in errors."""
    backbone_cls = getattr(cls, "backbone_cls", None)
    source_backbone = getattr(source, "backbone", source)
    args = _backbone_args(backbone_cls or cls)
    backbone_config = {k: getattr(source_backbone, k) for k in args}
    changed = {k: overrides.pop(k) for k in args if k in overrides}
    backbone_config.update(changed)
    if backbone_cls is None:
        model = _built(cls, preset, {**changed, **overrides}, **backbone_config,
                       final_norm=source_backbone.final_norm, **overrides)
        copy_matching(source_backbone.named_variables(), model.named_variables(), preset)
    else:
        model = _task_from(cls, source, source_backbone, backbone_config, changed, overrides,
                           preset)
    return model


def _task_from(cls, source, source_backbone, backbone_config: dict, changed: dict,
               overrides: dict, preset: str):
    same = isinstance(source, cls)
    if not same:
        if cls.NEW_TASK_ARGS is None:
            raise PresetError(f"{preset}: is a {_words(source)}; a {cls.__name__} needs a "
                              f"{cls.PRESET_WORDS} preset")
        missing = [a for a in cls.NEW_TASK_ARGS if a not in overrides]
        if missing:
            raise PresetError(f"{preset}: is a {_words(source)} with no {cls.__name__} head; "
                              f"pass {', '.join(a + '=N' for a in missing)} to fine-tune it")
    elif not (overrides or changed):
        return source
    config = {k: getattr(source, k) for k in cls.TASK_CONFIG} if same else {}
    config.update(overrides)
    model = _built(cls, preset, {**changed, **overrides}, **backbone_config, **config,
                   **_kept_preprocessor(cls, source, backbone_config.get("img_size")))
    copy_matching(source_backbone.named_variables(), model.backbone.named_variables(), preset)
    if same and all(config.get(a) == getattr(source, a) for a in cls.NEW_TASK_ARGS or ()):
        copy_matching(_task_variables(source), _task_variables(model), preset)
    return model


def _kept_preprocessor(cls, source, img_size) -> dict:
    """{"preprocessor": ...} for a ``cls`` built from ``source``: ``source``'s preprocessor
    when it is of the class ``cls`` declares (``preprocessor_cls``), as keras-hub's loader
    keeps it (a new head or options do not change how frames are prepared), its converter at
    ``img_size`` where an override changed the frame size (``with_image_size``); {} when it
    has none of that class."""
    kept = getattr(source, "preprocessor", None)
    declared = getattr(cls, "preprocessor_cls", None)
    if declared is None or not isinstance(kept, declared):
        return {}
    return {"preprocessor": with_image_size(kept, img_size)}


def with_image_size(preprocessor, img_size):
    """``preprocessor``, or where its ``video_converter`` makes frames of another size than
    ``img_size``, a copy whose converter makes ``img_size`` ones (its mean and std kept)."""
    converter = getattr(preprocessor, "video_converter", None)
    if img_size is None or getattr(converter, "image_size", img_size) == img_size:
        return preprocessor
    config = preprocessor.get_config()
    config["video_converter"] = type(converter).from_config(
        {**converter.get_config(), "image_size": img_size})
    return type(preprocessor).from_config(config)


def _built(cls, preset: str, given: dict, **arguments):
    """``cls(**arguments)``; PresetError naming the arguments ``given`` to ``from_preset``
    where the constructor refuses them (a clip shorter than one tubelet, 0 classes...)."""
    try:
        return cls(**arguments)
    except (ValueError, TypeError) as error:
        text = " ".join(str(error).split())[:200] or type(error).__name__
        passed = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise PresetError(f"{preset}: a {cls.__name__} with {passed} cannot be built "
                          f"({text})") from None


def _words(model) -> str:
    return getattr(model, "PRESET_WORDS", type(model).__name__)
