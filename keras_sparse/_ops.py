"""Backend-neutral sparse operations, written with `keras.ops` and the backend package.

What layers, losses, metrics and the streaming top-k call: the stored entries
of a sparse tensor (with a validity mask, since JAX batches are padded), row
sums, and top-k selection with exclusion. Definitions follow DEFINITIONS.md:
candidates are items with a score that is neither NaN nor -inf, and ties go to
the lower item index.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from keras import ops

from keras_sparse import backend as B

MINUS_INF = float("-inf")


class Entries(NamedTuple):
    """The stored entries of a 2-D sparse tensor, canonical (duplicates summed)."""

    indices: Any  # (nnz, 2) row-major
    rows: Any  # (nnz,)
    cols: Any  # (nnz,)
    values: Any  # (nnz,) in the requested dtype, 0 at padding slots
    valid: Any  # (nnz,) bool, False at padding slots; None when nothing is padded


def entries(x: Any, dtype: Any) -> Entries:
    """Canonical stored entries of the 2-D sparse tensor `x`, values cast to `dtype`."""
    indices, values, valid, _ = B.coo(x)
    values = ops.cast(values, dtype)
    if valid is not None:
        values = ops.where(valid, values, ops.zeros_like(values))
    return Entries(indices, indices[:, 0], indices[:, 1], values, valid)


def excluded_marks(e: Entries) -> Any:
    """Which stored entries are exclusion marks (value -inf, see `data.mark_excluded`)."""
    return and_valid(ops.equal(e.values, MINUS_INF), e.valid)


def mask_marked(scores: Any, e: Entries) -> Any:
    """`scores` set to -inf at the entries of `e` that are exclusion marks.

    The scatter copies the whole score block, so it only runs (`ops.cond`)
    when the batch holds a mark.
    """
    marked = excluded_marks(e)

    def mask() -> Any:
        current = gather_entries(scores, e.indices)
        updates = ops.where(marked, ops.full_like(current, MINUS_INF), current)
        return ops.scatter_update(scores, e.indices, updates)

    return ops.cond(ops.any(marked), mask, lambda: scores)


def and_valid(mask: Any, valid: Any) -> Any:
    """`mask & valid`, where `valid` may be None (nothing padded)."""
    return mask if valid is None else ops.logical_and(mask, valid)


def divide_no_nan(x: Any, y: Any) -> Any:
    """`x / y`, 0 where `y == 0`, with a zero (not NaN) gradient there on every backend.

    Keras 3.10's torch `divide_no_nan` divides by the zero and then masks, so its
    gradient is NaN wherever `y` is 0 (an empty row); Keras 3.15 divides safely.
    """
    zero = ops.equal(y, 0)
    out = x / ops.where(zero, ops.ones_like(y), y)
    return ops.where(zero, ops.zeros_like(out), out)


def row_sum(values: Any, rows: Any, num_rows: Any) -> Any:
    """Sum per-entry `values` into `num_rows` rows; padding rows fall outside and drop."""
    return B.segment_sum(values, rows, num_rows)


def row_max(values: Any, rows: Any, num_rows: Any) -> Any:
    """Maximum of per-entry `values` per row."""
    return B.segment_max(values, rows, num_rows)


def gather_entries(dense: Any, indices: Any) -> Any:
    """`dense[i, j]` for each stored `(i, j)`; 0 at padding slots."""
    return B.gather_entries(dense, indices)


def linear_keys(rows: Any, cols: Any, n: Any) -> Any:
    """Row-major integer key `row * n + col` of each (row, col) pair."""
    dtype = B.INDEX_DTYPE
    return ops.cast(rows, dtype) * ops.cast(n, dtype) + ops.cast(cols, dtype)


def lookup(keys: Any, table: Any, table_valid: Any = None, table_values: Any = None) -> tuple:
    """Binary-search `keys` (any shape) in the 1-D integer `table`.

    Entries of `table` where `table_valid` is False never match. Returns
    whether each key is present and, with `table_values`, the value stored
    with it (0 where absent).
    """
    dtype = B.INDEX_DTYPE
    table = ops.cast(table, dtype)
    keys = ops.cast(keys, dtype)
    if table_valid is not None:
        table = ops.where(table_valid, table, ops.full_like(table, -1))
    order = ops.argsort(table)
    sentinel = ops.convert_to_tensor(np.array([np.iinfo(dtype).max], dtype=dtype))
    sorted_table = ops.concatenate([ops.take(table, order), sentinel], axis=0)
    flat = ops.reshape(keys, [-1])
    pos = B.searchsorted(sorted_table, flat)
    found = ops.reshape(ops.equal(ops.take(sorted_table, pos), flat), ops.shape(keys))
    if table_values is None:
        return found, None
    zero = ops.zeros((1,), table_values.dtype)
    sorted_values = ops.concatenate([ops.take(table_values, order), zero], axis=0)
    values = ops.reshape(ops.take(sorted_values, pos), ops.shape(keys))
    return found, ops.where(found, values, ops.zeros_like(values))


def mask_scores(scores: Any, exclude: Any) -> Any:
    """Set the scores of the stored entries of `exclude` to -inf (never ranked)."""
    scores = ops.convert_to_tensor(scores)
    if exclude is None:
        return scores
    if B.is_sparse(exclude):
        indices, _, valid, _ = B.coo(exclude, canonical=False)
        return B.scatter_set(scores, indices, valid, MINUS_INF)
    excluded = ops.not_equal(ops.convert_to_tensor(exclude), 0)
    return ops.where(excluded, ops.full_like(scores, MINUS_INF), scores)


def candidate_scores(scores: Any) -> Any:
    """Scores with NaN replaced by -inf, so that neither is ever ranked."""
    scores = ops.convert_to_tensor(scores)
    if "float" not in str(scores.dtype):
        scores = ops.cast(scores, "float32")
    return B.replace_nan(scores, MINUS_INF)


def top_k(scores: Any, k: int) -> tuple[Any, Any, Any]:
    """Top min(k, n) items per row: (values, indices, valid), ties to the lower index.

    `valid` is False where a position holds a non-candidate (fewer than k
    candidates in the row).
    """
    return top_k_of_candidates(candidate_scores(scores), k)


def top_k_of_candidates(scores: Any, k: int) -> tuple[Any, Any, Any]:
    """`top_k` for scores already passed through `candidate_scores`."""
    values, indices = B.best_k(scores, k)
    return values, indices, ops.greater(values, MINUS_INF)


def top_k_excluding(scores: Any, exclude: Any, k: int, extra: int) -> tuple[Any, Any, Any]:
    """`top_k(mask_scores(scores, exclude), k)` without rewriting the whole score block.

    Takes the top `k + extra` items, drops the excluded ones among them and
    keeps the first `k` of the rest (a stable second top-k keeps rank order and
    ties). Exact when no row of `exclude` has more than `extra` entries.
    """
    return top_k_excluding_candidates(candidate_scores(scores), exclude, k, extra)


def excluded_keys(exclude: Any, n: Any) -> tuple[Any, Any]:
    """Row-major keys of the stored entries of a sparse `exclude`, and their validity."""
    indices, _, valid, _ = B.coo(exclude, canonical=False)
    return linear_keys(indices[:, 0], indices[:, 1], n), valid


def top_k_excluding_candidates(
    scores: Any, exclude: Any, k: int, extra: int
) -> tuple[Any, Any, Any]:
    """`top_k_excluding` for scores already passed through `candidate_scores`."""
    num_rows, n = ops.shape(scores)[0], ops.shape(scores)[1]
    values, indices = B.best_k(scores, k + extra)
    rows = ops.expand_dims(ops.arange(num_rows), 1)
    table, table_valid = excluded_keys(exclude, n)
    dropped, _ = lookup(linear_keys(rows, indices, n), table, table_valid)
    values = ops.where(dropped, ops.full_like(values, MINUS_INF), values)
    width = ops.shape(values)[1]
    narrow = min(k, width) if isinstance(width, int) else ops.minimum(k, width)
    # Second pass over the short list: stable, so rank order and ties are kept.
    _, position = B.best_k(ops.cast(ops.logical_not(dropped), "int32"), narrow)
    values = ops.take_along_axis(values, position, axis=1)
    indices = ops.take_along_axis(indices, position, axis=1)
    return values, indices, ops.greater(values, MINUS_INF)
