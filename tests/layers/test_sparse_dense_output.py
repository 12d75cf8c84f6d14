"""SparseDenseOutput: the Dense twin's scores, losses and gradients from the target's entries.

Every training check runs one optimizer step on the same weights twice: once
with `SparseDenseOutput`, once with `Dense` (kernel transposed) computing every
score, and compares the loss and all weights after the step. Loss values are
also checked against NumPy references written here.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import _item_blocks, _negatives, losses
from keras_sparse.layers import SparseDenseInput, SparseDenseOutput
from tests.conftest import assert_round_trips, gradient

ROWS, FEATURES, HIDDEN, ITEMS = 8, 11, 5, 23
X = sp.random(ROWS, FEATURES, density=0.4, format="csr", random_state=0, dtype=np.float32)


def _target(cls=sp.coo_matrix):
    """Unsorted, duplicated COO entries, an explicit zero and empty rows (1, 3, 4, 6)."""
    rows = np.array([5, 0, 5, 2, 0, 7, 2, 2])
    cols = np.array([3, 9, 3, 22, 1, 0, 5, 17])
    vals = np.array([1.0, 2.0, 0.5, 0.0, 1.0, 3.0, 1.0, 2.0], dtype=np.float32)
    return cls(sp.coo_matrix((vals, (rows, cols)), shape=(ROWS, ITEMS)))


Y = _target()


def _models(activation=None, **kwargs):
    """(ours, dense twin) with the same weights."""
    inp = keras.Input((FEATURES,), sparse=True)
    h = SparseDenseInput(HIDDEN, activation="tanh", name="enc")(inp)
    ours = keras.Model(inp, SparseDenseOutput(ITEMS, activation=activation, **kwargs)(h))
    inp2 = keras.Input((FEATURES,), sparse=True)
    h2 = SparseDenseInput(HIDDEN, activation="tanh", name="enc")(inp2)
    twin = keras.Model(inp2, keras.layers.Dense(ITEMS, activation=activation)(h2))
    twin.set_weights(_dense_weights(ours))
    return ours, twin


def _dense_weights(model):
    layer = model.layers[-1]
    weights = [w for w in model.get_weights()[:2]]
    weights.append(np.asarray(layer.kernel).T)
    if layer.bias is not None:
        weights.append(np.asarray(layer.bias))
    return weights


def _step(model, loss, y=Y, optimizer=None, metrics=()):
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(0.5), loss=loss, metrics=list(metrics)
    )
    logs = model.train_on_batch(X, y, return_dict=True)
    return logs, model


def _numpy_parts(model):
    """h (rows, hidden) and scores (rows, items) of `model` on X, in NumPy."""
    w_in, b_in = model.get_weights()[:2]
    h = np.tanh(X.toarray() @ w_in + b_in)
    layer = model.layers[-1]
    scores = h @ np.asarray(layer.kernel).T + np.asarray(layer.bias)
    return h, scores


def _canonical(y):
    y = sp.coo_matrix(y)
    y = sp.csr_matrix((y.data, (y.row, y.col)), shape=y.shape)  # duplicates summed
    y.sort_indices()
    return y


def _assert_same_step(ours, twin, ours_logs, twin_logs, rtol=1e-5):
    for name, value in twin_logs.items():
        np.testing.assert_allclose(ours_logs[name], value, rtol=rtol, atol=1e-6, err_msg=name)
    for got, want in zip(_dense_weights(ours), twin.get_weights()):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6)


def test_predict_gives_the_dense_scores():
    ours, twin = _models(activation="sigmoid")
    _, scores = _numpy_parts(ours)
    np.testing.assert_allclose(ours.predict(X, verbose=0), 1 / (1 + np.exp(-scores)), atol=1e-6)
    np.testing.assert_allclose(ours.predict(X, verbose=0), twin.predict(X, verbose=0), atol=1e-6)


def _log_cosh(t, p):
    return keras.ops.log(keras.ops.cosh(p - t))


POINTWISE = {
    "mse": ("sparse_mse", None),
    "mse_entries": (lambda: losses.SparseMeanSquaredError(normalize="entries"), None),
    "mae": (losses.SparseMeanAbsoluteError, None),
    "huber": (lambda: losses.SparseHuber(delta=0.5), None),
    "bce_logits": (lambda: losses.SparseBinaryCrossentropy(from_logits=True), None),
    "bce_sigmoid": (losses.SparseBinaryCrossentropy, "sigmoid"),
    "masked": (lambda: losses.MaskedLoss(_log_cosh), "tanh"),
}


@pytest.mark.parametrize("case", list(POINTWISE))
def test_pointwise_losses_equal_the_dense_model(case):
    make, activation = POINTWISE[case]
    y = Y.copy()
    if "bce" in case:
        y.data = np.clip(y.data, 0.0, 1.0)
    ours, twin = _models(activation=activation)
    loss = make if isinstance(make, str) else make()
    ours_logs, _ = _step(ours, loss, y)
    twin_logs, _ = _step(twin, loss, y)
    _assert_same_step(ours, twin, ours_logs, twin_logs)


@pytest.mark.parametrize("cls", [sp.coo_matrix, sp.csr_array, sp.csc_matrix, sp.lil_array])
def test_mse_matches_a_numpy_reference_for_every_format(cls):
    ours, _ = _models()
    _, scores = _numpy_parts(ours)
    y = _canonical(Y)
    per_row = []
    for u in range(ROWS):
        cols = y.indices[y.indptr[u] : y.indptr[u + 1]]
        vals = y.data[y.indptr[u] : y.indptr[u + 1]]
        per_row.append(np.mean((scores[u, cols] - vals) ** 2) if len(cols) else 0.0)
    logs, _ = _step(ours, "sparse_mse", _target(cls), optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(np.mean(per_row), rel=1e-5)


def test_a_batch_without_target_entries_trains_nothing_in_the_output():
    ours, twin = _models()
    empty = sp.csr_matrix((ROWS, ITEMS), dtype=np.float32)
    kernel = np.asarray(ours.layers[-1].kernel).copy()
    ours_logs, _ = _step(ours, "sparse_mse", empty)
    twin_logs, _ = _step(twin, "sparse_mse", empty)
    assert ours_logs["loss"] == 0.0
    _assert_same_step(ours, twin, ours_logs, twin_logs)
    np.testing.assert_array_equal(np.asarray(ours.layers[-1].kernel), kernel)


def _nll_reference(scores, y):
    y = _canonical(y)
    lse = np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1)) + scores.max(1)
    total = 0.0
    for u in range(ROWS):
        sl = slice(y.indptr[u], y.indptr[u + 1])
        total += -np.sum(y.data[sl] * (scores[u, y.indices[sl]] - lse[u]))
    return total / ROWS


@pytest.mark.parametrize("block_size", [4, 23, 1000])
def test_exact_multinomial_nll_equals_the_dense_model(block_size):
    ours, twin = _models(block_size=block_size)
    _, scores = _numpy_parts(ours)
    ours_logs, _ = _step(ours, losses.SparseMultinomialNLL())
    twin_logs, _ = _step(twin, losses.SparseMultinomialNLL())
    assert ours_logs["loss"] == pytest.approx(_nll_reference(scores, Y), rel=1e-5)
    _assert_same_step(ours, twin, ours_logs, twin_logs)


def test_log_partition_and_its_gradient_match_numpy():
    rng = np.random.default_rng(4)
    h = rng.normal(size=(3, 4)).astype(np.float32)
    kernel = rng.normal(size=(200, 4)).astype(np.float32)
    bias = rng.normal(size=(200,)).astype(np.float32)
    upstream = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    scores = h @ kernel.T + bias
    lse = np.log(np.exp(scores).sum(1))
    probs = np.exp(scores - lse[:, None]) * upstream[:, None]
    got = _item_blocks.log_partition(h, kernel, bias, 3)  # 50 blocks: merged to <= 64
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), lse, rtol=1e-5)
    up = keras.ops.convert_to_tensor(upstream)
    got_h = gradient(lambda v: _item_blocks.log_partition(v, kernel, bias, 3) * up, h)
    got_k = gradient(lambda v: _item_blocks.log_partition(h, v, bias, 7) * up, kernel)
    got_b = gradient(lambda v: _item_blocks.log_partition(h, kernel, v, 11) * up, bias)
    np.testing.assert_allclose(got_h, probs @ kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_k, probs.T @ h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_b, probs.sum(0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("block", [3, 7, 1000])
def test_log_partition_leaving_out_one_item_per_row_matches_numpy(block):
    rng = np.random.default_rng(5)
    h = rng.normal(size=(4, 3)).astype(np.float32)
    kernel = rng.normal(size=(20, 3)).astype(np.float32)
    bias = rng.normal(size=(20,)).astype(np.float32)
    exclude = np.array([0, 19, 7, -1], dtype=np.int32)  # -1: nothing left out
    scores = h @ kernel.T + bias
    keep = np.ones_like(scores, bool)
    keep[np.arange(3), exclude[:3]] = False
    lse = np.log(np.where(keep, np.exp(scores), 0).sum(1))
    probs = np.where(keep, np.exp(scores - lse[:, None]), 0)
    got = _item_blocks.log_partition(h, kernel, bias, block, exclude)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), lse, rtol=1e-5)
    got_h = gradient(lambda v: _item_blocks.log_partition(v, kernel, bias, block, exclude), h)
    got_k = gradient(lambda v: _item_blocks.log_partition(h, v, bias, block, exclude), kernel)
    got_b = gradient(lambda v: _item_blocks.log_partition(h, kernel, v, block, exclude), bias)
    np.testing.assert_allclose(got_h, probs @ kernel, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_k, probs.T @ h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_b, probs.sum(0), rtol=1e-4, atol=1e-6)


def _sampled(seed, num, cumulative=None):
    items, log_expected = _negatives.sample(np.array([seed, 0]), num, ITEMS, cumulative)
    return np.asarray(items), np.asarray(log_expected)


def _sampled_nll(scores, y, negatives):
    """Sampled multinomial NLL (mean over rows) of the canonical target `y`.

    `negatives(u, observed)` gives row u's negatives' scores and log-Q terms.
    """
    total = 0.0
    for u in range(ROWS):
        sl = slice(y.indptr[u], y.indptr[u + 1])
        observed = y.indices[sl]
        neg, log_expected = negatives(u, observed)
        log_z = np.log(np.exp(scores[u, observed]).sum() + np.exp(neg - log_expected).sum())
        total += -np.sum(y.data[sl] * (scores[u, observed] - log_z))
    return total / ROWS


def _bce_logits(t, s):
    return np.maximum(s, 0) - s * t + np.log1p(np.exp(-np.abs(s)))


def _sampled_bce(scores, y, negatives, positive=_bce_logits):
    """Negative-sampled BCE from logits: per row, the mean over its entries and negatives.

    `negatives(u, observed)` gives row u's negative items (accidental hits
    removed); `positive(t, s)` is the loss of an observed entry.
    """
    per_row = []
    for u in range(ROWS):
        sl = slice(y.indptr[u], y.indptr[u + 1])
        observed = y.indices[sl]
        values = list(positive(y.data[sl], scores[u, observed]))
        values += [_bce_logits(0.0, scores[u, n]) for n in negatives(u, observed)]
        per_row.append(np.mean(values))
    return np.mean(per_row)


@pytest.mark.parametrize("counts", [None, np.arange(ITEMS) % 5])
def test_sampled_softmax_matches_its_numpy_definition(counts):
    sampling = "uniform" if counts is None else "counts"
    ours, _ = _models(negatives=6, item_counts=counts, sampling=sampling, seed=11)
    _, scores = _numpy_parts(ours)
    cumulative = None if counts is None else np.cumsum(counts).astype(np.float32)
    items, log_expected = _sampled(11, 6, cumulative)
    if counts is not None:
        assert not np.isin(items, np.flatnonzero(counts == 0)).any()
        q = counts[items] / counts.sum()
        np.testing.assert_allclose(log_expected, np.log(6 * q), rtol=1e-5)
    y = _canonical(Y)

    def negatives(u, observed):
        keep = ~np.isin(items, observed)  # accidental hits removed
        return scores[u, items[keep]], log_expected[keep]

    logs, _ = _step(ours, losses.SparseMultinomialNLL(), optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(_sampled_nll(scores, y, negatives), rel=1e-5)


def test_sampled_softmax_approaches_the_exact_loss_with_many_negatives():
    items = 4000  # Y's entries in a wider catalogue, 3000 draws (with replacement)
    inp = keras.Input((FEATURES,), sparse=True)
    h = SparseDenseInput(HIDDEN, activation="tanh")(inp)
    ours = keras.Model(inp, SparseDenseOutput(items, negatives=3000, sampling="uniform", seed=2)(h))
    w_in, b_in = ours.get_weights()[:2]
    hidden = np.tanh(X.toarray() @ w_in + b_in)
    scores = hidden @ np.asarray(ours.layers[-1].kernel).T
    y = sp.csr_matrix((Y.data, (Y.row, Y.col)), shape=(ROWS, items))
    ours.compile(optimizer=keras.optimizers.SGD(0.0), loss=losses.SparseMultinomialNLL())
    logs = ours.train_on_batch(X, y, return_dict=True)
    assert logs["loss"] == pytest.approx(_nll_reference(scores, y), rel=0.02)


def test_negative_sampled_bce_matches_its_numpy_definition():
    ours, _ = _models(negatives=5, sampling="uniform", seed=3)
    _, scores = _numpy_parts(ours)
    items, _ = _sampled(3, 5)
    y = _canonical(Y)
    y.data = np.clip(y.data, 0, 1)
    want = _sampled_bce(scores, y, lambda u, observed: [n for n in items if n not in observed])
    loss = losses.SparseBinaryCrossentropy(from_logits=True)
    logs, _ = _step(ours, loss, y, optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(want, rel=1e-5)


def test_the_sampler_follows_the_counts_and_never_draws_a_zero_count():
    counts = np.array([0, 1, 2, 0, 5] + [0] * (ITEMS - 5), dtype=np.float32)
    items, _ = _sampled(9, 8000, np.cumsum(counts))
    freq = np.bincount(items, minlength=ITEMS) / 8000
    np.testing.assert_allclose(freq, counts / counts.sum(), atol=0.02)
    uniform, log_expected = _sampled(9, 8000)
    assert uniform.min() >= 0 and uniform.max() < ITEMS
    assert np.bincount(uniform, minlength=ITEMS).min() > 8000 / ITEMS * 0.8
    np.testing.assert_allclose(log_expected, np.log(8000 / ITEMS), rtol=1e-6)


def test_the_same_seed_draws_the_same_items_on_every_backend():
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    code = (
        "import numpy as np; from keras_sparse import _negatives; "
        "print(np.asarray(_negatives.sample(np.array([17, 4]), 50, 1000)[0]).tolist())"
    )
    env = {**os.environ, "KERAS_BACKEND": other}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    here = np.asarray(_negatives.sample(np.array([17, 4]), 50, 1000)[0]).tolist()
    assert out.stdout.strip().splitlines()[-1] == str(here)


@pytest.mark.parametrize("negatives", [None, 4])
def test_lazy_adam_updates_only_the_touched_output_rows(negatives):
    sampling = None if negatives is None else "uniform"
    ours, _ = _models(negatives=negatives, sampling=sampling, seed=5)
    kernel, bias = (np.asarray(v).copy() for v in (ours.layers[-1].kernel, ours.layers[-1].bias))
    loss = "sparse_mse" if negatives is None else losses.SparseMultinomialNLL()
    _step(ours, loss, optimizer=ks.optimizers.LazyAdam(0.1))
    touched = set(_canonical(Y).indices.tolist())
    if negatives is not None:
        touched |= set(_sampled(5, negatives)[0].tolist())
    moved = np.flatnonzero(np.any(np.asarray(ours.layers[-1].kernel) != kernel, axis=1))
    assert set(moved.tolist()) <= touched and len(moved) > 0
    untouched = sorted(set(range(ITEMS)) - touched)
    np.testing.assert_array_equal(np.asarray(ours.layers[-1].bias)[untouched], bias[untouched])


def test_ranking_metrics_during_fit_keep_their_full_catalogue_values():
    ours, twin = _models()
    metrics = [ks.metrics.NDCGAtK(3), ks.metrics.SparseRootMeanSquaredError()]
    kernel = np.asarray(ours.layers[-1].kernel).copy()
    ours_logs, _ = _step(ours, "sparse_mse", metrics=metrics)
    metrics = [ks.metrics.NDCGAtK(3), ks.metrics.SparseRootMeanSquaredError()]
    twin_logs, _ = _step(twin, "sparse_mse", metrics=metrics)
    _assert_same_step(ours, twin, ours_logs, twin_logs)
    untouched = sorted(set(range(ITEMS)) - set(_canonical(Y).indices.tolist()))
    np.testing.assert_array_equal(np.asarray(ours.layers[-1].kernel)[untouched], kernel[untouched])


def test_fit_and_evaluate_follow_the_dense_model():
    ours, twin = _models()
    results = []
    for model in (ours, twin):
        model.compile(optimizer="adam", loss="sparse_mse", metrics=[ks.metrics.RecallAtK(5)])
        model.fit(X, Y.tocsr(), batch_size=4, epochs=2, verbose=0, shuffle=False)
        results.append(model.evaluate(X, Y.tocsr(), batch_size=4, verbose=0, return_dict=True))
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def test_save_and_load_keeps_scores_and_counts(tmp_path):
    ours, _ = _models(negatives=3, item_counts=np.arange(1, ITEMS + 1), seed=8)
    ours.compile(optimizer="adam", loss=losses.SparseMultinomialNLL())
    ours.fit(X, Y.tocsr(), batch_size=4, epochs=1, verbose=0)
    reloaded = assert_round_trips(ours, X, tmp_path)
    layer, again = ours.layers[-1], reloaded.layers[-1]
    assert again.get_config() == layer.get_config()
    np.testing.assert_array_equal(
        np.asarray(again.cumulative_counts), np.cumsum(np.arange(1, ITEMS + 1))
    )


def test_wrong_units_for_the_target_names_the_fix():
    inp = keras.Input((FEATURES,), sparse=True)
    model = keras.Model(inp, SparseDenseOutput(ITEMS + 1)(SparseDenseInput(3)(inp)))
    model.compile(optimizer="sgd", loss="sparse_mse")
    with pytest.raises(ValueError, match=f"units={ITEMS}|one unit per item: {ITEMS}"):
        model.train_on_batch(X, Y)


@pytest.mark.parametrize(
    ("kwargs", "loss", "match"),
    [
        ({"negatives": 3}, "sparse_mse", "negatives=3"),
        ({"activation": "softmax"}, "sparse_mse", "not elementwise"),
        ({"activation": "sigmoid"}, "sparse_multinomial_nll", "activation=None"),
    ],
)
def test_combinations_that_cannot_work_raise(kwargs, loss, match):
    ours, _ = _models(**kwargs)
    ours.compile(optimizer="sgd", loss=loss)
    with pytest.raises(ValueError, match=match):
        ours.train_on_batch(X, Y)


def test_sparse_features_are_refused():
    with pytest.raises(TypeError, match="SparseDenseInput"):
        SparseDenseOutput(3)(ks.to_sparse(X))


def test_a_loss_it_cannot_read_warns_and_scores_densely():
    def plain(y_true, y_pred):
        return losses.sparse_mse(y_true, y_pred)

    ours, twin = _models()
    with pytest.warns(UserWarning, match="not one of keras_sparse's masked losses"):
        ours_logs, _ = _step(ours, plain)
    twin_logs, _ = _step(twin, plain)
    _assert_same_step(ours, twin, ours_logs, twin_logs)


def test_rmse_reads_the_scores_without_a_dense_gradient():
    ours, twin = _models()
    kernel = np.asarray(ours.layers[-1].kernel).copy()
    ours_logs, _ = _step(ours, "sparse_mse", metrics=[ks.metrics.SparseRootMeanSquaredError()])
    twin_logs, _ = _step(twin, "sparse_mse", metrics=[ks.metrics.SparseRootMeanSquaredError()])
    _assert_same_step(ours, twin, ours_logs, twin_logs)
    assert ours_logs["sparse_rmse"] > 0
    untouched = sorted(set(range(ITEMS)) - set(_canonical(Y).indices.tolist()))
    np.testing.assert_array_equal(np.asarray(ours.layers[-1].kernel)[untouched], kernel[untouched])


def test_ranking_metrics_with_the_exact_multinomial_loss_equal_the_dense_model():
    ours, twin = _models()
    ours_logs, _ = _step(ours, "sparse_multinomial_nll", metrics=[ks.metrics.NDCGAtK(3)])
    twin_logs, _ = _step(twin, "sparse_multinomial_nll", metrics=[ks.metrics.NDCGAtK(3)])
    _assert_same_step(ours, twin, ours_logs, twin_logs)


def test_ranking_metrics_with_a_sampled_softmax_rank_the_full_catalogue():
    ours, twin = _models(negatives=4, seed=1)
    ours_logs, _ = _step(ours, "sparse_multinomial_nll", metrics=[ks.metrics.NDCGAtK(3)])
    twin_logs, _ = _step(twin, "sparse_multinomial_nll", metrics=[ks.metrics.NDCGAtK(3)])
    assert ours_logs["ndcg_at_3"] == pytest.approx(twin_logs["ndcg_at_3"], rel=1e-5)
    assert ours_logs["loss"] != pytest.approx(twin_logs["loss"], rel=1e-3)  # sampled, not exact
