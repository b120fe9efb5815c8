"""keras-hub preset folders and handles: telling them apart from zoo names and artifacts, and
writing one for a converted model with keras-hub's own ``save_to_preset``."""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Optional

# keras-hub's handle schemes (keras_hub/src/utils/preset_utils.py: KAGGLE_PREFIX, HF_PREFIX,
# MODELSCOPE_PREFIX)
HANDLE_PREFIXES = ("kaggle://", "hf://", "modelscope://")
# the two files every keras-hub preset folder has (preset_utils: CONFIG_FILE, METADATA_FILE)
PRESET_FILES = ("config.json", "metadata.json")


def is_kerashub_preset(preset) -> bool:
    """True for a keras-hub handle or a local folder holding keras-hub's config and metadata."""
    preset = str(preset)
    if preset.startswith(HANDLE_PREFIXES):
        return True
    return os.path.isdir(preset) and all(os.path.isfile(os.path.join(preset, name))
                                         for name in PRESET_FILES)


def preset_files_missing(folder: str):
    """One line on a local folder holding some of keras-hub's ``PRESET_FILES`` but not all
    (a preset copied in part), or None. A transformers folder's config.json (``model_type``,
    no ``class_name``) alone is none of keras-hub's."""
    import json

    present = [name for name in PRESET_FILES if os.path.isfile(os.path.join(folder, name))]
    if not present or len(present) == len(PRESET_FILES):
        return None
    if present == ["config.json"]:
        try:
            with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
                if "class_name" not in json.load(handle):
                    return None
        except (OSError, ValueError, RecursionError, TypeError):
            return None
    missing = [name for name in PRESET_FILES if name not in present]
    return (f"{folder}: a keras-hub preset folder ({', '.join(present)}) without "
            f"{', '.join(missing)}; copy the whole folder save_to_preset wrote")


def save_kerashub_preset(task, preset_dir: str) -> str:
    """``task`` (with its preprocessor) saved by keras-hub's ``save_to_preset`` into
    ``preset_dir``: config.json, metadata.json, model.weights.h5, task.json,
    task.weights.h5, preprocessor.json. Returns ``preset_dir``."""
    task.save_to_preset(preset_dir)
    return preset_dir


def preprocessor_for(preset):
    """The classifier preprocessor of a zoo row (``tf_models.presets.Preset``): its frame size
    and its dataset's mean and std, from the zoo table. Anything with ``img_size``, ``mean``
    and ``std`` will do (a conversion's entry, an export's target)."""
    from .videomae_video_classifier_preprocessor import VideoMAEVideoClassifierPreprocessor
    from .videomae_video_converter import VideoMAEVideoConverter

    converter = VideoMAEVideoConverter(image_size=preset.img_size, mean=preset.mean,
                                       std=preset.std)
    return VideoMAEVideoClassifierPreprocessor(video_converter=converter)


def save_zoo_preset(model, preset, preset_dir: str) -> str:
    """A converted model of zoo row ``preset`` as a keras-hub preset folder: a classifier
    gets its preprocessor (raw uint8 frames in; one it already has is kept); a pre-trainer
    is saved as it is. ``preset``: see ``preprocessor_for``."""
    from .videomae_video_classifier import VideoMAEVideoClassifier

    if isinstance(model, VideoMAEVideoClassifier) and model.preprocessor is None:
        model.preprocessor = preprocessor_for(preset)
    return save_kerashub_preset(model, preset_dir)


