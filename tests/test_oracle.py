"""The oracle battery: every loss and metric against a dense NumPy reference of DEFINITIONS.md.

One Hypothesis strategy draws batches with random shapes (empty batches and
empty rows included), densities, duplicate and unsorted COO entries, explicit
zeros, per-row `sample_weight` and excluded items (marked with
`keras_sparse.data.mark_excluded`), and every loss class and metric class is
checked against the dense reference below, which never calls the library. The
target is a backend sparse tensor, or a SciPy matrix / array as a user passes it
to a loss or metric called directly (`sparse_mse(y_csr, scores)`).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ranking_mean
from test_metrics import CLASSES as RANKING  # metric name -> class, as there

import keras_sparse as ks
from conftest import ZERO_KEEPING
from keras_sparse import losses, metrics
from keras_sparse.data import mark_excluded


@st.composite
def batch(draw):
    """(y_coo, scores, sample_weight | None, exclude | None) over a small random batch."""
    rows = draw(st.integers(0, 6))
    n = draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    density = draw(st.sampled_from([0.0, 0.2, 0.5, 0.9]))
    mask = rng.random((rows, n)) < density
    r, c = np.nonzero(mask)
    vals = rng.integers(0, 4, size=len(r)).astype(np.float32)  # 0 = explicit zero
    if len(r) and draw(st.booleans()):  # split some entries into duplicates, unsorted
        dup = rng.integers(0, len(r), size=max(1, len(r) // 2))
        half = vals[dup] / 2
        vals[dup] -= half
        r, c, vals = np.r_[r, r[dup]], np.r_[c, c[dup]], np.r_[vals, half]
        order = rng.permutation(len(r))
        r, c, vals = r[order], c[order], vals[order]
    y = sp.coo_matrix((vals, (r, c)), shape=(rows, n))
    scores = rng.integers(-2, 3, size=(rows, n)).astype(np.float32)  # many ties
    weights = rng.random(rows).astype(np.float32) if draw(st.booleans()) else None
    exclude = None
    if draw(st.booleans()):
        exclude = sp.csr_matrix((rng.random((rows, n)) < 0.3).astype(np.float32))
    return y, scores, weights, exclude


def _dense_truth(y, exclude):
    """Dense value and observed/excluded masks (the oracle's own densification)."""
    value = np.zeros(y.shape)
    observed = np.zeros(y.shape, bool)
    for r, c, v in zip(y.row, y.col, y.data):
        value[r, c] += v
        observed[r, c] = True
    excluded = np.zeros(y.shape, bool) if exclude is None else exclude.toarray() != 0
    return value, observed & ~excluded, excluded


def _entry_loss(kind, t, p):
    e = p - t
    if kind == "mse":
        return e * e
    if kind == "mae":
        return np.abs(e)
    if kind == "huber":
        return np.where(np.abs(e) <= 1.0, 0.5 * e * e, np.abs(e) - 0.5)
    p = np.clip(1 / (1 + np.exp(-p)), 1e-7, 1 - 1e-7)  # bce on logits
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def reference_loss(kind, y, scores, weights, exclude, normalize):
    """Keras `sum_over_batch_size` of the masked loss, from dense NumPy arrays."""
    value, observed, _ = _dense_truth(y, exclude)
    p = scores.astype(np.float64)
    rows = y.shape[0]
    if kind == "nll":
        logsm = p - p.max(axis=1, keepdims=True) if p.size else p
        logsm = logsm - np.log(np.exp(logsm).sum(axis=1, keepdims=True)) if p.size else p
        per_entry = np.where(observed, -value * logsm, 0.0)
    else:
        per_entry = np.where(observed, _entry_loss(kind, value, p), 0.0)
    totals, counts = per_entry.sum(axis=1), observed.sum(axis=1)
    if normalize == "entries":
        per_row = totals * rows / counts.sum() if counts.sum() else np.zeros(rows)
    elif kind == "nll":
        per_row = totals
    else:
        per_row = np.divide(totals, counts, out=np.zeros(rows), where=counts > 0)
    w = np.ones(rows) if weights is None else weights.astype(np.float64)
    return float((per_row * w).sum() / rows) if rows else 0.0


def reference_rmse(y, scores, weights, exclude):
    value, observed, _ = _dense_truth(y, exclude)
    w = np.ones(y.shape[0]) if weights is None else weights.astype(np.float64)
    w = np.broadcast_to(w[:, None], y.shape)
    sq = np.where(observed, (scores - value) ** 2, 0.0)
    count = (w * observed).sum()
    return float(np.sqrt((w * sq).sum() / count)) if count else 0.0


def _marked(y, exclude, form="tensor"):
    """The target as a backend sparse tensor, or as SciPy (a direct call's target)."""
    target = y if exclude is None else mark_excluded(y, exclude)
    if form == "tensor":
        return ks.to_sparse(target, dtype="float32")
    return FORMS[form](sp.coo_matrix(target))


# SciPy classes that keep explicit zeros (an observed 0 stays observed).
FORMS = {cls.__name__: cls for cls in ZERO_KEEPING}
TARGET_FORMS = st.sampled_from(["tensor", *FORMS])


LOSSES = {
    "mse": lambda normalize: losses.SparseMeanSquaredError(normalize=normalize),
    "mae": lambda normalize: losses.SparseMeanAbsoluteError(normalize=normalize),
    "huber": lambda normalize: losses.SparseHuber(normalize=normalize),
    "bce": lambda normalize: losses.SparseBinaryCrossentropy(True, normalize=normalize),
    "nll": lambda normalize: losses.SparseMultinomialNLL(normalize=normalize),
}


@settings(max_examples=30)
@given(batch(), st.sampled_from(list(LOSSES)), st.sampled_from(["row", "entries"]), TARGET_FORMS)
def test_every_loss_matches_the_dense_reference(case, kind, normalize, form):
    y, scores, weights, exclude = case
    if kind == "bce":  # targets in [0, 1]
        y = sp.coo_matrix((np.minimum(y.data, 1.0), (y.row, y.col)), shape=y.shape)
    expected = reference_loss(kind, y, scores, weights, exclude, normalize)
    got = LOSSES[kind](normalize)(_marked(y, exclude, form), scores, sample_weight=weights)
    got = float(np.sum(np.asarray(got)))  # Keras leaves an empty batch's (0,) values unreduced
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)


