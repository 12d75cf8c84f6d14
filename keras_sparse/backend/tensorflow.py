"""TensorFlow backend of keras_sparse: `tf.SparseTensor` and `tf.IndexedSlices`.

Everything here is graph-safe, so that layers, losses and metrics can call it
inside `model.fit`. TensorFlow shapes may be dynamic, so sparse tensors are
never padded here: the validity mask of `coo` is `None` (every entry is real).

This file holds the sparse tensors and ops; row-sparse training (`gather_rows`,
`LazyAdam`'s update, the step) lives in `_tf_lazy` and the `tf.data` feeding
of `SparseDataset` in `_tf_data`, as on JAX and torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_sparse.backend import _common
from keras_sparse.backend._common import segment_max, segment_sum  # noqa: F401 - API
from keras_sparse.backend._tf_data import pydataset_adapter  # noqa: F401 - API, from its home
from keras_sparse.backend._tf_lazy import (  # noqa: F401 - API, from its home
    dense_gradient,
    gather_rows,
    is_sparse_gradient,
    lazy_adam_update,
    mark_row_sparse,
    note_dense_read,
    takes_train_step,
    train_step,
)

NAME = "tensorflow"
INDEX_DTYPE = "int64"
# XLA compilation of sparse gathers and segment sums is slower than TF's graph kernels.
SUPPORTS_JIT = False


def is_sparse(x: Any) -> bool:
    """Return True for a `tf.SparseTensor` (eager or symbolic)."""
    return isinstance(x, tf.SparseTensor)


def is_dense_tensor(x: Any) -> bool:
    """Return True for a dense TensorFlow tensor or variable."""
    return tf.is_tensor(x) and not isinstance(x, tf.SparseTensor)


def sparse_from_coo(indices: np.ndarray, values: np.ndarray, shape: tuple[int, ...]) -> Any:
    """Build a `tf.SparseTensor` from canonical host arrays (no padding)."""
    return tf.SparseTensor(indices, values, np.asarray(shape, dtype=np.int64))


def sparse_to_coo(x: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Host `(indices, values, shape)` of an eager `tf.SparseTensor` (as stored)."""
    shape = tuple(int(d) for d in x.dense_shape.numpy())
    return x.indices.numpy(), x.values.numpy(), shape


def sparse_num_rows(x: Any) -> Any:
    """Number of rows of a sparse tensor (a tensor when it is only known at run time)."""
    return x.dense_shape[0]


def sparse_shape(x: Any) -> tuple[int | None, ...]:
    """Static shape of a sparse tensor (None where unknown)."""
    return tuple(x.shape.as_list())


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
    count = tf.shape(unique_keys, out_type=tf.int64)[0]
    values = tf.math.unsorted_segment_sum(st.values, segment, count)
    first = tf.math.unsorted_segment_min(
        tf.range(tf.shape(keys, out_type=tf.int64)[0]), segment, count
    )
    return tf.SparseTensor(tf.gather(st.indices, first), values, st.dense_shape)


def coo(x: Any, canonical: bool = True) -> tuple[tf.Tensor, tf.Tensor, None, tf.Tensor]:
    """`(indices, values, valid, dense_shape)` of a sparse tensor, in-graph.

    With `canonical=True` indices are int64 `(nnz, rank)` in row-major order,
    duplicates summed, explicit zeros kept; `canonical=False` returns them as
    stored (enough to know which positions are stored). `valid` is None:
    TensorFlow tensors are never padded.
    """
    st = canonicalize(x) if canonical else x
    return st.indices, st.values, None, st.dense_shape


def make_sparse(
    indices: Any, values: Any, dense_shape: Any, canonical: bool = False
) -> tf.SparseTensor:
    """Build a `tf.SparseTensor` in-graph (`canonical` is a hint other backends use)."""
    return tf.SparseTensor(
        tf.cast(indices, tf.int64), values, tf.cast(tf.convert_to_tensor(dense_shape), tf.int64)
    )


