import keras
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import entries, loss_rows

import keras_sparse as ks
from conftest import assert_config_round_trips, assert_round_trips, gradient
from keras_sparse import losses
from keras_sparse.data import SparseDataset

FUNCS = {
    "mse": losses.sparse_mse,
    "mae": losses.sparse_mae,
    "huber": losses.sparse_huber,
    "bce": losses.sparse_binary_crossentropy,
    "nll": losses.sparse_multinomial_nll,
}
CLASSES = {
    "mse": losses.SparseMeanSquaredError,
    "mae": losses.SparseMeanAbsoluteError,
    "huber": losses.SparseHuber,
    "bce": losses.SparseBinaryCrossentropy,
    "nll": losses.SparseMultinomialNLL,
}


def _target():
    # Unsorted COO with a duplicate (0, 1) entry, an explicit zero and an empty row 2.
    rows, cols = [1, 0, 0, 1, 3, 0], [3, 1, 1, 0, 2, 4]
    vals = [1.0, 0.25, 0.5, 0.0, 1.0, 1.0]
    return sp.coo_matrix((np.array(vals, np.float32), (rows, cols)), shape=(4, 5))


def _pred(kind):
    rng = np.random.default_rng(0)
    pred = rng.random((4, 5)).astype(np.float32)
    return np.clip(pred, 0.05, 0.95) if kind == "bce" else pred


@pytest.mark.parametrize("kind", list(FUNCS))
def test_function_matches_reference_including_duplicates_zeros_and_empty_rows(kind):
    y_true, y_pred = _target(), _pred(kind)
    got = np.asarray(FUNCS[kind](ks.to_sparse(y_true), y_pred))
    np.testing.assert_allclose(got, loss_rows(kind, y_true, y_pred), rtol=1e-5, atol=1e-6)
    assert got[2] == 0.0  # no observed entry: exactly 0, not NaN


def test_hand_computed_values():
    y_true = ks.to_sparse(sp.csr_matrix(np.array([[0.0, 4.0, 1.0], [0.0, 0.0, 0.0]])))
    pred = np.array([[100.0, 2.0, 2.0], [5.0, 5.0, 5.0]], np.float32)
    np.testing.assert_allclose(np.asarray(losses.sparse_mse(y_true, pred)), [2.5, 0.0])
    np.testing.assert_allclose(np.asarray(losses.sparse_mae(y_true, pred)), [1.5, 0.0])
    # errors 2 and 1 with delta 1: (1*2 - 0.5) and 0.5 -> mean 1.0
    np.testing.assert_allclose(np.asarray(losses.sparse_huber(y_true, pred)), [1.0, 0.0])


@pytest.mark.parametrize("kind", list(FUNCS))
def test_gradient_equals_dense_masked_reference_and_is_zero_unobserved(kind):
    y_true, y_pred = _target(), _pred(kind)
    target = ks.to_sparse(y_true)
    grad = gradient(lambda pred: FUNCS[kind](target, pred), y_pred)
    assert np.all(np.isfinite(grad))
    observed = np.zeros((4, 5), bool)
    for r, c in entries(y_true):
        observed[r, c] = True
    if kind != "nll":  # the softmax couples every column of a row with observed entries
        np.testing.assert_array_equal(grad[~observed], 0.0)
    np.testing.assert_array_equal(grad[2], 0.0)  # row without observed entries
    eps = 1e-3
    numeric = np.zeros_like(y_pred, dtype=np.float64)
    for idx in np.ndindex(*y_pred.shape):
        up, down = y_pred.astype(np.float64).copy(), y_pred.astype(np.float64).copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (loss_rows(kind, y_true, up).sum() - loss_rows(kind, y_true, down).sum()) / (
            2 * eps
        )
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-3)


