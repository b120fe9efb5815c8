"""``from_preset`` on a transformers-format VideoMAE: a folder or ``hf://`` handle whose
``config.json`` says ``model_type: videomae``, its weights in ``model.safetensors`` (or shards
listed in ``model.safetensors.index.json``), converted on the fly without torch.

keras-hub's own transformers loader reads such folders for its models but has no hook for a
new ``model_type``, so this is ours; files come through keras-hub's ``get_file`` (a local
folder, or the Hugging Face client and its cache for ``hf://``), tensors through
``safetensors.numpy`` (no pickle, no torch). The names go through the converter's two tables
(``transformers_names``: transformers -> upstream, ``weight_names``: upstream -> Keras), with
coverage checked both ways before any variable is assigned.

What this path does not check that ``videomae-convert`` does: README, "Use a converted model"
("Transformers checkpoints straight in").
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .artifacts import download
from .artifacts.resolve import PresetError, check_config_sizes
from .layers import check_heads, check_model_sizes, sinusoid_table
from .transformers_names import config_problems, plan_renames, upstream_size_for
from .weight_names import TRANSFORMS, plan_assignments

MODEL_TYPE = "videomae"
CONFIG_FILE = "config.json"
# transformers' VideoMAEImageProcessor settings, read for a classifier's preprocessor
PREPROCESSOR_FILE = "preprocessor_config.json"
# the weights files, in the order they are looked for (transformers' SAFE_WEIGHTS_NAME,
# SAFE_WEIGHTS_INDEX_NAME); the pickle files are refused, never unpickled
SAFETENSORS_FILES = ("model.safetensors.index.json", "model.safetensors")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# transformers' VideoMAEConfig defaults (configuration_videomae.py): config.json stores only
# the values that differ from them
HF_DEFAULTS = dict(image_size=224, patch_size=16, num_channels=3, num_frames=16,
                   tubelet_size=2, hidden_size=768, num_hidden_layers=12,
                   num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                   qkv_bias=True, use_mean_pooling=True, decoder_hidden_size=384,
                   decoder_num_hidden_layers=4, decoder_num_attention_heads=6,
                   decoder_intermediate_size=1536)


def _local_or_hf(preset) -> bool:
    preset = str(preset)
    return preset.startswith("hf://") or os.path.isdir(preset)


def _get_file(preset: str, name: str, offline: Optional[bool] = None) -> Optional[str]:
    """The local path of ``name`` in ``preset`` (downloaded for ``hf://``; offline, from the
    Hugging Face cache only), or None when the preset has no such file (or, offline, the
    cache has none)."""
    from keras_hub.src.utils.preset_utils import get_file

    if not str(preset).startswith("hf://"):
        path = os.path.join(preset, name)
        return path if os.path.isfile(path) else None
    if download.is_offline(offline):
        found = _cached(preset, name)
        return found if isinstance(found, str) else None
    try:
        return get_file(preset, name)
    except FileNotFoundError:
        return None
    except Exception as error:  # the Hugging Face client raises many types
        raise PresetError(f"{preset}/{name}: cannot be fetched ({_first_line(error)})") \
            from None


def _cached(preset: str, name: str):
    """What the Hugging Face cache holds for file ``name`` of ``hf://`` handle ``preset``
    (``try_to_load_from_cache``): its path, the client's mark of a file known absent (a
    download that found none leaves one), or None (never fetched)."""
    from huggingface_hub import try_to_load_from_cache

    return try_to_load_from_cache(str(preset)[len("hf://"):], name)


def _unknown_offline(preset: str, name: str, offline: Optional[bool] = None) -> bool:
    """Offline, whether the Hugging Face cache of ``hf://`` handle ``preset`` neither holds
    ``name`` nor knows it absent (``_cached``)."""
    return (str(preset).startswith("hf://") and download.is_offline(offline)
            and _cached(preset, name) is None)


def _has_file(preset: str, name: str, offline: Optional[bool] = None) -> bool:
    """Whether ``preset`` holds ``name``, without downloading it from the Hub (a HEAD
    request; offline, or when the client cannot tell, the cache or a download decides)."""
    if not str(preset).startswith("hf://"):
        return os.path.isfile(os.path.join(preset, name))
    if download.is_offline(offline):
        return _get_file(preset, name, offline=True) is not None
    try:
        from huggingface_hub import HfApi, constants

        # the endpoint as the download's URLs read it, at call time
        api = HfApi(endpoint=constants.ENDPOINT)
        return bool(api.file_exists(str(preset)[len("hf://"):], name))
    except Exception:  # offline mode, or an error the download below reports in one line
        return _get_file(preset, name) is not None


def read_transformers_config(preset, offline: Optional[bool] = None) -> Optional[dict]:
    """``preset``'s ``config.json`` when it is a transformers one (it has ``model_type``; a
    keras-hub preset's names a ``class_name`` instead), else None. Local folders and ``hf://``
    handles only (offline: what the Hugging Face cache holds)."""
    if not _local_or_hf(preset):
        return None
    path = _get_file(str(preset), CONFIG_FILE, offline)
    if path is None:
        return None
    # unreadable: not a transformers config (``config_problem`` says why, for a folder)
    config, _ = _config_at(path)
    if config is None or "model_type" not in config or "class_name" in config:
        return None
    return config


def _config_at(path: str) -> Tuple[Optional[dict], Optional[str]]:
    """(the JSON object in ``path``, None), or (None, why it is not one)."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError, RecursionError) as error:  # RecursionError: nested too deep
        return None, f"not readable as JSON ({_first_line(error)})"
    if not isinstance(config, dict):
        return None, f"a JSON {type(config).__name__}"
    return config, None


