"""`SparseDataset`: feed SciPy sparse matrices to `fit`, `evaluate` and `predict`.

Batches are cut from CSR rows on demand (and made canonical as they are cut),
so the extra memory during training is a batch, not a copy of the data set.
"""

from __future__ import annotations

import copy
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp

from keras_sparse import _validation
from keras_sparse.convert import (
    as_csr,
    canonical_csr,
    csr_row_ids,
    csr_rows_to_sparse,
    is_sparse_tensor,
    to_scipy,
)

__all__ = ["SparseDataset", "mark_excluded"]


def mark_excluded(y: Any, exclude: Any) -> sp.csr_matrix:
    """Targets whose excluded items are marked, for ranking metrics during `fit`/`evaluate`.

    The result holds the stored entries of `y` and, at every stored entry of
    `exclude`, the value -inf. Every keras_sparse loss and metric reads such a
    mark as "this item is excluded": losses and RMSE do not observe it, and
    ranking metrics never rank it and drop it from the relevant set, exactly
    as `evaluate_top_k(..., exclude=exclude)` does. Typical use: a validation
    target whose metrics must skip each user's training items.

    Args:
        y: `(rows, items)` targets: SciPy sparse (any format) or a dense array
            (its non-zero entries are the stored ones).
        exclude: `(rows, items)` SciPy sparse matrix or 0/1 array of the same
            shape; its stored (non-zero, for an array) entries are excluded,
            whatever their value. An item both in `y` and in `exclude` is excluded.

    Returns:
        A canonical `scipy.sparse.csr_matrix` of floats (floatx when `y` holds integers).

    Raises:
        ValueError: `exclude` has another shape than `y`, or either is not 2-D.
        TypeError: `y` or `exclude` is not a matrix of numbers.

    Examples:
        >>> import scipy.sparse as sp
        >>> from keras_sparse.data import mark_excluded
        >>> y = sp.csr_matrix([[0, 1.0, 0, 2.0]])
        >>> mark_excluded(y, sp.csr_matrix([[1, 0, 0, 1]])).toarray().tolist()
        [[-inf, 1.0, 0.0, -inf]]
    """
    y_csr = as_csr(y, "y")
    ex = as_csr(exclude, "exclude")
    if ex.shape != y_csr.shape:
        raise ValueError(
            f"`exclude` has shape {ex.shape} but `y` has shape {y_csr.shape}; pass one row of "
            "excluded items per target row, over the same items."
        )
    n = y_csr.shape[1]
    y_rows = csr_row_ids(y_csr.indptr)
    ex_rows = csr_row_ids(ex.indptr)
    y_keys = y_rows * n + y_csr.indices
    ex_keys = ex_rows * n + ex.indices
    keep = ~np.isin(y_keys, ex_keys, assume_unique=True)
    dtype = y_csr.dtype if y_csr.dtype.kind == "f" else np.dtype(keras.backend.floatx())
    rows = np.concatenate([y_rows[keep], ex_rows])
    cols = np.concatenate([y_csr.indices[keep], ex.indices])
    vals = np.concatenate([y_csr.data[keep].astype(dtype), np.full(ex.nnz, -np.inf, dtype=dtype)])
    out = sp.csr_matrix((vals, (rows, cols)), shape=y_csr.shape)
    out.sum_duplicates()
    return out


def _prepare_leaf(value: Any, name: str) -> Any:
    """Turn one user array into the form batches are cut from."""
    if sp.issparse(value):
        if value.format == "csr" and value.ndim == 2:  # no copy: batches are made canonical
            _validation.check_dtype(value.dtype, name)
            return value
        return canonical_csr(value, name)
    if is_sparse_tensor(value):
        _validation.check_ndim(tuple(value.shape), name, 2)
        return to_scipy(value)
    _validation.check_sparse_or_array(value, name)
    arr = np.asarray(value)
    _validation.check_dtype(arr.dtype, name)
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must have one row per sample, got a scalar.")
    return arr