def with_values(x: tf.SparseTensor, values: Any) -> tf.SparseTensor:
    """The same sparsity structure as `x` with new stored values."""
    return tf.SparseTensor(x.indices, values, x.dense_shape)


def gather_entries(dense: Any, indices: Any) -> tf.Tensor:
    """`dense[indices[:, 0], indices[:, 1]]` of a 2-D tensor."""
    return tf.gather_nd(dense, indices)


def scatter_set(dense: Any, indices: Any, valid: Any, value: float) -> tf.Tensor:
    """`dense` with the entries at `indices` (where `valid`) set to `value`."""
    dense = tf.convert_to_tensor(dense)
    fill = tf.fill(tf.shape(indices)[:1], tf.constant(value, dense.dtype))
    return tf.tensor_scatter_nd_update(dense, indices, fill)


def replace_nan(scores: Any, fill: float) -> tf.Tensor:
    """Scores with NaN replaced by `fill` (no copy when there is no NaN)."""

    def replace() -> tf.Tensor:
        return tf.where(tf.math.is_nan(scores), tf.constant(fill, scores.dtype), scores)

    # The sum is NaN whenever an entry is (or +inf meets -inf): a cheap reduction
    # spares the full copy that the replacement writes when there is nothing to replace.
    return tf.cond(tf.math.is_nan(tf.reduce_sum(scores)), replace, lambda: tf.identity(scores))


def _block_size(n: int | None, k: int) -> int | None:
    """Block width for `best_k`'s pre-filter, or None where a plain top-k is cheaper."""
    if n is None or n < 2048:
        return None
    size = 1 << max(3, round(math.log2(math.sqrt(n / k))))  # balances n/size and k*size
    return size if 8 * k * size <= n else None