@settings(max_examples=30)
@given(
    batch(),
    st.sampled_from(list(RANKING)),
    st.integers(1, 8),
    st.sampled_from(["skip", "zero"]),
    TARGET_FORMS,
)
def test_every_ranking_metric_matches_the_reference(case, name, k, empty_rows, form):
    y, scores, weights, exclude = case
    expected = ranking_mean(
        name, scores, y, k, exclude=exclude, sample_weight=weights, empty_rows=empty_rows
    )
    metric = RANKING[name](k=k, empty_rows=empty_rows)
    metric.update_state(_marked(y, exclude, form), scores, sample_weight=weights)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5, abs=1e-6)


@settings(max_examples=30)
@given(batch(), TARGET_FORMS)
def test_rmse_matches_the_dense_reference(case, form):
    y, scores, weights, exclude = case
    metric = metrics.SparseRootMeanSquaredError()
    metric.update_state(_marked(y, exclude, form), scores, sample_weight=weights)
    expected = reference_rmse(y, scores, weights, exclude)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5, abs=1e-6)


@settings(max_examples=15)
@given(batch())
def test_a_dense_target_with_marks_equals_the_sparse_one(case):
    y, scores, weights, exclude = case
    y = sp.coo_matrix(y.toarray())  # a dense target cannot hold explicit zeros
    dense = (y if exclude is None else mark_excluded(y, exclude)).toarray().astype(np.float32)
    for kind in ("mse", "nll"):
        loss = LOSSES[kind]("row")
        want = np.sum(np.asarray(loss(_marked(y, exclude), scores, sample_weight=weights)))
        assert np.sum(np.asarray(loss(dense, scores, sample_weight=weights))) == pytest.approx(
            want, rel=1e-5, abs=1e-6
        )
    a, b = metrics.NDCGAtK(k=3), metrics.NDCGAtK(k=3)
    a.update_state(_marked(y, exclude), scores, sample_weight=weights)
    b.update_state(dense, scores, sample_weight=weights)
    assert float(b.result()) == pytest.approx(float(a.result()), rel=1e-5, abs=1e-6)


FUNCTIONS = {
    "mse": losses.sparse_mse,
    "mae": losses.sparse_mae,
    "huber": losses.sparse_huber,
    "bce": lambda t, p: losses.sparse_binary_crossentropy(t, p, from_logits=True),
    "nll": losses.sparse_multinomial_nll,
}


@settings(max_examples=20)
@given(batch(), st.sampled_from(list(FUNCTIONS)), TARGET_FORMS)
def test_every_loss_function_called_directly_matches_the_reference(case, kind, form):
    y, scores, _, exclude = case
    if kind == "bce":
        y = sp.coo_matrix((np.minimum(y.data, 1.0), (y.row, y.col)), shape=y.shape)
    expected = reference_loss(kind, y, scores, None, exclude, "row")
    per_row = np.asarray(FUNCTIONS[kind](_marked(y, exclude, form), scores))
    assert per_row.shape == (y.shape[0],)
    assert float(per_row.sum()) / max(y.shape[0], 1) == pytest.approx(expected, rel=1e-4, abs=1e-5)
