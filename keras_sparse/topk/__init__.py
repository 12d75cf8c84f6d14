"""Top-k, in one place: select, stream, and turn into SciPy CSR.

- `top_k(scores, k, exclude=None)`: the k best items per row of a score
  block, with excluded items and NaN / -inf scores never returned;
- `predict_top_k` / `evaluate_top_k`: run a model batch by batch and keep only
  k items per row (or the ranking metric sums), never the full score matrix;
- `TopKToCSR`: dense scores or a top-k pair -> a CSR in rank order;
- `TopK` (also `keras_sparse.layers.TopK`): the same selection inside a model.

Ties always go to the lower item index (see `DEFINITIONS.md`).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_sparse import _ops, _validation
from keras_sparse.layers.top_k import TopK
from keras_sparse.topk._csr import TopKToCSR
from keras_sparse.topk._streaming import evaluate_top_k, predict_top_k

__all__ = ["TopK", "TopKToCSR", "evaluate_top_k", "predict_top_k", "top_k"]


def top_k(scores: Any, k: int, exclude: Any = None) -> tuple[Any, Any, Any]:
    """The k best items of each row of `scores`, best first.

    NaN and -inf scores are never candidates, and neither are the stored
    entries of `exclude`; a row with fewer than k candidates is padded with
    positions whose `valid` is False. Ties go to the lower item index.

    Args:
        scores: Dense `(rows, items)` scores: a NumPy array or a tensor.
        k: Items per row, a positive integer (at most `items` are returned).
        exclude: Optional sparse tensor `(rows, items)` of items to skip, e.g.
            `keras_sparse.to_sparse(seen)`.

    Returns:
        `(values, indices, valid)`, each `(rows, min(k, items))`.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse as ks
        >>> values, indices, valid = ks.topk.top_k(np.array([[0.1, 0.9, 0.5]]), 2)
        >>> np.asarray(indices).tolist()
        [[1, 2]]
    """
    k = _validation.check_int(k, "k")
    scores = ops.convert_to_tensor(scores)
    _validation.check_ndim(tuple(scores.shape), "scores", 2)
    if exclude is None:
        return _ops.top_k(scores, k)
    return _ops.top_k(_ops.mask_scores(scores, exclude), k)