def _prepare(value: Any, name: str) -> Any:
    """Prepare a leaf, a tuple/list of leaves or a dict of leaves."""
    if sp.issparse(value):  # before the dict test: dok_matrix is a dict subclass
        return _prepare_leaf(value, name)
    if isinstance(value, dict):
        return {k: _prepare_leaf(v, f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (tuple, list)) and not (
        value and np.isscalar(value[0])  # a plain list of numbers is one array
    ):
        return tuple(_prepare_leaf(v, f"{name}[{i}]") for i, v in enumerate(value))
    return _prepare_leaf(value, name)


def _leaves(value: Any, name: str) -> dict[str, Any]:
    if sp.issparse(value):
        return {name: value}
    if isinstance(value, dict):
        return {f"{name}[{k!r}]": v for k, v in value.items()}
    if isinstance(value, tuple):
        return {f"{name}[{i}]": v for i, v in enumerate(value)}
    return {name: value}


def _floatx_if_float(dtype: np.dtype) -> np.dtype:
    return np.dtype(keras.backend.floatx()) if dtype.kind == "f" else dtype


def _batch_leaf(value: Any, rows: slice | np.ndarray) -> Any:
    if sp.issparse(value):
        return csr_rows_to_sparse(value, rows, keras.backend.floatx())
    part = value[rows]
    return keras.ops.convert_to_tensor(part.astype(_floatx_if_float(part.dtype), copy=False))


def _batch(value: Any, rows: slice | np.ndarray) -> Any:
    if sp.issparse(value):
        return _batch_leaf(value, rows)
    if isinstance(value, dict):
        return {k: _batch_leaf(v, rows) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_batch_leaf(v, rows) for v in value)
    return _batch_leaf(value, rows)


class SparseDataset(keras.utils.PyDataset):
    """Batches of SciPy sparse and NumPy data for `fit`, `evaluate` and `predict`.

    Sparse parts arrive in the model as the backend's canonical sparse tensor
    (`tf.SparseTensor`; on JAX a `BCOO` whose entry count is padded to a power
    of two, so that an epoch compiles only a few step functions) with
    `keras.backend.floatx()` values; dense parts as tensors (floating dtypes
    cast to floatx, integer labels kept). Every SciPy format is accepted (CSC,
    unsorted or duplicate COO, LIL, DOK, BSR, DIA, `*_array`). A CSR matrix is
    kept as given, with no copy, and each batch is made canonical (duplicates
    summed, column indices sorted) as it is cut; any other format is converted
    once to canonical CSR. So the extra memory while training is about one
    batch.
    The last partial batch is kept. NaN values are passed through unchanged.
    On TensorFlow, `fit` / `evaluate` / `predict` cut the batches inside a
    `tf.data` pipeline over a copy of the arrays (no Python per batch), unless
    the data set has `workers` or runs under a `tf.distribute` strategy; the
    batches are exactly `ds[i]`. That copy (1.15x the CSR at the peak of one
    `fit`, canonical or not, in `benchmarks/bench_feed_held.py`) is freed when
    `fit` returns, as Keras drops its data adapter; the process keeps the
    freed pages for its next allocations, which the next `fit` reuses (see
    docs/benchmarks.md, "What one `fit` holds").

    Args:
        x: Inputs: a SciPy sparse matrix/array, a NumPy array, a
            backend sparse tensor, or a tuple/list/dict of those (multi-input).
        y: Targets, of the same kinds as `x`, or `None` (prediction).
        sample_weight: Optional 1-D array of per-row weights.
        batch_size: Rows per batch, a positive integer.
        shuffle: Whether to visit rows in a new random order every epoch.
        seed: Seed for the shuffling order; the same seed gives the same
            sequence of epochs.
        exclude: Optional `(rows, items)` sparse matrix of items to exclude from
            the ranking metrics of each row (for example a validation set's
            training items); `y` must then be a single target. Its entries
            are marked in `y` with `mark_excluded`, so metrics during `fit`
            and `evaluate` match `evaluate_top_k(..., exclude=exclude)`.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size`, passed to
            `keras.utils.PyDataset`.

    Examples:
        >>> import keras, numpy as np, scipy.sparse as sp
        >>> from keras_sparse.data import SparseDataset
        >>> x = sp.random(100, 50, density=0.05, format="csr", random_state=0)
        >>> ds = SparseDataset(x, np.ones((100, 1)), batch_size=32)
        >>> model = keras.Sequential([keras.Input((50,), sparse=True), keras.layers.Dense(1)])
        >>> model.compile(loss="mse")
        >>> history = model.fit(ds, epochs=1, verbose=0)
        >>> len(ds)
        4

    """

    def __init__(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int | None = None,
        exclude: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_size = _validation.check_int(batch_size, "batch_size")
        self.shuffle = _validation.check_bool(shuffle, "shuffle")
        self.seed = _validation.check_int(seed, "seed", minimum=0, allow_none=True)
        if x is None:
            raise ValueError("`x` is None; pass the model inputs.")
        self._x = _prepare(x, "x")
        if exclude is not None:
            if y is None or isinstance(y, (dict, tuple, list)) and not sp.issparse(y):
                raise ValueError(
                    "`exclude` needs `y` to be one target matrix, got "
                    f"{type(y).__name__}. For several outputs, mark each target with "
                    "`keras_sparse.data.mark_excluded(y, exclude)` instead."
                )
            y = mark_excluded(y, exclude)
        self._y = None if y is None else _prepare(y, "y")
        self._sample_weight = None
        parts = _leaves(self._x, "x")
        if self._y is not None:
            parts.update(_leaves(self._y, "y"))
        if sample_weight is not None:
            if y is None:
                raise ValueError("`sample_weight` was given without `y`; weights apply to targets.")
            weights = _prepare_leaf(sample_weight, "sample_weight")
            if sp.issparse(weights) or weights.ndim != 1:
                raise ValueError(
                    "`sample_weight` must be a 1-D array with one weight per row, got "
                    f"shape {weights.shape}."
                )
            self._sample_weight = weights
            parts["sample_weight"] = weights
        self.num_samples = _validation.check_same_rows({k: v.shape[0] for k, v in parts.items()})
        if self.num_samples == 0:
            raise ValueError("`x` has 0 rows; SparseDataset needs at least one row.")
        self._rng = np.random.default_rng(self.seed)
        self._order = self._rng.permutation(self.num_samples) if self.shuffle else None
        self._rows: np.ndarray | None = None  # the rows of a shard, None for all rows
        self._length: int | None = None  # a shard's batch count, None for the natural one

    @property
    def sharded(self) -> bool:
        """Whether this data set is a shard of another (made by `shard`)."""
        return self._rows is not None

    def __len__(self) -> int:
        """Number of batches per epoch (the last one may be partial)."""
        if self._length is not None:
            return self._length
        return -(-self.num_samples // self.batch_size)

    def shard(self, num_shards: int, index: int, *, batch_size: int | None = None) -> SparseDataset:
        """Return shard `index` of `num_shards`: every `num_shards`-th row from `index`.

        All shards of one data set have the same number of batches, so workers
        that each read one shard finish an epoch together: a shorter shard ends
        with a smaller (possibly empty) batch. The shard shuffles, if this data
        set does, with its own seed derived from `seed` and `index`. No data is
        copied.

        Args:
            num_shards: Number of shards, usually the number of workers.
            index: Which shard, in `[0, num_shards)`.
            batch_size: Rows per batch of the shard; defaults to this data
                set's `batch_size`.

        Returns:
            A `SparseDataset` over the shard's rows.

        Examples:
            >>> import numpy as np
            >>> from keras_sparse.data import SparseDataset
            >>> ds = SparseDataset(np.arange(10.0).reshape(5, 2), batch_size=2)
            >>> shard = ds.shard(2, 1)
            >>> shard.num_samples, len(shard), np.asarray(shard[0][0]).tolist()
            (2, 2, [[2.0, 3.0], [6.0, 7.0]])
        """
        num_shards = _validation.check_int(num_shards, "num_shards")
        index = _validation.check_int(index, "index", minimum=0)
        if index >= num_shards:
            raise ValueError(
                f"`index` must be in [0, num_shards) = [0, {num_shards}), got {index}."
            )
        batch_size = _validation.check_int(
            self.batch_size if batch_size is None else batch_size, "batch_size"
        )
        rows = np.arange(index, self.num_samples, num_shards)
        shard = copy.copy(self)
        shard._rows = rows if self._rows is None else self._rows[rows]
        shard.num_samples = len(rows)
        shard.batch_size = batch_size
        longest = -(-self.num_samples // num_shards)
        shard._length = max(1, -(-longest // batch_size))
        shard.seed = (
            None
            if self.seed is None
            else int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        )
        shard._rng = np.random.default_rng(shard.seed)
        shard._order = shard._rng.permutation(shard.num_samples) if self.shuffle else None
        return shard

    def __getitem__(self, index: int) -> Any:
        """Return batch `index` as `x`, `(x, y)` or `(x, y, sample_weight)`."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        return self._batch_of_rows(self._batch_rows(index))

    def batch_rows(self, index: int) -> np.ndarray:
        """The row numbers (in the data given to the constructor) that batch `index` holds.

        They follow this epoch's order when shuffling, and a shard's rows
        for a shard, so other per-row data (ids, excluded items) can be
        lined up with a batch.

        Args:
            index: Batch number, `0 <= index < len(self)` (negative counts from the end).

        Returns:
            A 1-D int64 array, in the batch's row order.

        Examples:
            >>> import numpy as np
            >>> from keras_sparse.data import SparseDataset
            >>> SparseDataset(np.zeros((5, 2)), batch_size=2).batch_rows(2).tolist()
            [4]
        """
        index = _validation.check_int(index, "index", minimum=-len(self))
        if index < 0:
            index += len(self)
        if index >= len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        rows = self._batch_rows(index)
        if isinstance(rows, slice):
            return np.arange(rows.start, rows.stop, dtype=np.int64)
        return np.asarray(rows, dtype=np.int64)

    def _batch_rows(self, index: int) -> slice | np.ndarray:
        """The rows of the underlying data that batch `index` holds (no bounds check)."""
        start = min(index * self.batch_size, self.num_samples)
        stop = min(start + self.batch_size, self.num_samples)
        rows = slice(start, stop) if self._order is None else self._order[start:stop]
        if self._rows is None:
            return rows
        return self._rows[rows]

    def batch_of_rows(self, rows: Any) -> Any:
        """The batch holding exactly `rows` (row numbers of the data given), as `ds[i]` returns.

        With `batch_rows`, this lets a caller regroup rows, for example split
        each batch among devices.

        Args:
            rows: 1-D sequence of row numbers in `[0, num_samples)` of the
                data passed to the constructor (not of a shard).

        Returns:
            `(x,)`, `(x, y)` or `(x, y, sample_weight)` for those rows, in that order.

        Raises:
            ValueError: `rows` is not 1-D or holds a number out of range.

        Examples:
            >>> import numpy as np
            >>> from keras_sparse.data import SparseDataset
            >>> ds = SparseDataset(np.arange(6.0)[:, None], np.arange(6))
            >>> x, y = ds.batch_of_rows([4, 1])
            >>> np.asarray(y).tolist()
            [4, 1]
        """
        rows = np.asarray(rows)
        total = next(iter(_leaves(self._x, "x").values())).shape[0]
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"`rows` must be a 1-D array of row numbers, got shape {rows.shape}.")
        if rows.size and (rows.min() < 0 or rows.max() >= total):
            raise ValueError(
                f"`rows` must lie in [0, {total}), got values from {rows.min()} to {rows.max()}."
            )
        return self._batch_of_rows(rows)

    def _batch_of_rows(self, rows: slice | np.ndarray) -> Any:
        x = _batch(self._x, rows)
        if self._y is None:
            return (x,)
        y = _batch(self._y, rows)
        if self._sample_weight is None:
            return x, y
        return x, y, _batch_leaf(self._sample_weight, rows)

    def feeding_structure(self) -> tuple:
        """The whole data in the structure of a batch, for a backend that cuts batches itself.

        `(x,)`, `(x, y)` or `(x, y, sample_weight)` with every sparse part as
        its CSR matrix (not canonical when the caller's was not) and every dense
        part as a NumPy array (no copies); `epoch_rows` says which rows each
        batch of this epoch holds.
        """
        if self._y is None:
            return (self._x,)
        if self._sample_weight is None:
            return self._x, self._y
        return self._x, self._y, self._sample_weight

    def epoch_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the current epoch's batches: batch `i` holds `rows[bounds[i]:bounds[i + 1]]`.

        The same rows, in the same order, as `batch_rows(i)` for every `i`.

        Examples:
            >>> import numpy as np
            >>> from keras_sparse.data import SparseDataset
            >>> rows, bounds = SparseDataset(np.zeros((5, 2)), batch_size=2).epoch_rows()
            >>> rows.tolist(), bounds.tolist()
            ([0, 1, 2, 3, 4], [0, 2, 4, 5])
        """
        rows = np.arange(self.num_samples) if self._order is None else self._order
        if self._rows is not None:
            rows = self._rows[rows]
        starts = np.minimum(np.arange(len(self) + 1) * self.batch_size, self.num_samples)
        return np.asarray(rows, np.int64), starts.astype(np.int64)

    def on_epoch_end(self) -> None:
        """Draw a new row order when shuffling."""
        if self.shuffle:
            self._order = self._rng.permutation(self.num_samples)