def is_transformers_preset(preset, offline: Optional[bool] = None) -> bool:
    """Whether ``preset`` is a transformers-format model folder or ``hf://`` repository. A
    config that cannot be fetched steps aside: keras-hub's own loader then reports it."""
    try:
        return read_transformers_config(preset, offline) is not None
    except PresetError:
        return False


def config_problem(folder: str) -> Optional[str]:
    """One line on a local folder's ``config.json`` that neither a transformers nor a
    keras-hub loader can read (not a file, not JSON, not an object, neither a ``model_type``
    nor a ``class_name``); None when there is none or it names one of them."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.lexists(path):
        return None
    expected = ("expected a transformers config (with model_type) or a keras-hub preset's "
                "(with class_name)")
    config, problem = _config_at(path)
    if problem is not None:
        return f"{path}: {problem}; {expected}"
    if "model_type" not in config and "class_name" not in config:
        return f"{path}: has neither model_type nor class_name; {expected}"
    return None


def load_transformers_preset(cls, preset: str, **overrides):
    """``cls.from_preset`` on a transformers-format VideoMAE: the stored model (classifier,
    masked autoencoder or bare encoder) converted from its safetensors, then made a ``cls``
    as ``tf_models.hub.model_as`` does for every preset. Notes (a corrected head count) are
    kept as ``model.conversion_notes``, the config's class names (``id2label``) as
    ``model.class_labels`` while the head is the stored one. ``load_weights=False``: the
    same model with new weights (the tensors are still read: they say the architecture).
    A task that declares a ``preprocessor_cls`` (the classifier) gets one from the preset's
    ``preprocessor_config.json`` where that describes what its converter does
    (``converter_arguments``), else none and a note saying why."""
    from .artifacts.resolve import new_weights
    from .hub import check_overrides, model_as

    offline = overrides.pop("offline", None)
    load_weights = overrides.pop("load_weights", True)
    overrides.pop("progress", None)
    check_overrides(cls, preset, overrides)
    source, notes = load_transformers_model(preset, offline)
    if not load_weights:
        source, notes = new_weights(source), []
    model = model_as(cls, source, preset, **overrides)
    declared = getattr(cls, "preprocessor_cls", None)
    if declared is not None and getattr(model, "preprocessor", None) is None:
        found, note = converter_arguments(
            preset, getattr(source, "backbone", source).img_size, offline)
        if found is not None:  # at the model's frame size (an img_size override changes it)
            model.preprocessor = declared(video_converter=declared.video_converter_cls(
                **dict(found, image_size=model.backbone.img_size)))
        notes = notes + ([note] if note else [])
    model.preset = None
    model.conversion_notes = notes
    labels = getattr(source, "class_labels", None)
    if labels and getattr(model, "num_classes", None) == len(labels):  # the same head
        model.class_labels = labels
    return model


def load_transformers_model(preset: str, offline: Optional[bool] = None
                            ) -> Tuple[object, List[str]]:
    """(the Keras model of a transformers-format VideoMAE, notes). PresetError, one line
    naming the file, for another ``model_type``, pickle-only weights, unknown or missing
    tensors, wrong shapes, or a config this architecture cannot follow. A classifier whose
    config names its classes (``id2label``, not transformers' ``LABEL_i`` defaults) carries
    them as ``model.class_labels``."""
    config = read_transformers_config(preset, offline)
    if config is None:
        raise PresetError(f"{preset}: no transformers {CONFIG_FILE} with a model_type")
    where = f"{preset}/{CONFIG_FILE}"
    if config["model_type"] != MODEL_TYPE:
        raise PresetError(f"{where}: model_type {config['model_type']!r}; from_preset reads "
                          f"transformers' VideoMAE (model_type {MODEL_TYPE!r}); convert other "
                          f"checkpoints with videomae-convert")
    problems = config_problems(config)
    if problems:
        raise PresetError(f"{where}: {'; '.join(problems)}: not a transformers VideoMAE "
                          f"config as saved")
    arrays, weights = read_safetensors(preset, offline)
    plan = plan_renames({k: tuple(v.shape) for k, v in arrays.items()}, config)
    problems = list(plan.problems)
    problems += [f"{name} is not zero (upstream VideoMAE has no key bias)"
                 for name in plan.key_biases if np.any(arrays[name] != 0)]
    if problems:
        raise PresetError(f"{weights}: transformers-format checkpoint: {'; '.join(problems)}")
    upstream = {target: arrays[source] for target, source in plan.copies.items()}
    for fused, triple in plan.qkv.items():
        upstream[fused] = np.concatenate([arrays[name] for name in triple], axis=0)
    args, decoder, notes = model_arguments(config, where)
    check_sizes(config, {k: v.shape for k, v in upstream.items()}, where, weights)
    model = _build(upstream, args, decoder, where)
    if not hasattr(model, "backbone"):  # a bare encoder: the backbone's own names
        upstream = {k[len("encoder."):] if k.startswith("encoder.") else k: v
                    for k, v in upstream.items()}
    _prepare(upstream, config)
    variables = model.named_variables()
    plan_, problems = plan_assignments({k: tuple(v.shape) for k, v in upstream.items()},
                                       {k: tuple(v.shape) for k, v in variables.items()})
    if problems:
        raise PresetError(f"{weights}: {len(problems)} tensor(s) do not map: "
                          f"{'; '.join(problems[:8])}{' ...' if len(problems) > 8 else ''}")
    for step in plan_:
        array = TRANSFORMS[step.kind].apply(upstream.pop(step.source))
        variables[step.target].assign(np.ascontiguousarray(array, dtype=np.float32))
    if hasattr(model, "num_classes"):
        model.class_labels = class_labels(config, model.num_classes)
    return model, notes


def class_labels(config: dict, num_classes: int) -> Optional[Tuple[str, ...]]:
    """The class names a transformers config gives (``id2label``), in index order; None when
    it gives none, not one per class, or only transformers' ``LABEL_i`` placeholders."""
    given = config.get("id2label")
    if not isinstance(given, dict) or len(given) != num_classes:
        return None
    try:
        labels = tuple(str(given.get(str(i), given.get(i))) for i in range(num_classes))
    except (TypeError, ValueError):
        return None
    if any(label == "None" for label in labels) or \
            all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        return None
    return labels


# transformers' VideoMAEImageProcessor defaults (image_processing_videomae.py) for the keys a
# preprocessor_config.json leaves out: older files (VideoMAEFeatureExtractor's) give only
# "size": 224 (its shortest edge), no crop_size or rescale keys. image_mean and image_std get
# none: its defaults are 0.5, not the ImageNet values upstream's weights were trained with
IMAGE_PROCESSOR_DEFAULTS = dict(do_resize=True, size={"shortest_edge": 224}, resample=2,
                                do_center_crop=True, crop_size={"height": 224, "width": 224},
                                do_rescale=True, rescale_factor=1 / 255, do_normalize=True)
# the settings that VideoMAEVideoConverter follows, as the file spells them (resample 2: PIL's
# BILINEAR); its sizes, rescale factor, mean and std are checked below
CONVERTER_SETTINGS = dict(do_resize=True, resample=2, do_center_crop=True, do_rescale=True,
                          do_normalize=True)


def converter_arguments(preset: str, img_size: int, offline: Optional[bool] = None
                        ) -> Tuple[Optional[dict], Optional[str]]:
    """({mean, std} for ``VideoMAEVideoConverter``, None) when ``preset``'s
    ``preprocessor_config.json`` describes what that converter does for a model of
    ``img_size`` frames: the short side resized (bilinear) to the crop size, a square
    ``img_size`` centre crop, a rescale by 1/255, a normalisation by 3 finite means and 3
    positive stds; (None, a one-line note saying why not) when it describes something else or
    cannot be read (offline: the cache has never fetched it); (None, None) when there is
    none."""
    where = f"{preset}/{PREPROCESSOR_FILE}"

    def refused(problem: str) -> Tuple[None, str]:
        return None, f"{where}: {problem}; no preprocessor (the classifier takes normalised frames)"

    if _unknown_offline(preset, PREPROCESSOR_FILE, offline):  # not the file's absence
        return refused("not in the Hugging Face cache (never fetched; offline mode downloads "
                       "nothing, one load online fetches it)")
    try:
        path = _get_file(preset, PREPROCESSOR_FILE, offline)
    except PresetError as error:
        return None, f"{error}; no preprocessor"
    if path is None:
        return None, None
    config, problem = _config_at(path)
    if problem is not None:
        return refused(problem)
    given = {**IMAGE_PROCESSOR_DEFAULTS, **config}
    unlike = [key for key, value in CONVERTER_SETTINGS.items()
              if type(given[key]) is not type(value) or given[key] != value]  # true is not 1
    if unlike:
        return refused(", ".join(f"{key} {_shown(given[key])}" for key in unlike)
                       + " where the converter has "
                       + ", ".join(_shown(CONVERTER_SETTINGS[key]) for key in unlike))
    sizes = {}  # an int size is its shortest edge, an int crop_size its height and width
    for key, names in (("size", ("shortest_edge",)), ("crop_size", ("height", "width"))):
        value = given[key]
        value = dict.fromkeys(names, value) if _is_int(value) else value
        if not isinstance(value, dict) or set(value) != set(names) or \
                not all(_is_int(v) for v in value.values()):
            return refused(f"{key} is {_shown(given[key])}, expected "
                           + _shown(dict.fromkeys(names, img_size)))
        sizes[key] = tuple(value[name] for name in names)
    if sizes["crop_size"] != (img_size, img_size):
        return refused(f"a {sizes['crop_size'][0]} x {sizes['crop_size'][1]} crop, the model "
                       f"takes {img_size} x {img_size} frames")
    if sizes["size"] != (img_size,):
        return refused(f"shortest_edge {sizes['size'][0]} before a {img_size} crop; the "
                       f"converter resizes the short side to the crop size")
    rescale = _finite(given["rescale_factor"])
    if rescale is None or not math.isclose(rescale, 1 / 255, rel_tol=1e-6):
        return refused(f"rescale_factor {_shown(given['rescale_factor'])}, the converter's "
                       f"is 1/255")
    found = {}
    for key, name in (("image_mean", "mean"), ("image_std", "std")):
        if key not in given:
            return refused(f"no {key} (transformers' default 0.5 is not assumed)")
        values = given[key]
        found[name] = tuple(_finite(v) for v in values) if isinstance(values, list) else ()
        if len(found[name]) != 3 or None in found[name]:
            return refused(f"{key} is {_shown(values)}, expected 3 finite numbers")
        if name == "std" and min(found[name]) <= 0:
            return refused(f"image_std is {_shown(values)}, expected 3 positive numbers")
    return found, None


def _shown(value, limit: int = 40) -> str:
    """``value`` as JSON, cut to ``limit`` characters (a note stays one short line)."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON's true is no number


def _finite(value) -> Optional[float]:
    """A JSON number as a finite float; None for anything else (true, NaN, 1e999, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def read_safetensors(preset: str, offline: Optional[bool] = None
                     ) -> Tuple[Dict[str, np.ndarray], str]:
    """({name: float32 array}, the weights file named in errors) of a transformers preset
    (float16 and bfloat16 tensors widened, every value finite); a preset with only PyTorch
    pickle weights is refused, naming ``videomae-convert``, as is a shard index naming a file
    outside it, and a shard holding a tensor the index places elsewhere (or in two shards:
    one would win)."""
    from safetensors.numpy import load_file

    index = _get_file(preset, SAFETENSORS_FILES[0], offline)
    weight_map: Optional[dict] = None  # tensor name -> its shard, as the index lists them
    if index is not None:
        where = f"{preset}/{SAFETENSORS_FILES[0]}"
        try:
            with open(index, encoding="utf-8") as handle:
                weight_map = json.load(handle)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, RecursionError, KeyError, TypeError,
                AttributeError) as error:
            raise PresetError(f"{where}: not a shard index ({_first_line(error)})") from None
        for name in shards:
            if not isinstance(name, str) or not _inside(name):
                raise PresetError(f"{where}: shard {name!r} is not a file name inside the "
                                  f"folder; an index names the shards beside it")
        files = [(name, _get_file(preset, name, offline)) for name in shards]
        weights = where
    else:
        files = [(SAFETENSORS_FILES[1], _get_file(preset, SAFETENSORS_FILES[1], offline))]
        weights = f"{preset}/{SAFETENSORS_FILES[1]}"
    missing = [name for name, path in files if path is None]
    if missing:
        pickled = [name for name in PICKLE_FILES if _has_file(preset, name, offline)]
        if pickled and index is None:
            raise PresetError(f"{preset}: holds only PyTorch pickle weights ({pickled[0]}), "
                              f"which from_preset never unpickles; convert it with "
                              f"`videomae-convert --checkpoint {preset} ...` (a checked "
                              f"conversion) or save it as model.safetensors")
        raise PresetError(f"{preset}: no {', '.join(missing)} (from_preset reads "
                          f"transformers' safetensors weights)")
    arrays: Dict[str, np.ndarray] = {}
    for name, path in files:
        try:
            _check_dtypes(path, f"{preset}/{name}")
            loaded = load_file(path)
        except PresetError:
            raise
        except Exception as error:  # safetensors raises its own error types
            raise PresetError(f"{preset}/{name}: not a readable safetensors file "
                              f"({_first_line(error)})") from None
        for key, array in loaded.items():
            if weight_map is not None and weight_map.get(key) != name:  # or in two shards
                listed = weight_map.get(key)
                raise PresetError(f"{preset}/{name}: holds {key}, which {SAFETENSORS_FILES[0]} "
                                  f"{f'places in {listed}' if listed else 'does not list'}; "
                                  f"each tensor is in the one shard the index names")
            arrays[key] = array.astype(np.float32, copy=False)
            if not np.isfinite(arrays[key]).all():  # as videomae-convert refuses them
                raise PresetError(f"{preset}/{name}: {key} holds NaN or Inf values; the "
                                  f"checkpoint is damaged (a float16 overflow?), fetch or "
                                  f"save it again")
    return arrays, weights


# the safetensors dtypes read as weights (widened to float32); others (8-bit floats, which
# numpy cannot hold, integers, bools) are refused by name before any value is read
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def _check_dtypes(path: str, where: str) -> None:
    """PresetError naming the first tensor of the safetensors file ``path`` whose dtype (read
    from its header) is not one of ``FLOAT_DTYPES``."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as handle:
        for key in handle.keys():
            dtype = handle.get_slice(key).get_dtype()
            if dtype not in FLOAT_DTYPES:
                raise PresetError(f"{where}: {key} is {dtype}, expected floating point of 16, "
                                  f"32 or 64 bits ({', '.join(FLOAT_DTYPES)}); save the "
                                  f"weights in one of them (8-bit floats are not read)")


def _inside(name: str) -> bool:
    """Whether a shard name stays inside its folder: relative, no ``..`` segment."""
    parts = name.replace("\\", "/").split("/")
    return parts[0] != "" and ".." not in parts and not os.path.isabs(name)


def model_arguments(config: dict, where: str) -> Tuple[dict, dict, List[str]]:
    """(backbone arguments, decoder arguments, notes) for tf_models from a transformers
    VideoMAE config; PresetError where the config asks for what upstream's architecture
    does not have (another activation, a decoder mlp ratio of its own). Head counts follow
    upstream where transformers' differ (its ViT-S configs say 16 heads, upstream has 6)."""
    get = {**HF_DEFAULTS, **config}.get
    if get("hidden_act") != "gelu":
        raise PresetError(f"{where}: hidden_act {get('hidden_act')!r}; VideoMAE uses exact "
                          f"GELU ('gelu')")
    for key in SIZE_KEYS:
        _positive_int(get(key), key, where)
    image_size, patch_size = _square(get, "image_size", where), _square(get, "patch_size", where)
    width = get("hidden_size")
    args = dict(embed_dim=width, depth=get("num_hidden_layers"),
                num_heads=get("num_attention_heads"), num_frames=get("num_frames"),
                img_size=image_size, patch_size=patch_size, tubelet_size=get("tubelet_size"),
                mlp_ratio=get("intermediate_size") / width, in_chans=get("num_channels"),
                use_mean_pooling=bool(get("use_mean_pooling")))
    decoder = dict(decoder_embed_dim=get("decoder_hidden_size"),
                   decoder_depth=get("decoder_num_hidden_layers"),
                   decoder_num_heads=get("decoder_num_attention_heads"))
    notes = []
    for key, width_, part, is_decoder, target in (
            ("num_attention_heads", width, "", False, args),
            ("decoder_num_attention_heads", decoder["decoder_embed_dim"], " decoder", True,
             decoder)):
        size = upstream_size_for(width_, get(key), is_decoder)
        if size is not None:
            heads_key = "decoder_num_heads" if is_decoder else "num_heads"
            heads = size.dims[heads_key]
            notes.append(f"{where} says {get(key)}{part} heads; upstream {size.title}{part} "
                         f"has {heads}: using {heads}")
            target[heads_key] = heads
    _heads(width, args["num_heads"], ("hidden_size", "num_attention_heads"), where)
    for key, length, size_key, size in (
            ("num_frames", args["num_frames"], "tubelet_size", args["tubelet_size"]),
            ("image_size", image_size, "patch_size", patch_size)):
        if length < size:
            raise PresetError(f"{where}: {key} is {length}, smaller than {size_key} {size}; "
                              f"a clip needs at least one patch")
    try:  # what no tensor shows (a clip's sizes), as the models' constructors check it
        check_model_sizes(args)
    except ValueError as error:
        raise PresetError(f"{where}: {error} (img_size: its image_size)") from None
    if get("decoder_intermediate_size") != int(decoder["decoder_embed_dim"] * args["mlp_ratio"]):
        decoder = None  # refused by _build if the tensors have a decoder
    return args, decoder, notes


def _heads(width: int, heads: int, names: Tuple[str, str], where: str) -> None:
    """``layers.check_heads`` as one PresetError line naming the config and its keys."""
    try:
        check_heads(width, heads, names)
    except ValueError as error:
        raise PresetError(f"{where}: {error}") from None


# Where the tensors show a size of config.json: (key, upstream name, axis of its shape); the
# block counts are the highest block index + 1. A config is a file from the internet: sizes
# it alone gave could ask for gigabytes of variables before the tensors were compared.
SIZE_EVIDENCE = (
    ("hidden_size", r"(encoder\.)?patch_embed\.proj\.weight", 0),
    ("num_channels", r"(encoder\.)?patch_embed\.proj\.weight", 1),
    ("tubelet_size", r"(encoder\.)?patch_embed\.proj\.weight", 2),
    ("patch_size", r"(encoder\.)?patch_embed\.proj\.weight", 3),
    ("intermediate_size", r"(encoder\.)?blocks\.\d+\.mlp\.fc1\.weight", 0),
    ("decoder_hidden_size", r"encoder_to_decoder\.weight", 0),
    ("decoder_intermediate_size", r"decoder\.blocks\.\d+\.mlp\.fc1\.weight", 0),
)
BLOCK_COUNTS = (("num_hidden_layers", r"(?:encoder\.)?blocks\.(\d+)\."),
                ("decoder_num_hidden_layers", r"decoder\.blocks\.(\d+)\."))


def check_sizes(config: dict, shapes: Dict[str, Tuple[int, ...]], where: str,
                weights: str) -> None:
    """PresetError, before any model is built, where a size in config.json (a validated one:
    ``model_arguments`` ran) is not what the upstream-named tensors' shapes say
    (``resolve.check_config_sizes``)."""
    get = {**HF_DEFAULTS, **config}.get
    keys = [key for key, _, _ in SIZE_EVIDENCE] + [key for key, _ in BLOCK_COUNTS]
    said = {key: (get(key)[0] if isinstance(get(key), (list, tuple)) else get(key))
            for key in keys}
    check_config_sizes(said, shapes, SIZE_EVIDENCE, BLOCK_COUNTS, where, weights,
                       "a config.json of another model? Use the one saved with these weights")


# the config's sizes: positive integers (image_size and patch_size may also be [n, n])
SIZE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "num_frames", "tubelet_size", "num_channels", "decoder_hidden_size",
             "decoder_num_hidden_layers", "decoder_num_attention_heads",
             "decoder_intermediate_size")


