"""TensorFlow-specific sparse helpers: the one file a second backend would mirror.

Everything here works on `tf.SparseTensor` (or its parts) and is graph-safe, so
that layers, losses and metrics can call it inside `model.fit`.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def is_sparse(x: Any) -> bool:
    """Return True for a `tf.SparseTensor` (eager or symbolic)."""
    return isinstance(x, tf.SparseTensor)


def is_tensor(x: Any) -> bool:
    """Return True for a dense TensorFlow tensor or variable."""
    return tf.is_tensor(x) and not isinstance(x, tf.SparseTensor)


def canonicalize(st: tf.SparseTensor) -> tf.SparseTensor:
    """Return `st` in row-major order with duplicate indices summed (graph-safe).

    Explicit zeros are kept. Works for any rank.
    """
    st = tf.sparse.reorder(st)
    shape = tf.cast(st.dense_shape, tf.int64)
    # Row-major linear position of each entry; equal positions are duplicates.
    strides = tf.math.cumprod(shape, exclusive=True, reverse=True)
    keys = tf.reduce_sum(st.indices * strides[None, :], axis=1)
    unique_keys, segment = tf.unique(keys, out_idx=tf.int64)
    values = tf.math.unsorted_segment_sum(
        st.values, segment, tf.shape(unique_keys, out_type=tf.int64)[0]
    )
    first = tf.math.unsorted_segment_min(
        tf.range(tf.shape(keys, out_type=tf.int64)[0]),
        segment,
        tf.shape(unique_keys, out_type=tf.int64)[0],
    )
    indices = tf.gather(st.indices, first)
    return tf.SparseTensor(indices, values, st.dense_shape)


def row_sum(values: tf.Tensor, rows: tf.Tensor, num_rows: tf.Tensor) -> tf.Tensor:
    """Sum per-entry `values` into `num_rows` rows given each entry's row id."""
    return tf.math.unsorted_segment_sum(values, rows, num_rows)


def replica_sum(*values: tf.Tensor) -> list[tf.Tensor]:
    """Sum each value over the replicas of a `tf.distribute` step (as-is elsewhere)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(values)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, list(values))


def num_rows(x: tf.SparseTensor | tf.Tensor) -> tf.Tensor:
    """Number of rows (first dimension) of a sparse or dense tensor, as int64."""
    if is_sparse(x):
        return x.dense_shape[0]
    return tf.shape(x, out_type=tf.int64)[0]


def sparse_dense_matmul(
    sparse: tf.SparseTensor, dense: tf.Tensor, transpose_a: bool = False
) -> tf.Tensor:
    """Multiply a 2-D or 3-D sparse tensor by a dense tensor.

    Supported operands: sparse (n, m) with dense (m, d) or (batch, m, d), and
    sparse (batch, n, m) with dense (batch, m, d) or (m, d). With
    `transpose_a=True` the last two sparse axes are swapped. Gradients flow to
    `dense` (and to the sparse values).
    """
    dense = tf.convert_to_tensor(dense)
    rank = sparse.shape.rank
    if rank == 2 and dense.shape.rank == 2:
        return tf.sparse.sparse_dense_matmul(sparse, dense, adjoint_a=transpose_a)
    indices, values = sparse.indices, sparse.values
    if rank == 2:
        # Fixed (n, m) matrix applied to every item of a (batch, m, d) batch.
        row_axis, col_axis = (1, 0) if transpose_a else (0, 1)
        out_rows = sparse.dense_shape[row_axis]
        moved = tf.transpose(dense, [1, 0, 2])  # (m, batch, d)
        picked = tf.gather(moved, indices[:, col_axis])  # (nnz, batch, d)
        weighted = picked * tf.cast(values, dense.dtype)[:, None, None]
        summed = tf.math.unsorted_segment_sum(weighted, indices[:, row_axis], out_rows)
        return tf.transpose(summed, [1, 0, 2])
    if rank != 3:
        raise ValueError(f"sparse operand must be 2-D or 3-D, got rank {rank}.")
    row_axis, col_axis = (2, 1) if transpose_a else (1, 2)
    batch = sparse.dense_shape[0]
    out_rows = sparse.dense_shape[row_axis]
    if dense.shape.rank == 2:
        picked = tf.gather(dense, indices[:, col_axis])
    else:
        picked = tf.gather_nd(dense, tf.stack([indices[:, 0], indices[:, col_axis]], 1))
    weighted = picked * tf.cast(values, dense.dtype)[:, None]
    segment = indices[:, 0] * out_rows + indices[:, row_axis]
    summed = tf.math.unsorted_segment_sum(weighted, segment, batch * out_rows)
    width = tf.shape(dense, out_type=tf.int64)[-1]
    return tf.reshape(summed, tf.stack([batch, out_rows, width]))


def gather_rows(variable: Any, rows: tf.Tensor) -> tf.Tensor:
    """Gather `rows` of a (Keras) variable without reading the whole variable.

    `tf.gather` on a Keras variable first converts it to a full tensor (and,
    under a mixed-precision policy, casts all of it), which costs as much as a
    dense read and forces a copy when the optimizer updates it in place.
    Gathering from the underlying `tf.Variable` reads only the requested rows,
    and its gradient is a `tf.IndexedSlices` over them.
    """
    raw = getattr(variable, "_value", None)
    if not isinstance(raw, tf.Variable):  # a plain tf.Variable or a tensor
        raw = variable
    return tf.gather(raw, rows)
