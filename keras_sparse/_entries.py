"""Entry matching: which entries of a target a loss or metric scores, and their per-row sums.

`observed_entries` pairs a 2-D target (sparse or dense) with dense scores;
`scored_entries` pairs a sparse target with a sparse `y_pred` (the training
output of `SparseDenseOutput`) by (row, column) keys; `per_row` reduces
per-entry values to per-row ones. `keras_sparse.losses` and
`keras_sparse.metrics` both build on them (the public names are
`keras_sparse.losses.observed_entries` / `scored_entries`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from keras import ops

from keras_sparse import _ops, _validation
from keras_sparse import backend as B
from keras_sparse.convert import sparse_target


def observed_entries(
    y_true: Any, y_pred: Any, where: str = "keras_sparse loss"
) -> tuple[Any, Any, Any, Any]:
    """The observed entries of a 2-D target and the 2-D `y_pred` they index.

    Returns `(indices, values, weights, y_pred)`: for a sparse `y_true`
    (canonicalised: duplicates summed, explicit zeros kept) its stored entries,
    with `weights` 1.0 at real entries and 0.0 at padding slots; for a dense
    `y_true` every position, weighted 1.0 where `y_true` is non-zero. An entry
    whose value is -inf marks an excluded item (`keras_sparse.data.mark_excluded`):
    it is never observed (weight 0, value 0).
    """
    if B.is_sparse(y_pred):  # callers pass a sparse y_pred to `scored_entries` instead
        raise ValueError(
            f"{where} got a sparse `y_pred` (the training output of SparseDenseOutput) where it "
            "needs dense scores; use `scored_entries` for a sparse `y_pred`."
        )
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = sparse_target(y_true, y_pred.dtype)
    if B.is_sparse(y_true):
        _check_rank(B.sparse_shape(y_true))
        _validation.check_target_shape(B.sparse_shape(y_true), y_pred.shape, where)
        e = _ops.entries(y_true, y_pred.dtype)
        marked = _ops.excluded_marks(e)
        weights = ops.cast(_ops.and_valid(ops.logical_not(marked), e.valid), y_pred.dtype)
        return e.indices, only_observed(e.values, weights), weights, y_pred
    y_true = ops.convert_to_tensor(y_true)
    _check_rank(tuple(y_true.shape))
    _validation.check_target_shape(y_true.shape, y_pred.shape, where)
    y_true = ops.cast(y_true, y_pred.dtype)
    observed = ops.logical_and(ops.not_equal(y_true, 0), ops.not_equal(y_true, _ops.MINUS_INF))
    weights = ops.cast(observed, y_pred.dtype)
    return None, only_observed(y_true, weights), weights, y_pred


class _Scored(NamedTuple):
    """Entries scored by a sparse `y_pred`: the target's, then `y_pred`'s extra ones."""

    indices: Any  # (n, 2): the target's entries, then y_pred's entries absent from it
    targets: Any  # (n,) target value; 0 for the extra entries
    predictions: Any  # (n,)
    weights: Any  # (n,) 1.0 where observed (a target entry, or an extra entry), else 0
    num_rows: Any
    num_target: Any  # how many leading entries are the target's


def scored_entries(y_true: Any, y_pred: Any, where: str = "keras_sparse loss") -> _Scored:
    """Pair a sparse target with a sparse `y_pred` (the training output of `SparseDenseOutput`).

    A sparse `y_pred` holds predictions at its stored entries, which include
    every stored entry of `y_true`. Its entries that `y_true` does not store
    (sampled negatives) are observed with target 0. Entries are matched by
    their (row, column) keys, so neither side needs any particular order.

    Args:
        y_true: Sparse `(rows, items)` target (sparse tensor or SciPy matrix).
        y_pred: Sparse `(rows, items)` predictions at (at least) the target's entries.
        where: What a shape error names (the loss or metric).

    Returns:
        A named tuple `(indices, targets, predictions, weights, num_rows,
        num_target)`: the target's entries first (`num_target` of them), then
        `y_pred`'s extra entries; `weights` is 1.0 where an entry is observed.

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = sp.csr_matrix([[0.0, 2.0, 0.0]])
        >>> y_pred = ks.to_sparse(sp.csr_matrix([[0.0, 1.5, -1.0]]))  # item 2: a negative
        >>> e = ks.losses.scored_entries(y_true, y_pred)
        >>> np.asarray(e.predictions)[np.asarray(e.weights) > 0].tolist()
        [1.5, -1.0]
    """
    y_true = sparse_target(y_true, y_pred.dtype)
    if not B.is_sparse(y_true):
        _refuse_dense_target(y_true)
    true_shape, pred_shape = B.sparse_shape(y_true), B.sparse_shape(y_pred)
    _check_rank(true_shape)
    _validation.check_target_shape(true_shape, pred_shape, where)
    dtype = y_pred.dtype
    t = _ops.entries(y_true, dtype)
    p_indices, p_values, p_valid, _ = B.coo(y_pred, canonical=False)
    p_values = ops.cast(p_values, dtype)
    n = true_shape[1] if true_shape[1] is not None else pred_shape[1]
    t_keys = _ops.linear_keys(t.rows, t.cols, n)
    p_keys = _ops.linear_keys(p_indices[:, 0], p_indices[:, 1], n)
    found, predictions = _ops.lookup(t_keys, p_keys, p_valid, p_values)
    marked = _ops.excluded_marks(t)
    t_weights = ops.cast(_ops.and_valid(ops.logical_not(marked), t.valid), dtype)
    missing = ops.logical_and(ops.logical_not(found), ops.greater(t_weights, 0))
    _check_all_scored(missing, where)
    in_target, _ = _ops.lookup(p_keys, t_keys, t.valid)
    extra = _ops.and_valid(ops.logical_not(in_target), p_valid)
    return _Scored(
        ops.concatenate([ops.cast(t.indices, "int32"), ops.cast(p_indices, "int32")], axis=0),
        ops.concatenate([only_observed(t.values, t_weights), ops.zeros_like(p_values)], axis=0),
        ops.concatenate([predictions, only_observed(p_values, ops.cast(extra, dtype))], axis=0),
        ops.concatenate([t_weights, ops.cast(extra, dtype)], axis=0),
        B.sparse_num_rows(y_pred),
        ops.shape(t.values)[0],
    )


def _refuse_dense_target(y_true: Any) -> None:
    raise ValueError(
        "A sparse `y_pred` (the training output of SparseDenseOutput) needs a sparse "
        f"`y_true`; got {type(y_true).__name__}. Feed the target as a SciPy matrix or sparse "
        "tensor."
    )


def _check_all_scored(missing: Any, where: str) -> None:
    """Refuse a sparse `y_pred` that misses target entries (checked where values are concrete)."""
    try:
        any_missing = bool(np.any(np.asarray(missing)))
    except Exception:  # a traced value inside a compiled step: SparseDenseOutput stores all
        return
    if any_missing:
        raise ValueError(
            f"{where}: the sparse `y_pred` does not store every entry of the sparse "
            "`y_true`; each target entry needs a prediction."
        )


def _check_rank(shape: tuple) -> None:
    if len(shape) != 2:
        raise ValueError(f"`y_true` must be 2-D (rows, items), got shape {tuple(shape)}.")


def per_row(
    entry_loss: Any,
    indices: Any,
    weights: Any,
    y_pred: Any,
    normalize: str,
    mean: bool,
    num_rows: Any = None,
) -> Any:
    """Reduce per-entry losses (weighted 0 at unobserved/padding slots) to per-row values.

    `normalize="row"`: each row's sum (`mean=False`) or mean over its observed
    entries (`mean=True`); a row with no entry gives exactly 0.
    `normalize="entries"`: values whose batch mean is the total loss over the
    total number of observed entries of the batch.
    """
    entry_loss = only_observed(entry_loss, weights)
    if num_rows is None:
        num_rows = ops.shape(y_pred)[0]
    if indices is None:  # dense target: entries laid out as (rows, items)
        totals, counts = ops.sum(entry_loss, axis=1), ops.sum(weights, axis=1)
    else:
        totals = _ops.row_sum(entry_loss, indices[:, 0], num_rows)
        counts = _ops.row_sum(weights, indices[:, 0], num_rows)
    if normalize == "entries":
        # Under a tf.distribute strategy the counts are those of the global batch,
        # so the replicas together give total loss / total entries, as on one device.
        count, rows_in_batch = B.replica_sum(ops.sum(counts), ops.cast(num_rows, totals.dtype))
        return _ops.divide_no_nan(totals * rows_in_batch, count)
    if not mean:
        return totals
    return _ops.divide_no_nan(totals, counts)


def only_observed(values: Any, weights: Any) -> Any:
    """`values` where an entry is observed, exactly 0 elsewhere (never inf * 0 = NaN)."""
    return ops.where(ops.greater(weights, 0), values, ops.zeros_like(values))