@given(
    st.integers(0, 2**16),
    st.integers(0, 5),
    st.integers(1, 6),
    st.sampled_from(["mse", "mae", "huber", "nll"]),
)
def test_property_random_targets(seed, rows, cols, kind):
    rng = np.random.default_rng(seed)
    mask = rng.random((rows, cols)) < 0.4
    vals = rng.integers(0, 4, size=(rows, cols)).astype(np.float32)  # includes explicit zeros
    r, c = np.nonzero(mask)
    y_true = sp.coo_matrix((vals[r, c], (r, c)), shape=(rows, cols))
    y_pred = rng.normal(size=(rows, cols)).astype(np.float32)
    got = np.asarray(FUNCS[kind](ks.to_sparse(y_true), y_pred))
    assert got.shape == (rows,)
    np.testing.assert_allclose(got, loss_rows(kind, y_true, y_pred), rtol=1e-4, atol=1e-5)


def test_dense_target_means_nonzero_is_observed():
    y_dense = np.array([[0.0, 3.0], [2.0, 0.0]], np.float32)
    pred = np.array([[9.0, 1.0], [1.0, 9.0]], np.float32)
    np.testing.assert_allclose(np.asarray(losses.sparse_mse(y_dense, pred)), [4.0, 1.0])


def test_bce_from_logits():
    y_true, logits = _target(), np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    got = losses.sparse_binary_crossentropy(ks.to_sparse(y_true), logits, from_logits=True)
    np.testing.assert_allclose(
        np.asarray(got), loss_rows("bce", y_true, logits, from_logits=True), rtol=1e-5
    )
    obj = losses.SparseBinaryCrossentropy(from_logits=True, reduction=None)
    np.testing.assert_allclose(
        np.asarray(obj(ks.to_sparse(y_true), logits)), np.asarray(got), rtol=1e-6
    )


def test_normalize_entries_and_row_with_sample_weight():
    y_true, y_pred = _target(), _pred("mse")
    st_ = ks.to_sparse(y_true)
    per_row = loss_rows("mse", y_true, y_pred)
    row_loss = np.asarray(losses.SparseMeanSquaredError()(st_, y_pred))
    np.testing.assert_allclose(row_loss, per_row.mean(), rtol=1e-5)
    sq = [(y_pred[r, c] - v) ** 2 for (r, c), v in entries(y_true).items()]
    entry_loss = np.asarray(losses.SparseMeanSquaredError(normalize="entries")(st_, y_pred))
    np.testing.assert_allclose(entry_loss, np.mean(sq), rtol=1e-5)
    w = np.array([1.0, 0.0, 2.0, 1.0], np.float32)
    weighted = np.asarray(losses.SparseMeanSquaredError()(st_, y_pred, sample_weight=w))
    np.testing.assert_allclose(weighted, (per_row * w).sum() / 4, rtol=1e-5)
    summed = np.asarray(losses.SparseMeanSquaredError(reduction="sum")(st_, y_pred))
    np.testing.assert_allclose(summed, per_row.sum(), rtol=1e-5)


def test_empty_batch_gives_zero_not_nan():
    empty = ks.to_sparse(sp.csr_matrix((0, 4), dtype=np.float32))
    pred = np.zeros((0, 4), np.float32)
    for kind in FUNCS:
        assert FUNCS[kind](empty, pred).shape == (0,)
    eager = np.asarray(losses.SparseMeanSquaredError()(empty, pred))  # Keras keeps (0,) eagerly
    assert eager.size == 0 or float(eager) == 0.0
    none_observed = ks.to_sparse(sp.csr_matrix((3, 4), dtype=np.float32))
    value = losses.SparseMeanSquaredError(normalize="entries")(none_observed, np.ones((3, 4)))
    assert float(value) == 0.0


@pytest.mark.tensorflow_only
def test_empty_batch_in_a_tf_function_gives_zero():
    import tensorflow as tf

    empty = ks.to_sparse(sp.csr_matrix((0, 4), dtype=np.float32))
    pred = np.zeros((0, 4), np.float32)

    @tf.function(
        input_signature=[
            tf.SparseTensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None, 4], tf.float32),
        ]
    )
    def in_graph(y_true, y_pred):
        return losses.SparseMeanSquaredError()(y_true, y_pred)

    assert float(in_graph(empty, pred)) == 0.0


