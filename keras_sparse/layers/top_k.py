"""`TopK`: the top-k scores and item indices inside a model."""

from __future__ import annotations

from typing import Any

import keras

from keras_sparse import _ops, _validation
from keras_sparse._registry import register
from keras_sparse.layers._base import SparseLayer


@register
class TopK(SparseLayer):
    """Return `(scores, indices)` of the k best items per row, best first.

    Put it at the end of a recommender so a served model sends k numbers per
    row instead of one per item. Ties go to the lower item index; NaN scores
    are treated as -inf (ranked last). With fewer than k items the output has
    as many columns as there are items. Feed the pair to
    `keras_sparse.topk.TopKToCSR` (which drops -inf entries, e.g. items
    masked by `ExcludeSeen`) to get a sparse matrix.

    Args:
        k: Items per row, a positive integer.
        **kwargs: Base `keras.layers.Layer` arguments.

    Examples:
        >>> import keras
        >>> from keras_sparse.layers import TopK
        >>> scores = keras.Input((1000,))
        >>> top_scores, top_items = TopK(10)(scores)
        >>> tuple(top_items.shape)
        (None, 10)
    """

    def __init__(self, k: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.k = _validation.check_int(k, "k")

    def call(self, scores: Any) -> tuple[Any, Any]:
        values, indices, _ = _ops.top_k(scores, self.k)
        return values, indices

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        n = input_shape[-1]
        width = self.k if n is None else min(self.k, n)
        shape = (*tuple(input_shape)[:-1], width)
        return shape, shape

    def compute_output_spec(self, scores: Any) -> tuple:
        shape, _ = self.compute_output_shape(scores.shape)
        return (
            keras.KerasTensor(shape, dtype=self.compute_dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}
