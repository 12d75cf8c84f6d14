import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from conftest import MATRIX_CLASSES, assert_config_round_trips, assert_round_trips, gradient
from keras_sparse.layers import SparseMatMul


@pytest.fixture(scope="module")
def adjacency():
    a = sp.random(6, 5, density=0.35, format="coo", random_state=4, dtype=np.float32)
    return sp.coo_matrix(a)


@pytest.mark.parametrize("cls", MATRIX_CLASSES, ids=lambda c: c.__name__)
def test_fixed_matrix_every_format(cls, adjacency):
    h = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    out = SparseMatMul(cls(adjacency))(h)
    np.testing.assert_allclose(np.asarray(out), adjacency @ h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transpose_a", [False, True])
def test_fixed_matrix_batched_and_transposed(adjacency, transpose_a):
    rng = np.random.default_rng(1)
    a = adjacency.T if transpose_a else adjacency
    h = rng.normal(size=(3, a.shape[1], 2)).astype(np.float32)
    out = SparseMatMul(adjacency, transpose_a=transpose_a)(h)
    expected = np.stack([a @ h[b] for b in range(3)])
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)
    out2 = SparseMatMul(adjacency, transpose_a=transpose_a)(h[0])
    np.testing.assert_allclose(np.asarray(out2), a @ h[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transpose_a", [False, True])
def test_two_operands_2d_and_3d(adjacency, transpose_a):
    rng = np.random.default_rng(2)
    mats = [adjacency, sp.random(6, 5, density=0.2, random_state=7, dtype=np.float32)]
    a_list = [m.T if transpose_a else m for m in mats]
    layer = SparseMatMul(transpose_a=transpose_a)
    h = rng.normal(size=(a_list[0].shape[1], 4)).astype(np.float32)
    out = layer([ks.to_sparse(mats[0]), h])
    np.testing.assert_allclose(np.asarray(out), a_list[0] @ h, rtol=1e-5, atol=1e-6)
    hb = rng.normal(size=(2, a_list[0].shape[1], 4)).astype(np.float32)
    out3 = layer([ks.stack(mats), hb])
    expected = np.stack([a_list[b] @ hb[b] for b in range(2)])
    np.testing.assert_allclose(np.asarray(out3), expected, rtol=1e-5, atol=1e-6)
    shared = layer([ks.stack(mats), h])  # one dense operand for every batch item
    expected = np.stack([a_list[b] @ h for b in range(2)])
    np.testing.assert_allclose(np.asarray(shared), expected, rtol=1e-5, atol=1e-6)


def test_gradient_flows_to_dense_operand(adjacency):
    layer = SparseMatMul(adjacency)
    layer.build((5, 2))
    matrix = [v.value for v in layer.non_trainable_weights]
    grad = gradient(lambda h: layer.stateless_call([], matrix, h)[0], np.ones((5, 2)))
    expected = adjacency.T @ np.ones((6, 2), np.float32)
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_matrix_is_saved_with_model_and_not_trainable(tmp_path):
    square = sp.random(5, 5, density=0.4, format="csr", random_state=8, dtype=np.float32)
    inp = keras.Input((3,))
    layer = SparseMatMul(square)
    model = keras.Model(inp, keras.layers.Dense(2)(layer(keras.layers.Dense(3)(inp))))
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    before = np.asarray(layer.matrix_values).copy()
    h = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    model.compile(optimizer="adam", loss="mse")
    model.fit(h, np.ones((5, 2)), batch_size=5, epochs=2, verbose=0)
    np.testing.assert_array_equal(np.asarray(layer.matrix_values), before)
    reloaded = assert_round_trips(model, h, tmp_path)
    reloaded_layer = [w for w in reloaded.layers if isinstance(w, SparseMatMul)][0]
    np.testing.assert_array_equal(np.asarray(reloaded_layer.matrix_values), before)


def test_config_round_trip(adjacency):
    layer = SparseMatMul(adjacency, transpose_a=True, name="adj")
    config = layer.get_config()
    assert config["matrix_shape"] == [6, 5] and config["matrix_nnz"] == adjacency.nnz
    assert_config_round_trips(layer)
    assert_config_round_trips(SparseMatMul())


def test_empty_matrix_gives_zeros():
    out = SparseMatMul(sp.csr_matrix((3, 4), dtype=np.float32))(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(np.asarray(out), np.zeros((3, 2)))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: SparseMatMul(np.ones((2, 2, 2))), ValueError, "`matrix` must be 2-D"),
        (lambda: SparseMatMul([np.eye(2), np.eye(2)]), TypeError, "one sparse matrix"),
        (lambda: SparseMatMul(transpose_a="yes"), TypeError, "`transpose_a`"),
        (lambda: SparseMatMul(matrix_shape=(2, 2)), ValueError, "together"),
        (lambda: SparseMatMul()(np.ones((2, 2), np.float32)), ValueError, r"\[sparse, dense\]"),
    ],
)
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_operand_shape_mismatch_names_both_shapes(adjacency):
    with pytest.raises(ValueError, match=r"fixed matrix has shape \(\d+, \d+\).*dense operand"):
        SparseMatMul(adjacency)(np.zeros((adjacency.shape[1] + 1, 3), "float32"))
    a = ks.to_sparse(sp.eye(4, 5, format="csr", dtype=np.float32))
    with pytest.raises(ValueError, match=r"sparse operand has shape \(4, 5\)"):
        SparseMatMul()([a, np.zeros((4, 3), "float32")])
    with pytest.raises(ValueError, match=r"\(transposed\)"):
        SparseMatMul(transpose_a=True)([a, np.zeros((5, 3), "float32")])