@pytest.mark.parametrize("kind", list(CLASSES))
def test_config_round_trip(kind):
    kwargs = {"normalize": "entries", "name": "my_loss"}
    if kind == "huber":
        kwargs["delta"] = 2.0
    if kind == "bce":
        kwargs["from_logits"] = True
    obj = CLASSES[kind](**kwargs)
    clone = assert_config_round_trips(obj)
    assert clone.normalize == "entries"
    assert isinstance(keras.losses.deserialize(keras.losses.serialize(obj)), CLASSES[kind])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: losses.SparseMeanSquaredError(normalize="batch"), ValueError, "`normalize`"),
        (lambda: losses.SparseHuber(delta=-1.0), ValueError, "`delta`"),
        (lambda: losses.SparseBinaryCrossentropy(from_logits="yes"), TypeError, "`from_logits`"),
        (
            lambda: losses.sparse_mse(np.ones((2, 2, 2)), np.ones((2, 2, 2))),
            ValueError,
            "`y_true` must be 2-D",
        ),
    ],
)
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def _recommender(n_items):
    inp = keras.Input((n_items,), sparse=True)
    hidden = ks.layers.SparseDenseInput(8, activation="tanh")(inp)
    return keras.Model(inp, keras.layers.Dense(n_items)(hidden))


@pytest.mark.parametrize("kind", list(CLASSES))
def test_fit_with_scipy_target_and_save_load(kind, tmp_path):
    x = sp.random(40, 12, density=0.3, format="csr", random_state=2, dtype=np.float32)
    x.data[:] = 1.0
    model = _recommender(12)
    loss = CLASSES[kind](from_logits=True) if kind == "bce" else CLASSES[kind]()
    model.compile(optimizer="adam", loss=loss)
    history = model.fit(SparseDataset(x, x.tocsc(), batch_size=16), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    reloaded = assert_round_trips(model, SparseDataset(x, batch_size=16), tmp_path)
    assert type(reloaded.loss) is type(model.loss)


def test_compile_with_plain_function_and_scipy_target(tmp_path):
    x = sp.random(30, 10, density=0.3, format="coo", random_state=4, dtype=np.float32)
    model = _recommender(10)
    model.compile(optimizer="adam", loss=losses.sparse_mse)
    history = model.fit(SparseDataset(x, x, batch_size=8), epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    assert_round_trips(model, SparseDataset(x, batch_size=8), tmp_path)


@pytest.mark.parametrize("kind", list(FUNCS))
def test_dense_target_ignores_infinite_scores_at_unobserved_entries(kind):
    # ExcludeSeen writes -inf at seen items; a dense target must not turn them into NaN.
    y_true = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    y_pred = np.array([[-np.inf, 0.3, -np.inf], [0.2, -np.inf, 0.1]], np.float32)
    got = np.asarray(FUNCS[kind](y_true, y_pred))
    finite = np.where(np.isfinite(y_pred), y_pred, 0.0)
    if kind == "nll":  # the softmax still runs over every column: -inf there has weight 0
        expected = np.array([-(0.3 - np.log(np.exp(0.3))), 0.0])
    else:
        expected = loss_rows(kind, sp.csr_matrix(y_true), finite)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    grad = gradient(lambda p: FUNCS[kind](y_true, p), y_pred)
    assert np.all(np.isfinite(grad))


def _mismatch_model(units):
    model = keras.Sequential([keras.Input((6,), sparse=True), keras.layers.Dense(units)])
    model.compile(optimizer="sgd", loss="sparse_mse", metrics=["ndcg"])
    return model


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: losses.sparse_mse(ks.to_sparse(y), np.zeros((8, 4), "float32")),
        lambda x, y: losses.SparseHuber()(ks.to_sparse(y), np.zeros((8, 4), "float32")),
        lambda x, y: _mismatch_model(4).fit(x, y, epochs=1, verbose=0),
        lambda x, y: _mismatch_model(4).evaluate(x, y, verbose=0),
        lambda x, y: _mismatch_model(4).train_on_batch(x, y),
        lambda x, y: _mismatch_model(4).fit(SparseDataset(x, y, batch_size=4), verbose=0),
    ],
)
def test_width_mismatch_names_both_shapes(call):
    x = sp.random(8, 6, density=0.5, format="csr", random_state=0, dtype=np.float32)
    y = sp.random(8, 5, density=0.5, format="csr", random_state=1, dtype=np.float32)
    with pytest.raises(ValueError, match=r"`y_true` has shape \(\w+, 5\) but `y_pred` has shape"):
        call(x, y)


