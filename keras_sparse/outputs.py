"""Sparse outputs: top-k CSR from scores, and streaming top-k prediction / evaluation.

Scoring every user against every item does not fit in memory at scale; these
functions run a model batch by batch, mask excluded items, take the top k in
a compiled step of the active backend and keep only k numbers per row.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from keras_sparse import _validation, ranking
from keras_sparse import backend as B
from keras_sparse import ops as sops
from keras_sparse.convert import (
    canonical_csr,
    csr_rows_to_sparse,
    csr_to_parts,
    is_sparse_tensor,
    to_scipy,
)
from keras_sparse.data import SparseDataset

__all__ = ["TopKToCSR", "evaluate_topk", "predict_topk", "threshold_to_csr"]

VALUES = ("scores", "ranks")


def _as_exclude_csr(exclude: Any, shape: tuple[int, int]) -> Any:
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


def _rows_sparse(csr: Any, start: int, stop: int) -> Any:
    if csr is None:
        return None
    return csr_rows_to_sparse(csr, slice(start, stop), np.float32)


_MASKED_TOP_K: dict[int, Callable] = {}


def _masked_top_k(scores: Any, exclude: Any, k: int) -> tuple[Any, ...]:
    """Top k of masked scores, one compiled function per k."""
    if k not in _MASKED_TOP_K:
        _MASKED_TOP_K[k] = B.compile_fn(lambda s, e: sops.top_k(sops.mask_scores(s, e), k))
    return _MASKED_TOP_K[k](scores, exclude)


# Above this many excluded items in one row, masking the scores beats a wider top-k.
MAX_EXTRA = 512


def _extra_for(excl: Any, start: int, stop: int) -> int | None:
    """Bound on the excluded items per row (rounded up to 8), or None to mask instead."""
    if excl is None:
        return None
    most = int(np.diff(excl.indptr[start : stop + 1]).max(initial=0))
    if most > MAX_EXTRA:
        return None
    return -(-most // 8) * 8  # few distinct values, so few retraces


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cached_step(model: Callable, key: tuple, build: Callable) -> Callable:
    """One compiled step per (model, key), dropped when the model is.

    The step holds only a weak reference to the model, so the cache never
    keeps a model alive.
    """
    try:
        steps = _STEPS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: compile for this call only
        steps = {}
    if key not in steps:
        steps[key] = build()
    return steps[key]


def _model_state(model: Callable) -> Any:
    """Current variable values of a Keras model (passed to the step), or None."""
    if not isinstance(model, keras.Layer):
        return None
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )


def _scorer(model: Callable) -> Callable:
    """`score(state, batch_x)`: the model's dense scores, reading weights from `state`.

    A Keras model is called statelessly so that a compiled step reads the
    weights it is given, never copies baked in when it was compiled.
    """
    if not isinstance(model, keras.Layer):
        return lambda state, batch_x: _check_scores(model(batch_x))
    ref = weakref.ref(model)
    kwargs = {"training": False} if getattr(model, "_call_has_training_arg", False) else {}

    def score(state: Any, batch_x: Any) -> Any:
        out, _ = ref().stateless_call(state[0], state[1], batch_x, **kwargs)
        return _check_scores(out)

    return score


def _check_scores(out: Any) -> Any:
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(
            "The model must return one dense (rows, items) score tensor; got "
            f"{type(out).__name__}. For a model ending in TopK, call it yourself and pass "
            "its (scores, indices) output to TopKToCSR."
        )
    return ops.convert_to_tensor(out)


def _predict_step(model: Callable, k: int, extra: int | None) -> Callable:
    def build() -> Callable:
        score = _scorer(model)

        def step(state: Any, batch_x: Any, exclude: Any) -> tuple[Any, ...]:
            scores = score(state, batch_x)
            n = ops.convert_to_tensor(ops.shape(scores)[1])
            if exclude is not None and extra is not None:
                return (*sops.top_k_excluding(scores, exclude, k, extra), n)
            return (*sops.top_k(sops.mask_scores(scores, exclude), k), n)

        return B.compile_fn(step)

    return _cached_step(model, ("predict", k, extra), build)


class _CSRBuilder:
    """Collects ranked rows batch by batch and assembles one CSR (rank order kept)."""

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
        >>> from keras_sparse.outputs import TopKToCSR
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
        builder = _CSRBuilder(self.k, self.values, self.min_score)
        if isinstance(scores, (tuple, list)):
            return self._from_pair(scores, exclude, num_items, builder)
        scores = np.asarray(scores)
        _validation.check_ndim(scores.shape, "scores", 2)
        _validation.check_dtype(scores.dtype, "scores")
        excl = _as_exclude_csr(exclude, scores.shape)
        for start in range(0, scores.shape[0], batch_size):
            stop = min(start + batch_size, scores.shape[0])
            vals, idx, valid = _masked_top_k(
                ops.convert_to_tensor(scores[start:stop]), _rows_sparse(excl, start, stop), self.k
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
        excl = _as_exclude_csr(exclude, (rows, num_items))
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


def threshold_to_csr(scores: Any, threshold: float) -> sp.csr_matrix:
    """Keep the entries with score > `threshold` as a canonical CSR.

    NaN scores are never kept. Works row block by row block, so the temporary
    boolean mask stays small.

    Args:
        scores: Dense `(rows, items)` scores (NumPy array or tensor).
        threshold: Entries strictly above it are kept.

    Returns:
        A canonical `scipy.sparse.csr_matrix` with float32 data.

    Examples:
        >>> import numpy as np
        >>> from keras_sparse.outputs import threshold_to_csr
        >>> threshold_to_csr(np.array([[0.2, 0.7], [0.9, 0.1]]), 0.5).toarray().tolist()
        [[0.0, 0.699999988079071], [0.8999999761581421, 0.0]]
    """
    threshold = _validation.check_float(threshold, "threshold")
    scores = np.asarray(scores)
    _validation.check_ndim(scores.shape, "scores", 2)
    _validation.check_dtype(scores.dtype, "scores")
    blocks = []
    for start in range(0, max(scores.shape[0], 1), 4096):
        block = scores[start : start + 4096]
        rows, cols = np.nonzero(block > threshold)
        blocks.append(
            sp.csr_matrix(
                (block[rows, cols].astype(np.float32), (rows, cols)),
                shape=(block.shape[0], scores.shape[1]),
            )
        )
    return sp.csr_matrix(sp.vstack(blocks, format="csr"))


def _batches(x: Any, batch_size: int | None) -> tuple[SparseDataset, int]:
    if isinstance(x, SparseDataset):
        if x.shuffle:
            raise ValueError(
                "`x` is a SparseDataset with shuffle=True; rows must stay in order to "
                "line up with `exclude` and the result. Pass shuffle=False."
            )
        return x, x.num_samples
    ds = SparseDataset(x, batch_size=1024 if batch_size is None else batch_size)
    return ds, ds.num_samples


def _inputs_of(batch: tuple) -> Any:
    """The model inputs of a `SparseDataset` batch (targets, if any, are ignored)."""
    return batch[0]


def _progbar(total: int, verbose: Any) -> keras.utils.Progbar | None:
    verbose = 1 if verbose == "auto" else verbose
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2, got {verbose!r}.")
    return keras.utils.Progbar(total, verbose=int(verbose)) if verbose else None


def predict_topk(
    model: Callable,
    x: Any,
    k: int,
    exclude: Any = None,
    batch_size: int | None = None,
    verbose: Any = "auto",
    values: str = "scores",
    min_score: float | None = None,
) -> sp.csr_matrix:
    """Run `model` batch by batch and return each row's top-k items as a CSR.

    Never holds more than one batch of dense scores: each batch is scored,
    masked with `exclude`, reduced to its top k in a compiled step and appended to
    the result, so memory is O(batch x items + rows x k).

    Args:
        model: A Keras model (or any callable) mapping a batch of `x` to dense
            `(rows, items)` scores.
        x: Model inputs: anything `SparseDataset` accepts (SciPy, NumPy,
            tuples/dicts of those), or an unshuffled `SparseDataset`.
        k: Items per row.
        exclude: Optional sparse `(rows, items)` matrix of items never to
            return (e.g. each user's training items).
        batch_size: Rows per batch (default 1024; ignored for a SparseDataset).
        verbose: `"auto"`/1 shows a Keras progress bar, 0 is silent.
        values: `"scores"` or `"ranks"` (see `TopKToCSR`).
        min_score: Optional; entries below it are dropped.

    Returns:
        A `scipy.sparse.csr_matrix` (rows, items) with column indices in rank order.

    Examples:
        >>> import keras, numpy as np
        >>> import keras_sparse as ks
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
        >>> recs = ks.predict_topk(model, np.eye(3, dtype="float32"), k=2, verbose=0)
        >>> recs.shape, recs.nnz
        ((3, 5), 6)
    """
    builder = _CSRBuilder(
        _validation.check_int(k, "k"),
        _validation.check_choice(values, "values", VALUES),
        _validation.check_float(min_score, "min_score", allow_none=True),
    )
    ds, rows = _batches(x, batch_size)
    bar = _progbar(len(ds), verbose)
    excl = None if exclude is None else _as_exclude_csr(exclude, (rows, None))
    num_items = None
    state = _model_state(model)
    for i in range(len(ds)):
        batch_x = _inputs_of(ds[i])
        start = i * ds.batch_size
        stop = min(start + ds.batch_size, rows)
        step = _predict_step(model, k, _extra_for(excl, start, stop))
        vals, idx, valid, n = step(state, batch_x, _rows_sparse(excl, start, stop))
        if num_items is None:
            num_items = int(n)
            if excl is not None:
                _as_exclude_csr(excl, (rows, num_items))
        builder.add(np.asarray(vals), np.asarray(idx), np.asarray(valid))
        if bar is not None:
            bar.update(i + 1)
    return builder.build((rows, num_items))


def _evaluate_step(
    model: Callable, ks: tuple, metrics: tuple, options: tuple, extra: int | None
) -> Callable:
    def build() -> Callable:
        opts = dict(options)
        score = _scorer(model)

        def step(state: Any, batch_x: Any, y_true: Any, exclude: Any) -> tuple[Any, Any]:
            scores = score(state, batch_x)
            ranked = ranking.rank(
                y_true,
                scores,
                max(ks),
                opts["relevance_threshold"],
                exclude,
                extra,
                where="evaluate_top_k",
            )
            weights = ranking.row_weights(ranked, opts["empty_rows"])
            sums = []
            for metric in metrics:
                for k in ks:
                    values = ranking.row_values(
                        ranked, metric, k, denominator=opts["denominator"], gains=opts["gains"]
                    )
                    sums.append(ops.sum(values * weights))
            n = ops.convert_to_tensor(ops.shape(scores)[1])
            return ops.stack(sums + [ops.sum(weights)]), n

        return B.compile_fn(step)

    return _cached_step(model, ("evaluate", ks, metrics, options, extra), build)


def evaluate_topk(
    model: Callable,
    x: Any,
    y_true: Any,
    k: int | Iterable[int] = (10, 20),
    exclude: Any = None,
    metrics: Iterable[str] = ("precision", "recall", "ndcg", "map"),
    batch_size: int | None = None,
    verbose: Any = "auto",
    relevance_threshold: float = 0.0,
    denominator: str = "k",
    gains: str = "binary",
    empty_rows: str = "skip",
) -> dict[str, float]:
    """Stream `model` over `x` and return every ranking metric at every k.

    Same definitions and code as the metric classes of `keras_sparse.metrics`
    (see DEFINITIONS): items in `exclude` are never ranked and are removed
    from the relevant set; rows without relevant items are skipped by default.

    Args:
        model: A Keras model (or any callable) mapping a batch of `x` to dense
            `(rows, items)` scores.
        x: Model inputs (anything `SparseDataset` accepts, or an unshuffled
            `SparseDataset`).
        y_true: Sparse `(rows, items)` relevance (SciPy matrix of any format).
        k: One cut-off or several, e.g. `(10, 20)`.
        exclude: Optional sparse `(rows, items)` items to exclude.
        metrics: Names among `precision`, `recall`, `ndcg`, `map`,
            `hit_rate`, `mrr`.
        batch_size: Rows per batch (default 1024).
        verbose: `"auto"`/1 shows a progress bar, 0 is silent.
        relevance_threshold: See the metric classes.
        denominator: `"k"` or `"min"` for precision and recall.
        gains: `"binary"`, `"linear"` or `"exponential"` for NDCG.
        empty_rows: `"skip"` or `"zero"`.

    Returns:
        A dict such as `{"precision@10": 0.12, "ndcg@20": 0.3, ...}`.

    Examples:
        >>> import keras, numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        >>> result = ks.evaluate_topk(model, np.eye(4, dtype="float32"), sp.eye(4), k=2,
        ...                           metrics=["recall"], verbose=0)
        >>> sorted(result)
        ['recall@2']
    """
    ks_ = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks_:
        raise ValueError("`k` is empty; pass a cut-off such as k=10 or k=(10, 20).")
    ks_ = tuple(_validation.check_int(v, "k") for v in ks_)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in metrics:
        _validation.check_choice(name, "metrics", ranking.METRICS)
    options = (
        (
            "relevance_threshold",
            _validation.check_float(relevance_threshold, "relevance_threshold"),
        ),
        ("denominator", _validation.check_choice(denominator, "denominator", ranking.DENOMINATORS)),
        ("gains", _validation.check_choice(gains, "gains", ranking.GAINS)),
        ("empty_rows", _validation.check_choice(empty_rows, "empty_rows", ranking.EMPTY_ROWS)),
    )
    ds, rows = _batches(x, batch_size)
    if not sp.issparse(y_true) and not isinstance(y_true, np.ndarray):
        raise TypeError(f"`y_true` must be a SciPy sparse matrix, got {type(y_true).__name__}.")
    y_csr = canonical_csr(sp.csr_matrix(y_true) if not sp.issparse(y_true) else y_true, "y_true")
    _validation.check_same_rows({"x": rows, "y_true": y_csr.shape[0]})
    excl = _as_exclude_csr(exclude, y_csr.shape)
    bar = _progbar(len(ds), verbose)
    totals = None
    state = _model_state(model)
    for i in range(len(ds)):
        batch_x = _inputs_of(ds[i])
        start = i * ds.batch_size
        stop = min(start + ds.batch_size, rows)
        step = _evaluate_step(model, ks_, metrics, options, _extra_for(excl, start, stop))
        sums, n = step(
            state, batch_x, _rows_sparse(y_csr, start, stop), _rows_sparse(excl, start, stop)
        )
        if int(n) != y_csr.shape[1]:
            raise ValueError(
                f"The model scores {int(n)} items but `y_true` has {y_csr.shape[1]} columns."
            )
        sums = np.asarray(sums).astype(np.float64)
        totals = sums if totals is None else totals + sums
        if bar is not None:
            bar.update(i + 1)
    count = totals[-1]
    names = [f"{m}@{kk}" for m in metrics for kk in ks_]
    return {name: float(total / count) if count else 0.0 for name, total in zip(names, totals)}
