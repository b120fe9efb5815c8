"""Files written before the keras-hub classes: old class names, old weight layouts.

Before this package's models were keras-hub classes, ``.keras`` files named
``videomae>VideoMAEClassifier`` and ``videomae>VideoMAEPretrainer``, and their
``.weights.h5`` laid the backbone out as a subclassed model. The old names are registered for
deserialisation only (they build ``VideoMAEVideoClassifier`` / ``VideoMAEMaskedAutoencoder``);
``load_weights_file`` reads either layout into a model of the new classes.

Keras loads a weights file leniently: arrays no layer of the model asks for (a block more
than the config's ``depth``) are skipped without a word. Both loaders here refuse such a file
(``ExtraWeights``): a file whose weights do not all land in the model is not that model.
Before that, ``load_model_file`` compares the sizes a ``.keras`` archive's config gives with
its weights' shapes, so an edited config never builds a model of its own sizes first.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from typing import Dict, Tuple

import keras

from .layers import PACKAGE
from .videomae_backbone import VideoMAEBackbone
from .videomae_masked_autoencoder import VideoMAEMaskedAutoencoder
from .videomae_video_classifier import VideoMAEVideoClassifier

# The most bytes a ``.keras`` archive's ``config.json`` may declare: a model's config is a few
# KB; the member is read whole into memory, and a deflated one of gigabytes of spaces is a
# zip bomb of a few MB (Keras's own guard starts at 4 GiB).
MAX_CONFIG_BYTES = 16 << 20
# A stored member expands by nothing; deflate tops out near 1032:1. Beyond this ratio (and
# this size: Keras's numbers for extracting a member to disk) a member is a zip bomb.
MAX_EXPANSION, BOMB_FLOOR_BYTES = 100, 256 << 20

# old registered name -> the class that now builds it
LEGACY_CLASSES = {f"{PACKAGE}>VideoMAEClassifier": VideoMAEVideoClassifier,
                  f"{PACKAGE}>VideoMAEPretrainer": VideoMAEMaskedAutoencoder}


def _register_legacy_name(registered_name: str, cls) -> None:
    """``registered_name`` deserialises to ``cls`` (nothing is ever saved under it again)."""

    class Legacy(cls):
        backbone_cls = None  # never a candidate when keras-hub looks for a backbone's task

        @classmethod
        def from_config(cls_, config):  # noqa: N805
            return cls.from_config(config)

    Legacy.__name__ = registered_name.split(">")[1]
    keras.saving.get_custom_objects()[registered_name] = Legacy


for _name, _cls in LEGACY_CLASSES.items():
    _register_legacy_name(_name, _cls)


class _OldLayout(keras.Model):
    """The attribute structure the old subclassed models had, over the new model's layers:
    Keras's weight files are addressed by attribute names, so loading through this shadow
    fills the new model's variables from an old file."""

    def __init__(self, parts):
        super().__init__()
        for name, value in parts:
            setattr(self, name, value)
        self.built = True


def _old_layout(model):
    if isinstance(model, VideoMAEBackbone):
        parts = [("patch_embed", model.patch_embed), ("blocks", model.blocks)]
        return _OldLayout(parts + ([("final", model.final)] if model.final is not None else []))
    if isinstance(model, VideoMAEVideoClassifier):
        return _OldLayout([("backbone", _old_layout(model.backbone)),
                           ("fc_norm" if model.fc_norm is not None else "norm",
                            model.pre_head_norm),
                           ("head_dropout", model.head_dropout), ("head", model.head)])
    if isinstance(model, VideoMAEMaskedAutoencoder):
        return _OldLayout([("backbone", _old_layout(model.backbone)),
                           ("encoder_to_decoder", model.encoder_to_decoder),
                           ("decoder", model.decoder), ("mask_token", model.mask_token)])
    raise TypeError(f"no old weight layout for {type(model).__name__}")


# Keras's warning when a task compiled on construction (keras-hub's default) loads a file of
# ours, which carries no optimizer: nothing is skipped that the file holds
OPTIMIZER_SKIPPED = "Skipping variable loading for optimizer"
# the weights member of a ``.keras`` archive
WEIGHTS_MEMBER = "model.weights.h5"


# the top-level group of a model saved while compiled: its optimizer's state, never loaded
# into a model of ours (``compile=False``), and not weights of the model
OPTIMIZER_GROUP = "optimizer"


# the sizes an ExtraWeights line quotes, of a whole model and of a task's own layers (a
# keras-hub task.weights.h5 holds no backbone): those that say how many arrays it takes
WHOLE_MODEL_SIZES = ("depth", "decoder_depth")
TASK_LAYER_SIZES = ("num_classes", "decoder_depth")


