"""Conversion between SciPy sparse matrices, NumPy arrays and `tf.SparseTensor`.

The canonical form (see DEFINITIONS): int64 indices in row-major order,
duplicates summed, explicit zeros kept, the shape of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from keras_sparse import _tf, _validation

SparseLike = Any  # SciPy sparse matrix/array, NumPy array or tf.SparseTensor


def canonical_csr(x: Any, name: str = "x") -> sp.csr_matrix | sp.csr_array:
    """Return `x` (any SciPy sparse format) as canonical CSR without touching `x`.

    A CSR that is already canonical is returned as is (no copy); anything else
    is converted, duplicates summed and column indices sorted. Explicit zeros
    are kept (except where SciPy's own format conversion drops them, as DIA's
    does).
    """
    if x.ndim != 2:
        _validation.check_ndim(x.shape, name, 2)
    _validation.check_dtype(x.dtype, name)
    csr = x.tocsr()
    if not csr.has_canonical_format:
        if csr is x:
            csr = csr.copy()
        csr.sum_duplicates()
    return csr


def _resolve_dtype(dtype: Any, name: str = "dtype") -> np.dtype | None:
    if dtype is None:
        return None
    try:
        resolved = np.dtype(tf.as_dtype(dtype).as_numpy_dtype)
    except TypeError as err:
        raise TypeError(
            f"`{name}` must be a NumPy/TensorFlow dtype or its name such as 'float32', "
            f"got {dtype!r}."
        ) from err
    _validation.check_dtype(resolved, name)
    return resolved


def csr_row_ids(indptr: np.ndarray) -> np.ndarray:
    """Row id (int64) of every stored entry of a CSR given its `indptr`."""
    counts = np.diff(indptr)
    return np.repeat(np.arange(counts.size, dtype=np.int64), counts)


def csr_to_parts(csr: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Indices (nnz, 2) int64, values and shape of a canonical CSR."""
    indices = np.empty((csr.nnz, 2), dtype=np.int64)
    indices[:, 0] = csr_row_ids(csr.indptr)
    indices[:, 1] = csr.indices
    return indices, csr.data, csr.shape


def csr_rows_to_sparse_tensor(csr: Any, rows: slice | np.ndarray, dtype: Any) -> tf.SparseTensor:
    """Rows `rows` of a canonical CSR as a canonical `tf.SparseTensor` of `dtype` values."""
    indices, values, shape = csr_to_parts(csr[rows])
    values = values.astype(dtype, copy=False)
    return tf.SparseTensor(indices, values, np.asarray(shape, dtype=np.int64))


def to_sparse_tensor(x: SparseLike, dtype: Any = None) -> tf.SparseTensor:
    """Convert a SciPy sparse matrix, NumPy array or SparseTensor to canonical form.

    The result has int64 indices in row-major order, duplicate entries summed
    and explicit zeros kept (a stored 0 is data, e.g. a rating of 0). The
    conversion is vectorised: no Python loop over rows. NaN values are allowed
    and kept as they are.

    Args:
        x: A SciPy sparse matrix or array of any format (CSR, CSC, COO with
            unsorted or duplicate entries, LIL, DOK, BSR, DIA, and the
            `*_array` classes), a NumPy array (its non-zero entries are
            stored), or a `tf.SparseTensor` (reordered and de-duplicated).
        dtype: Value dtype of the result, e.g. `"float32"`. `None` keeps the
            dtype of `x`.

    Returns:
        A `tf.SparseTensor` with the shape of `x`.

    Raises:
        TypeError: `x` is of an unsupported type, or has complex values.
        ValueError: a SciPy input that is not 2-D.

    Examples:
        >>> import scipy.sparse as sp
        >>> import keras_sparse
        >>> m = sp.coo_matrix(([1.0, 2.0, 3.0], ([1, 0, 1], [2, 0, 2])), shape=(2, 3))
        >>> st = keras_sparse.to_sparse_tensor(m, dtype="float32")
        >>> st.indices.numpy().tolist(), st.values.numpy().tolist()
        ([[0, 0], [1, 2]], [2.0, 4.0])

    """
    target = _resolve_dtype(dtype)
    if _tf.is_sparse(x):
        _validation.check_dtype(x.dtype.as_numpy_dtype, "x")
        st = _tf.canonicalize(x)
        return st if target is None else tf.cast(st, target)
    if sp.issparse(x):
        indices, values, shape = csr_to_parts(canonical_csr(x))
    else:
        if not isinstance(x, (np.ndarray, list, tuple)) and not _tf.is_tensor(x):
            raise TypeError(
                "`x` must be a SciPy sparse matrix or array, a NumPy array or a "
                f"tf.SparseTensor, got {type(x).__name__}."
            )
        arr = np.asarray(x)
        _validation.check_dtype(arr.dtype, "x")
        nonzero = np.nonzero(arr)
        indices = np.stack(nonzero, axis=1).astype(np.int64, copy=False)
        indices = indices.reshape(-1, arr.ndim)
        values, shape = arr[nonzero], arr.shape
    if target is not None:
        values = values.astype(target, copy=False)
    return tf.SparseTensor(indices, values, np.asarray(shape, dtype=np.int64))


