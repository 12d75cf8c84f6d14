"""Conversion between SciPy sparse matrices, NumPy arrays and backend sparse tensors.

The canonical form (see DEFINITIONS): indices in row-major order, duplicates
summed, explicit zeros kept, the shape of the input. `to_sparse` returns the
active backend's sparse tensor (`tf.SparseTensor` on TensorFlow, a padded
`jax.experimental.sparse.BCOO` on JAX, a coalesced `torch.sparse_coo_tensor` on
torch); `to_scipy` is its inverse for any of them.
`to_sparse_tensor` is the TensorFlow-only spelling kept for existing code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp

from keras_sparse import _validation
from keras_sparse import backend as B

SparseLike = Any  # SciPy sparse matrix/array, NumPy array or a backend sparse tensor


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
        resolved = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    except TypeError:
        try:  # a dtype of the backend (torch.float32, ...), as Keras names it
            resolved = np.dtype(keras.backend.standardize_dtype(dtype))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`{name}` must be a NumPy or backend dtype or its name such as 'float32', "
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


def csr_rows_to_sparse(csr: Any, rows: slice | np.ndarray, dtype: Any) -> Any:
    """Rows `rows` of a CSR as the backend's canonical sparse tensor.

    When those rows hold unsorted or duplicate entries, a copy of them is made
    canonical (duplicates summed, explicit zeros kept); `csr` is never changed.
    """
    part = csr[rows]
    if not part.has_canonical_format:
        part = part.copy()
        part.sum_duplicates()
    indices, values, shape = csr_to_parts(part)
    return B.sparse_from_coo(indices, values.astype(dtype, copy=False), shape)


def _sorted_coo(
    indices: np.ndarray, values: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Row-major order with duplicates summed (explicit zeros kept), on the host."""
    if indices.shape[0] == 0:
        return indices.reshape(0, len(shape)).astype(np.int64), values
    keys = np.ravel_multi_index(tuple(indices.T), shape)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if unique.size == keys.size and np.all(keys[1:] > keys[:-1]):
        return indices.astype(np.int64, copy=False), values
    summed = np.zeros(unique.size, dtype=values.dtype)
    np.add.at(summed, inverse.reshape(-1), values)
    return indices[first].astype(np.int64, copy=False), summed


def coo_parts(x: SparseLike, name: str = "x", dtype: Any = None) -> tuple:
    """Canonical host `(indices (nnz, ndim) int64, values, shape)` of any supported input.

    Accepts SciPy sparse (any format), NumPy arrays and lists (their non-zero
    entries), and the sparse tensors of TensorFlow, JAX and torch.
    """
    target = _resolve_dtype(dtype)
    if sp.issparse(x):
        indices, values, shape = csr_to_parts(canonical_csr(x, name))
    elif is_sparse_tensor(x):
        indices, values, shape = sparse_tensor_parts(x)
        _validation.check_dtype(values.dtype, name)
        indices, values = _sorted_coo(indices, values, shape)
    else:
        if not isinstance(x, (np.ndarray, list, tuple)) and not B.is_dense_tensor(x):
            raise TypeError(
                f"`{name}` must be a SciPy sparse matrix or array, a NumPy array or a "
                f"sparse tensor of the active Keras backend ({B.NAME}), got {type(x).__name__}."
            )
        arr = np.asarray(x)
        _validation.check_dtype(arr.dtype, name)
        nonzero = np.nonzero(arr)
        indices = np.stack(nonzero, axis=1).astype(np.int64, copy=False)
        indices = indices.reshape(-1, arr.ndim)
        values, shape = arr[nonzero], arr.shape
    if target is not None:
        values = values.astype(target, copy=False)
    return indices, values, tuple(int(d) for d in shape)


#: Framework of a sparse tensor, told by its type name (TensorFlow, JAX) or layout (torch).
_SPARSE_TYPES = {"SparseTensor": "tensorflow", "BCOO": "jax"}
_TORCH_SPARSE_LAYOUTS = ("torch.sparse_coo", "torch.sparse_csr")


def _sparse_framework(x: Any) -> str | None:
    """`"tensorflow"`, `"jax"` or `"torch"` for a sparse tensor of that framework, else None."""
    if B.is_sparse(x):
        return B.NAME
    framework = _SPARSE_TYPES.get(type(x).__name__)
    if framework is None and str(getattr(x, "layout", "")) in _TORCH_SPARSE_LAYOUTS:
        framework = "torch"
    return framework


