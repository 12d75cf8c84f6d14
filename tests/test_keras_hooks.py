"""SciPy everywhere Keras takes data, and the warnings that name the sparse fix."""

import warnings

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from conftest import MATRIX_CLASSES, dense_of

X = sp.random(16, 9, density=0.3, format="csr", random_state=0, dtype=np.float32)
Y = sp.random(16, 6, density=0.4, format="csr", random_state=1, dtype=np.float32)


def _model(sparse=True, metrics=()):
    keras.utils.set_random_seed(3)
    inp = keras.Input((9,), sparse=sparse)
    model = keras.Model(inp, keras.layers.Dense(6)(ks.layers.SparseDenseInput(5)(inp)))
    model.compile(optimizer="sgd", loss=ks.losses.sparse_mse, metrics=list(metrics))
    return model


def _floats(logs):
    """Keras 3.10 returns 0-d arrays in `return_dict=True` logs; later versions floats."""
    return {name: float(value) for name, value in logs.items()}


def _reference_scores(model, x):
    """Dense NumPy forward pass of the SparseDenseInput -> Dense model (test oracle)."""
    table, (kernel, bias) = model.layers[1].get_weights()[0], model.layers[2].get_weights()
    return np.asarray(x.toarray(), np.float64) @ table @ kernel + bias


@pytest.mark.parametrize("fmt", MATRIX_CLASSES, ids=lambda c: c.__name__)
def test_model_and_layer_calls_accept_every_scipy_format(fmt):
    model = _model()
    x = fmt(X)
    expected = _reference_scores(model, X)
    np.testing.assert_allclose(dense_of(model(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-5, atol=1e-6)
    table = model.layers[1].get_weights()[0]
    np.testing.assert_allclose(
        dense_of(model.layers[1](x)), X.toarray() @ table, rtol=1e-5, atol=1e-6
    )


def test_train_and_test_on_batch_with_scipy_equal_backend_tensors():
    a, b = _model(metrics=["ndcg"]), _model(metrics=["ndcg"])
    got = _floats(a.train_on_batch(sp.coo_matrix(X), sp.csc_matrix(Y), return_dict=True))
    want = _floats(b.train_on_batch(ks.to_sparse(X), ks.to_sparse(Y), return_dict=True))
    assert got == pytest.approx(want, rel=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6)
    got = _floats(a.test_on_batch(X, Y, sample_weight=np.linspace(0, 1, 16), return_dict=True))
    want = _floats(
        b.test_on_batch(
            ks.to_sparse(X), ks.to_sparse(Y), sample_weight=np.linspace(0, 1, 16), return_dict=True
        )
    )
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y": Y[:15]}, "`y` has 15 rows but `x` has 16"),
        ({"y": Y, "sample_weight": np.ones(15)}, "`sample_weight` has 15 rows but `x` has 16"),
    ],
)
def test_on_batch_rows_mismatch_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model().train_on_batch(X, **kwargs)


@pytest.mark.parametrize("loss", ["mse", keras.losses.MeanAbsoluteError(), "huber"])
def test_builtin_loss_on_sparse_target_names_the_masked_loss(loss):
    model = keras.Sequential([keras.Input((9,), sparse=True), keras.layers.Dense(6)])
    model.compile(optimizer="sgd", loss=loss)
    with pytest.warns(UserWarning, match=r"keras_sparse\.losses\.sparse_(mse|mae|huber)"):
        try:  # Keras either fails (then the error says the same) or densifies
            model.fit(X, Y, epochs=1, verbose=0)
        except ValueError as err:
            assert "scores only the observed entries" in str(err)


