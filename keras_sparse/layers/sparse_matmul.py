"""`SparseMatMul`: a fixed or given sparse matrix times a dense tensor."""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from keras_sparse import _validation
from keras_sparse import backend as B
from keras_sparse._registry import register
from keras_sparse.convert import coo_parts
from keras_sparse.layers._base import SparseLayer


@register
class SparseMatMul(SparseLayer):
    """Sparse @ dense product, with a fixed matrix or with two operands.

    Two ways to use it:

    - `SparseMatMul(matrix)`: `matrix` is a fixed 2-D SciPy sparse matrix (any
      format), backend sparse tensor or NumPy array of shape `(n, m)`, e.g. a
      normalised graph adjacency. `layer(h)` returns `matrix @ h` for a dense
      `h` of shape `(m, d)`, or applies it to every item of a `(batch, m, d)`
      input. The matrix is stored as non-trainable weights (indices and
      values), so it is saved with the model.
    - `SparseMatMul()` called on `[a, b]`: `a` sparse `(n, m)` or batched
      `(batch, n, m)` (as built by `keras_sparse.stack`), `b` dense `(m, d)` or
      `(batch, m, d)`; returns `a @ b`.

    With `transpose_a=True` the sparse operand is transposed (its last two
    axes) first. Gradients flow to the dense operand. Only the stored entries
    are touched: the cost grows with the number of entries, not with `n * m`.

    Args:
        matrix: The fixed sparse matrix, or `None` for the two-operand form.
        transpose_a: Whether to multiply by the transpose of the sparse operand.
        matrix_shape: Set by deserialization (shape of the fixed matrix, whose
            entries are restored from the saved weights); leave it `None`.
        matrix_nnz: Set by deserialization (number of stored entries).
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> from keras_sparse.layers import SparseMatMul
        >>> adjacency = sp.eye(4, format="csr") * 2
        >>> np.asarray(SparseMatMul(adjacency)(np.ones((4, 3), "float32")))[0].tolist()
        [2.0, 2.0, 2.0]

    """

    def __init__(
        self,
        matrix: Any = None,
        transpose_a: bool = False,
        *,
        matrix_shape: tuple[int, int] | None = None,
        matrix_nnz: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.transpose_a = _validation.check_bool(transpose_a, "transpose_a")
        self.supports_jit = B.SUPPORTS_JIT
        self._initial = None
        if matrix is not None:
            if isinstance(matrix, (list, tuple)):
                raise TypeError(
                    "`matrix` must be one sparse matrix; to multiply two operands, "
                    "create SparseMatMul() and call it on [sparse, dense]."
                )
            indices, values, shape = coo_parts(matrix, "matrix", dtype="float32")
            _validation.check_ndim(shape, "matrix", 2)
            self._initial = (indices, values)
            matrix_shape = shape
            matrix_nnz = int(indices.shape[0])
        elif matrix_shape is not None or matrix_nnz is not None:
            if matrix_shape is None or matrix_nnz is None:
                raise ValueError("`matrix_shape` and `matrix_nnz` must be given together.")
            matrix_shape = tuple(
                _validation.check_int(d, "matrix_shape", minimum=0) for d in matrix_shape
            )
            _validation.check_ndim(matrix_shape, "matrix_shape", 2)
            matrix_nnz = _validation.check_int(matrix_nnz, "matrix_nnz", minimum=0)
        self.matrix_shape = matrix_shape
        self.matrix_nnz = matrix_nnz

    @property
    def fixed(self) -> bool:
        """Whether the layer holds a fixed matrix (True) or takes two operands."""
        return self.matrix_shape is not None

    def _check_operands(self, input_shape: Any) -> None:
        """Raise a ValueError naming both shapes when the inner dimensions differ."""
        if self.fixed:
            a_shape, b_shape = tuple(self.matrix_shape), tuple(input_shape)
        elif (
            isinstance(input_shape, (list, tuple))
            and len(input_shape) == 2
            and all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            a_shape, b_shape = (tuple(s) for s in input_shape)
        else:
            return  # call() explains the expected [sparse, dense] pair
        if len(a_shape) < 2 or len(b_shape) < 2:
            return
        inner_a = a_shape[-2] if self.transpose_a else a_shape[-1]
        inner_b = b_shape[-2]
        if inner_a is not None and inner_b is not None and inner_a != inner_b:
            a_name = "the fixed matrix" if self.fixed else "the sparse operand"
            raise ValueError(
                f"SparseMatMul: {a_name} has shape {a_shape}"
                f"{' (transposed)' if self.transpose_a else ''} but the dense operand has "
                f"shape {b_shape}; its second-to-last dimension must be {inner_a}. Check "
                "`transpose_a` or the order of the operands."
            )

    def build(self, input_shape: Any) -> None:
        self._check_operands(input_shape)
        if not self.fixed:
            return
        nnz = self.matrix_nnz
        initial = self._initial

        def init(values):
            return lambda shape, dtype=None: values

        self.matrix_indices = self.add_weight(
            name="matrix_indices",
            shape=(nnz, 2),
            dtype=B.INDEX_DTYPE,
            trainable=False,
            initializer=init(initial[0]) if initial else "zeros",
        )
        self.matrix_values = self.add_weight(
            name="matrix_values",
            shape=(nnz,),
            trainable=False,
            initializer=init(initial[1]) if initial else "zeros",
        )
        self._initial = None

    def _matrix(self, dtype: Any) -> Any:
        return B.make_sparse(  # stored canonical by coo_parts in __init__
            ops.convert_to_tensor(self.matrix_indices),
            ops.cast(self.matrix_values, dtype),
            np.asarray(self.matrix_shape, dtype=np.int64),
            canonical=True,
        )

    def call(self, inputs: Any) -> Any:
        if self.fixed:
            dense = ops.cast(inputs, self.compute_dtype)
            return B.sparse_dense_matmul(self._matrix(dense.dtype), dense, self.transpose_a)
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                "SparseMatMul() without a matrix must be called on [sparse, dense]; got "
                f"{type(inputs).__name__}. Pass the fixed matrix to the constructor instead "
                "to multiply by it."
            )
        a, b = inputs
        b = ops.cast(b, self.compute_dtype)
        if not B.is_sparse(a):
            a = ops.cast(a, b.dtype)
            if self.transpose_a:
                a = ops.swapaxes(a, -1, -2)
            return ops.matmul(a, b)
        return B.sparse_dense_matmul(ops.cast(a, b.dtype), b, self.transpose_a)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        if self.fixed:
            out_rows = self.matrix_shape[1 if self.transpose_a else 0]
            h = tuple(input_shape)
            return (out_rows, h[-1]) if len(h) == 2 else (h[0], out_rows, h[-1])
        a, b = (tuple(s) for s in input_shape)
        out_rows = a[-1] if self.transpose_a else a[-2]
        batch = a[:-2] if len(a) == 3 else b[:-2]
        return (*batch, out_rows, b[-1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "transpose_a": self.transpose_a,
                "matrix_shape": None if self.matrix_shape is None else list(self.matrix_shape),
                "matrix_nnz": self.matrix_nnz,
            }
        )
        return config
