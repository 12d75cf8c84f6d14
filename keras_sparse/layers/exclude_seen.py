"""`ExcludeSeen`: remove a row's already-seen items from its scores at inference."""

from __future__ import annotations

from typing import Any

from keras_sparse import _ops
from keras_sparse._registry import register
from keras_sparse.layers._base import SparseLayer


@register
class ExcludeSeen(SparseLayer):
    """Set the scores of already-seen items to -inf at inference, so they are never ranked.

    Called on `[scores, seen]`: `scores` is the dense `(rows, items)` output of
    a recommender and `seen` the items each row already has (for an
    autoencoder recommender, the input row itself), sparse or dense. At
    inference (`training=False`: `predict`, `evaluate`, and the validation
    pass of `fit`) the stored entries of `seen` get score -inf; in training the
    scores pass through unchanged, so the loss sees the raw scores.

    The ranking metrics of `keras_sparse.metrics` and `TopKToCSR` never rank a
    -inf score and drop such items from the relevant set, which is exactly the
    exclusion of DEFINITIONS: validation metrics during `fit` then measure
    held-out items only. Losses evaluated at a seen item would become infinite;
    keep training items out of the validation targets (the usual split).

    Args:
        **kwargs: Base `keras.layers.Layer` arguments.

    Examples:
        >>> import keras
        >>> from keras_sparse.layers import ExcludeSeen, SparseDenseInput
        >>> items = keras.Input((100,), sparse=True)
        >>> scores = keras.layers.Dense(100)(SparseDenseInput(16, "relu")(items))
        >>> model = keras.Model(items, ExcludeSeen()([scores, items]))
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"ExcludeSeen must be called on [scores, seen], got {type(inputs).__name__}."
            )
        scores, seen = inputs
        if training:
            return scores
        return _ops.mask_scores(scores, seen)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape[0])
