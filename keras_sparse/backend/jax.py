"""JAX backend of keras_sparse: padded `jax.experimental.sparse.BCOO` batches.

Under `jit` every shape is static, and a step function is compiled once per
set of input shapes. A sparse batch whose number of stored entries changes
from batch to batch would therefore compile a new step for every batch. Here
a sparse tensor built from host data holds a number of entries rounded up to
a power of two (a *bucket*), so an epoch compiles a handful of steps.

Padding is never data. A padding slot sits at an out-of-range index (the row
and column equal to the shape, JAX's own convention) with value 0: gathers read
0 there (`mode="fill"`), scatters and segment sums drop it, and `coo` returns a
validity mask that excludes it. A stored explicit zero is in range, so it is
observed.

`BCOO` is only the container (JAX documents `jax.experimental.sparse` as not
meant for performance-critical code): the math reads `indices` and `data`
with gathers and `segment_sum` over a fixed number of segments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jsparse

from keras_sparse.backend import _jax_distribution, _jax_lazy
from keras_sparse.backend._common import segment_max, segment_sum  # noqa: F401 - API
from keras_sparse.backend._jax_bcoo import (  # noqa: F401 - part of this backend's API
    MIN_BUCKET,
    _layout,
    bucket_size,
    sparse_from_coo,
    sparse_to_coo,
)
from keras_sparse.backend._jax_lazy import (  # noqa: F401 - API, from its home
    dense_gradient,
    is_sparse_gradient,
    lazy_adam_update,
    mark_row_sparse,
    note_dense_read,
    step_state,
    takes_train_step,
    train_step,
)

NAME = "jax"
INDEX_DTYPE = "int32"
# Every JAX step is compiled: layers must not turn jit off.
SUPPORTS_JIT = True


def is_sparse(x: Any) -> bool:
    """Return True for a `jax.experimental.sparse.BCOO`."""
    return isinstance(x, jsparse.BCOO)


def is_dense_tensor(x: Any) -> bool:
    """Return True for a dense JAX array (concrete or traced)."""
    return isinstance(x, jax.Array)


def sparse_num_rows(x: Any) -> int:
    """Number of rows of a `BCOO` (static)."""
    return int(x.shape[0])


def sparse_shape(x: Any) -> tuple[int, ...]:
    """Static shape of a `BCOO`."""
    return tuple(x.shape)


def _canonicalize(indices: Any, values: Any, valid: Any, shape: tuple) -> tuple:
    """Row-major order with duplicates summed, at a fixed size (jit-safe).

    Invalid slots go last; summed-away duplicates become padding.
    """
    size = indices.shape[0]
    if size == 0:
        return indices, values, valid
    limit = jnp.asarray(shape, dtype=indices.dtype)
    indices = jnp.where(valid[:, None], indices, limit[None, :])
    order = jnp.lexsort(tuple(indices[:, d] for d in reversed(range(indices.shape[1]))))
    indices, values, valid = indices[order], values[order], valid[order]
    new = jnp.concatenate([jnp.ones((1,), bool), jnp.any(indices[1:] != indices[:-1], axis=1)])
    segment = jnp.cumsum(new) - 1
    values = jax.ops.segment_sum(values, segment, size)
    first = jnp.full((size, indices.shape[1]), limit, indices.dtype)
    first = first.at[segment].set(indices)
    keep = jax.ops.segment_max(valid, segment, size) & (jnp.arange(size) <= segment[-1])
    first = jnp.where(keep[:, None], first, limit[None, :])
    return first, jnp.where(keep, values, 0), keep


def coo(x: Any, canonical: bool = True) -> tuple[Any, Any, Any, tuple[int, ...]]:
    """Canonical `(indices, values, valid, shape)` of a `BCOO`, jit-safe and fixed-size.

    `valid` is False at padding slots. With `canonical=True` a `BCOO` that does
    not promise unique indices (one built by the user) is canonicalised at a
    fixed size; `canonical=False` returns the entries as stored. No caller
    relies on the entries' order, so a device-aligned batch (unique but not
    globally sorted, see `_jax_distribution`) is used as stored.
    """
    x = _layout(x)
    shape = tuple(int(d) for d in x.shape)
    indices = x.indices
    limit = jnp.asarray(shape, dtype=indices.dtype)
    valid = jnp.all((indices >= 0) & (indices < limit[None, :]), axis=1)
    values = x.data
    if canonical and not x.unique_indices:
        indices, values, valid = _canonicalize(indices, values, valid, shape)
    return indices, values, valid, shape


def make_sparse(indices: Any, values: Any, dense_shape: Any, canonical: bool = False) -> Any:
    """Build a `BCOO` from traced parts (`dense_shape` must be static).

    `canonical=True` promises sorted, unique indices, so `coo` need not sort them.
    """
    shape = tuple(int(d) for d in dense_shape)
    indices = jnp.asarray(indices, jnp.int32)
    return jsparse.BCOO(
        (values, indices), shape=shape, indices_sorted=canonical, unique_indices=canonical
    )


def with_values(x: Any, values: Any) -> Any:
    """The same sparsity structure as `x` with new stored values."""
    return jsparse.BCOO(
        (values, x.indices),
        shape=x.shape,
        indices_sorted=x.indices_sorted,
        unique_indices=x.unique_indices,
    )


def _gather(array: Any, index: Any) -> Any:
    """`array[index]` that reads 0 out of range (and from an empty array)."""
    if array.size == 0:
        rest = array.shape[len(index) :] if isinstance(index, tuple) else array.shape[1:]
        first = index[0] if isinstance(index, tuple) else index
        return jnp.zeros((*first.shape, *rest), array.dtype)
    return array.at[index].get(mode="fill", fill_value=0)


def gather_entries(dense: Any, indices: Any) -> Any:
    """`dense[indices[:, 0], indices[:, 1]]`, reading 0 at padding slots."""
    return _gather(jnp.asarray(dense), (indices[:, 0], indices[:, 1]))


def _raw(variable: Any) -> Any:
    value = getattr(variable, "value", variable)
    return jnp.asarray(value)


def gather_rows(variable: Any, rows: Any) -> Any:
    """Rows `rows` of a (Keras) variable, reading 0 for padding rows.

    Inside a lazy training step (see `keras_sparse.backend._jax_lazy`) the
    gathered rows of a lazily updated table carry the gradient instead of the
    table itself.
    """
    picked = _gather(_raw(variable), rows)
    return _jax_lazy.track_gather(variable, rows, picked)


def scatter_set(dense: Any, indices: Any, valid: Any, value: float) -> Any:
    """`dense` with the entries at `indices` (where `valid`) set to `value`."""
    dense = jnp.asarray(dense)
    rows = indices[:, 0]
    if valid is not None:
        rows = jnp.where(valid, rows, dense.shape[0])
    return dense.at[rows, indices[:, 1]].set(value, mode="drop")


def replace_nan(scores: Any, fill: float) -> Any:
    """Scores with NaN replaced by `fill`.

    Rewritten only when a NaN is present (one reduction decides): the rewrite
    kept XLA's CPU backend from fusing the scores into the top-k's block
    maxima, 2 ms of a 6 ms `predict_top_k` step at 200 x 20000.
    """
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        return scores
    return jax.lax.cond(
        jnp.isnan(jnp.sum(scores)),
        lambda s: jnp.where(jnp.isnan(s), jnp.asarray(fill, s.dtype), s),
        lambda s: s,
        scores,
    )


#: Widest block of `best_k`'s pre-filter: on XLA's CPU backend, blocks of 64 items and more
#: make the block gather slower than the plain `top_k` it saves (benchmarks/README.md).
MAX_TOP_K_BLOCK = 32


def _block_size(n: int, k: int) -> int | None:
    """Block width for `best_k`'s pre-filter on CPU, or None where a plain top-k is cheaper."""
    if n < 2048 or jax.default_backend() != "cpu":
        return None
    size = min(MAX_TOP_K_BLOCK, 1 << max(3, round(math.log2(math.sqrt(n / k)))))
    return size if 8 * k * size <= n else None


