"""Per-row ranking metrics (precision/recall/NDCG/MAP/hit rate/MRR @k) in TensorFlow.

One implementation, used by the metric classes in `keras_sparse.metrics` and by
`keras_sparse.evaluate_topk`, so that both agree exactly. Definitions:

- Candidates are the items with a finite-or-+inf score: NaN and -inf scores
  are never ranked. -inf is the mask value that exclusion writes (see
  `mask_scores` and `keras_sparse.layers.ExcludeSeen`).
- G(u): stored entries of `y_true` with value > `relevance_threshold` whose
  item is a candidate (an excluded item is removed from G(u) too).
- R(u): the min(k, #candidates) best candidates; ties go to the lower index.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import tensorflow as tf

from keras_sparse import _tf

METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
GAINS = ("binary", "linear", "exponential")
DENOMINATORS = ("k", "min")
EMPTY_ROWS = ("skip", "zero")


class Ranked(NamedTuple):
    """The top items of a batch and the relevant set, ready for any metric."""

    hits: tf.Tensor  # (rows, k_eff) 1.0 where R(u)[i] is relevant
    gains: tf.Tensor  # (rows, k_eff) relevance value of R(u)[i] (0 if not relevant)
    num_relevant: tf.Tensor  # (rows,) |G(u)|
    relevant_gain_rows: tf.Tensor  # (nnz_G,) row of each relevant entry
    relevant_gain_values: tf.Tensor  # (nnz_G,) value of each relevant entry


def mask_scores(scores: tf.Tensor, exclude: Any) -> tf.Tensor:
    """Set the scores of the stored entries of `exclude` to -inf (never ranked)."""
    scores = tf.convert_to_tensor(scores)
    if exclude is None:
        return scores
    minus_inf = tf.constant(float("-inf"), scores.dtype)
    if _tf.is_sparse(exclude):
        idx = exclude.indices
        fill = tf.fill(tf.shape(idx)[:1], minus_inf)
        return tf.tensor_scatter_nd_update(scores, idx, fill)
    return tf.where(tf.not_equal(tf.convert_to_tensor(exclude), 0), minus_inf, scores)


def candidate_scores(scores: tf.Tensor) -> tf.Tensor:
    """Scores with NaN replaced by -inf, so that neither is ever ranked."""
    scores = tf.convert_to_tensor(scores)
    if not scores.dtype.is_floating:
        scores = tf.cast(scores, tf.float32)

    def replace() -> tf.Tensor:
        return tf.where(tf.math.is_nan(scores), tf.constant(float("-inf"), scores.dtype), scores)

    # The sum is NaN whenever an entry is (or +inf meets -inf): a cheap reduction
    # spares the full copy that the replacement writes when there is nothing to replace.
    return tf.cond(tf.math.is_nan(tf.reduce_sum(scores)), replace, lambda: tf.identity(scores))


def top_k(scores: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Top min(k, n) items per row: (values, indices, valid), ties to the lower index.

    `valid` is False where a position holds a non-candidate (fewer than k
    candidates in the row).
    """
    return _top_k(candidate_scores(scores), k)


def _block_size(n: int | None, k: int) -> int | None:
    """Block width for `_exact_top_k`'s pre-filter, or None where a plain top-k is cheaper."""
    if n is None or n < 2048:
        return None
    size = 1 << max(3, round(math.log2(math.sqrt(n / k))))  # balances n/size and k*size
    return size if 8 * k * size <= n else None


