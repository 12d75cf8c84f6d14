"""Per-row ranking metrics (precision/recall/NDCG/MAP/hit rate/MRR @k), backend-neutral.

One implementation, used by the metric classes in `keras_sparse.metrics` and by
`keras_sparse.evaluate_top_k`, so that both agree exactly. Definitions:

- Candidates are the items with a finite-or-+inf score: NaN and -inf scores
  are never ranked. -inf is the mask value that exclusion writes (see
  `keras_sparse._ops.mask_scores` and `keras_sparse.layers.ExcludeSeen`).
- G(u): stored entries of `y_true` with value > `relevance_threshold` whose
  item is a candidate (an excluded item is removed from G(u) too).
- R(u): the min(k, #candidates) best candidates; ties go to the lower index.

Everything has a fixed shape: entries that leave G(u) are masked, never
removed, so the same code runs under `jit` on padded JAX batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from keras import ops

from keras_sparse import _item_blocks, _ops, _validation
from keras_sparse import backend as B
from keras_sparse.convert import sparse_target

METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
GAINS = ("binary", "linear", "exponential")
DENOMINATORS = ("k", "min")
EMPTY_ROWS = ("skip", "zero")

__all__ = [
    "DENOMINATORS",
    "EMPTY_ROWS",
    "GAINS",
    "METRICS",
    "Ranked",
    "mask_scores",
    "rank",
    "rank_blocks",
    "row_values",
    "row_weights",
]

# Re-exported for callers that rank scores themselves (top-k itself: keras_sparse.topk).
mask_scores = _ops.mask_scores


class Ranked(NamedTuple):
    """The top items of a batch and the relevant set, ready for any metric."""

    hits: Any  # (rows, k_eff) 1.0 where R(u)[i] is relevant
    gains: Any  # (rows, k_eff) relevance value of R(u)[i] (0 if not relevant)
    num_relevant: Any  # (rows,) |G(u)|
    ideal_dcg: Callable[[str, int], Any]  # (gains, k) -> (rows,) ideal DCG of G(u) at k


def _gain(values: Any, gains: str) -> Any:
    if gains == "linear":
        return values
    if gains == "exponential":
        return ops.power(ops.cast(2.0, values.dtype), values) - 1.0
    return ops.ones_like(values)


def _discounts(length: Any, dtype: str) -> Any:
    positions = ops.cast(ops.arange(length), dtype)
    return 1.0 / ops.log2(positions + 2.0)


def _sparse_relevance(
    e: _ops.Entries,
    candidate: Any,
    shape: tuple,
    threshold: float,
    exclude: Any,
    top_idx: Any,
    valid: Any,
) -> tuple:
    """Hits, gains, |G| and the ideal DCG for the entries `e` of a sparse `y_true`.

    `candidate` says which of those entries' items can be ranked (a score that
    is neither NaN nor -inf); `shape` is `(rows, items)` of the scores.
    """
    dtype = e.values.dtype
    num_rows, n = shape
    keep = ops.greater(e.values, ops.cast(threshold, dtype))
    keep = ops.logical_and(keep, candidate)
    keep = _ops.and_valid(keep, e.valid)
    keys = _ops.linear_keys(e.rows, e.cols, n)
    if exclude is not None:
        table, table_valid = _ops.excluded_keys(exclude, n)
        keep = ops.logical_and(keep, ops.logical_not(_ops.lookup(keys, table, table_valid)[0]))
    rows = ops.expand_dims(ops.arange(num_rows), 1)
    found, gains = _ops.lookup(_ops.linear_keys(rows, top_idx, n), keys, keep, e.values)
    found = ops.logical_and(found, valid)
    gains = ops.where(found, gains, ops.zeros_like(gains))
    kept = ops.cast(keep, dtype)
    num_relevant = _ops.row_sum(kept, e.rows, num_rows)

    def ideal_dcg(gain_name: str, k: int) -> Any:
        # Sort G's entries by (row, gain descending); entries outside G go last.
        g = ops.where(keep, _gain(e.values, gain_name), ops.full_like(e.values, _ops.MINUS_INF))
        by_gain = B.stable_argsort(-g)
        last = ops.zeros_like(e.rows) + ops.cast(num_rows, e.rows.dtype)
        sort_rows = ops.where(keep, e.rows, last)
        order = ops.take(by_gain, B.stable_argsort(ops.take(sort_rows, by_gain)))
        rows_sorted = ops.take(e.rows, order)
        counts = ops.cast(num_relevant, "int32")
        # First slot of each row among the sorted entries; one extra slot so that the
        # rows of padding / non-relevant entries (clipped to num_rows) index something.
        starts = ops.concatenate([ops.cumsum(counts) - counts, ops.zeros((1,), "int32")], 0)
        size = ops.shape(order)[0]
        row_slot = ops.clip(ops.cast(rows_sorted, "int32"), 0, ops.cast(num_rows, "int32"))
        pos = ops.cast(ops.arange(size), "int32") - ops.take(starts, row_slot)
        use = ops.logical_and(ops.take(keep, order), ops.less(pos, k))
        disc = ops.take(_discounts(k, dtype), ops.clip(pos, 0, k - 1))
        contrib = ops.where(use, ops.take(g, order) * disc, ops.zeros_like(disc))
        return _ops.row_sum(contrib, rows_sorted, num_rows)

    return ops.cast(found, dtype), gains, num_relevant, ideal_dcg


def _dense_relevance(y_true: Any, scores: Any, threshold: float, top_idx: Any, valid: Any) -> tuple:
    """The same for a dense `y_true` (its non-zero entries are the stored ones)."""
    dtype = scores.dtype
    y = y_true
    relevant = ops.logical_and(ops.not_equal(y, 0), ops.greater(y, ops.cast(threshold, dtype)))
    relevant = ops.logical_and(relevant, ops.greater(scores, _ops.MINUS_INF))
    found = ops.logical_and(ops.take_along_axis(relevant, top_idx, axis=1), valid)
    gains = ops.where(found, ops.take_along_axis(y, top_idx, axis=1), 0.0)
    num_relevant = ops.sum(ops.cast(relevant, dtype), axis=1)

    def ideal_dcg(gain_name: str, k: int) -> Any:
        g = ops.where(relevant, _gain(y, gain_name), _ops.MINUS_INF)
        best, _ = B.best_k(g, k)
        disc = _discounts(ops.shape(best)[1], dtype)
        return ops.sum(ops.where(ops.greater(best, _ops.MINUS_INF), best * disc, 0.0), axis=1)

    return ops.cast(found, dtype), gains, num_relevant, ideal_dcg


def rank(
    y_true: Any,
    scores: Any,
    k: int,
    relevance_threshold: float = 0.0,
    exclude: Any = None,
    extra: int | None = None,
    where: str = "ranking",
) -> Ranked:
    """Rank one batch: top-k items per row and their relevance against `y_true`.

    Args:
        y_true: `(rows, items)` sparse (stored entries) or dense (non-zero
            entries) relevance.
        scores: `(rows, items)` dense scores; -inf / NaN are not candidates.
        k: Cut-off.
        relevance_threshold: An entry is relevant when its value exceeds this.
        exclude: Optional sparse `(rows, items)` items that are never ranked and
            leave the relevant set.
        extra: With `exclude`, an upper bound on any row's number of excluded
            items; enables `top_k_excluding` instead of rewriting the scores.
        where: What to name in a shape error (the metric or function).
    """
    y_true = sparse_target(y_true, scores.dtype)  # a SciPy target of a direct call
    sparse_truth = B.is_sparse(y_true)
    true_shape = B.sparse_shape(y_true) if sparse_truth else ops.shape(y_true)
    _validation.check_target_shape(true_shape, ops.shape(scores), where)
    if sparse_truth:
        truth = _ops.entries(y_true, scores.dtype)
        scores = _ops.mask_marked(scores, truth)
    else:
        truth = ops.cast(ops.convert_to_tensor(y_true), scores.dtype)
        scores = ops.where(ops.equal(truth, _ops.MINUS_INF), _ops.MINUS_INF, scores)
    if exclude is not None and (extra is None or not sparse_truth or not B.is_sparse(exclude)):
        scores, exclude = _ops.mask_scores(scores, exclude), None
    scores = _ops.candidate_scores(scores)
    if exclude is not None:
        _, top_idx, valid = _ops.top_k_excluding_candidates(scores, exclude, k, extra)
    else:
        _, top_idx, valid = _ops.top_k_of_candidates(scores, k)
    if sparse_truth:
        candidate = ops.greater(_ops.gather_entries(scores, truth.indices), _ops.MINUS_INF)
        shape = (ops.shape(scores)[0], ops.shape(scores)[1])
        parts = _sparse_relevance(
            truth, candidate, shape, relevance_threshold, exclude, top_idx, valid
        )
    else:
        parts = _dense_relevance(truth, scores, relevance_threshold, top_idx, valid)
    return Ranked(*parts)


def rank_blocks(
    y_true: Any,
    h: Any,
    kernel: Any,
    bias: Any,
    k: int,
    block: int,
    activation: Any = None,
    relevance_threshold: float = 0.0,
    exclude: Any = None,
) -> Ranked:
    """`rank` of the scores `activation(h @ kernel.T + bias)`, computed by item blocks.

    The same `Ranked` as `rank(y_true, scores, ...)` for a sparse `y_true`,
    without the rows x items score matrix (see `keras_sparse._item_blocks`):
    the top k come from a running merge over blocks with exclusions (and the
    target's exclusion marks) masked per block, and the relevant items'
    candidacy from their own scores.
    """
    dtype = h.dtype
    truth = _ops.entries(y_true, dtype)
    masks = [(truth.indices, _ops.excluded_marks(truth))]
    if exclude is not None:
        masks.append(_item_blocks.exclusion_mask(exclude))
    _, top_idx, valid = _item_blocks.top_k(h, kernel, bias, k, block, activation, masks)
    entry = _item_blocks.entry_scores(h, kernel, bias, truth.rows, truth.cols, dtype)
    if activation is not None:
        entry = activation(entry)
    candidate = ops.greater(_ops.candidate_scores(entry), _ops.MINUS_INF)
    candidate = ops.logical_and(candidate, ops.logical_not(_ops.excluded_marks(truth)))
    shape = (ops.shape(h)[0], ops.shape(kernel)[0])
    parts = _sparse_relevance(truth, candidate, shape, relevance_threshold, exclude, top_idx, valid)
    return Ranked(*parts)


def row_values(
    ranked: Ranked,
    metric: str,
    k: int,
    *,
    denominator: str = "k",
    gains: str = "binary",
) -> Any:
    """Per-row value of `metric` at cut-off `k` from a `Ranked` batch (see DEFINITIONS).

    `ranked` may hold more than `k` positions (computed once for the largest
    k); only the first `k` are used.
    """
    hits = ranked.hits[:, :k]
    dtype = hits.dtype
    k_eff = ops.shape(hits)[1]
    n_rel = ranked.num_relevant
    kf = ops.cast(k, dtype)
    min_k_g = ops.minimum(kf, n_rel)
    total_hits = ops.sum(hits, axis=1)
    if metric == "precision":
        return total_hits / kf if denominator == "k" else ops.divide_no_nan(total_hits, min_k_g)
    if metric == "recall":
        return ops.divide_no_nan(total_hits, n_rel if denominator == "k" else min_k_g)
    if metric == "hit_rate":
        return ops.cast(ops.greater(total_hits, 0), dtype)
    positions = ops.cast(ops.arange(1, k_eff + 1), dtype)
    if metric == "mrr":
        return ops.max(hits / positions, axis=1, initial=0.0)
    if metric == "map":
        precision_at_i = ops.cumsum(hits, axis=1) / positions
        return ops.divide_no_nan(ops.sum(hits * precision_at_i, axis=1), min_k_g)
    if metric == "ndcg":
        disc = _discounts(k_eff, dtype)
        dcg = ops.sum(_gain(ranked.gains[:, :k], gains) * hits * disc, axis=1)
        if gains == "binary":
            cum = ops.concatenate([ops.zeros((1,), dtype), ops.cumsum(disc)], 0)
            idcg = ops.take(cum, ops.cast(min_k_g, "int32"))
        else:
            idcg = ranked.ideal_dcg(gains, k)
        return ops.divide_no_nan(dcg, idcg)
    raise ValueError(f"`metric` must be one of {list(METRICS)}, got {metric!r}.")


def row_weights(ranked: Ranked, empty_rows: str, sample_weight: Any = None) -> Any:
    """Weight of each row in the mean: 0 for skipped rows, else its sample weight."""
    dtype = ranked.hits.dtype
    if empty_rows == "skip":
        weights = ops.cast(ops.greater(ranked.num_relevant, 0), dtype)
    else:
        weights = ops.ones_like(ranked.num_relevant)
    if sample_weight is not None:
        weights = weights * ops.reshape(ops.cast(sample_weight, dtype), [-1])
    return weights
