"""`SparseDataset`: feed SciPy sparse matrices to `fit`, `evaluate` and `predict`.

Batches are cut from canonical CSR rows on demand, so the extra memory during
training is a batch, not a copy of the data set.
"""

from __future__ import annotations

import copy
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp

from keras_sparse import _validation
from keras_sparse.convert import (
    canonical_csr,
    csr_rows_to_sparse,
    is_sparse_tensor,
    to_scipy,
)

__all__ = ["SparseDataset"]


def _prepare_leaf(value: Any, name: str) -> Any:
    """Turn one user array into the form batches are cut from."""
    if sp.issparse(value):
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
    unsorted or duplicate COO, LIL, DOK, BSR, DIA, `*_array`); it is converted
    once to canonical CSR (no copy when it already is one) and batches are cut
    from it on demand, so the extra memory while training is about one batch.
    The last partial batch is kept. NaN values are passed through unchanged.

    Args:
        x: Inputs: a SciPy sparse matrix/array, a NumPy array, a
            backend sparse tensor, or a tuple/list/dict of those (multi-input).
        y: Targets, of the same kinds as `x`, or `None` (prediction).
        sample_weight: Optional 1-D array of per-row weights.
        batch_size: Rows per batch, a positive integer.
        shuffle: Whether to visit rows in a new random order every epoch.
        seed: Seed for the shuffling order; the same seed gives the same
            sequence of epochs.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_size = _validation.check_int(batch_size, "batch_size")
        self.shuffle = _validation.check_bool(shuffle, "shuffle")
        self.seed = _validation.check_int(seed, "seed", minimum=0, allow_none=True)
        if x is None:
            raise ValueError("`x` is None; pass the model inputs.")
        self._x = _prepare(x, "x")
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

    def _batch_rows(self, index: int) -> slice | np.ndarray:
        """The rows of the underlying data that batch `index` holds (no bounds check)."""
        start = min(index * self.batch_size, self.num_samples)
        stop = min(start + self.batch_size, self.num_samples)
        rows = slice(start, stop) if self._order is None else self._order[start:stop]
        if self._rows is None:
            return rows
        return self._rows[rows]

    def _batch_of_rows(self, rows: slice | np.ndarray) -> Any:
        x = _batch(self._x, rows)
        if self._y is None:
            return (x,)
        y = _batch(self._y, rows)
        if self._sample_weight is None:
            return x, y
        return x, y, _batch_leaf(self._sample_weight, rows)

    def on_epoch_end(self) -> None:
        """Draw a new row order when shuffling."""
        if self.shuffle:
            self._order = self._rng.permutation(self.num_samples)