def best_k(scores: Any, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """`tf.math.top_k(scores, min(k, n))`, same values, indices and tie order, but faster.

    TensorFlow's CPU top-k costs about the same per element whatever k is. For
    a small k the items are cut into blocks of `size`; only the k blocks with the
    highest maxima can hold the top k (a block outside them has k blocks whose
    best item ranks above all of its items), so the exact top k is taken over
    those k * size items. Blocks are ranked by (max, lower block first) and
    gathered in item order, so ties still go to the lower item index.
    """
    n = scores.shape[1]
    size = _block_size(n, k)
    if size is None:
        width = tf.minimum(k, tf.shape(scores)[1])
        return tf.math.top_k(scores, k=width, sorted=True)
    blocks = -(-n // size)
    padded = tf.pad(
        scores, [[0, 0], [0, blocks * size - n]], constant_values=float("-inf")
    )  # padding sits after every real item, so it loses every tie
    grouped = tf.reshape(padded, [-1, blocks, size])
    _, best_blocks = tf.math.top_k(tf.reduce_max(grouped, axis=2), k=k, sorted=False)
    best_blocks = tf.sort(best_blocks, axis=1)  # item order, for the tie rule
    candidates = tf.reshape(tf.gather(grouped, best_blocks, batch_dims=1), [-1, k * size])
    values, position = tf.math.top_k(candidates, k=k, sorted=True)
    block = tf.gather(best_blocks, position // size, batch_dims=1)
    return values, block * size + position % size


def dense_score_rows(num_items: int) -> int | None:
    """Rows of dense scores one compiled call should hold: None, any number (the whole batch)."""
    return None


def stable_argsort(x: Any) -> tf.Tensor:
    """Indices that sort the 1-D `x` ascending; equal values keep their order."""
    return tf.argsort(x, stable=True)


def replica_sum(*values: Any) -> list[Any]:
    """Sum each value over the replicas of a `tf.distribute` step (as-is elsewhere)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(values)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, list(values))


def place_batch(data: Any) -> Any:
    """The batch as it is: under `tf.distribute` the strategy places data (see `distribute`)."""
    return data


def check_distribution(model: Any) -> None:
    """Nothing to check: `keras.distribution` is a JAX feature; TensorFlow uses `tf.distribute`."""


class _Step:
    """`fn` as a callable of its own, for `tf.function`.

    TensorFlow counts retracings, for its "triggered tf.function retracing"
    warning, by the Python function's code object. Every model's top-k step is
    made by the same code, so a few models evaluated in one process looked like
    one function retraced again and again. An object has no code object: each
    compiled step is counted on its own.
    """

    def __init__(self, fn: Callable) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)


def compile_fn(fn: Callable) -> Callable:
    """Compile `fn` into a graph function that retraces rarely."""
    return tf.function(_Step(fn), reduce_retracing=True)


def sparse_dense_matmul(
    sparse: tf.SparseTensor, dense: Any, transpose_a: bool = False
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


def matmul_t(a: Any, b: Any) -> tf.Tensor:
    """`a.T @ b` of two 2-D tensors, without writing `a.T` (`keras.ops.transpose` would)."""
    return tf.matmul(a, b, transpose_a=True)


def loop_rows(count: int, body: Callable, carry: Any, num_rows: int) -> tuple[Any, tuple]:
    """Run `body(i, carry) -> (carry, start, pieces)` for i < count; assemble the pieces.

    See the JAX twin. Blocks start at `min(i * block, num_rows - block)`, so
    they cover every output row. On TensorFlow the loop is unrolled into the
    graph: a `tf.while_loop` would copy a carried output whole at every write,
    and one writing to a `TensorArray` measured twice as slow. Each block's
    ops wait for the carry and the outputs written by the block before
    (control dependencies), so the executor runs the blocks one after another
    and frees each block's scores before the next exists; without that order
    it ran independent blocks side by side and held most of them at once
    (5.1 GB instead of 0.4 GB for the backward pass of a 6400-row, 100k-item
    log-partition in blocks of 4096).

    Each block's pieces are written into their output at once with
    `InplaceUpdate`, which writes into its input's buffer: the outputs start
    as fresh `Empty` buffers (a stateful op, never folded into a shared
    constant), each written only by the chain of updates, so no other tensor
    sees the writes. Holding every piece until one `concat` held the output
    twice at the end: the value and gradient of a 1024-row log-partition over
    a 1M x 64 table peaked at 1067 MB that way, 920 MB this way. The outputs
    are zero-filled first, though the blocks cover every row (torch's twin
    leaves them empty): one pass over each output per step, so that a caller
    whose blocks leave a gap gets zeros, not stale memory. `InplaceUpdate` has
    no XLA kernel; models with keras_sparse layers never compile with XLA on
    this backend (`SUPPORTS_JIT`).
    """
    before: list = []
    outputs: list | None = None
    for i in range(count):
        with tf.control_dependencies(tf.nest.flatten(carry) + before):
            carry, start, pieces = body(i, carry)
        if not pieces:
            before = []
            continue
        if outputs is None:
            outputs = [
                tf.raw_ops.Empty(
                    shape=tf.concat([[num_rows], tf.shape(piece, out_type=tf.int32)[1:]], 0),
                    dtype=piece.dtype,
                    init=True,
                )
                for piece in pieces
            ]
        where = tf.cast(start, tf.int32) + tf.range(int(pieces[0].shape[0]), dtype=tf.int32)
        outputs = [
            tf.raw_ops.InplaceUpdate(x=out, i=where, v=piece) for out, piece in zip(outputs, pieces)
        ]
        before = list(outputs)
    return carry, tuple(outputs or ())


def host_sparse_from_coo(indices: np.ndarray, values: np.ndarray, shape: tuple) -> Any:
    """`sparse_from_coo` for a batch that Keras's data adapters build (TensorFlow places it)."""
    return sparse_from_coo(indices, values, shape)


def searchsorted(sorted_sequence: Any, values: Any, side: str = "left") -> Any:
    """Insertion points of `values` in the 1-D `sorted_sequence` (int32).

    `keras.ops.searchsorted` on Keras 3.10 calls `len()` on its input and so
    fails inside a `tf.function` on a tensor of unknown length.
    """
    return tf.searchsorted(sorted_sequence, values, side=side, out_type=tf.int32)


step_state = _common.stateless_step_state
