"""The torch backend: sparse batches stay sparse, row-sparse LazyAdam, Keras's torch trainer."""

import warnings

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from conftest import dense_of
from keras_sparse import backend as B
from keras_sparse.data import SparseDataset
from keras_sparse.layers import SparseDenseInput

pytestmark = pytest.mark.torch_only

FEATURES = 40
X = sp.random(24, FEATURES, density=0.1, format="csr", random_state=3, dtype=np.float32)
Y = np.random.default_rng(0).normal(size=(24, 1)).astype(np.float32)


def _model(optimizer="adam", **compile_kwargs):
    keras.utils.set_random_seed(0)
    inp = keras.Input((FEATURES,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(1)(SparseDenseInput(3, name="table")(inp)))
    model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


def _twin(model, optimizer):
    """The same network on dense inputs: Keras's own Dense and the same weights."""
    inp = keras.Input((FEATURES,))
    twin = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(3)(inp)))
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=optimizer, loss="mse")
    return twin


def _never_dense(monkeypatch):
    original = SparseDenseInput._combine_dense

    def refuse(self, inputs):
        if not inputs.is_meta:  # Keras's symbolic build runs data-free dense "meta" tensors
            raise AssertionError("a batch reached SparseDenseInput densified")
        return original(self, inputs)

    monkeypatch.setattr(SparseDenseInput, "_combine_dense", refuse)


