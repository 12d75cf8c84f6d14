import keras
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import keras_sparse as ks
from conftest import assert_config_round_trips, assert_round_trips, dense_of, gradient
from keras_sparse.data import SparseDataset
from keras_sparse.layers import SparseDenseInput


def reference(x_dense, kernel, bias, combiner):
    out = x_dense @ kernel
    if combiner == "mean":
        denom = x_dense.sum(axis=1, keepdims=True)
    elif combiner == "sqrtn":
        denom = np.sqrt((x_dense**2).sum(axis=1, keepdims=True))
    else:
        denom = np.ones((x_dense.shape[0], 1))
    safe = np.where(denom == 0, 1.0, denom)
    return np.where(denom == 0, 0.0, out / safe) + bias


def _x():
    x = sp.lil_matrix((5, 7), dtype=np.float32)
    x[0, 1], x[0, 4], x[2, 6], x[3, 0], x[3, 1], x[3, 6] = 1.0, 2.0, 0.5, 3.0, -1.0, 1.0
    return sp.csr_matrix(x)  # rows 1 and 4 are empty


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("sparse", [True, False])
def test_output_and_gradient_match_dense_reference(combiner, sparse):
    x = _x()
    layer = SparseDenseInput(3, combiner=combiner, bias_initializer="ones")
    inputs = ks.to_sparse(x) if sparse else keras.ops.convert_to_tensor(x.toarray())
    out = layer(inputs)
    kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
    expected = reference(x.toarray(), kernel, bias, combiner)
    np.testing.assert_allclose(dense_of(out), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dense_of(out)[[1, 4]], np.ones((2, 3)))  # empty rows -> bias
    # Dense reference gradient of sum(out * C) w.r.t. the kernel.
    c = np.arange(15, dtype=np.float32).reshape(5, 3)

    weights = keras.ops.convert_to_tensor(c)

    def weighted_output(k):
        return layer.stateless_call([k, layer.bias.value], [], inputs)[0] * weights

    grad = gradient(weighted_output, kernel)
    eps = 1e-3
    numeric = np.zeros_like(kernel)
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            k2 = kernel.copy()
            k2[i, j] += eps
            up = (reference(x.toarray(), k2, bias, combiner) * c).sum()
            k2[i, j] -= 2 * eps
            down = (reference(x.toarray(), k2, bias, combiner) * c).sum()
            numeric[i, j] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-2, atol=1e-2)


@pytest.mark.tensorflow_only
def test_tensorflow_kernel_gradient_is_indexed_slices_over_touched_rows():
    import tensorflow as tf

    layer = SparseDenseInput(3)
    inputs = ks.to_sparse(_x())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(inputs))
    grad = tape.gradient(loss, layer.kernel.value)
    assert isinstance(grad, tf.IndexedSlices)
    assert set(grad.indices.numpy().tolist()) == {0, 1, 4, 6}  # touched features only


@given(
    st.integers(0, 6),
    st.integers(1, 8),
    st.sampled_from(["sum", "mean", "sqrtn"]),
    st.integers(0, 2**16),
)
def test_property_random_sparse_inputs(rows, features, combiner, seed):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, features)) * (rng.random((rows, features)) < 0.4)
    dense = dense.astype(np.float32)
    layer = SparseDenseInput(2, combiner=combiner, bias_initializer="ones")
    out = layer(ks.to_sparse(sp.csr_matrix(dense)))
    expected = reference(dense, np.asarray(layer.kernel), np.asarray(layer.bias), combiner)
    assert out.shape == (rows, 2)
    np.testing.assert_allclose(dense_of(out), expected, rtol=1e-4, atol=1e-5)


def test_empty_batch():
    layer = SparseDenseInput(4)
    out = layer(ks.to_sparse(sp.csr_matrix((0, 9), dtype=np.float32)))
    assert out.shape == (0, 4)


def test_activation_applies_after_bias_for_empty_rows():
    layer = SparseDenseInput(2, activation="relu", bias_initializer=keras.initializers.Constant(-1))
    out = layer(ks.to_sparse(sp.csr_matrix((3, 4), dtype=np.float32)))
    np.testing.assert_array_equal(dense_of(out), np.zeros((3, 2)))


def test_sequential_functional_fit_and_save(tmp_path):
    x = sp.random(40, 25, density=0.2, format="csr", random_state=3, dtype=np.float32)
    y = np.asarray(x.sum(axis=1))
    seq = keras.Sequential(
        [keras.Input((25,), sparse=True), SparseDenseInput(4, "relu"), keras.layers.Dense(1)]
    )
    inp = keras.Input((25,), sparse=True)
    func = keras.Model(inp, keras.layers.Dense(1)(SparseDenseInput(4, combiner="sqrtn")(inp)))
    for model in (seq, func):
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(SparseDataset(x, y, batch_size=16), epochs=3, verbose=0)
        assert history.history["loss"][-1] < history.history["loss"][0]
        assert_round_trips(model, SparseDataset(x, batch_size=16), tmp_path)


def test_config_round_trip_keeps_every_argument():
    layer = SparseDenseInput(
        5,
        activation="tanh",
        use_bias=False,
        combiner="mean",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(0.1),
        bias_constraint=keras.constraints.NonNeg(),
        name="sdi",
    )
    clone = assert_config_round_trips(layer)
    assert clone.combiner == "mean" and clone.use_bias is False and clone.units == 5


def test_jit_is_off_on_tensorflow_and_on_for_jax():
    inp = keras.Input((10,), sparse=True)
    model = keras.Model(inp, SparseDenseInput(2)(inp))
    from keras.src.trainers.trainer import model_supports_jit

    # TensorFlow's graph kernels beat XLA on sparse gathers; every JAX step is compiled.
    assert model_supports_jit(model) == (keras.backend.backend() == "jax")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"units": 0}, ValueError, "`units`"),
        ({"units": 2.0}, TypeError, "`units`"),
        ({"units": 2, "combiner": "max"}, ValueError, "`combiner` must be one of"),
        ({"units": 2, "use_bias": "no"}, TypeError, "`use_bias`"),
        ({"units": 2, "activation": "nope"}, ValueError, "nope"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SparseDenseInput(**kwargs)


def test_unknown_feature_count_is_a_clear_error():
    with pytest.raises(ValueError, match="number of features"):
        SparseDenseInput(2).build((None, None))
    with pytest.raises(ValueError, match="2-D"):
        SparseDenseInput(2).build((None, 3, 4))