def best_k(scores: Any, k: int) -> tuple[Any, Any]:
    """Top min(k, n) values and indices per row; ties go to the lower index.

    `jax.lax.top_k` on XLA's CPU backend costs about the same per item for
    any k. For a small k the items are cut into blocks of `size`: only the k
    blocks with the highest maxima can hold the top k (a block outside them
    has k blocks whose best item ranks above all of its items), so the exact
    top k is taken over those k * size items. Blocks are ranked by (max, lower
    block first) and gathered in item order, so ties still go to the lower
    item index; padding sits after every real item and loses every tie.
    """
    n = int(scores.shape[-1])
    k = min(int(k), n)
    floating = jnp.issubdtype(scores.dtype, jnp.floating)
    size = _block_size(n, k) if scores.ndim == 2 and floating else None
    if size is None:
        return jax.lax.top_k(scores, k)
    blocks = -(-n // size)
    padded = jnp.pad(scores, ((0, 0), (0, blocks * size - n)), constant_values=-jnp.inf)
    grouped = padded.reshape(scores.shape[0], blocks, size)
    _, best = jax.lax.top_k(grouped.max(axis=2), k)
    best = jnp.sort(best, axis=1)  # item order, for the tie rule
    candidates = jnp.take_along_axis(grouped, best[:, :, None], axis=1)
    values, position = jax.lax.top_k(candidates.reshape(scores.shape[0], k * size), k)
    block = jnp.take_along_axis(best, position // size, axis=1)
    return values, block * size + position % size


#: Largest dense score block one compiled call should make on XLA's CPU backend. A larger
#: temporary buffer is freshly mapped on every call, and its page faults cost more than the
#: top-k itself (1000 x 20000 scores: 43 ms for the product and block maxima, 5 x 2.9 ms in
#: 200-row slices; benchmarks/README.md).
SCORE_BLOCK_BYTES = 16 << 20


def dense_score_rows(num_items: int) -> int | None:
    """Rows of `(rows, num_items)` float32 scores one compiled call should hold, or None.

    None (any number) off the CPU. On the CPU, the rows that fit in
    `SCORE_BLOCK_BYTES`, at least 16.
    """
    if jax.default_backend() != "cpu":
        return None
    return max(16, SCORE_BLOCK_BYTES // (4 * max(int(num_items), 1)))


def stable_argsort(x: Any) -> Any:
    """Indices that sort the 1-D `x` ascending; equal values keep their order."""
    return jnp.argsort(x, stable=True)


def replica_sum(*values: Any) -> list[Any]:
    """Values as they are: a JAX step already sees its whole (global) batch."""
    return list(values)


def place_batch(data: Any) -> Any:
    """A batch of our own loops, split across devices under a `keras.distribution`.

    Without a distribution, or when its rows do not split evenly (a last
    partial batch), the batch is returned as it is.
    """
    return _jax_distribution.place_batch(data)


def check_distribution(model: Any) -> None:
    """Refuse a model that cannot run under the active `keras.distribution`.

    See `_jax_distribution.check_model`.
    """
    _jax_distribution.check_model(model)


def compile_fn(fn: Callable) -> Callable:
    """Compile `fn` with `jax.jit` (one compilation per set of input shapes)."""
    return jax.jit(fn)


def sparse_dense_matmul(sparse: Any, dense: Any, transpose_a: bool = False) -> Any:
    """Multiply a 2-D or 3-D `BCOO` by a dense array (see the TensorFlow twin).

    Gathers the dense rows named by the stored entries and sums them into
    their output rows with `segment_sum`; padding slots gather 0 and fall
    outside every segment.
    """
    indices, values, valid, shape = coo(sparse)
    dense = jnp.asarray(dense)
    values = jnp.where(valid, values, 0).astype(dense.dtype)
    rank = len(shape)
    if rank == 2:
        row_axis, col_axis = (1, 0) if transpose_a else (0, 1)
        out_rows = shape[row_axis]
        rows = jnp.where(valid, indices[:, row_axis], out_rows)
        cols = indices[:, col_axis]
        if dense.ndim == 2:
            picked = _gather(dense, cols)
            return jax.ops.segment_sum(picked * values[:, None], rows, out_rows)
        moved = jnp.moveaxis(dense, 1, 0)  # (m, batch, d)
        picked = _gather(moved, cols)
        summed = jax.ops.segment_sum(picked * values[:, None, None], rows, out_rows)
        return jnp.moveaxis(summed, 0, 1)
    if rank != 3:
        raise ValueError(f"sparse operand must be 2-D or 3-D, got rank {rank}.")
    row_axis, col_axis = (2, 1) if transpose_a else (1, 2)
    batch, out_rows = shape[0], shape[row_axis]
    cols = indices[:, col_axis]
    if dense.ndim == 2:
        picked = _gather(dense, cols)
    else:
        picked = _gather(dense, (indices[:, 0], cols))
    segment = jnp.where(valid, indices[:, 0] * out_rows + indices[:, row_axis], batch * out_rows)
    summed = jax.ops.segment_sum(picked * values[:, None], segment, batch * out_rows)
    return summed.reshape(batch, out_rows, dense.shape[-1])


def matmul_t(a: Any, b: Any) -> Any:
    """`a.T @ b` of two 2-D arrays (XLA folds the transpose into the product)."""
    return jnp.matmul(jnp.transpose(a), b)


def loop_rows(count: int, body: Callable, carry: Any, num_rows: int) -> tuple[Any, tuple]:
    """Run `body(i, carry) -> (carry, start, pieces)` for i < count; assemble the pieces.

    Each piece has `block` leading rows destined to rows `[start, start + block)`
    of an output with `num_rows` rows; where blocks overlap they hold equal
    values. On JAX the outputs are loop carries written in place
    (`dynamic_update_slice`), so only one block's pieces exist at a time.
    """
    shapes = jax.eval_shape(lambda c: body(0, c)[2], carry)
    outputs = tuple(jnp.zeros((num_rows, *s.shape[1:]), s.dtype) for s in shapes)
    if not outputs:  # a plain loop over blocks
        return jax.lax.fori_loop(0, count, lambda i, c: body(i, c)[0], carry), ()

    def step(i: Any, state: tuple) -> tuple:
        carry, outputs = state
        carry, start, pieces = body(i, carry)
        outputs = tuple(
            jax.lax.dynamic_update_slice(out, piece, (start,) + (0,) * (piece.ndim - 1))
            for out, piece in zip(outputs, pieces)
        )
        return carry, outputs

    return jax.lax.fori_loop(0, count, step, (carry, outputs))


def host_sparse_from_coo(indices: np.ndarray, values: np.ndarray, shape: tuple) -> Any:
    """`sparse_from_coo` on the host CPU, as Keras's data adapters build their batches."""
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        return sparse_from_coo(indices, values, shape)


def searchsorted(sorted_sequence: Any, values: Any, side: str = "left") -> Any:
    """Insertion points of `values` in the 1-D `sorted_sequence` (int32)."""
    return jnp.searchsorted(sorted_sequence, values, side=side).astype(jnp.int32)


def pydataset_adapter(
    py_dataset: Any, structure: Any, epoch_rows: Callable, shuffle: bool, class_weight: Any
) -> Any:
    """None: Keras's own `PyDataset` adapter feeds the data set on this backend."""
    return None