def to_scipy(st: tf.SparseTensor) -> sp.csr_matrix:
    """Convert a 2-D `tf.SparseTensor` to a canonical SciPy CSR matrix.

    Exact inverse of `to_sparse_tensor`: stored entries (explicit zeros
    included) and values are kept; unordered or duplicate indices are sorted
    and summed.

    Args:
        st: An eager 2-D `tf.SparseTensor`.

    Returns:
        A `scipy.sparse.csr_matrix` with the shape and value dtype of `st`.

    Raises:
        TypeError: `st` is not a `tf.SparseTensor`.
        ValueError: `st` is not 2-D.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse
        >>> st = keras_sparse.to_sparse_tensor(np.eye(3, dtype="float32"))
        >>> keras_sparse.to_scipy(st).toarray().tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

    """
    if not _tf.is_sparse(st):
        raise TypeError(
            f"`st` must be a tf.SparseTensor, got {type(st).__name__}. "
            "Use keras_sparse.to_sparse_tensor to build one."
        )
    _validation.check_ndim(tuple(st.shape), "st", 2)
    indices = st.indices.numpy()
    values = st.values.numpy()
    shape = tuple(int(d) for d in st.dense_shape.numpy())
    rows, cols = indices[:, 0], indices[:, 1]
    keys = rows * max(shape[1], 1) + cols
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
        return sp.csr_matrix((values, cols, indptr), shape=shape)
    return sp.coo_matrix((values, (rows, cols)), shape=shape).tocsr()


def _as_csr(matrix: Any, name: str) -> Any:
    if sp.issparse(matrix):
        return canonical_csr(matrix, name)
    if _tf.is_sparse(matrix):
        return to_scipy(to_sparse_tensor(matrix))
    if isinstance(matrix, np.ndarray):
        _validation.check_ndim(matrix.shape, name, 2)
        _validation.check_dtype(matrix.dtype, name)
        return sp.csr_matrix(matrix)
    raise TypeError(
        f"`{name}` must be a SciPy sparse matrix, a NumPy array or a "
        f"tf.SparseTensor, got {type(matrix).__name__}."
    )


def stack(matrices: Sequence[SparseLike], dtype: Any = None) -> tf.SparseTensor:
    """Stack same-shaped 2-D matrices into one 3-D `tf.SparseTensor`.

    Slice `b` of the result equals `matrices[b]`; the result is canonical
    (row-major over (batch, row, col), duplicates summed, explicit zeros kept).

    Args:
        matrices: A non-empty sequence of 2-D SciPy sparse matrices, NumPy
            arrays or `tf.SparseTensor`s, all of the same shape.
        dtype: Value dtype of the result. `None` keeps the (common) dtype.

    Returns:
        A `tf.SparseTensor` of shape `(len(matrices), rows, cols)`.

    Raises:
        ValueError: `matrices` is empty, or a matrix has another shape than
            the first (the message names the first mismatching one).
        TypeError: an element is of an unsupported type.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse
        >>> batch = keras_sparse.stack([np.eye(3), 2 * np.eye(3)])
        >>> batch.shape.as_list()
        [2, 3, 3]

    """
    if isinstance(matrices, (str, bytes)) or not isinstance(matrices, Sequence):
        raise TypeError(
            f"`matrices` must be a list or tuple of 2-D matrices, got {type(matrices).__name__}."
        )
    if len(matrices) == 0:
        raise ValueError("`matrices` is empty; pass at least one 2-D matrix.")
    csrs = [_as_csr(m, f"matrices[{i}]") for i, m in enumerate(matrices)]
    shape0 = csrs[0].shape
    for i, csr in enumerate(csrs):
        if csr.shape != shape0:
            raise ValueError(
                f"matrices[{i}] has shape {csr.shape}, but matrices[0] has shape "
                f"{shape0}; every matrix passed to stack must have the same shape. "
                "Pad or crop them to one shape first."
            )
    nnz = [c.nnz for c in csrs]
    indices = np.empty((sum(nnz), 3), dtype=np.int64)
    indices[:, 0] = np.repeat(np.arange(len(csrs), dtype=np.int64), nnz)
    indices[:, 1] = np.concatenate([csr_row_ids(c.indptr) for c in csrs])
    indices[:, 2] = np.concatenate([c.indices for c in csrs])
    values = np.concatenate([c.data for c in csrs])
    target = _resolve_dtype(dtype)
    if target is not None:
        values = values.astype(target, copy=False)
    shape = np.asarray((len(csrs), *shape0), dtype=np.int64)
    return tf.SparseTensor(indices, values, shape)
