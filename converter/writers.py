"""Writing one entry's artifacts: the SavedModel with the kind's named signature, the
``.keras`` / ``.weights.h5`` pair from one serialisation of the weights, and the keras-hub
preset folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
from typing import Callable

from tf_models.legacy import WEIGHTS_MEMBER as KERAS_WEIGHTS_MEMBER
from tf_models.tracing import graph_function

from .kinds import kind_of
from .zoo import Entry


def export_savedmodel(model, entry: Entry, path: str) -> None:
    """A SavedModel whose ``serving_default`` takes the kind's inputs by name and returns its
    named outputs ({"logits"}, {"pixels"} or {"tokens", "pooled"}), batch dimension open;
    a kind with optional inputs gets a second signature that takes them too (VideoMAE V2's
    pre-trainer: ``dual_masking``, with ``decode_mask``); for a ``raw_frames`` entry ``video``
    is uint8 frames, normalised inside the graph."""
    import tensorflow as tf

    kind = kind_of(entry)
    module = tf.Module()
    # track the variables, not the Keras object: Keras would add its own one-input serving
    # function (wrong for (video, mask)) when a Keras model is a child of the saved module
    module.model_variables = list(model.weights)

    def serving(extra: bool):
        @graph_function(input_signature=kind.signature(entry, extra))
        def serve(*inputs):
            return kind.named(model(kind.keras_inputs(*kind.serving_inputs(entry, *inputs)),
                                    training=False))
        return serve
    module.serve = serving(False)
    signatures = {"serving_default": module.serve}
    if kind.extra_signature:
        module.serve_extra = serving(True)
        signatures[kind.extra_signature] = module.serve_extra
    tf.saved_model.save(module, path, signatures=signatures)


# The Keras version ``keras_weights_through_disk`` was written against. The test
# test_keras_still_builds_small_weights_in_memory fails once Keras no longer takes the
# in-memory path for a model that fits (or drops the hook): then the workaround can go.
KERAS_WORKAROUND_VERSION = "3.15"


@contextlib.contextmanager
def keras_weights_through_disk():
    """Make Keras write and read a ``.keras`` file's weights through a temporary file.

    When it judges memory plentiful (``saving_lib.is_memory_sufficient``, a private hook),
    Keras builds the weights file in memory and copies it into the zip (two extra copies of
    the weights while saving, one while loading); its other path, the one it takes for large
    models, streams through a temporary ``.h5`` next to the file. Same file format either
    way. The hook answers "not sufficient" inside the block and is restored on exit; without
    the hook, Keras's own choice stands.
    """
    try:
        from keras.src.saving import saving_lib
    except ImportError:
        saving_lib = None
    original = getattr(saving_lib, "is_memory_sufficient", None)
    if original is None:
        yield
        return
    saving_lib.is_memory_sufficient = _never_sufficient
    try:
        yield
    finally:
        saving_lib.is_memory_sufficient = original


def _never_sufficient(model) -> bool:
    return False


# The members of a ``.keras`` archive, in the order Keras writes them, which are also the
# files of its unzipped form (``model.save(folder, zipped=False)``).
KERAS_ARCHIVE_MEMBERS = ("metadata.json", "config.json", KERAS_WEIGHTS_MEMBER)


def _is_keras_archive_layout(folder: str) -> bool:
    """Whether ``folder`` holds the archive's members and nothing else but an empty
    ``assets`` folder (Keras makes one when given an absolute path; an archive gets no entry
    for it)."""
    names = set(os.listdir(folder))
    assets = os.path.join(folder, "assets")
    if "assets" in names and os.path.isdir(assets) and not os.listdir(assets):
        names.discard("assets")
    return names == set(KERAS_ARCHIVE_MEMBERS)


def save_keras_and_weights(model, keras_path: str, weights_path: str,
                           on_phase: Callable[[str], None] = lambda phase: None) -> str:
    """Write ``model`` as ``.keras`` and ``.weights.h5`` while serialising its weights once.

    A ``.keras`` file is a zip archive of ``metadata.json``, ``config.json`` and
    ``model.weights.h5`` (stored, not compressed), and that member holds byte for byte what
    ``save_weights`` writes (tests/test_export.py checks both against Keras's own writers).
    So Keras writes its unzipped form once, into a folder next to ``weights_path``; the
    three files are zipped as Keras zips them, and the weights member is then renamed to
    ``weights_path``. The weights are serialised once and copied once, instead of
    serialised twice (the second time through a temporary ``.h5`` and then a copy).

    Should a Keras version write another set of files, the two are written the usual way,
    each by its own Keras writer. Returns "one write" or "two writes". ``on_phase`` hears
    "write .weights.h5" and then "write .keras".
    """
    folder = weights_path + ".unzipped"
    on_phase("write .weights.h5")
    model.save(folder, zipped=False)
    on_phase("write .keras")
    try:
        if not _is_keras_archive_layout(folder):
            with keras_weights_through_disk():
                model.save(keras_path)
            model.save_weights(weights_path)
            return "two writes"
        with zipfile.ZipFile(keras_path, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in KERAS_ARCHIVE_MEMBERS:
                archive.write(os.path.join(folder, name), name)
        os.replace(os.path.join(folder, KERAS_WEIGHTS_MEMBER), weights_path)
        return "one write"
    finally:
        shutil.rmtree(folder, ignore_errors=True)



def export_preset(model, entry: Entry, path: str) -> None:
    """A keras-hub preset folder of ``model`` (``tf_models.kerashub_presets.save_zoo_preset``):
    a classifier with the preprocessor of ``entry``'s clip size and mean / std (raw uint8
    frames in), any other model as it is. The model's own preprocessor is kept when it has one
    and put back as it was afterwards."""
    from tf_models.kerashub_presets import save_zoo_preset

    had = getattr(model, "preprocessor", None)
    try:
        save_zoo_preset(model, entry, path)
    finally:
        if hasattr(model, "preprocessor") and had is None:
            model.preprocessor = None
