"""Top-k results as SciPy CSR: `TopKToCSR`, and the pieces the streaming loops share.

`CSRBuilder` collects ranked rows batch by batch, `exclude_csr` checks an
exclusion matrix, and `rows_sparse` turns its rows into a backend sparse
tensor for one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from keras import ops

from keras_sparse import _ops, _validation
from keras_sparse import backend as B
from keras_sparse.convert import (
    canonical_csr,
    csr_rows_to_sparse,
    csr_to_parts,
    is_sparse_tensor,
    to_scipy,
)

__all__ = ["TopKToCSR"]

VALUES = ("scores", "ranks")


def exclude_csr(exclude: Any, shape: tuple[int | None, ...]) -> Any:
    """`exclude` (SciPy, array or sparse tensor) as a canonical CSR checked against `shape`."""
    if exclude is None:
        return None
    if is_sparse_tensor(exclude):
        exclude = to_scipy(exclude)
    if not sp.issparse(exclude):
        exclude = sp.csr_matrix(np.asarray(exclude))
    csr = canonical_csr(exclude, "exclude")
    if csr.shape[0] != shape[0] or (shape[1] is not None and csr.shape[1] != shape[1]):
        raise ValueError(
            f"`exclude` has shape {csr.shape} but the scores have shape {tuple(shape)}; "
            "pass one row per scored row and one column per item."
        )
    return csr


def rows_sparse(csr: Any, rows: slice | np.ndarray) -> Any:
    """Rows of a CSR as a float32 backend sparse tensor (None for no CSR)."""
    if csr is None:
        return None
    return csr_rows_to_sparse(csr, rows, np.float32)


_MASKED_TOP_K: dict[int, Callable] = {}


def _masked_top_k(scores: Any, exclude: Any, k: int) -> tuple[Any, ...]:
    """Top k of masked scores, one compiled function per k."""
    if k not in _MASKED_TOP_K:
        _MASKED_TOP_K[k] = B.compile_fn(lambda s, e: _ops.top_k(_ops.mask_scores(s, e), k))
    return _MASKED_TOP_K[k](scores, exclude)


class CSRBuilder:
    """Collects ranked rows batch by batch and assembles one CSR (rank order kept).

    `values` is `"scores"` or `"ranks"`; with `min_score`, lower scores are dropped.
    """

    def __init__(self, k: int, values: str, min_score: float | None) -> None:
        self.k, self.values, self.min_score = k, values, min_score
        self.counts: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []
        self.data: list[np.ndarray] = []

    def add(self, top_values: np.ndarray, top_indices: np.ndarray, valid: np.ndarray) -> None:
        valid = valid.copy()
        if self.min_score is not None:
            valid &= top_values >= self.min_score
        self.counts.append(valid.sum(axis=1))
        self.indices.append(top_indices[valid].astype(np.int32, copy=False))
        if self.values == "ranks":
            ranks = np.broadcast_to(np.arange(1, top_values.shape[1] + 1), top_values.shape)
            self.data.append(ranks[valid].astype(np.float32))
        else:
            self.data.append(top_values[valid].astype(np.float32, copy=False))

    def build(self, shape: tuple[int, int]) -> sp.csr_matrix:
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        if self.counts:
            np.cumsum(np.concatenate(self.counts), out=indptr[1:])
        indices = np.concatenate(self.indices) if self.indices else np.zeros(0, np.int32)
        data = np.concatenate(self.data) if self.data else np.zeros(0, np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=shape)


class TopKToCSR:
    """Turn scores into a SciPy CSR of each row's top-k items, in rank order.

    Row u of the result holds the min(k, #candidates) best items, best first
    (column indices are in rank order, not sorted), with their scores as
    float32 data (`values="ranks"` stores 1..k instead). Items in `exclude` and
    NaN / -inf scores are never returned, so a row with fewer candidates holds
    fewer entries. Ties go to the lower item index.

    Args:
        k: Items per row, a positive integer (may exceed the number of items).
        values: `"scores"` (default) or `"ranks"`.
        min_score: Optional; entries with a score below it are dropped.

    Examples:
        >>> import numpy as np
        >>> from keras_sparse.topk import TopKToCSR
        >>> scores = np.array([[0.1, 0.9, 0.5], [0.3, np.nan, 0.2]], "float32")
        >>> csr = TopKToCSR(k=2)(scores)
        >>> csr.indices.tolist(), csr.indptr.tolist()
        ([1, 2, 0, 2], [0, 2, 4])
    """

    def __init__(self, k: int, values: str = "scores", min_score: float | None = None) -> None:
        self.k = _validation.check_int(k, "k")
        self.values = _validation.check_choice(values, "values", VALUES)
        self.min_score = _validation.check_float(min_score, "min_score", allow_none=True)

    def __call__(
        self,
        scores: Any,
        exclude: Any = None,
        num_items: int | None = None,
        batch_size: int = 4096,
    ) -> sp.csr_matrix:
        """Build the CSR.

        Args:
            scores: Dense `(rows, items)` scores (NumPy array or tensor), or a
                `(top_scores, top_indices)` pair as returned by
                `keras_sparse.layers.TopK`.
            exclude: Optional sparse `(rows, items)` matrix of items never to
                return (e.g. the training interactions).
            num_items: Number of columns of the result; needed only for a
                `(scores, indices)` pair without `exclude`.
            batch_size: Rows ranked at a time (bounds the temporary memory).

        Returns:
            A `scipy.sparse.csr_matrix` of shape `(rows, items)`.
        """
        batch_size = _validation.check_int(batch_size, "batch_size")
        builder = CSRBuilder(self.k, self.values, self.min_score)
        if isinstance(scores, (tuple, list)):
            return self._from_pair(scores, exclude, num_items, builder)
        scores = np.asarray(scores)
        _validation.check_ndim(scores.shape, "scores", 2)
        _validation.check_dtype(scores.dtype, "scores")
        excl = exclude_csr(exclude, scores.shape)
        for start in range(0, scores.shape[0], batch_size):
            stop = min(start + batch_size, scores.shape[0])
            vals, idx, valid = _masked_top_k(
                ops.convert_to_tensor(scores[start:stop]),
                rows_sparse(excl, slice(start, stop)),
                self.k,
            )
            builder.add(np.asarray(vals), np.asarray(idx), np.asarray(valid))
        return builder.build(scores.shape)

    def _from_pair(self, pair: Sequence, exclude: Any, num_items: int | None, builder) -> Any:
        if len(pair) != 2:
            raise ValueError("`scores` as a pair must be (top_scores, top_indices).")
        top_values, top_indices = (np.asarray(p) for p in pair)
        if top_values.shape != top_indices.shape or top_values.ndim != 2:
            raise ValueError(
                "`scores` pair must hold two 2-D arrays of the same shape, got "
                f"{top_values.shape} and {top_indices.shape}."
            )
        if num_items is None and exclude is None:
            raise ValueError(
                "`num_items` is needed with a (scores, indices) pair: the number of "
                "columns of the result cannot be inferred from the top-k alone."
            )
        rows = top_values.shape[0]
        num_items = exclude.shape[1] if num_items is None else num_items
        num_items = _validation.check_int(num_items, "num_items", minimum=0)
        excl = exclude_csr(exclude, (rows, num_items))
        top_values = top_values[:, : self.k].astype(np.float32)
        top_indices = top_indices[:, : self.k]
        valid = np.isfinite(top_values) | (top_values == np.inf)
        if excl is not None:
            keys = np.arange(rows)[:, None] * num_items + top_indices
            excluded_keys = csr_to_parts(excl)[0] @ np.array([num_items, 1])
            valid &= ~np.isin(keys, excluded_keys)
        # A pair may hold dropped items in the middle; keep rank order of the rest.
        builder.add(np.where(valid, top_values, 0), top_indices, valid)
        return builder.build((rows, num_items))

    def get_config(self) -> dict:
        """Return the constructor arguments."""
        return {"k": self.k, "values": self.values, "min_score": self.min_score}
