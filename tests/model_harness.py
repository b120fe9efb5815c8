"""One harness for every tf_models class (as keras-hub's test_case does): build a tiny model,
randomise every variable, and check config round trip, ``.keras`` and ``.weights.h5`` save and
load, and the upstream-like variable names the converter maps onto."""

import os

import numpy as np


def randomise(model, seed=0):
    """Every variable random (biases, LayerNorm parameters and mask_token included)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.standard_normal(tuple(variable.shape)).astype("float32"))


def outputs(model, inputs):
    import keras

    found = model(inputs)
    if isinstance(found, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in found.items()}
    return keras.ops.convert_to_numpy(found)


def assert_same(a, b):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(a, b)


def run_serialization_test(model, inputs):
    """``from_config(get_config())`` builds the same architecture with the same names."""
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert {k: tuple(v.shape) for k, v in clone.named_variables().items()} == \
        {k: tuple(v.shape) for k, v in model.named_variables().items()}
    clone.set_weights(model.get_weights())
    assert_same(outputs(clone, inputs), outputs(model, inputs))


def run_model_saving_test(model, inputs, folder):
    """``.keras`` and ``.weights.h5`` round trips give bit-identical outputs."""
    import keras

    expected = outputs(model, inputs)
    path = os.path.join(str(folder), "model.keras")
    model.save(path)
    assert_same(outputs(keras.saving.load_model(path, compile=False), inputs), expected)
    weights = os.path.join(str(folder), "model.weights.h5")
    model.save_weights(weights)
    fresh = type(model).from_config(model.get_config())
    fresh.load_weights(weights)
    assert_same(outputs(fresh, inputs), expected)


def run_named_variables_test(model, expected_names):
    """Every variable has exactly one dotted name, and the names are the expected ones."""
    named = model.named_variables()
    assert len(named) == len(model.weights)
    assert {id(v) for v in named.values()} == {id(v) for v in model.weights}
    assert sorted(named) == sorted(expected_names)