def test_a_builtin_loss_keeps_the_check_only_after_a_sparse_target():
    """Checked at its first real call; kept for the error message only where it warned."""
    from keras.src.trainers.compile_utils import CompileLoss

    ours = vars(CompileLoss)["__call__"].function
    dense = keras.Sequential([keras.Input((9,), sparse=True), keras.layers.Dense(6)])
    dense.compile(optimizer="sgd", loss="mse")
    assert dense._compile_loss.__call__.__func__ is ours  # not yet called
    dense.fit(X, Y.toarray(), epochs=1, verbose=0)
    assert dense._compile_loss.__call__.__func__ is not ours
    sparse = keras.Sequential([keras.Input((9,), sparse=True), keras.layers.Dense(6)])
    sparse.compile(optimizer="sgd", loss="mse")
    with pytest.warns(UserWarning, match="sparse_mse"):
        try:
            sparse.fit(X, Y, epochs=1, verbose=0)
        except ValueError:
            pass
    assert sparse._compile_loss.__call__.__func__ is ours


def test_our_losses_and_dense_targets_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().fit(X, Y, epochs=1, verbose=0)
        model = keras.Sequential([keras.Input((9,), sparse=True), keras.layers.Dense(6)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(X, Y.toarray(), epochs=1, verbose=0)


def test_dense_input_fed_a_sparse_matrix_warns_once():
    inp = keras.Input((9,))  # no sparse=True
    model = keras.Model(inp, keras.layers.Dense(6)(inp))
    model.compile(optimizer="sgd", loss=ks.losses.sparse_mse)
    with pytest.warns(UserWarning, match=r"sparse=True") as caught:
        model.fit(X, Y, epochs=2, batch_size=4, verbose=0)
        model.predict(X, verbose=0)
    assert sum("sparse=True" in str(w.message) for w in caught) == 1


def test_hooks_are_installed_once():
    from keras_sparse import _keras_hooks

    call = keras.layers.Layer.__call__
    assert _keras_hooks.install()
    assert keras.layers.Layer.__call__ is call


def test_fit_accepts_an_unsorted_duplicate_coo_directly():
    coo = X.tocoo()
    perm = np.random.default_rng(4).permutation(coo.nnz)
    unsorted = sp.coo_matrix(
        (np.r_[coo.data[perm], 0.5], (np.r_[coo.row[perm], 0], np.r_[coo.col[perm], 0])),
        shape=X.shape,
    )
    trained = []
    for x in (unsorted, unsorted.tocsr()):  # the raw COO, and its canonical CSR
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((9,), sparse=True), keras.layers.Dense(6)])
        model.compile(optimizer="sgd", loss="sparse_mse")
        initial = model.get_weights()[0]
        model.fit(x, Y.tocoo(), batch_size=4, epochs=1, shuffle=False, verbose=0)
        trained.append(model.get_weights())
        assert not np.allclose(trained[-1][0], initial)  # it trained
    for got, want in zip(*trained):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    kernel, bias = (np.asarray(w) for w in model.layers[-1].weights)
    pred = model.predict(unsorted, batch_size=5, verbose=0)
    np.testing.assert_allclose(pred, unsorted.toarray() @ kernel + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.torch_only
def test_a_sparse_input_on_torch_leaves_keras_flag_false_for_everyone_else():
    from keras.src import backend as keras_backend

    # keras.Input(sparse=True) works, and keeps its sparse spec through a saved config ...
    x = keras.Input((6,), sparse=True)
    assert x.sparse and not keras_backend.SUPPORTS_SPARSE_TENSORS
    layer = keras.layers.InputLayer.from_config(x._keras_history.operation.get_config())
    assert layer.sparse and not keras_backend.SUPPORTS_SPARSE_TENSORS
    # ... while Keras's other readers of the flag still refuse sparse output on torch.
    with pytest.raises(ValueError, match="sparse"):
        keras.layers.Discretization(bin_boundaries=[0.5], output_mode="one_hot", sparse=True)
    # A flag set for one block is put back even when the block raises.
    from keras_sparse import _compat

    with (
        pytest.raises(RuntimeError),
        _compat.scoped_value("keras.src.backend.SUPPORTS_SPARSE_TENSORS", True),
    ):
        assert keras_backend.SUPPORTS_SPARSE_TENSORS
        raise RuntimeError("inside")
    assert not keras_backend.SUPPORTS_SPARSE_TENSORS