# the configs a preset of ours holds (keras-hub's CONFIG_FILE, TASK_CONFIG_FILE,
# PREPROCESSOR_CONFIG_FILE, VIDEO_CONVERTER_CONFIG_FILE); config.json is required
PREPROCESSOR_FILE = "preprocessor.json"
CONFIG_FILES = ("config.json", "task.json", PREPROCESSOR_FILE, "video_converter.json")
# the weights of a task's own layers (keras-hub's TASK_WEIGHTS_FILE)
TASK_WEIGHTS_FILE = "task.weights.h5"
# the only Keras objects such a config carries besides our registered classes
KERAS_OBJECTS = ("DTypePolicy",)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _named_classes(config):
    """Every class a serialised config names: its registered name, or its class name."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield str(config.get("registered_name") or config["class_name"]), config
        for value in config.values():
            yield from _named_classes(value)
    elif isinstance(config, list):
        for value in config:
            yield from _named_classes(value)


def _allowed(name: str, config: dict) -> bool:
    import keras

    from .layers import PACKAGE

    if name.startswith(f"{PACKAGE}>"):
        return name in keras.saving.get_custom_objects()
    return name in KERAS_OBJECTS and str(config.get("module", "")).startswith("keras")


def refuse_uncached_offline(preset: str, offline=None) -> None:
    """Offline (``offline``, else ``VIDEOMAE_OFFLINE``...), an ``hf://`` handle whose
    ``config.json`` the Hugging Face cache lacks is one ``PresetError`` line at once (before:
    keras-hub's client asked the Hub, retrying, first). A cached one goes on to keras-hub."""
    from .artifacts import download

    if not (str(preset).startswith("hf://") and download.is_offline(offline)):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    from .hub import PresetError

    try:
        cached = try_to_load_from_cache(str(preset)[len("hf://"):], CONFIG_FILES[0])
    except Exception:  # not a repository id: nothing of it is cached
        cached = None
    if not isinstance(cached, str):
        raise PresetError(f"{preset}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                          f"and offline mode is on, which never downloads; run once online or "
                          f"unset {' / '.join(download.OFFLINE_ENVS)}")


# {(preset, file name): its local path, or keras-hub's FileNotFoundError where the preset has
# no such file} for the load in progress (``hub_access``); None outside one
_LOOKED_UP: contextvars.ContextVar = contextvars.ContextVar("videomae_preset_files",
                                                            default=None)


def _lookup(preset: str, name: str):
    """keras-hub's ``get_file(preset, name)`` (a hub handle's file fetched into its cache, or
    a HEAD request where cached): the path, or the FileNotFoundError it raised; within
    ``hub_access``, asked once per load."""
    from keras_hub.src.utils.preset_utils import get_file

    looked_up = _LOOKED_UP.get()
    if looked_up is not None and (preset, name) in looked_up:
        return looked_up[(preset, name)]
    try:
        found = get_file(preset, name)
    except FileNotFoundError as error:
        found = error
    if looked_up is not None:
        looked_up[(preset, name)] = found
    return found


def preset_file(preset: str, name: str) -> str:
    """The local path of file ``name`` of keras-hub preset ``preset``; FileNotFoundError
    (keras-hub's) where it has none."""
    found = _lookup(preset, name)
    if isinstance(found, FileNotFoundError):
        raise found
    return found


def preset_has(preset: str, name: str) -> bool:
    """Whether keras-hub preset ``preset`` has file ``name`` (keras-hub's
    ``check_file_exists``)."""
    return not isinstance(_lookup(preset, name), FileNotFoundError)


@contextlib.contextmanager
def hub_access(preset: str, offline=None):
    """How one load talks to a hub, while the block runs. Our lookups of a file of
    ``preset`` (``preset_file``, ``preset_has``) ask once (before: each check asked again, 40
    HEAD requests for a cached ``hf://`` task, 28 of them ours). Offline (``offline``, else
    ``VIDEOMAE_OFFLINE``...) and an ``hf://`` handle: the Hugging Face client in its own
    offline mode (``HF_HUB_OFFLINE``, which it reads at each call), so keras-hub's loaders,
    which take no such argument, read the cache alone and ask the Hub nothing (before: a
    request per file, and a fresh download of any that changed there); an uncached handle is
    one line first (``refuse_uncached_offline``). The client's setting is process-wide: a
    load on another thread meanwhile is offline too. A block inside another shares its
    lookups."""
    from .artifacts import download

    outermost = _LOOKED_UP.get() is None
    token = _LOOKED_UP.set({}) if outermost else None
    try:
        if not (str(preset).startswith("hf://") and download.is_offline(offline)):
            yield
            return
        from huggingface_hub import constants

        refuse_uncached_offline(preset, offline)
        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before
    finally:
        if outermost:
            _LOOKED_UP.reset(token)


def check_kerashub_preset(preset: str, offline=None) -> dict:
    """Refuse a preset whose configs are missing, not JSON, or name any class other than this
    package's registered ones and Keras dtype policies (a Lambda layer, an unknown or
    arbitrary class), or whose task has no task weights: one ``PresetError`` line naming the
    file. Nothing is deserialised. Offline, an uncached ``hf://`` handle is refused first
    (``refuse_uncached_offline``). Returns {file name: config} of the configs it read."""
    import json

    from .hub import PresetError

    refuse_uncached_offline(preset, offline)
    configs = {}
    for name in CONFIG_FILES:
        where = f"{preset}/{name}"
        try:
            if name != "config.json" and not preset_has(preset, name):
                continue
            path = preset_file(preset, name)
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
        except Exception as error:  # keras-hub's clients raise many types (network, hub)
            fix = ("check the handle, the network and the hub's credentials, or pass a local "
                   "preset folder" if str(preset).startswith(HANDLE_PREFIXES) else
                   f"a preset folder needs a readable {name}")
            raise PresetError(f"{where}: missing or unreadable ({_first_line(error)[:240]}); "
                              f"{fix}") from None
        if not (isinstance(config, dict) and config.get("registered_name")):
            found = (f"model_type {config['model_type']!r}, a transformers-format config"
                     if isinstance(config, dict) and "model_type" in config else
                     "no registered_name" if isinstance(config, dict) else
                     f"a JSON {type(config).__name__}, not an object")
            raise PresetError(f"{where}: not a keras-hub preset config ({found}); a preset "
                              f"folder is what save_to_preset writes")
        for found, entry in _named_classes(config):
            if not _allowed(found, entry):
                raise PresetError(f"{where}: names class {found!r}, which is not a VideoMAE "
                                  f"class; refused (loading a preset never runs code)")
        configs[name] = config
    # every task of ours has layers of its own (a head, a decoder): keras-hub builds them new,
    # and says nothing, when task.weights.h5 is missing
    try:
        lacks_task_weights = "task.json" in configs and not preset_has(
            preset, TASK_WEIGHTS_FILE)
    except Exception:  # a hub's client: keras-hub's loader reports it in one line
        lacks_task_weights = False
    if lacks_task_weights:
        raise PresetError(f"{preset}: has task.json but no {TASK_WEIGHTS_FILE}: the task's own "
                          f"layers (its head or decoder) would be new, random ones; copy the "
                          f"whole folder save_to_preset wrote")
    return configs


# the keyword arguments keras-hub's own ``from_preset`` takes; any other (``num_classes``,
# ``drop_path_rate``, ``offline``...) goes through ``tf_models.hub.load_preset_model``, which
# loads the stored model by the same keras-hub path and then applies them
KERAS_HUB_ARGS = ("load_weights", "dtype")


def absent_task_args(configs: dict, given: dict) -> dict:
    """The arguments of ``given`` (a ``from_preset``'s) that stand for keys of the task's own
    config (its class's ``TASK_CONFIG``: ``num_classes``...) which the preset's ``task.json``
    (in ``configs``, {file name: config}) lacks, as a handmade or older preset's may: keras-hub
    builds the task from them, and the sizes' check counts them (``layers.GivenSize``)."""
    import keras

    task = configs.get("task.json")
    inner = task.get("config") if isinstance(task, dict) else None
    if not (given and isinstance(inner, dict)):
        return {}
    declared = keras.saving.get_registered_object(str(task.get("registered_name")))
    own = getattr(declared, "TASK_CONFIG", None) or ()
    return {k: v for k, v in given.items() if k in own and k not in inner}


def keras_hub_loads(cls, preset, kwargs) -> bool:
    """True when a ``cls.from_preset(preset, **kwargs)`` is keras-hub's alone: a keras-hub
    preset, only the arguments keras-hub's ``from_preset`` knows or ones that stand for keys
    its ``task.json`` lacks (``absent_task_args``), and for a task a preset of that task. A
    task from a preset of another class goes through ``tf_models.hub.load_preset_model``,
    whose rules say what it needs (``num_classes`` for a classifier from a pre-trained or
    backbone preset) or refuse it (a masked autoencoder from anything but a pre-trained
    preset); keras-hub's ``Task.from_preset`` would build one around the stored backbone, a
    new decoder included. Offline, an uncached ``hf://`` handle is one ``PresetError`` line
    here, and a cached one is read from the cache (``hub_access``)."""
    from keras_hub.models import Task

    extra = {k: v for k, v in kwargs.items() if k not in KERAS_HUB_ARGS}
    if not is_kerashub_preset(preset):
        return False
    if not issubclass(cls, Task):
        return not extra
    if set(extra) - set(getattr(cls, "TASK_CONFIG", None) or ()):  # offline, overrides...
        return False
    with hub_access(preset):  # an uncached handle refused before asking for task.json
        try:
            _, declared, name = declared_class(preset)
            absent = absent_task_args({name: read_preset_config(preset, name)}, extra)
        except Exception:  # keras-hub's loader, after the configs' check, says it in one line
            return not extra
    return isinstance(declared, type) and issubclass(declared, cls) and set(absent) == set(extra)


def read_preset_config(preset: str, name: str):
    """The JSON of a keras-hub preset's config file ``name`` (a hub handle's: downloaded)."""
    import json

    with open(preset_file(os.fspath(preset), name), encoding="utf-8") as handle:
        return json.load(handle)


def declared_class(preset: str):
    """(the registered name a keras-hub preset declares, its class or None, the file that
    declares it): its ``task.json``'s task, or without one its ``config.json``'s backbone."""
    import keras

    preset = os.fspath(preset)
    name = "task.json" if preset_has(preset, "task.json") else "config.json"
    declared = read_preset_config(preset, name)["registered_name"]
    return declared, keras.saving.get_registered_object(str(declared)), name


def load_kerashub_preset(preset: str, offline=None, load_weights: bool = True,
                         given: Optional[dict] = None):
    """The model a keras-hub preset folder or handle holds, loaded by keras-hub's
    ``from_preset`` as the class it declares (``declared_class``). Checked and in safe mode
    (``load_checked``); one ``PresetError`` line for anything that is not a VideoMAE
    preset (``offline``: an ``hf://`` handle the cache lacks, too; one it holds is read from
    the cache, ``hub_access``). ``load_weights``:
    keras-hub's. ``given``: the arguments of the ``from_preset`` this load serves; those
    that stand for keys its ``task.json`` lacks build the stored model
    (``absent_task_args``)."""
    from keras_hub.models import Backbone, Task

    from .hub import PresetError

    with hub_access(preset, offline):
        configs = check_kerashub_preset(preset, offline)  # objects naming only our classes
        declared, cls, name = declared_class(preset)
        base = Task if name == "task.json" else Backbone
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PresetError(f"{preset}/{name}: declares {declared!r}, not a keras-hub "
                              f"{base.__name__}; a preset folder is what save_to_preset "
                              f"writes")
        return cls.from_preset(preset, load_weights=load_weights,
                               **absent_task_args(configs, given or {}))


def preset_preprocessor(preset: str, preprocessor_cls):
    """The preprocessor a keras-hub preset's ``preprocessor.json`` holds where it declares
    ``preprocessor_cls`` (or a subclass), loaded as keras-hub's ``Task.from_preset`` loads a
    task's from a preset without ``task.json`` (a backbone's, beside which the preprocessor
    was saved), in safe mode; None where it has none of that class. Its configs were checked
    when the preset loaded (``check_kerashub_preset``)."""
    import keras
    from keras.src.saving.serialization_lib import SafeModeScope

    preset = os.fspath(preset)
    if preprocessor_cls is None or not preset_has(preset, PREPROCESSOR_FILE):
        return None
    declared = keras.saving.get_registered_object(
        str(read_preset_config(preset, PREPROCESSOR_FILE).get("registered_name")))
    if not (isinstance(declared, type) and issubclass(declared, preprocessor_cls)):
        return None
    with SafeModeScope(True):
        return preprocessor_cls.from_preset(preset)


# the argument with which keras-hub's ``Task.from_preset`` never loads task.weights.h5
FRESH_HEAD_ARG = "num_classes"
# the backbone's weights in a preset folder (keras-hub's MODEL_WEIGHTS_FILE; a sharded
# preset has none, and is not checked for arrays its backbone does not take, or for sizes)
BACKBONE_WEIGHTS = "model.weights.h5"
# a sharded preset's index of its backbone's weight files, in place of BACKBONE_WEIGHTS
SHARDED_WEIGHTS = "model.weights.json"
# which weights file shows the sizes of which config's part (``resolve.serialized_sizes``:
# 0 the backbone's, 1 the task's own): keras-hub builds a backbone from config.json, a task
# (its backbone included) from task.json; task.weights.h5 holds the task's own layers only
PRESET_SIZES = (("config.json", 0, BACKBONE_WEIGHTS), ("task.json", 0, BACKBONE_WEIGHTS),
                ("task.json", 1, TASK_WEIGHTS_FILE))


def _weights_index(preset: str, name: str, fetch: bool):
    """``legacy.stored_shapes`` of the weights file ``name`` of ``preset``, or None where it
    has none. A local folder's is read in place; a hub handle's only with ``fetch`` (its
    weights are about to be downloaded for the load anyway, and keras-hub's ``get_file``
    then finds them in its cache)."""
    from .legacy import stored_shapes

    if os.path.isdir(preset):
        path = os.path.join(preset, name)
        return stored_shapes(path) if os.path.isfile(path) else None
    if not (fetch and preset_has(preset, name)):
        return None
    return stored_shapes(preset_file(preset, name))


def check_preset_sizes(preset: str, configs: dict, fetch: bool = True) -> dict:
    """``PresetError`` (one line naming the config, the key, both values and the array that
    shows it) where a size a preset's ``config.json`` or ``task.json`` (``configs``, as
    ``check_kerashub_preset`` read them) gives is not what its weights' index shows
    (``PRESET_SIZES``), before keras-hub builds anything: a config is a file from the
    internet, and one saying a width of 4800 beside 48-wide weights would otherwise ask for
    gigabytes of variables first. ``fetch``: see ``_weights_index``. Returns {weights file:
    its index, or None} of the files it read."""
    from .artifacts.resolve import check_weights_sizes, serialized_sizes

    shapes = {}
    for name, part, weights in PRESET_SIZES:
        if name not in configs:
            continue
        if weights not in shapes:
            shapes[weights] = _weights_index(preset, weights, fetch)
        if shapes[weights] is not None:
            check_weights_sizes(serialized_sizes(configs[name])[part], shapes[weights],
                                f"{preset}/{name}", weights,
                                "a config of another model, or edited? Copy the whole folder "
                                "save_to_preset wrote: its configs and weights go together")
    return shapes


def load_checked(load, preset, load_weights: bool = True, given: Optional[dict] = None):
    """``load(preset)`` (a keras-hub ``from_preset``; ``preset`` a string, as keras-hub's
    loaders take no ``os.PathLike``) after ``check_kerashub_preset`` and
    ``check_preset_sizes``, in Keras's safe mode whatever the global setting (keras-hub's
    loaders do not pass ``safe_mode``, so ``keras.config.enable_unsafe_deserialization()``
    would otherwise reach them); any failure (weights of the wrong shape, a missing weights
    file, named, a ``model.weights.h5`` or ``task.weights.h5`` holding arrays the backbone of
    its ``config.json`` or the task of its ``task.json`` does not take, which keras-hub would
    skip) is one ``PresetError`` line. ``load_weights``: whether ``load`` loads them (a hub
    handle's weights are read for the sizes' check only then; a local folder's always).
    ``given``: the arguments ``load`` passes to keras-hub; those that stand for keys the
    preset's ``task.json`` lacks (``absent_task_args``) count in the sizes' check. The
    model's ``preset`` is the zoo row its folder or handle is named after (None: none).
    Offline (``VIDEOMAE_OFFLINE``...), an ``hf://`` handle is read from the cache alone
    (``hub_access``)."""
    preset = os.fspath(preset)
    with hub_access(preset):
        return _checked_load(load, preset, load_weights, given)


def _checked_load(load, preset: str, load_weights: bool, given: Optional[dict]):
    """``load_checked``'s checks and load, the hub client as ``hub_access`` left it."""
    import keras
    from keras.src.saving.serialization_lib import SafeModeScope
    from keras_hub.models import Task

    from .hub import PresetError
    from .layers import GivenSize
    from .legacy import ExtraWeights, check_all_loaded

    configs = check_kerashub_preset(preset)
    filled = absent_task_args(configs, given or {})
    if filled:  # checked as if task.json held them, as keras-hub builds the task from them
        task = configs["task.json"]
        configs["task.json"] = {**task, "config": {**task["config"], **{
            k: GivenSize(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for k, v in filled.items()}}}
    try:
        has_weights = load_weights and preset_has(preset, BACKBONE_WEIGHTS)
        if load_weights and not has_weights and not preset_has(preset, SHARDED_WEIGHTS):
            raise PresetError(f"{preset}: has no {BACKBONE_WEIGHTS} (the backbone's weights); "
                              f"copy the whole folder save_to_preset wrote, or pass "
                              f"load_weights=False for new weights")
        indexes = check_preset_sizes(preset, configs, fetch=load_weights)
        with SafeModeScope(True):
            model = load(preset)
        if load_weights and FRESH_HEAD_ARG in filled and \
                preset_has(preset, TASK_WEIGHTS_FILE):
            # keras-hub takes this argument for a new head and skips task.weights.h5; here it
            # stands for the key task.json lacks, and those weights fit it (the sizes' check)
            model.load_task_weights(preset_file(preset, TASK_WEIGHTS_FILE))
        # (file, the part of the model it loaded into, the part it does not hold, its config)
        loaded = []
        if has_weights:
            loaded.append((BACKBONE_WEIGHTS, getattr(model, "backbone", model), None,
                           "config.json"))
        # keras-hub loads task.weights.h5 into a task of the class task.json declares only
        declared = configs.get("task.json", {}).get("registered_name")
        if load_weights and isinstance(model, Task) and \
                keras.saving.get_registered_name(type(model)) == declared and \
                preset_has(preset, TASK_WEIGHTS_FILE):
            loaded.append((TASK_WEIGHTS_FILE, model, model.backbone, "task.json"))
        for name, part, without, config in loaded:
            try:
                check_all_loaded(part, preset_file(preset, name), without, indexes.get(name))
            except ExtraWeights as error:
                raise PresetError(error.line(f"{preset}/{name}", f"its {config}")) from None
    except PresetError:
        raise
    except Exception as error:  # keras and h5py raise many types for a bad file
        raise PresetError(f"{preset}: cannot be loaded as a VideoMAE preset "
                          f"({_first_line(error)})") from None
    # as every other from_preset path: the zoo row the preset is named after, else None
    from .artifacts.resolve import preset_named

    model.preset = preset_named(preset)
    return model