def test_rows_mismatch_names_both_shapes():
    y = ks.to_sparse(sp.eye(4, 5, format="csr", dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(4, 5\) but `y_pred` has shape \(3, 5\).*rows"):
        losses.sparse_mae(y, np.zeros((3, 5), "float32"))
    with pytest.raises(ValueError, match=r"\(4, 5\) but `y_pred` has shape \(4, 6\)"):
        losses.sparse_mse(np.ones((4, 5), "float32"), np.zeros((4, 6), "float32"))


@pytest.mark.parametrize("kind", list(CLASSES))
def test_fit_and_evaluate_with_sample_weight_match_the_weighted_reference(kind):
    x = sp.random(24, 6, density=0.5, format="csr", random_state=2, dtype=np.float32)
    y = sp.random(24, 5, density=0.4, format="csr", random_state=3, dtype=np.float32)
    weights = np.linspace(0.0, 2.0, 24).astype(np.float32)
    activation = "sigmoid" if kind == "bce" else None  # BCE reads probabilities
    model = keras.Sequential([keras.Input((6,), sparse=True), keras.layers.Dense(5, activation)])
    model.compile(optimizer="sgd", loss=CLASSES[kind]())
    model.fit(x, y, sample_weight=weights, batch_size=8, epochs=1, verbose=0)
    pred = np.asarray(model.predict(x, verbose=0), np.float64)
    per_row = loss_rows(kind, y, pred)
    got = model.evaluate(x, y, sample_weight=weights, batch_size=24, verbose=0)
    assert got == pytest.approx(float((per_row * weights).sum() / 24), rel=1e-4)
    with pytest.raises(ValueError, match="sample_weight"):
        model.evaluate(x, y, sample_weight=weights[:-1], verbose=0)
    with pytest.raises(ValueError, match=r"one weight per row"):
        CLASSES[kind]()(ks.to_sparse(y), pred.astype("float32"), sample_weight=np.ones((24, 5)))


@keras.saving.register_keras_serializable(package="keras_sparse_tests")
def log_cosh(t, p, scale=1.0):
    return scale * keras.ops.log(keras.ops.cosh(p - t))


def test_masked_loss_wraps_an_entry_function_and_saves(tmp_path):
    y = sp.random(6, 5, density=0.5, format="csr", random_state=4, dtype=np.float32)
    pred = np.random.default_rng(5).normal(size=(6, 5)).astype(np.float32)
    loss = losses.MaskedLoss(log_cosh, scale=2.0)
    assert loss.name == "log_cosh"
    got = float(loss(ks.to_sparse(y), pred))
    truth = entries(y)
    per_row = np.zeros(6)
    for u in range(6):
        errs = [2.0 * np.log(np.cosh(pred[u, c] - v)) for (r, c), v in truth.items() if r == u]
        per_row[u] = np.mean(errs) if errs else 0.0
    assert got == pytest.approx(per_row.mean(), rel=1e-5)
    clone = assert_config_round_trips(loss)
    assert clone.fn is log_cosh and clone._fn_kwargs == {"scale": 2.0}
    model = keras.Sequential([keras.Input((5,), sparse=True), keras.layers.Dense(5)])
    model.compile(optimizer="sgd", loss=loss)
    model.fit(y, y, epochs=1, verbose=0)
    reloaded = assert_round_trips(model, y, tmp_path)
    assert reloaded.evaluate(y, y, verbose=0) == pytest.approx(model.evaluate(y, y, verbose=0))


def test_masked_loss_rejects_a_non_function():
    with pytest.raises(TypeError, match="`fn` must be a function"):
        losses.MaskedLoss("mse")
