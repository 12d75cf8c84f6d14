"""Host <-> `BCOO` conversions of the JAX backend, and the entry-count buckets.

A sparse tensor built from host data holds a number of entries rounded up to
a power of two (`bucket_size`), so a jitted step compiles once per bucket, not
once per batch. Padding slots sit at the out-of-range index `shape` with
value 0 (see `keras_sparse.backend.jax`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse

MIN_BUCKET = 16


def bucket_size(nnz: int) -> int:
    """Padded entry count of a batch with `nnz` stored entries: a power of two >= 16."""
    return max(MIN_BUCKET, 1 << max(0, int(nnz) - 1).bit_length())


def sparse_from_coo(indices: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> Any:
    """Build a padded `BCOO` from canonical host arrays.

    The entry count is rounded up to `bucket_size(nnz)`; padding slots sit at
    the out-of-range index `shape` with value 0.
    """
    nnz = indices.shape[0]
    size = bucket_size(nnz)
    rank = len(shape)
    idx = np.empty((size, rank), dtype=np.int32)
    idx[:nnz] = indices
    idx[nnz:] = np.asarray(shape, dtype=np.int32)
    data = np.zeros(size, dtype=values.dtype)
    data[:nnz] = values
    return jsparse.BCOO(
        (jnp.asarray(data), jnp.asarray(idx)),
        shape=tuple(int(d) for d in shape),
        indices_sorted=True,
        unique_indices=True,
    )


def _layout(x: Any) -> Any:
    if x.n_batch or x.n_dense:
        return jsparse.bcoo_update_layout(x, n_batch=0, n_dense=0)
    return x


def sparse_to_coo(x: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Host `(indices, values, shape)` of a `BCOO`, padding slots removed."""
    x = _layout(x)
    indices = np.asarray(x.indices).astype(np.int64)
    values = np.asarray(x.data)
    shape = tuple(int(d) for d in x.shape)
    keep = np.all((indices >= 0) & (indices < np.asarray(shape)), axis=1)
    return indices[keep], values[keep], shape
