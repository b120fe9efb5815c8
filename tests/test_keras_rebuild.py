"""A conversion proves its ``.keras`` file by class, config and bit-identical variables, with no
clip through it (docs/PARITY.md, "Reload checks"). What that leaves to the code is proven here:
``load_model`` rebuilds from the written class and config the function of the model that wrote
the file, for every kind of zoo model, through the conversion's own writer and loader; and
every zoo entry is of a kind tested here."""

import torch  # noqa: F401  (torch side first)
from converter import proofs
from converter.kinds import build_tf_model, kind_of
from converter.parity import make_cases
from converter.writers import save_keras_and_weights
from converter.zoo import TEST_ZOO, ZOO

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import TINY_FT, TINY_PT  # noqa: E402
from model_harness import randomise  # noqa: E402
import tf_models  # noqa: E402

TINY_V2_FT = "TFVideoMAEv2_Tg_K710_4x28_DL"
TINY_V2_PT = "TFVideoMAEv2_Tg_Hybrid_4x28_PT"
# one tiny entry of every kind of Keras model a conversion writes: (name, encoder only)
REBUILT = [(TINY_FT, False), (TINY_PT, False), (TINY_V2_FT, False), (TINY_V2_PT, False),
           (TINY_FT, True), (TINY_PT, True), (TINY_V2_FT, True), (TINY_V2_PT, True)]


def _entry(name, encoder_only):
    entry = TEST_ZOO[name]
    return entry.encoder_variant() if encoder_only else entry


def _code_path(entry):
    """What decides which code a zoo model runs: its family, its kind and the keyword
    arguments its builder passes (the values aside: sizes only change shapes, which the
    variable proof compares)."""
    return entry.family, kind_of(entry).name, entry.mode, tuple(sorted(entry.model_config()))


def _written_and_reloaded(entry, folder):
    """A tiny model of ``entry`` with every variable random, written by the conversion's
    writer and reloaded by the conversion's loader: (in-memory runner, reloaded runner)."""
    model = build_tf_model(entry)
    randomise(model)
    keras_path, weights_path = str(folder / "m.keras"), str(folder / "m.weights.h5")
    save_keras_and_weights(model, keras_path, weights_path)
    return proofs.keras_runner(entry, model), proofs.reload_keras(entry, keras_path)


@pytest.mark.parametrize("name, encoder_only", REBUILT)
def test_a_written_keras_file_rebuilds_the_function_of_the_model_that_wrote_it(
        name, encoder_only, tmp_path):
    entry = _entry(name, encoder_only)
    written, reloaded = _written_and_reloaded(entry, tmp_path)
    assert type(reloaded.model) is type(written.model)
    assert reloaded.model.get_config() == written.model.get_config()
    # every case: a V2 pre-trainer's with and without a decode mask, its two code paths
    for case in make_cases(entry, batch=1, seed=3):
        expected, found = written(case), reloaded(case)
        assert sorted(found) == sorted(expected)
        for output in expected:
            np.testing.assert_array_equal(found[output], expected[output])


def test_a_config_that_leaves_out_an_argument_fails_the_rebuild(tmp_path, monkeypatch):
    """What the test above guards against, and the conversion's config comparison cannot see:
    both sides' ``get_config()`` leave ``num_heads`` out, so the reload rebuilds the default
    12 heads (48 / 12: every shape the same) and computes another function."""
    config = tuple(k for k in tf_models.VideoMAEBackbone.CONFIG if k != "num_heads")
    monkeypatch.setattr(tf_models.VideoMAEBackbone, "CONFIG", config)
    entry = _entry(TINY_FT, False)
    written, reloaded = _written_and_reloaded(entry, tmp_path)
    assert reloaded.model.get_config() == written.model.get_config()
    case = make_cases(entry, batch=1, seed=3)[0]
    assert not np.array_equal(reloaded(case)["logits"], written(case)["logits"])


def test_every_zoo_entry_is_of_a_kind_whose_rebuild_is_tested():
    tested = {_code_path(_entry(name, encoder_only)) for name, encoder_only in REBUILT}
    for entry in ZOO.values():
        for variant in (entry, entry.encoder_variant()):
            assert _code_path(variant) in tested, variant.name
