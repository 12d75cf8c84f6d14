"""Ranking metrics @k and a masked RMSE for sparse (or dense) targets.

State is a weighted total and a weighted count, so the value after an epoch
equals the value over all rows at once, and states reduce across replicas.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_sparse import _entries, _ops, _validation, ranking
from keras_sparse import backend as B
from keras_sparse._docstrings import format_docstring
from keras_sparse._registry import register

__all__ = [
    "HitRateAtK",
    "MAPAtK",
    "MRRAtK",
    "NDCGAtK",
    "PrecisionAtK",
    "RecallAtK",
    "SparseRootMeanSquaredError",
]


_CUTOFF_ARGS = """
k: Cut-off, a positive integer (may exceed the number of items).
relevance_threshold: An entry of `y_true` is relevant when its value
    exceeds this (default 0: every stored positive entry).
"""

_DENOMINATOR_ARG = """
denominator: `"k"` (default) or `"min"`: divide by min(k, |G(u)|).
"""

_STATE_ARGS = """
empty_rows: `"skip"` (default) leaves rows without relevant items out
    of the mean; `"zero"` counts them as 0.
name: Metric name, default `"{metric}_at_{{k}}"`.
dtype: Dtype of the state.
"""

_RANKING = """
Scores that are NaN or -inf are never ranked, and such items are removed
from the relevant set too (that is how `ExcludeSeen` excludes training
items). Ties go to the lower item index. `sample_weight` is per row.
"""


def _ranking_docstring(metric: str) -> Any:
    """The shared paragraphs of a ranking metric's docstring (`_docstrings.format_docstring`)."""
    return format_docstring(
        cutoff_args=_CUTOFF_ARGS,
        denominator_arg=_DENOMINATOR_ARG,
        state_args=_STATE_ARGS.format(metric=metric),
        ranking=_RANKING,
    )


class _TotalCountMetric(keras.metrics.Metric):
    """State of every metric here: a weighted total and a weighted count."""

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype or "float32")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _add(self, total: Any, count: Any) -> None:
        self.total.assign_add(ops.cast(total, self.dtype))
        self.count.assign_add(ops.cast(count, self.dtype))

    def result(self) -> Any:
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)