def _exact_top_k(scores: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """`tf.math.top_k(scores, min(k, n))`, same values, indices and tie order, but faster.

    TensorFlow's CPU top-k costs about the same per element whatever k is. For
    a small k the items are cut into blocks of `size`; only the k blocks with the
    highest maxima can hold the top k (a block outside them has k blocks whose
    best item ranks above all of its items), so the exact top k is taken over
    those k * size items. Blocks are ranked by (max, lower block first) and
    gathered in item order, so ties still go to the lower item index.
    """
    n = scores.shape[1]
    size = _block_size(n, k)
    if size is None:
        width = tf.minimum(k, tf.shape(scores)[1])
        return tf.math.top_k(scores, k=width, sorted=True)
    blocks = -(-n // size)
    padded = tf.pad(
        scores, [[0, 0], [0, blocks * size - n]], constant_values=float("-inf")
    )  # padding sits after every real item, so it loses every tie
    grouped = tf.reshape(padded, [-1, blocks, size])
    _, best_blocks = tf.math.top_k(tf.reduce_max(grouped, axis=2), k=k, sorted=False)
    best_blocks = tf.sort(best_blocks, axis=1)  # item order, for the tie rule
    candidates = tf.reshape(tf.gather(grouped, best_blocks, batch_dims=1), [-1, k * size])
    values, position = tf.math.top_k(candidates, k=k, sorted=True)
    block = tf.gather(best_blocks, position // size, batch_dims=1)
    return values, block * size + position % size


def _top_k(scores: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`top_k` for scores already passed through `candidate_scores`."""
    values, indices = _exact_top_k(scores, k)
    return values, indices, values > float("-inf")


def _linear_keys(rows: tf.Tensor, cols: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """Row-major int64 key `row * n + col` of each (row, col) pair."""
    return tf.cast(rows, tf.int64) * n + tf.cast(cols, tf.int64)


def _lookup(
    keys: tf.Tensor, table: tf.Tensor, table_values: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Binary-search `keys` (any shape) in the 1-D int64 `table`.

    Returns whether each key is present and, with `table_values`, the value
    stored with it (0 where absent).
    """
    order = tf.argsort(table, stable=True)
    sorted_table = tf.concat([tf.gather(table, order), [tf.int64.max]], axis=0)
    flat = tf.reshape(keys, [-1])
    pos = tf.searchsorted(sorted_table, flat, side="left")
    found = tf.reshape(tf.equal(tf.gather(sorted_table, pos), flat), tf.shape(keys))
    if table_values is None:
        return found, None
    sorted_values = tf.concat(
        [tf.gather(table_values, order), tf.zeros([1], table_values.dtype)], axis=0
    )
    values = tf.reshape(tf.gather(sorted_values, pos), tf.shape(keys))
    return found, tf.where(found, values, tf.zeros_like(values))


def top_k_excluding(
    scores: tf.Tensor, exclude: tf.SparseTensor, k: int, extra: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`top_k(mask_scores(scores, exclude), k)` without rewriting the whole score block.

    Takes the top `k + extra` items, drops the excluded ones among them and
    keeps the first `k` of the rest (a stable second top-k keeps rank order and
    ties). Exact when no row of `exclude` has more than `extra` entries.
    """
    return _top_k_excluding(candidate_scores(scores), exclude, k, extra)


def _top_k_excluding(
    scores: tf.Tensor, exclude: tf.SparseTensor, k: int, extra: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`top_k_excluding` for scores already passed through `candidate_scores`."""
    n = tf.shape(scores, out_type=tf.int64)[1]
    values, indices = _exact_top_k(scores, k + extra)
    rows = tf.range(tf.shape(scores, out_type=tf.int64)[0])[:, None]
    excluded_keys = _linear_keys(exclude.indices[:, 0], exclude.indices[:, 1], n)
    dropped, _ = _lookup(_linear_keys(rows, indices, n), excluded_keys)
    values = tf.where(dropped, tf.constant(float("-inf"), values.dtype), values)
    narrow = tf.minimum(tf.cast(k, tf.int64), n)
    # Second pass over the short list: stable, so rank order and ties are kept.
    _, position = tf.math.top_k(tf.cast(~dropped, tf.int32), k=tf.cast(narrow, tf.int32))
    values = tf.gather(values, position, batch_dims=1)
    indices = tf.gather(indices, position, batch_dims=1)
    return values, indices, values > float("-inf")


def rank(
    y_true: Any,
    scores: tf.Tensor,
    k: int,
    relevance_threshold: float = 0.0,
    exclude: tf.SparseTensor | None = None,
    extra: int | None = None,
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
    """
    if exclude is not None and extra is None:
        scores, exclude = mask_scores(scores, exclude), None
    scores = candidate_scores(scores)
    num_rows = tf.shape(scores, out_type=tf.int64)[0]
    n = tf.shape(scores, out_type=tf.int64)[1]
    if _tf.is_sparse(y_true):
        st = _tf.canonicalize(y_true)
        rel_idx, rel_val = st.indices, tf.cast(st.values, scores.dtype)
    else:
        y_true = tf.convert_to_tensor(y_true)
        rel_idx = tf.where(tf.not_equal(y_true, 0))
        rel_val = tf.cast(tf.gather_nd(y_true, rel_idx), scores.dtype)
    keep = rel_val > tf.cast(relevance_threshold, scores.dtype)
    keep &= tf.gather_nd(scores, rel_idx) > float("-inf")  # excluded / NaN items
    if exclude is not None:
        excluded_keys = _linear_keys(exclude.indices[:, 0], exclude.indices[:, 1], n)
        keep &= ~_lookup(_linear_keys(rel_idx[:, 0], rel_idx[:, 1], n), excluded_keys)[0]
    rel_idx, rel_val = tf.boolean_mask(rel_idx, keep), tf.boolean_mask(rel_val, keep)
    rel_rows = rel_idx[:, 0]
    num_relevant = _tf.row_sum(tf.ones_like(rel_val), rel_rows, num_rows)

    if exclude is not None:
        _, top_idx, valid = _top_k_excluding(scores, exclude, k, extra)
    else:
        _, top_idx, valid = _top_k(scores, k)
    # Relevance of each ranked (row, item): look it up among G's keys.
    top_keys = _linear_keys(tf.range(num_rows)[:, None], top_idx, n)
    found, gains = _lookup(top_keys, _linear_keys(rel_rows, rel_idx[:, 1], n), rel_val)
    found &= valid
    gains = tf.where(found, gains, tf.zeros_like(gains))
    return Ranked(tf.cast(found, scores.dtype), gains, num_relevant, rel_rows, rel_val)


def _gain(values: tf.Tensor, gains: str) -> tf.Tensor:
    if gains == "linear":
        return values
    if gains == "exponential":
        return tf.pow(tf.cast(2.0, values.dtype), values) - 1.0
    return tf.ones_like(values)


def _discounts(length: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    positions = tf.cast(tf.range(length), dtype)
    return 1.0 / (tf.math.log(positions + 2.0) / tf.math.log(tf.cast(2.0, dtype)))


def row_values(
    ranked: Ranked,
    metric: str,
    k: int,
    *,
    denominator: str = "k",
    gains: str = "binary",
) -> tf.Tensor:
    """Per-row value of `metric` at cut-off `k` from a `Ranked` batch (see DEFINITIONS).

    `ranked` may hold more than `k` positions (computed once for the largest
    k); only the first `k` are used.
    """
    hits = ranked.hits[:, :k]
    dtype = hits.dtype
    k_eff = tf.shape(hits)[1]
    n_rel = ranked.num_relevant
    kf = tf.cast(k, dtype)
    min_k_g = tf.minimum(kf, n_rel)
    total_hits = tf.reduce_sum(hits, axis=1)
    if metric == "precision":
        return total_hits / kf if denominator == "k" else tf.math.divide_no_nan(total_hits, min_k_g)
    if metric == "recall":
        denom = n_rel if denominator == "k" else min_k_g
        return tf.math.divide_no_nan(total_hits, denom)
    if metric == "hit_rate":
        return tf.cast(total_hits > 0, dtype)
    positions = tf.cast(tf.range(1, k_eff + 1), dtype)
    if metric == "mrr":
        return tf.reduce_max(tf.concat([hits / positions, tf.zeros_like(hits[:, :1])], 1), 1)
    if metric == "map":
        precision_at_i = tf.cumsum(hits, axis=1) / positions
        return tf.math.divide_no_nan(tf.reduce_sum(hits * precision_at_i, axis=1), min_k_g)
    if metric == "ndcg":
        disc = _discounts(k_eff, dtype)
        top_gains = _gain(ranked.gains[:, :k], gains) * hits
        dcg = tf.reduce_sum(top_gains * disc, axis=1)
        if gains == "binary":
            cum = tf.concat([[0.0], tf.cumsum(disc)], 0)
            idcg = tf.gather(cum, tf.cast(min_k_g, tf.int32))
        else:
            per_row = tf.RaggedTensor.from_value_rowids(
                _gain(ranked.relevant_gain_values, gains),
                ranked.relevant_gain_rows,
                nrows=tf.shape(hits, out_type=tf.int64)[0],
            )
            best = tf.sort(per_row.to_tensor(0.0), axis=1, direction="DESCENDING")
            width = tf.minimum(tf.shape(best)[1], k_eff)
            idcg = tf.reduce_sum(best[:, :width] * disc[:width], axis=1)
        return tf.math.divide_no_nan(dcg, idcg)
    raise ValueError(f"`metric` must be one of {list(METRICS)}, got {metric!r}.")


def row_weights(ranked: Ranked, empty_rows: str, sample_weight: Any = None) -> tf.Tensor:
    """Weight of each row in the mean: 0 for skipped rows, else its sample weight."""
    counted = (
        ranked.num_relevant > 0
        if empty_rows == "skip"
        else tf.ones_like(ranked.num_relevant, tf.bool)
    )
    weights = tf.cast(counted, ranked.hits.dtype)
    if sample_weight is not None:
        sw = tf.reshape(tf.cast(sample_weight, weights.dtype), [-1])
        weights = weights * sw
    return weights
