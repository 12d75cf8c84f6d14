import keras
import numpy as np
import pytest

from conftest import assert_config_round_trips
from keras_sparse import backend as B
from keras_sparse.optimizers import LazyAdam

# JAX: see tests/backend/test_jax.py (the lazy training step).
row_gradients = pytest.mark.skipif(
    B.NAME == "jax", reason="JAX's row gradients exist only inside its lazy training step"
)


def _row_gradient(values, rows, shape):
    """A row-sparse gradient as the backend hands it to the optimizer."""
    values = np.asarray(values, np.float32)
    if B.NAME == "tensorflow":
        import tensorflow as tf

        return tf.IndexedSlices(tf.constant(values), tf.constant(rows))
    import torch

    return torch.sparse_coo_tensor(torch.tensor([rows]), torch.tensor(values), shape)


def _pair(values, **kwargs):
    a, b = keras.Variable(values.copy()), keras.Variable(values.copy())
    return a, b, keras.optimizers.Adam(0.1, **kwargs), LazyAdam(0.1, **kwargs)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_dense_gradients_equal_adam(amsgrad):
    init = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    a, b, adam, lazy = _pair(init, amsgrad=amsgrad)
    for step in range(4):
        grad = keras.ops.convert_to_tensor(
            np.random.default_rng(step).normal(size=(6, 3)).astype(np.float32)
        )
        adam.apply_gradients([(grad, a)])
        lazy.apply_gradients([(grad, b)])
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)


@row_gradients
def test_sparse_gradient_leaves_untouched_rows_and_moments_unchanged():
    init = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
    var = keras.Variable(init.copy())
    opt = LazyAdam(0.1)
    grad = _row_gradient([[1.0, -2.0], [0.5, 0.5], [1.0, 1.0]], [3, 5, 3], (8, 2))
    opt.apply_gradients([(grad, var)])
    untouched = [0, 1, 2, 4, 6, 7]
    np.testing.assert_array_equal(np.asarray(var)[untouched], init[untouched])
    m = np.asarray(opt._momentums[0])
    np.testing.assert_array_equal(m[untouched], 0.0)
    # Touched rows follow Adam's first step on the summed duplicate gradient.
    summed = {3: np.array([2.0, -1.0]), 5: np.array([0.5, 0.5])}
    for row, g in summed.items():
        m_hat = g  # (1 - b1) g / (1 - b1)
        v_hat = g**2
        expected = init[row] - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-7)
        np.testing.assert_allclose(np.asarray(var)[row], expected, rtol=1e-5)
        np.testing.assert_allclose(m[row], 0.1 * g, rtol=1e-6)


@row_gradients
def test_sparse_equals_adam_when_every_row_is_touched():
    init = np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32)
    a, b, adam, lazy = _pair(init)
    for step in range(3):
        values = np.random.default_rng(step).normal(size=(4, 2)).astype(np.float32)
        adam.apply_gradients([(keras.ops.convert_to_tensor(values), a)])
        lazy.apply_gradients([(_row_gradient(values, [0, 1, 2, 3], (4, 2)), b)])
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_serialization():
    opt = LazyAdam(learning_rate=0.01, beta_1=0.8, amsgrad=True)
    clone = assert_config_round_trips(opt)
    assert clone.beta_1 == 0.8
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, LazyAdam)