class ExtraWeights(ValueError):
    """A weights file holding more arrays than its model takes (Keras would skip the rest);
    ``task_only``: the file holds a task's own layers, not its backbone's."""

    def __init__(self, model, found: int, expected: int, task_only: bool = False):
        super().__init__(f"holds {found} weight arrays, the model takes {expected}")
        self.model, self.found, self.expected = model, found, expected
        self.task_only = task_only

    def line(self, path: str, source: str) -> str:
        """The one line for the file ``path``, whose model ``source`` describes (``its
        config.json``, ``its report NAME.json``...)."""
        keys = TASK_LAYER_SIZES if self.task_only else WHOLE_MODEL_SIZES
        sizes = ", ".join(f"{key} {getattr(self.model, key)}" for key in keys
                          if hasattr(self.model, key))  # a task has its backbone's depth
        what = ("the task layers of the model" if self.task_only else "the model")
        return (f"{path}: holds {self.found} weight arrays, but {what} {source} describes "
                f"({sizes}) take{'' if self.task_only else 's'} {self.expected}; the weights "
                f"are another model's, or the config was edited: use the weights with the "
                f"config they were saved with")


def stored_shapes(weights) -> Dict[str, Tuple[int, ...]]:
    """{dataset path: shape} of the weight arrays a Keras ``.h5`` weights file (a path or a
    file object) holds, its optimizer's left out. Reads the file's index only; OSError for a
    file that is not HDF5."""
    import h5py

    found = {}
    with h5py.File(weights, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, tuple(item.shape))
                          if isinstance(item, h5py.Dataset)
                          and name.split("/")[0] != OPTIMIZER_GROUP else None)
    return found


def check_all_loaded(model, weights, without=None, shapes=None) -> None:
    """ExtraWeights when ``weights`` (loaded into ``model``) holds arrays beyond ``model``'s
    variables (those of its part ``without`` left out: a keras-hub task's backbone, whose
    weights its ``task.weights.h5`` does not hold). Keras checks each layer's own arrays
    against its variables, and fails a layer that finds none: so once a load succeeded, more
    arrays than variables means groups no layer asked for. ``shapes``: the file's
    ``stored_shapes`` where the caller has read them already (its sizes' check)."""
    skipped = {id(variable) for variable in without.weights} if without is not None else set()
    found = len(stored_shapes(weights) if shapes is None else shapes)
    expected = sum(id(variable) not in skipped for variable in model.weights)
    if found > expected:
        raise ExtraWeights(model, found, expected, task_only=without is not None)


def load_weights_file(model, path: str, shapes=None) -> None:
    """``model.load_weights(path)``, also for a ``.weights.h5`` in the old layout;
    ExtraWeights for a file with arrays the model does not take (``shapes``: its
    ``stored_shapes``, where already read)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=OPTIMIZER_SKIPPED)
        # an old-layout file first fails the new layout, which warns about what it skipped
        warnings.filterwarnings("ignore", message="Skipping nested container")
        try:
            model.load_weights(path)
        except Exception as error:  # keras raises many types for a layout mismatch
            try:
                _old_layout(model).load_weights(path)
            except Exception:
                raise error from None
    check_all_loaded(model, path, shapes=shapes)


class _StoredMember(io.RawIOBase):
    """A stored (uncompressed) zip member read in place from its archive: h5py's many
    backward seeks while it reads the file's index cost nothing here, where zipfile's member
    reader starts again from the member's first byte at each (21.6 s against 0.03 s for the
    index of a 1.2 GB file)."""

    def __init__(self, handle, start: int, size: int):
        super().__init__()
        self._handle, self._start, self._size, self._pos = handle, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        count = max(0, min(len(buffer), self._size - self._pos))
        self._handle.seek(self._start + self._pos)
        read = self._handle.readinto(memoryview(buffer)[:count])
        self._pos += read
        return read

    def close(self) -> None:
        self._handle.close()
        super().close()


def _member_view(path: str, info: zipfile.ZipInfo):
    """A file object of the zip member ``info`` of ``path``: read in place where it is stored
    (``torch.save`` and Keras write them so), else zipfile's own reader."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return zipfile.ZipFile(path).open(info)
    handle = open(path, "rb")
    handle.seek(info.header_offset)
    header = handle.read(30)  # the local file header: its name and extra field come next
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        handle.close()
        raise zipfile.BadZipFile(f"{path}: no local header for {info.filename}")
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + \
        int.from_bytes(header[28:30], "little")
    return _StoredMember(handle, start, info.file_size)


