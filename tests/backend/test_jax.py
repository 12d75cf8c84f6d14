"""The JAX backend: bucketed padding (few compilations), padding is never data, lazy updates."""

import warnings

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from reference import loss_rows

import keras_sparse as ks
from conftest import dense_of, host_coo
from keras_sparse.data import SparseDataset
from keras_sparse.layers import SparseDenseInput

pytestmark = pytest.mark.jax_only


class _CountTraces(keras.layers.Layer):
    """Identity that counts how often its `call` is traced (once per compiled step)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.traces = 0

    def call(self, x):
        self.traces += 1
        return x


def _varying_density(rows=480, items=300, seed=0):
    rng = np.random.default_rng(seed)
    per_row = rng.integers(0, 25, rows)  # 0..24 entries: every batch has its own count
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    cols = rng.integers(0, items, indptr[-1])
    x = sp.csr_matrix((rng.random(indptr[-1]).astype(np.float32), cols, indptr), (rows, items))
    x.sum_duplicates()
    return x, rng.normal(size=(rows, 1)).astype(np.float32)


@pytest.mark.parametrize("feed", ["scipy", "sparse_dataset"])
def test_an_epoch_compiles_a_handful_of_steps(feed):
    x, y = _varying_density()
    batch = 12
    counts = {np.diff(x.indptr)[i : i + batch].sum() for i in range(0, x.shape[0], batch)}
    assert len(counts) > 20  # the premise: 40 batches with many different entry counts
    counter = _CountTraces()
    inp = keras.Input((x.shape[1],), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(1)(counter(SparseDenseInput(4)(inp))))
    model.compile(optimizer=ks.optimizers.LazyAdam(), loss="mse")
    data = (x, y) if feed == "scipy" else (SparseDataset(x, y, batch_size=batch),)
    kwargs = {"batch_size": batch} if feed == "scipy" else {}
    model.fit(*data, epochs=2, verbose=0, **kwargs)
    after_fit = counter.traces
    assert after_fit <= 8  # symbolic build + one step per bucket (powers of two)
    model.predict(data[0], verbose=0, **kwargs)
    model.evaluate(*data, verbose=0, **kwargs)
    assert counter.traces - after_fit <= 12


def test_streaming_top_k_compiles_once_per_bucket():
    x, _ = _varying_density(rows=200)
    counter = _CountTraces()
    inp = keras.Input((x.shape[1],), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(x.shape[1])(counter(SparseDenseInput(4)(inp))))
    ks.predict_top_k(model, x, k=5, exclude=x, batch_size=10, verbose=0)
    ks.evaluate_top_k(model, x, x, k=5, batch_size=10, verbose=0)
    first = counter.traces
    assert first <= 16  # 20 batches each, a few buckets
    ks.evaluate_top_k(model, x, x, k=5, batch_size=10, verbose=0)
    assert counter.traces == first  # the compiled steps are reused


def test_padding_is_never_data_and_explicit_zeros_are():
    from keras_sparse.backend import jax as jax_backend

    y = sp.csr_matrix(
        (np.array([0.0, 2.0, 1.0], np.float32), (np.array([0, 0, 2]), np.array([1, 3, 0]))),
        shape=(4, 5),
    )
    target = ks.to_sparse(y)
    assert target.nse == jax_backend.bucket_size(3) and target.nse > y.nnz  # padded
    pred = np.arange(20, dtype=np.float32).reshape(4, 5) / 10
    np.testing.assert_allclose(
        np.asarray(ks.losses.sparse_mse(target, pred)), loss_rows("mse", y, pred), rtol=1e-6
    )
    rmse = ks.metrics.SparseRootMeanSquaredError()
    rmse.update_state(target, pred)
    errors = [(pred[0, 1] - 0.0) ** 2, (pred[0, 3] - 2.0) ** 2, (pred[2, 0] - 1.0) ** 2]
    assert float(rmse.result()) == pytest.approx(np.sqrt(np.mean(errors)), rel=1e-6)
    np.testing.assert_array_equal(dense_of(target), y.toarray())


def test_a_users_bcoo_with_duplicates_and_unsorted_entries_is_canonicalised():
    from jax.experimental import sparse as jsparse

    indices = np.array([[2, 1], [0, 3], [2, 1], [0, 0]], np.int32)
    values = np.array([1.0, 2.0, 4.0, 0.0], np.float32)
    bcoo = jsparse.BCOO((values, indices), shape=(3, 4))  # no promise of order or uniqueness
    expected = sp.coo_matrix((values, (indices[:, 0], indices[:, 1])), shape=(3, 4))
    pred = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(
        np.asarray(ks.losses.sparse_mse(bcoo, pred)), loss_rows("mse", expected, pred), rtol=1e-6
    )
    assert (ks.to_scipy(bcoo) != expected.tocsr()).nnz == 0
    idx, vals, shape = host_coo(ks.to_sparse(bcoo))
    assert idx.tolist() == [[0, 0], [0, 3], [2, 1]] and vals.tolist() == [0.0, 2.0, 5.0]


def _lazy_model(features, optimizer):
    keras.utils.set_random_seed(3)
    inp = keras.Input((features,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(1)(SparseDenseInput(3)(inp)))
    model.compile(optimizer=optimizer, loss="mse")
    return model


def test_lazy_updates_equal_adam_when_every_row_is_touched():
    x = sp.csr_matrix(np.random.default_rng(0).random((32, 6)).astype(np.float32))  # all present
    y = np.random.default_rng(1).normal(size=(32, 1)).astype(np.float32)
    lazy = _lazy_model(6, ks.optimizers.LazyAdam(0.05))
    adam = _lazy_model(6, keras.optimizers.Adam(0.05))
    for model in (lazy, adam):  # shuffle=False: Keras shuffles a PyDataset's batch order
        model.fit(SparseDataset(x, y, batch_size=8), epochs=2, verbose=0, shuffle=False)
    for a, b in zip(lazy.get_weights(), adam.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lazy_updates_leave_rows_the_step_did_not_touch():
    # Batch 1 touches features 0-1, batch 2 touches features 2-3: Adam keeps moving
    # features 0-1 in step 2 (momentum), LazyAdam does not; features 4-5 never move.
    x = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0]], np.float32))
    y = np.array([[1.0], [-1.0]], np.float32)
    lazy = _lazy_model(6, ks.optimizers.LazyAdam(0.1))
    adam = _lazy_model(6, keras.optimizers.Adam(0.1))
    start = lazy.layers[1].kernel.numpy().copy()
    lazy.fit(SparseDataset(x[:1], y[:1], batch_size=1), epochs=1, verbose=0)
    after_first = lazy.layers[1].kernel.numpy().copy()
    lazy.fit(SparseDataset(x[1:], y[1:], batch_size=1), epochs=1, verbose=0)
    kernel = lazy.layers[1].kernel.numpy()
    assert not np.allclose(after_first[:2], start[:2])  # touched in step 1
    np.testing.assert_array_equal(kernel[:2], after_first[:2])  # not moved by step 2
    assert not np.allclose(kernel[2:4], after_first[2:4])  # touched in step 2
    np.testing.assert_array_equal(kernel[4:], start[4:])  # never touched
    adam.fit(SparseDataset(x[:1], y[:1], batch_size=1), epochs=1, verbose=0)
    adam_first = adam.layers[1].kernel.numpy().copy()
    adam.fit(SparseDataset(x[1:], y[1:], batch_size=1), epochs=1, verbose=0)
    assert not np.allclose(adam.layers[1].kernel.numpy()[:2], adam_first[:2])  # dense Adam moves


def test_lazy_path_falls_back_with_a_warning_when_clipping():
    x = sp.csr_matrix(np.eye(4, dtype=np.float32))
    model = _lazy_model(4, ks.optimizers.LazyAdam(0.1, clipnorm=1.0))
    with pytest.warns(UserWarning, match="clipnorm"):
        model.fit(SparseDataset(x, np.ones((4, 1)), batch_size=2), epochs=1, verbose=0)


def test_lazy_adam_with_steps_per_execution_matches_one_step_at_a_time():
    from keras_sparse.optimizers import LazyAdam

    x, y = _varying_density(rows=96, items=50)
    weights = []
    for steps in (1, 4):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((50,), sparse=True), SparseDenseInput(4), keras.layers.Dense(1)]
        )
        model.compile(optimizer=LazyAdam(0.01), loss="mse", steps_per_execution=steps)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to whole-table updates
            model.fit(SparseDataset(x, y, batch_size=16), epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    assert int(model.optimizer.iterations.numpy()) == 12
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, atol=1e-6)


def _reference_top_k(scores, k):
    """Per row: the k largest values, ties to the lower index (NumPy, stable sort)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize(
    ("n", "k", "levels"),
    [(5000, 10, 0), (5000, 10, 3), (4099, 7, 5), (20000, 34, 0), (3000, 100, 0), (2500, 40, 2)],
)
def test_top_k_block_pre_filter_equals_numpy_with_ties_and_minus_inf(n, k, levels):
    import jax

    from keras_sparse.backend import jax as jax_backend

    rng = np.random.default_rng(n + k)
    if levels:  # few distinct values: ties everywhere
        scores = rng.integers(0, levels, size=(6, n)).astype(np.float32)
    else:
        scores = rng.normal(size=(6, n)).astype(np.float32)
    scores[1, :] = -np.inf  # a row without candidates
    scores[2, : n - 3] = -np.inf  # fewer candidates than k
    scores[3, rng.choice(n, n // 2, replace=False)] = -np.inf
    size = jax_backend._block_size(n, k)
    values, indices = jax.jit(lambda s: jax_backend.best_k(s, k))(scores)
    want_values, want_indices = _reference_top_k(scores, k)
    np.testing.assert_array_equal(np.asarray(indices), want_indices)
    np.testing.assert_array_equal(np.asarray(values), want_values)
    if jax.default_backend() == "cpu" and 8 * k * 8 <= n:  # room for blocks of 8 or more
        assert size is not None and size <= jax_backend.MAX_TOP_K_BLOCK  # the pre-filter ran


def test_top_k_takes_the_plain_path_for_small_catalogues_and_integers():
    from keras_sparse.backend import jax as jax_backend

    assert jax_backend._block_size(1000, 10) is None
    assert jax_backend._block_size(20000, 2000) is None  # k * blocks would cover the items
    ints = np.arange(12, dtype=np.int32).reshape(2, 6)
    values, indices = jax_backend.best_k(ints, 2)
    np.testing.assert_array_equal(np.asarray(indices), [[5, 4], [5, 4]])