def is_sparse_tensor(x: Any) -> bool:
    """Whether `x` is a `tf.SparseTensor`, a JAX `BCOO` or a torch sparse tensor.

    Recognised by type name or layout, so a tensor of another framework than
    the active backend's is recognised without importing that framework.
    """
    return _sparse_framework(x) is not None


def sparse_tensor_parts(x: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Host `(indices, values, shape)` of any framework's sparse tensor, as stored (no padding)."""
    import importlib

    framework = _sparse_framework(x)
    return importlib.import_module(f"keras_sparse.backend.{framework}").sparse_to_coo(x)


def to_sparse(x: SparseLike, dtype: Any = None) -> Any:
    """Convert SciPy, NumPy or a sparse tensor to the active backend's sparse tensor.

    On TensorFlow the result is a canonical `tf.SparseTensor`; on JAX a
    `jax.experimental.sparse.BCOO` whose entry count is padded to a power of
    two (padding slots sit at the out-of-range index `shape` with value 0 and
    are never data); on torch a coalesced `torch.sparse_coo_tensor` on Keras's
    device. Either way the stored entries are in row-major order,
    duplicates summed and explicit zeros kept. `to_scipy` is the inverse.

    Args:
        x: A SciPy sparse matrix or array of any format, a NumPy array (its
            non-zero entries are stored), a `tf.SparseTensor`, a `BCOO` or a torch
            sparse tensor (COO or CSR).
        dtype: Value dtype of the result, e.g. `"float32"`. `None` keeps the
            dtype of `x` (on JAX without `JAX_ENABLE_X64`, JAX itself turns
            64-bit values into 32-bit ones).

    Returns:
        The backend's sparse tensor with the shape of `x`.

    Raises:
        TypeError: `x` is of an unsupported type, or has complex values.
        ValueError: a SciPy input that is not 2-D.

    Examples:
        >>> import scipy.sparse as sp
        >>> import keras_sparse
        >>> m = sp.coo_matrix(([1.0, 2.0, 3.0], ([1, 0, 1], [2, 0, 2])), shape=(2, 3))
        >>> s = keras_sparse.to_sparse(m, dtype="float32")
        >>> keras_sparse.to_scipy(s).toarray().tolist()
        [[2.0, 0.0, 0.0], [0.0, 0.0, 4.0]]

    """
    indices, values, shape = coo_parts(x, "x", dtype)
    return B.sparse_from_coo(indices, values, shape)


def sparse_target(y_true: Any, dtype: Any) -> Any:
    """A SciPy `y_true` (any format) as the backend's sparse tensor; anything else as it is.

    Losses and metrics called directly, outside `fit`, take a SciPy target this
    way, as `fit` does, without densifying it.

    Args:
        y_true: A target: SciPy matrix or array, sparse tensor or dense array.
        dtype: Value dtype of the converted tensor.

    Returns:
        The backend's sparse tensor for a SciPy `y_true`, else `y_true` unchanged.

    Examples:
        >>> import scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> from keras_sparse.convert import sparse_target
        >>> ks.backend.is_sparse(sparse_target(sp.eye(3, format="dok"), "float32"))
        True
    """
    return to_sparse(y_true, dtype=dtype) if sp.issparse(y_true) else y_true


def to_sparse_tensor(x: SparseLike, dtype: Any = None) -> Any:
    """Convert a SciPy sparse matrix, NumPy array or SparseTensor to canonical form.

    TensorFlow only: on another backend use `keras_sparse.to_sparse`, which
    returns that backend's sparse tensor.

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
        RuntimeError: Keras is not using the TensorFlow backend.

    Examples:
        >>> import scipy.sparse as sp
        >>> import keras_sparse
        >>> m = sp.coo_matrix(([1.0, 2.0, 3.0], ([1, 0, 1], [2, 0, 2])), shape=(2, 3))
        >>> st = keras_sparse.to_sparse_tensor(m, dtype="float32")  # doctest: +SKIP
        >>> st.indices.numpy().tolist(), st.values.numpy().tolist()  # doctest: +SKIP
        ([[0, 0], [1, 2]], [2.0, 4.0])

    """
    B.require_tensorflow(
        "keras_sparse.to_sparse_tensor",
        "Use keras_sparse.to_sparse(x), which returns the active backend's sparse tensor.",
    )
    if B.is_sparse(x):  # canonicalised in-graph, so it also works inside a tf.function
        _validation.check_dtype(x.dtype.as_numpy_dtype, "x")
        indices, values, _, shape = B.coo(x)
        target = _resolve_dtype(dtype)
        if target is not None:
            values = keras.ops.cast(values, target)
        return B.make_sparse(indices, values, shape)
    return to_sparse(x, dtype)


def to_scipy(st: Any) -> sp.csr_matrix:
    """Convert a 2-D backend sparse tensor to a canonical SciPy CSR matrix.

    Exact inverse of `to_sparse` / `to_sparse_tensor`: stored entries
    (explicit zeros included) and values are kept; unordered or duplicate
    indices are sorted and summed; JAX padding slots are dropped.

    Args:
        st: An eager 2-D `tf.SparseTensor`, `jax.experimental.sparse.BCOO` or torch
            sparse tensor (COO or CSR).

    Returns:
        A `scipy.sparse.csr_matrix` with the shape and value dtype of `st`.

    Raises:
        TypeError: `st` is not a sparse tensor.
        ValueError: `st` is not 2-D.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse
        >>> s = keras_sparse.to_sparse(np.eye(3, dtype="float32"))
        >>> keras_sparse.to_scipy(s).toarray().tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

    """
    if not is_sparse_tensor(st):
        raise TypeError(
            f"`st` must be a tf.SparseTensor, a JAX BCOO or a torch sparse tensor, got "
            f"{type(st).__name__}. "
            "Use keras_sparse.to_sparse to build one."
        )
    indices, values, shape = sparse_tensor_parts(st)
    _validation.check_ndim(shape, "st", 2)
    rows, cols = indices[:, 0], indices[:, 1]
    keys = rows * max(shape[1], 1) + cols
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
        return sp.csr_matrix((values, cols, indptr), shape=shape)
    return sp.coo_matrix((values, (rows, cols)), shape=shape).tocsr()


def as_csr(matrix: Any, name: str) -> Any:
    """A 2-D matrix given as SciPy (any format), a sparse tensor or an array, as canonical CSR.

    Arrays (also lists and dense backend tensors) store their non-zero entries.
    Raises a TypeError naming `name` for anything else, a ValueError when not 2-D.
    """
    if isinstance(matrix, (list, tuple)) or B.is_dense_tensor(matrix):
        matrix = np.asarray(matrix)
    if sp.issparse(matrix):
        return canonical_csr(matrix, name)
    if is_sparse_tensor(matrix):
        return to_scipy(matrix)
    if isinstance(matrix, np.ndarray):
        _validation.check_ndim(matrix.shape, name, 2)
        _validation.check_dtype(matrix.dtype, name)
        return sp.csr_matrix(matrix)
    raise TypeError(
        f"`{name}` must be a SciPy sparse matrix, a NumPy array or a "
        f"sparse tensor, got {type(matrix).__name__}."
    )


def stack(matrices: Sequence[SparseLike], dtype: Any = None) -> Any:
    """Stack same-shaped 2-D matrices into one 3-D backend sparse tensor.

    Slice `b` of the result equals `matrices[b]`; the result is canonical
    (row-major over (batch, row, col), duplicates summed, explicit zeros kept).

    Args:
        matrices: A non-empty sequence of 2-D SciPy sparse matrices, NumPy
            arrays or sparse tensors, all of the same shape.
        dtype: Value dtype of the result. `None` keeps the (common) dtype.

    Returns:
        A sparse tensor of the active backend (`tf.SparseTensor` or padded
        `BCOO`) of shape `(len(matrices), rows, cols)`.

    Raises:
        ValueError: `matrices` is empty, or a matrix has another shape than
            the first (the message names the first mismatching one).
        TypeError: an element is of an unsupported type.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse
        >>> batch = keras_sparse.stack([np.eye(3), 2 * np.eye(3)])
        >>> tuple(batch.shape)
        (2, 3, 3)

    """
    if isinstance(matrices, (str, bytes)) or not isinstance(matrices, Sequence):
        raise TypeError(
            f"`matrices` must be a list or tuple of 2-D matrices, got {type(matrices).__name__}."
        )
    if len(matrices) == 0:
        raise ValueError("`matrices` is empty; pass at least one 2-D matrix.")
    csrs = [as_csr(m, f"matrices[{i}]") for i, m in enumerate(matrices)]
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
    return B.sparse_from_coo(indices, values, (len(csrs), *shape0))
