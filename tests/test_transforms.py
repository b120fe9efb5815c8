"""Each mapping transform kind, and the sinusoid table, against hand-computed examples."""

import torch  # noqa: F401  (torch side first)
import torch_reference
from converter.mapping import TRANSFORMS

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tf_models  # noqa: E402


def test_vector_transform_keeps_values_and_shape():
    bias = np.array([1.5, -2.0, 0.25], dtype=np.float32)
    out = TRANSFORMS["vector"].apply(bias)
    np.testing.assert_array_equal(out, bias)
    assert TRANSFORMS["vector"].shape((3,)) == (3,)
    token = np.arange(6, dtype=np.float32).reshape(1, 1, 6)  # mask_token keeps (1, 1, D)
    np.testing.assert_array_equal(TRANSFORMS["vector"].apply(token), token)


def test_linear_transform_hand_computed():
    # torch Linear weight (out=2, in=3): y = x @ W.T
    weight = np.array([[1.0, 2.0, 3.0],
                       [4.0, 5.0, 6.0]], dtype=np.float32)
    x = np.array([[1.0, 0.0, -1.0]], dtype=np.float32)
    kernel = TRANSFORMS["linear"].apply(weight)
    assert kernel.shape == (3, 2)
    assert TRANSFORMS["linear"].shape((2, 3)) == (3, 2)
    # by hand: [1*1 + 0*2 - 1*3, 1*4 + 0*5 - 1*6] = [-2, -2]
    np.testing.assert_array_equal(x @ kernel, np.array([[-2.0, -2.0]], dtype=np.float32))


def test_linear_transform_matches_torch_linear_and_keras_dense():
    rng = np.random.default_rng(0)
    torch_layer = torch.nn.Linear(7, 5)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.from_numpy(rng.standard_normal((5, 7), dtype=np.float32)))
        torch_layer.bias.copy_(torch.from_numpy(rng.standard_normal(5, dtype=np.float32)))
    x = rng.standard_normal((4, 7), dtype=np.float32)
    with torch.no_grad():
        expected = torch_layer(torch.from_numpy(x)).numpy()

    dense = keras.layers.Dense(5)
    dense.build((None, 7))
    dense.kernel.assign(TRANSFORMS["linear"].apply(torch_layer.weight.detach().numpy()))
    dense.bias.assign(TRANSFORMS["vector"].apply(torch_layer.bias.detach().numpy()))
    found = keras.ops.convert_to_numpy(dense(x))
    np.testing.assert_allclose(found, expected, atol=1e-6, rtol=0)


def test_linear_shape_rule_rejects_non_matrix():
    assert TRANSFORMS["linear"].shape((2, 3, 4)) != (4, 3)
    assert TRANSFORMS["conv3d"].shape((2, 3)) != (3, 2)


def test_conv3d_transform_layout():
    # (O, I, T, H, W) -> (T, H, W, I, O)
    weight = np.arange(2 * 3 * 2 * 4 * 5, dtype=np.float32).reshape(2, 3, 2, 4, 5)
    kernel = TRANSFORMS["conv3d"].apply(weight)
    assert kernel.shape == (2, 4, 5, 3, 2)
    assert TRANSFORMS["conv3d"].shape((2, 3, 2, 4, 5)) == (2, 4, 5, 3, 2)
    assert kernel[1, 2, 3, 0, 1] == weight[1, 0, 1, 2, 3]
    assert kernel[0, 3, 4, 2, 0] == weight[0, 2, 0, 3, 4]


def test_conv3d_transform_matches_torch_conv3d_on_random_input():
    """Tubelet embedding: torch Conv3d (NCTHW) vs Keras Conv3D (NTHWC), stride = kernel."""
    rng = np.random.default_rng(1)
    kernel_size = (2, 4, 4)
    torch_conv = torch.nn.Conv3d(3, 6, kernel_size=kernel_size, stride=kernel_size)
    with torch.no_grad():
        torch_conv.weight.copy_(torch.from_numpy(
            rng.standard_normal(tuple(torch_conv.weight.shape), dtype=np.float32)))
        torch_conv.bias.copy_(torch.from_numpy(rng.standard_normal(6, dtype=np.float32)))
    video_ncthw = rng.standard_normal((2, 3, 4, 8, 12), dtype=np.float32)
    with torch.no_grad():
        expected_ncthw = torch_conv(torch.from_numpy(video_ncthw)).numpy()

    keras_conv = keras.layers.Conv3D(6, kernel_size, strides=kernel_size, padding="valid")
    keras_conv.build((None, 4, 8, 12, 3))
    keras_conv.kernel.assign(TRANSFORMS["conv3d"].apply(torch_conv.weight.detach().numpy()))
    keras_conv.bias.assign(torch_conv.bias.detach().numpy())
    found_nthwc = keras.ops.convert_to_numpy(keras_conv(video_ncthw.transpose(0, 2, 3, 4, 1)))

    assert found_nthwc.shape == (2, 2, 2, 3, 6)
    np.testing.assert_allclose(found_nthwc, expected_ncthw.transpose(0, 2, 3, 4, 1),
                               atol=1e-5, rtol=0)


def test_conv3d_transform_is_not_a_plain_reverse_transpose():
    """A kernel laid out with .T ((W, H, T, I, O)) would give a different result: the test
    above can tell the right layout from the near miss."""
    weight = np.random.default_rng(2).standard_normal((4, 3, 2, 2, 2)).astype(np.float32)
    assert not np.array_equal(TRANSFORMS["conv3d"].apply(weight), weight.T)


def test_sinusoid_tables_agree_between_torch_and_tf():
    for positions, dim in [(8, 48), (1568, 384), (1568, 768)]:
        torch_table = torch_reference.sinusoid_table(positions, dim).numpy()
        tf_table = tf_models.sinusoid_table(positions, dim)
        assert torch_table.shape == tf_table.shape == (1, positions, dim)
        assert torch_table.dtype == tf_table.dtype == np.float32
        np.testing.assert_array_equal(torch_table, tf_table)


@pytest.mark.parametrize("pos,j", [(0, 0), (0, 1), (1, 0), (1, 1), (5, 2), (5, 3), (7, 47),
                                   (1567, 100), (1567, 383), (300, 201)])
def test_sinusoid_table_matches_formula(pos, j):
    dim = 384 if pos >= 8 or j >= 48 else 48
    table = torch_reference.sinusoid_table(max(pos + 1, 8), dim).numpy()[0]
    angle = pos / 10000 ** (2 * (j // 2) / dim)
    expected = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    assert table[pos, j] == pytest.approx(expected, abs=1e-6)
    tf_table = tf_models.sinusoid_table(max(pos + 1, 8), dim)[0]
    assert tf_table[pos, j] == pytest.approx(expected, abs=1e-6)


def test_sinusoid_table_known_values():
    table = tf_models.sinusoid_table(2, 4)[0]
    # position 0: sin(0)=0 on even, cos(0)=1 on odd
    np.testing.assert_allclose(table[0], [0.0, 1.0, 0.0, 1.0], atol=1e-7)
    # position 1, D=4: j=0,1 -> angle 1; j=2,3 -> angle 1/10000**0.5 = 0.01
    np.testing.assert_allclose(table[1], [np.sin(1.0), np.cos(1.0), np.sin(0.01), np.cos(0.01)],
                               atol=1e-7)