def _positive_int(value, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PresetError(f"{where}: {key} is {json.dumps(value)}, expected a positive integer")
    return value


def _square(get, key: str, where: str) -> int:
    """A size that transformers allows as a pair: VideoMAE's frames and patches are square."""
    value = get(key)
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise PresetError(f"{where}: {key} is {json.dumps(value)}; VideoMAE takes square "
                              f"frames and patches (one size, or [n, n])")
        value = value[0]
    return _positive_int(value, key, where)


def _build(upstream: Dict[str, np.ndarray], args: dict, decoder: Optional[dict], where: str):
    """The Keras model the tensors describe: a pre-trainer (a decoder), a classifier (a head)
    or a bare encoder (its final norm when it has one)."""
    from .videomae_backbone import VideoMAEBackbone
    from .videomae_masked_autoencoder import VideoMAEMaskedAutoencoder
    from .videomae_video_classifier import VideoMAEVideoClassifier

    if any(name.startswith("decoder.") for name in upstream):
        if decoder is None:
            raise PresetError(f"{where}: decoder_intermediate_size is not the encoder's "
                              f"mlp ratio times decoder_hidden_size (upstream's decoder "
                              f"shares the encoder's mlp ratio)")
        _heads(decoder["decoder_embed_dim"], decoder["decoder_num_heads"],
               ("decoder_hidden_size", "decoder_num_attention_heads"), where)
        return VideoMAEMaskedAutoencoder(**args, **decoder)
    if "head.weight" in upstream:
        return VideoMAEVideoClassifier(**args, num_classes=upstream["head.weight"].shape[0])
    final_norm = "norm" if "encoder.norm.weight" in upstream or "norm.weight" in upstream \
        else None
    return VideoMAEBackbone(**args, final_norm=final_norm)


def _prepare(upstream: Dict[str, np.ndarray], config: dict) -> None:
    """The non one-to-one tensors, as the converter's pre-passes treat them: q/v biases fused
    into ``qkv.bias`` with the key's zeros (zeros throughout with ``qkv_bias: false``), and a
    stored sinusoid table checked and dropped."""
    for name in [n for n in upstream if n.endswith("attn.qkv.weight")]:
        prefix = name[: -len("qkv.weight")]
        width = upstream[name].shape[0] // 3
        q_bias = upstream.pop(prefix + "q_bias", None)
        v_bias = upstream.pop(prefix + "v_bias", None)
        if q_bias is None and v_bias is None and not {**HF_DEFAULTS, **config}["qkv_bias"]:
            q_bias = v_bias = np.zeros(width, np.float32)
        if q_bias is not None and v_bias is not None:
            upstream[prefix + "qkv.bias"] = np.concatenate(
                [q_bias, np.zeros(width, np.float32), v_bias])
        else:  # left for the coverage check to report
            for bias_name, bias in (("q_bias", q_bias), ("v_bias", v_bias)):
                if bias is not None:
                    upstream[prefix + bias_name] = bias
    for name in [n for n in upstream if n.split(".")[-1] == "pos_embed"]:
        saved = upstream[name]
        if saved.ndim == 3 and saved.shape[0] == 1 and np.allclose(
                saved, sinusoid_table(saved.shape[1], saved.shape[2]), atol=1e-5):
            del upstream[name]
        # otherwise a learned embedding: the coverage check reports it


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