def test_fit_evaluate_predict_on_scipy_keep_every_batch_sparse(monkeypatch):
    model = _model("adam")
    twin = _twin(model, "adam")
    _never_dense(monkeypatch)
    for fmt in ("csr", "coo", "csc"):
        np.testing.assert_allclose(
            model.predict(X.asformat(fmt), batch_size=8, verbose=0),
            twin.predict(X.toarray(), batch_size=8, verbose=0),
            rtol=1e-5,
            atol=1e-6,
        )
    model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    twin.fit(X.toarray(), Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for ours, theirs in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert model.evaluate(X, Y, verbose=0) == pytest.approx(
        twin.evaluate(X.toarray(), Y, verbose=0), rel=1e-4
    )


def test_a_py_dataset_of_scipy_batches_stays_sparse(monkeypatch):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            rows = slice(8 * i, 8 * i + 8)
            return X[rows].tocoo(), Y[rows]

    model = _model("sgd")
    twin = _twin(model, "sgd")
    _never_dense(monkeypatch)
    model.fit(Batches(), epochs=1, shuffle=False, verbose=0)
    twin.fit(X.toarray(), Y, batch_size=8, shuffle=False, epochs=1, verbose=0)
    for ours, theirs in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _spy_gradients(monkeypatch):
    seen = []
    original = ks.optimizers.LazyAdam.update_step

    def update_step(self, gradient, variable, learning_rate):
        seen.append((variable.path, B.is_sparse_gradient(gradient), gradient))
        return original(self, gradient, variable, learning_rate)

    monkeypatch.setattr(ks.optimizers.LazyAdam, "update_step", update_step)
    return seen


def test_lazy_adam_gets_the_tables_gradient_as_sparse_rows_and_moves_only_them(monkeypatch):
    model = _model(ks.optimizers.LazyAdam(0.1))
    seen = _spy_gradients(monkeypatch)
    table = model.get_layer("table")
    before = np.asarray(table.kernel).copy()
    batch = X[:8]
    model.train_on_batch(batch, Y[:8])
    sparse = {path: (flag, grad) for path, flag, grad in seen}
    flag, grad = sparse[table.kernel.path]
    assert flag  # a sparse COO gradient, over the batch's features only
    assert set(grad.coalesce().indices()[0].tolist()) == set(batch.indices.tolist())
    assert not any(f for p, f, _ in seen if p != table.kernel.path)  # every other one dense
    touched = np.unique(batch.indices)
    untouched = np.setdiff1d(np.arange(FEATURES), touched)
    after = np.asarray(table.kernel)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    assert np.all(np.any(after[touched] != before[touched], axis=1))
    optimizer = model.optimizer
    index = optimizer._get_variable_index(table.kernel)
    np.testing.assert_array_equal(np.asarray(optimizer._momentums[index])[untouched], 0.0)


def test_lazy_adam_equals_adam_when_every_row_is_touched():
    full = sp.csr_matrix(np.ones((8, FEATURES), np.float32) * 0.5)
    lazy = _model(ks.optimizers.LazyAdam(0.05))
    adam = _model(keras.optimizers.Adam(0.05))
    for _ in range(3):
        lazy.train_on_batch(full, Y[:8])
        adam.train_on_batch(full, Y[:8])
    for ours, theirs in zip(lazy.get_weights(), adam.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam", "sgd"])
def test_stock_optimizers_get_dense_gradients_and_train_as_on_dense_inputs(name, monkeypatch):
    model = _model(keras.optimizers.get(name))
    twin = _twin(model, keras.optimizers.get(name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # their ordinary dense path: nothing to warn about
        model.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    twin.fit(X.toarray(), Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for ours, theirs in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "option", [{"clipnorm": 0.5}, {"global_clipnorm": 0.5}, {"gradient_accumulation_steps": 2}]
)
def test_lazy_adam_with_dense_only_options_warns_once_and_equals_adam(option, monkeypatch):
    _check_dense_updates_equal_adam(
        ks.optimizers.LazyAdam(0.05, **option),
        keras.optimizers.Adam(0.05, **option),
        "updates every row",
        monkeypatch,
    )


def _check_dense_updates_equal_adam(lazy_optimizer, adam_optimizer, warning, monkeypatch):
    """`LazyAdam` warns once (`warning`), gets only dense gradients, and trains as Adam does."""
    lazy = _model(lazy_optimizer)
    adam = _model(adam_optimizer)
    seen = _spy_gradients(monkeypatch)
    with pytest.warns(UserWarning, match=warning) as caught:
        for start in range(0, 24, 8):
            lazy.train_on_batch(X[start : start + 8], Y[start : start + 8])
    assert sum(warning in str(w.message) for w in caught) == 1
    for start in range(0, 24, 8):
        adam.train_on_batch(X[start : start + 8], Y[start : start + 8])
    assert seen and not any(flag for _, flag, _ in seen)
    for ours, theirs in zip(lazy.get_weights(), adam.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _keras_layers_only(optimizer="sgd", **compile_kwargs):
    keras.utils.set_random_seed(0)
    inp = keras.Input((FEATURES,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer=optimizer, loss="mse", **compile_kwargs)
    return model


@pytest.mark.parametrize(
    "build, says",
    [
        (_model, "doesn't support `jit_compile=True`"),  # Keras: our layers have supports_jit=False
        (_keras_layers_only, "jit_compile=True is ignored"),  # ours: a sparse Input, Keras layers
    ],
)
def test_jit_compile_with_sparse_inputs_warns_once_and_runs_eagerly(build, says):
    eager = build(optimizer="sgd")
    with pytest.warns(UserWarning, match="jit_compile") as caught:
        jitted = build(optimizer="sgd", jit_compile=True)
        jitted.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        jitted.predict(X, verbose=0)
    messages = [str(w.message) for w in caught if "jit_compile" in str(w.message)]
    assert len(messages) == 1 and says in messages[0], messages
    eager.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(jitted.predict(X, verbose=0), eager.predict(X, verbose=0))


def test_a_dense_model_keeps_torch_compile():
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model._should_torch_compile()


def test_sparse_tensors_keep_their_entries_and_dtype():
    import torch

    x = ks.to_sparse(sp.coo_matrix(([1.0, 0.0, 2.0], ([2, 0, 2], [1, 3, 1])), shape=(3, 4)))
    assert isinstance(x, torch.Tensor) and x.layout == torch.sparse_coo and x.is_coalesced()
    np.testing.assert_array_equal(dense_of(x), [[0, 0, 0, 0], [0, 0, 0, 0], [0, 3, 0, 0]])
    assert B.coo(x)[1].tolist() == [0.0, 3.0]  # the explicit zero is still stored
    assert ks.to_sparse(x, dtype="float64").dtype == torch.float64
    csr = torch.sparse_csr_tensor([0, 1, 1, 2], [1, 0], [5.0, 6.0], size=(3, 2))
    np.testing.assert_array_equal(ks.to_scipy(csr).toarray(), [[0, 5], [0, 0], [6, 0]])


def test_a_sparse_tensor_on_another_device_or_of_complex_dtype_is_refused():
    import torch

    index = torch.tensor([[0, 1], [1, 2]])
    meta = torch.sparse_coo_tensor(index, torch.tensor([1.0, 2.0]), (3, 4), device="meta")
    with pytest.raises(ValueError, match=r"meta device, but Keras runs on cpu.*x\.to\('cpu'\)"):
        SparseDenseInput(2)(meta)
    complex_ = torch.sparse_coo_tensor(index, torch.tensor([1 + 1j, 2j]), (3, 4))
    with pytest.raises(TypeError, match="complex64; keras_sparse supports real values only"):
        SparseDenseInput(2)(complex_)
    with pytest.raises(TypeError, match="complex dtype complex64"):
        ks.to_sparse(complex_)


def test_sparse_dataset_batches_are_coalesced_torch_tensors():
    import torch

    ds = SparseDataset(X, Y, batch_size=10)
    bx, by = ds[2]
    assert bx.layout == torch.sparse_coo and bx.is_coalesced() and bx.shape == (4, FEATURES)
    np.testing.assert_array_equal(dense_of(bx), X[20:].toarray())
    assert by.dtype == torch.float32


def test_lazy_adam_under_loss_scaling_warns_once_and_equals_adam(monkeypatch):
    _check_dense_updates_equal_adam(
        keras.optimizers.LossScaleOptimizer(ks.optimizers.LazyAdam(0.05)),
        keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.05)),
        "LossScaleOptimizer",
        monkeypatch,
    )