def _check_archive_sizes(path: str, config, info: zipfile.ZipInfo) -> Dict[str, Tuple[int, ...]]:
    """PresetError (``artifacts.resolve``'s one line, naming the archive, the key, both values
    and the array that shows it) where a size the archive's ``config.json`` gives (its task's
    and its backbone's: ``resolve.serialized_sizes``) is not what its weights' index shows;
    reads the index only, before anything is built. Returns the index (``stored_shapes``)."""
    from .artifacts.resolve import check_weights_sizes, serialized_sizes

    with _member_view(path, info) as weights:
        shapes = stored_shapes(weights)
    backbone, task = serialized_sizes(config)
    check_weights_sizes({**backbone, **task}, shapes, path, WEIGHTS_MEMBER,
                        f"its config.json does not describe its {WEIGHTS_MEMBER} (edited, or "
                        f"another model's); export or download the .keras file again")
    return shapes


def _check_member_sizes(path: str, archive: zipfile.ZipFile) -> None:
    """PresetError, from the zip directory alone, for a ``config.json`` declaring more than
    ``MAX_CONFIG_BYTES`` or a member that expands past ``MAX_EXPANSION`` times its stored
    bytes (beyond ``BOMB_FLOOR_BYTES``): both would be decompressed into memory or a
    temporary file before anything could be checked."""
    from .artifacts.resolve import PresetError

    for info in archive.infolist():
        if info.filename == "config.json" and info.file_size > MAX_CONFIG_BYTES:
            raise PresetError(f"{path}: its config.json declares {info.file_size} bytes, "
                              f"expected at most {MAX_CONFIG_BYTES >> 20} MiB (a model's "
                              f"config is a few KB): not a .keras file Keras wrote; export "
                              f"or download it again")
        if info.file_size > max(BOMB_FLOOR_BYTES, MAX_EXPANSION * info.compress_size):
            raise PresetError(f"{path}: member {info.filename} declares {info.file_size} "
                              f"bytes from {info.compress_size} stored, expected at most "
                              f"{MAX_EXPANSION} times its stored bytes (a zip bomb?): not a "
                              f".keras file Keras wrote; export or download it again")


def load_model_file(path: str, load_weights: bool = True):
    """``keras.saving.load_model(path, compile=False)``, also for a ``.keras`` written under
    the old class names (its weights in the old layout); ExtraWeights for an archive whose
    weights hold arrays the model of its config does not take. ``load_weights=False``: the
    model its config describes, with new weights (as keras-hub's ``from_preset`` gives). In
    safe mode whatever the global setting: ``keras.config.enable_unsafe_deserialization()``
    (or an enclosing ``SafeModeScope(False)``) overrides a ``safe_mode=True`` argument, as it
    would a keras-hub preset's (``kerashub_presets.load_checked``).

    The archive is a file from the internet: before anything is built, the sizes its
    ``config.json`` gives (``embed_dim``, ``depth``, ``num_classes``, ``decoder_depth``...)
    are compared with the shapes in its ``model.weights.h5``'s index (``_check_archive_sizes``:
    a ``PresetError`` line), so a config saying a width of 4800 beside 48-wide weights never
    asks for gigabytes of variables. With ``load_weights=False`` too: the config is no more
    trusted when its weights are not loaded, and an archive whose weights' index cannot be
    read is damaged either way (OSError). An archive in Keras's other weights format
    (``model.weights.npz``) is not compared. Before any member is read, its zip directory is
    checked (``_check_member_sizes``): a bloated ``config.json`` or a zip bomb is one line."""
    from keras.src.saving.serialization_lib import SafeModeScope

    with zipfile.ZipFile(path) as archive, SafeModeScope(True):
        _check_member_sizes(path, archive)
        config = json.loads(archive.read("config.json"))
        has_weights = WEIGHTS_MEMBER in archive.namelist()
        shapes = (_check_archive_sizes(path, config, archive.getinfo(WEIGHTS_MEMBER))
                  if has_weights else None)
        if not load_weights:
            return keras.saving.deserialize_keras_object(config, safe_mode=True)
        if config.get("registered_name") not in LEGACY_CLASSES:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=OPTIMIZER_SKIPPED)
                model = keras.saving.load_model(path, compile=False, safe_mode=True)
            if has_weights:  # Keras's other formats: not checked
                check_all_loaded(model, None, shapes=shapes)
            return model
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, WEIGHTS_MEMBER)
            with open(weights, "wb") as out, archive.open(WEIGHTS_MEMBER) as member:
                shutil.copyfileobj(member, out, 1 << 24)  # never the whole member in memory
            load_weights_file(model, weights, shapes)
    return model