class _RankingMetric(_TotalCountMetric):
    """Shared state and update of the @k metrics."""

    metric: str = ""

    def __init__(
        self,
        k: int = 10,
        relevance_threshold: float = 0.0,
        empty_rows: str = "skip",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        k = _validation.check_int(k, "k")
        super().__init__(name=name or f"{self.metric}_at_{k}", dtype=dtype)
        self.k = k
        self.relevance_threshold = _validation.check_float(
            relevance_threshold, "relevance_threshold"
        )
        self.empty_rows = _validation.check_choice(empty_rows, "empty_rows", ranking.EMPTY_ROWS)

    def _options(self) -> dict:
        return {}

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate the per-row values of one batch."""
        scores = ops.cast(y_pred, self.dtype)
        _validation.check_row_weights(sample_weight, ops.shape(scores), f"metric {self.name!r}")
        ranked = ranking.rank(
            y_true, scores, self.k, self.relevance_threshold, where=f"metric {self.name!r}"
        )
        values = ranking.row_values(ranked, self.metric, self.k, **self._options())
        weights = ranking.row_weights(ranked, self.empty_rows, sample_weight)
        self._add(ops.sum(values * weights), ops.sum(weights))

    def get_config(self) -> dict:
        return {
            "k": self.k,
            "relevance_threshold": self.relevance_threshold,
            "empty_rows": self.empty_rows,
            "name": self.name,
            "dtype": self.dtype,
            **self._options(),
        }


class _DenominatorMetric(_RankingMetric):
    """A ranking metric with the `denominator` option (precision, recall)."""

    def __init__(
        self,
        k: int = 10,
        relevance_threshold: float = 0.0,
        denominator: str = "k",
        empty_rows: str = "skip",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(k, relevance_threshold, empty_rows, name, dtype)
        self.denominator = _validation.check_choice(
            denominator, "denominator", ranking.DENOMINATORS
        )

    def _options(self) -> dict:
        return {"denominator": self.denominator}


@register
@_ranking_docstring("precision")
class PrecisionAtK(_DenominatorMetric):
    """Precision@k: relevant items among the top k, divided by k.

    Args:
        {{cutoff_args}}
        {{denominator_arg}}
        {{state_args}}

    {{ranking}}

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.PrecisionAtK(k=2)
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[0, 1.0, 1.0]])), [[0.9, 0.8, 0.1]])
        >>> float(m.result())
        0.5
    """

    metric = "precision"


@register
@_ranking_docstring("recall")
class RecallAtK(_DenominatorMetric):
    """Recall@k: relevant items among the top k, divided by |G(u)|.

    Args:
        {{cutoff_args}}
        {{denominator_arg}}
        {{state_args}}

    {{ranking}}
    With `denominator="min"` it is Mult-VAE's Recall@k.

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.RecallAtK(k=1)
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[0, 1.0, 1.0]])), [[0.1, 0.8, 0.2]])
        >>> float(m.result())
        0.5
    """

    metric = "recall"


@register
@_ranking_docstring("ndcg")
class NDCGAtK(_RankingMetric):
    """NDCG@k: DCG of the top k over the ideal DCG of G(u) truncated at k.

    Args:
        {{cutoff_args}}
        gains: `"binary"` (default, gain 1), `"linear"` (gain = value of
            `y_true`) or `"exponential"` (2**value - 1).
        {{state_args}}

    {{ranking}}
    The defaults reproduce `implicit` 0.7's `ndcg_at_k`.

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.NDCGAtK(k=2)
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[1.0, 0, 0]])), [[0.9, 0.8, 0.1]])
        >>> float(m.result())
        1.0
    """

    metric = "ndcg"

    def __init__(
        self,
        k: int = 10,
        relevance_threshold: float = 0.0,
        gains: str = "binary",
        empty_rows: str = "skip",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(k, relevance_threshold, empty_rows, name, dtype)
        self.gains = _validation.check_choice(gains, "gains", ranking.GAINS)

    def _options(self) -> dict:
        return {"gains": self.gains}


@register
@_ranking_docstring("map")
class MAPAtK(_RankingMetric):
    """MAP@k: sum over relevant ranks i of precision@i, over min(k, |G(u)|).

    Args:
        {{cutoff_args}}
        {{state_args}}

    {{ranking}}
    The defaults reproduce `implicit` 0.7's `mean_average_precision_at_k`.

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.MAPAtK(k=2)
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[0, 1.0, 0]])), [[0.9, 0.8, 0.1]])
        >>> float(m.result())
        0.5
    """

    metric = "map"


@register
@_ranking_docstring("hit_rate")
class HitRateAtK(_RankingMetric):
    """Hit rate@k: 1 if any of the top k is relevant, else 0.

    Args:
        {{cutoff_args}}
        {{state_args}}

    {{ranking}}

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.HitRateAtK(k=1)
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[0, 1.0, 0]])), [[0.9, 0.8, 0.1]])
        >>> float(m.result())
        0.0
    """

    metric = "hit_rate"


@register
@_ranking_docstring("mrr")
class MRRAtK(_RankingMetric):
    """MRR@k: 1 / rank of the first relevant item in the top k (0 if none).

    Args:
        {{cutoff_args}}
        {{state_args}}

    {{ranking}}

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.MRRAtK(k=3)
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[0, 1.0, 0]])), [[0.9, 0.8, 0.1]])
        >>> float(m.result())
        0.5
    """

    metric = "mrr"


@register
class SparseRootMeanSquaredError(_TotalCountMetric):
    """RMSE over the observed entries of `y_true`, accumulated across batches.

    `sqrt(sum of squared errors over all observed entries seen / number of
    observed entries seen)` - not a mean of batch values. With a per-row
    `sample_weight`, each entry counts with its row's weight.

    Args:
        name: Metric name.
        dtype: Dtype of the state.

    Examples:
        >>> import keras_sparse as ks, scipy.sparse as sp
        >>> m = ks.metrics.SparseRootMeanSquaredError()
        >>> m.update_state(ks.to_sparse(sp.csr_matrix([[3.0, 0.0]])), [[1.0, 7.0]])
        >>> float(m.result())
        2.0
    """

    def __init__(self, name: str = "sparse_rmse", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate squared errors and counts of the observed entries of a batch."""
        where = f"metric {self.name!r}"
        if B.is_sparse(y_pred):  # SparseDenseOutput in fit: predictions at the target's entries
            _validation.check_row_weights(sample_weight, B.sparse_shape(y_pred), where)
            e = _entries.scored_entries(y_true, ops.cast(y_pred, self.dtype), where)
            count = e.num_target
            indices, weights = e.indices[:count], e.weights[:count]
            squared = ops.square(e.predictions[:count] - e.targets[:count])
            self._add_entries(squared, indices, weights, sample_weight)
            return
        y_pred = ops.convert_to_tensor(y_pred)
        _validation.check_row_weights(sample_weight, ops.shape(y_pred), where)
        indices, values, weights, y_pred = _entries.observed_entries(
            y_true, ops.cast(y_pred, self.dtype), where
        )
        if indices is None:  # dense target: only its non-zero entries count
            squared = ops.square(ops.where(ops.greater(weights, 0), y_pred - values, 0.0))
            if sample_weight is not None:
                row_w = ops.reshape(ops.cast(sample_weight, self.dtype), [-1, 1])
                weights = weights * row_w
            self._add(ops.sum(squared * weights), ops.sum(weights))
        else:
            squared = ops.square(_ops.gather_entries(y_pred, indices) - values)
            self._add_entries(squared, indices, weights, sample_weight)

    def _add_entries(self, squared: Any, indices: Any, weights: Any, sample_weight: Any) -> None:
        """Add per-entry squared errors, weighted by their row's sample weight."""
        if sample_weight is not None:
            # One extra 0 weight for padding slots, whose row is out of range (== rows).
            row_w = ops.reshape(ops.cast(sample_weight, self.dtype), [-1])
            row_w = ops.concatenate([row_w, ops.zeros((1,), self.dtype)], axis=0)
            last = ops.shape(row_w)[0] - 1
            weights = weights * ops.take(row_w, ops.clip(indices[:, 0], 0, last))
        self._add(ops.sum(squared * weights), ops.sum(weights))

    def result(self) -> Any:
        return ops.sqrt(super().result())

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}
