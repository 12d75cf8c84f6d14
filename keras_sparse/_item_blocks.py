"""Work over a catalogue of items one block at a time, never holding rows x items.

Two jobs of `keras_sparse.layers.SparseDenseOutput`, written with `keras.ops`:

- `log_partition(h, kernel, bias, block)`: the exact `logsumexp_j(h @ kernel.T + bias)`
  per row, streamed over item blocks with a running maximum. Its gradient is
  written by hand and recomputes each block's scores instead of storing them,
  so memory is O(rows x block) plus the (dense) gradient of the table itself.
- `top_k(h, kernel, bias, k, ...)`: the top k items per row, merged block by
  block from a running list, with exclusions masked inside each block.

The log-partition loops over equal-width blocks through `backend.loop_rows`:
on JAX an `ops.fori_loop` whose blocks write their rows of the table gradient
in place, so one block's scores exist at a time; on TensorFlow a loop
unrolled into the graph (see that backend). Top-k unrolls its loop in Python
over static slices (at most `MAX_BLOCKS` of them): it keeps only k scores per
row between blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_sparse import _ops
from keras_sparse import backend as B

# More blocks than this are merged into wider ones (compile time grows with the count).
MAX_BLOCKS = 64  # top-k
MAX_LOOP_BLOCKS = 512  # log-partition


def block_bounds(num_items: int, block: int) -> list[tuple[int, int]]:
    """`[start, stop)` of each item block: widths of at least `block`, at most `MAX_BLOCKS`."""
    num_items, block = int(num_items), max(1, int(block))
    block = max(block, -(-num_items // MAX_BLOCKS))
    return [(start, min(start + block, num_items)) for start in range(0, num_items, block)]


def table_scores(h: Any, rows: Any, bias: Any) -> Any:
    """`h @ rows.T + bias`: the scores of every row of `h` for some items' table rows."""
    out = ops.matmul(h, ops.transpose(rows))
    return out if bias is None else out + bias[None, :]


def entry_scores(h: Any, kernel: Any, bias: Any, rows: Any, cols: Any, dtype: Any) -> Any:
    """Score of each (row, item) pair: `sum(h[row] * kernel[item]) + bias[item]`.

    Reads only the named table rows (`backend.gather_rows`, 0 at padding), so
    it works on a Keras variable (lazy updates) as on a tensor.
    """
    picked = ops.cast(B.gather_rows(kernel, cols), dtype)
    out = ops.sum(B.gather_rows(h, rows) * picked, axis=1)
    return out if bias is None else out + ops.cast(B.gather_rows(bias, cols), dtype)


def _block_scores(h: Any, kernel: Any, bias: Any, start: int, stop: int) -> Any:
    return table_scores(h, kernel[start:stop], None if bias is None else bias[start:stop])


def _loop_bounds(num_items: int, block: int) -> tuple[int, int]:
    """(block width, number of blocks) of the looped form: equal widths, last one clamped.

    At most `MAX_LOOP_BLOCKS` blocks (wider ones beyond): TensorFlow unrolls the loop.
    """
    num_items = int(num_items)
    block = max(1, int(block), -(-num_items // MAX_LOOP_BLOCKS))
    block = min(block, num_items)
    return block, -(-num_items // block)


def _looped_block(kernel: Any, bias: Any, i: Any, block: int) -> tuple[Any, Any, Any, Any]:
    """Block `i` of the looped form: its start, table rows, bias and which items are new.

    The last block starts at `items - block` so that every block has the same
    width; the items it shares with the block before are not new.
    """
    num_items = kernel.shape[0]
    first = i * block
    start = ops.minimum(first, num_items - block)
    rows = ops.slice(kernel, [start, 0], [block, kernel.shape[1]])
    b = None if bias is None else ops.slice(bias, [start], [block])
    fresh = ops.greater_equal(start + ops.arange(block), first)
    return start, rows, b, fresh


def _left_out(scores: Any, start: Any, block: int, exclude: Any) -> Any:
    """A block's scores with each row's excluded item pushed far below every other score.

    One scatter of one value per row into the block, never a `(rows, block)`
    mask: a mask depends only on `exclude`, and TensorFlow computed every
    block's mask up front and held them all (10.8 GB against 0.55 GB for the
    value and gradient of a 6400-row, 100k-item log-partition in blocks of
    4096). The current value is read with a gather of one entry per row
    (`take_along_axis` broadcasts the block on TensorFlow: two more passes over
    it). The penalty is large but
    finite, so that a block of excluded items only never gives `inf - inf` in
    the running maximum. Ids outside the block leave the row as it is.
    """
    local = exclude - start
    inside = ops.logical_and(ops.greater_equal(local, 0), ops.less(local, block))
    local = ops.where(inside, local, ops.zeros_like(local))
    rows = ops.arange(ops.shape(scores)[0], dtype=local.dtype)
    where = ops.stack([rows, local], axis=1)
    current = _ops.gather_entries(scores, where)
    penalty = float(np.finfo(keras.backend.standardize_dtype(scores.dtype)).max) / 4
    new = ops.where(inside, current - penalty, current)
    return ops.scatter_update(scores, where, new)


def _overlaps(i: Any, count: int, num_items: int, block: int) -> bool:
    """Whether block `i` may hold items of the block before (only the last one can).

    Decided in Python where it can be (a Python `i`, or equal blocks), which
    spares a pass over the block's scores.
    """
    if int(num_items) % block == 0:
        return False
    return not isinstance(i, int) or i == count - 1


def _forward_looped(h: Any, kernel: Any, bias: Any, block: int, exclude: Any = None) -> Any:
    block, count = _loop_bounds(kernel.shape[0], block)

    def body(i: Any, carry: tuple) -> tuple:
        running_max, total = carry
        start, rows, b, fresh = _looped_block(kernel, bias, i, block)
        scores = table_scores(h, rows, b)
        if exclude is not None:
            scores = _left_out(scores, start, block, exclude)
        if _overlaps(i, count, kernel.shape[0], block):
            scores = ops.where(fresh[None, :], scores, _ops.MINUS_INF)
        new_max = ops.maximum(running_max, ops.max(scores, axis=1))
        total = total * ops.exp(running_max - new_max) + ops.sum(
            ops.exp(scores - new_max[:, None]), axis=1
        )
        return (new_max, total), start, ()

    rows_of_h = ops.shape(h)[0]
    start = (ops.full((rows_of_h,), _ops.MINUS_INF, h.dtype), ops.zeros((rows_of_h,), h.dtype))
    (running_max, total), _ = B.loop_rows(count, body, start, kernel.shape[0])
    return running_max + ops.log(total)


def _backward_looped(
    h: Any, kernel: Any, bias: Any, lse: Any, upstream: Any, block: int, exclude: Any = None
):
    """Gradients of `sum(upstream * log_partition)`, one block of scores at a time.

    Each block's softmax weights `exp(scores - lse)` are used unscaled: the
    upstream gradient (one value per row) scales the rows of `h` that the
    table's gradient multiplies (`weights.T @ h_u`, through `backend.matmul_t`:
    `keras.ops.transpose` would write each `(rows, block)` block transposed),
    the bias gradient's product (`u @ weights`), and `grad_h` once at the end.
    This spares a pass over every block.
    """
    block, count = _loop_bounds(kernel.shape[0], block)
    upstream = ops.cast(upstream, h.dtype)
    scaled = h * upstream[:, None]

    def body(i: Any, grad_h: Any) -> tuple:
        start, rows, b, fresh = _looped_block(kernel, bias, i, block)
        scores = table_scores(h, rows, b)
        if exclude is not None:  # the excluded item is in no row's sum
            scores = _left_out(scores, start, block, exclude)
        weights = ops.exp(scores - lse[:, None])
        new = weights
        if _overlaps(i, count, kernel.shape[0], block):
            new = ops.where(fresh[None, :], weights, ops.zeros_like(weights))
        grad_h = grad_h + ops.matmul(new, rows)
        # Rows shared with the previous block get the same values again.
        table = B.matmul_t(weights, scaled)
        db = None if bias is None else ops.matmul(upstream[None, :], weights)[0]
        return grad_h, start, ((table,) if bias is None else (table, db))

    grad_h, grads = B.loop_rows(count, body, ops.zeros_like(h), kernel.shape[0])
    grad_h = grad_h * upstream[:, None]
    return (grad_h, grads[0], None) if bias is None else (grad_h, grads[0], grads[1])


def log_partition(h: Any, kernel: Any, bias: Any, block: int, exclude: Any = None) -> Any:
    """Exact `logsumexp(h @ kernel.T + bias, axis=1)` without the rows x items matrix.

    Args:
        h: `(rows, d)` features.
        kernel: `(items, d)` output table (one row per item).
        bias: `(items,)` bias, or None.
        block: Items per block.
        exclude: Optional `(rows,)` integer item per row left out of its sum
            (the label, for a cross-entropy written as
            `logaddexp(s_label, log_partition(..., exclude=label)) - s_label`);
            an id outside `[0, items)` leaves nothing out.

    Returns:
        A `(rows,)` tensor. Its gradient with respect to `h`, `kernel` and
        `bias` is the softmax-weighted one, recomputed block by block.
    """
    if exclude is not None:
        exclude = ops.cast(ops.convert_to_tensor(exclude), "int32")
    forward = functools.partial(_forward_looped, block=block, exclude=exclude)
    backward = functools.partial(_backward_looped, block=block, exclude=exclude)
    # torch's custom gradient saves its inputs, which must be tensors (not arrays or variables).
    h, kernel = ops.convert_to_tensor(h), ops.convert_to_tensor(kernel)
    if bias is None:
        return _log_partition_no_bias(forward, backward)(h, kernel)
    return _log_partition_bias(forward, backward)(h, kernel, ops.convert_to_tensor(bias))


def _upstream(args: tuple, upstream: Any) -> Any:
    # Keras's custom_gradient passes the upstream gradient positionally on some
    # backends and as a keyword on others; TensorFlow may pass row slices of it.
    return B.dense_gradient(args[0] if upstream is None else upstream)


def _log_partition_bias(forward: Callable, backward: Callable) -> Callable:
    @ops.custom_gradient
    def fn(h: Any, kernel: Any, bias: Any) -> tuple:
        lse = forward(h, kernel, bias)

        def grad(*args: Any, upstream: Any = None) -> tuple:
            return backward(h, kernel, bias, lse, _upstream(args, upstream))

        return lse, grad

    return fn


def _log_partition_no_bias(forward: Callable, backward: Callable) -> Callable:
    @ops.custom_gradient
    def fn(h: Any, kernel: Any) -> tuple:
        lse = forward(h, kernel, None)

        def grad(*args: Any, upstream: Any = None) -> tuple:
            grad_h, grad_kernel, _ = backward(h, kernel, None, lse, _upstream(args, upstream))
            return grad_h, grad_kernel

        return lse, grad

    return fn


def _mask_block(scores: Any, masks: list, start: int, stop: int) -> Any:
    """Block scores at -inf for the masked entries whose item falls in `[start, stop)`.

    `masks` holds `(indices, which)` pairs: `(n, 2)` entries and a boolean
    `(n,)` of those to mask. A scatter per block: O(entries), never rows x items.
    """
    hits = None
    for indices, which in masks:
        rows, cols = indices[:, 0], indices[:, 1]
        inside = ops.logical_and(ops.greater_equal(cols, start), ops.less(cols, stop))
        inside = ops.logical_and(inside, which)
        local = ops.stack(
            [
                ops.where(inside, rows, ops.zeros_like(rows)),
                ops.where(inside, cols - start, ops.zeros_like(cols)),
            ],
            axis=1,
        )
        part = ops.scatter(local, ops.cast(inside, scores.dtype), ops.shape(scores))
        hits = part if hits is None else hits + part
    return ops.where(ops.greater(hits, 0), ops.full_like(scores, _ops.MINUS_INF), scores)


def exclusion_mask(exclude: Any) -> tuple[Any, Any]:
    """`(indices, which)` masking every stored entry of the sparse `exclude`."""
    indices, _, valid, _ = B.coo(exclude, canonical=False)
    which = ops.ones_like(indices[:, 0], "bool") if valid is None else valid
    return indices, which


def top_k(
    h: Any,
    kernel: Any,
    bias: Any,
    k: int,
    block: int,
    activation: Callable | None = None,
    masks: list | None = None,
) -> tuple[Any, Any, Any]:
    """Top min(k, items) items per row of `activation(h @ kernel.T + bias)`, by blocks.

    Same result as `keras_sparse._ops.top_k` over the masked dense scores
    (ties to the lower index, NaN and masked items never ranked), holding
    at most rows x (block + k) scores at once. `masks` is a list of
    `(indices, which)` entries never to rank (see `exclusion_mask`).

    Returns:
        `(values, indices, valid)` as `keras_sparse._ops.top_k`.
    """
    best_values, best_indices = None, None
    for start, stop in block_bounds(kernel.shape[0], block):
        scores = _block_scores(h, kernel, bias, start, stop)
        if activation is not None:
            scores = activation(scores)
        scores = _ops.candidate_scores(scores)
        if masks:
            scores = _mask_block(scores, masks, start, stop)
        values, indices = B.best_k(scores, k)
        indices = ops.cast(indices, "int32") + start
        if best_values is None:
            best_values, best_indices = values, indices
            continue
        # The running list holds lower item indices, so it goes first: ties keep it.
        values = ops.concatenate([best_values, values], axis=1)
        indices = ops.concatenate([best_indices, indices], axis=1)
        best_values, position = B.best_k(values, k)
        best_indices = ops.take_along_axis(indices, position, axis=1)
    return best_values, best_indices, ops.greater(best_values, _ops.MINUS_INF)


def group_max(h: Any, kernel: Any, bias: Any, groups: int, block: int, masks: list) -> Any:
    """Each row's best score in each group of `groups` consecutive table rows, by blocks.

    `kernel` holds `n * groups` rows (the hard sampler's pool): the result is
    `(rows, n)`, entry `k` the maximum over rows `[k * groups, (k + 1) * groups)`
    of `h @ kernel.T + bias`, with the entries of `masks` (`(indices, which)`
    pairs over `(row, kernel row)`, see `_mask_block`) at -inf. The pool is
    scored `block` table rows at a time and the gradient goes to each
    group's best entry only; the backward pass reuses the forward's choice,
    so memory is O(rows x block) plus the `(rows, n)` result and choice.
    """
    total = int(kernel.shape[0])
    num = total // groups
    per_block = max(1, min(num, int(block) // groups))
    count = -(-num // per_block)
    per_block = -(-num // count)
    width = per_block * groups
    padded = count * width - total
    h, kernel = ops.convert_to_tensor(h), ops.convert_to_tensor(kernel)
    if bias is None:
        bias = ops.zeros((total,), h.dtype)
    bias = ops.convert_to_tensor(bias)
    if padded:  # equal blocks: empty groups at the end, cut from the result
        kernel = ops.concatenate([kernel, ops.zeros((padded, kernel.shape[1]), kernel.dtype)], 0)
        bias = ops.concatenate([bias, ops.zeros((padded,), bias.dtype)], 0)
    rows_of_h = ops.shape(h)[0]

    def block_rows(kernel: Any, bias: Any, i: Any) -> tuple[Any, Any, Any]:
        start = i * width
        part = ops.slice(kernel, [start, 0], [width, kernel.shape[1]])
        return start, part, ops.slice(bias, [start], [width])

    def choose(h: Any, kernel: Any, bias: Any) -> tuple[Any, Any]:
        def body(i: Any, carry: Any) -> tuple:
            start, part, b = block_rows(kernel, bias, i)
            scores = table_scores(h, part, b)
            if masks:
                scores = _mask_block(scores, masks, start, start + width)
            scores = ops.reshape(scores, (-1, per_block, groups))
            best = ops.transpose(ops.max(scores, axis=2))
            where = ops.transpose(ops.cast(ops.argmax(scores, axis=2), "int32"))
            return carry, i * per_block, (best, where)

        _, (best, where) = B.loop_rows(count, body, ops.zeros((), h.dtype), count * per_block)
        return ops.transpose(best), ops.transpose(where)

    @ops.custom_gradient
    def fn(h: Any, kernel: Any, bias: Any) -> tuple:
        best, where = choose(h, kernel, bias)

        def grad(*args: Any, upstream: Any = None) -> tuple:
            upstream = _upstream(args, upstream)
            upstream = ops.pad(upstream, [[0, 0], [0, count * per_block - num]])

            def body(i: Any, grad_h: Any) -> tuple:
                start, part, _ = block_rows(kernel, bias, i)
                picked = ops.slice(where, [0, i * per_block], [rows_of_h, per_block])
                weight = ops.slice(upstream, [0, i * per_block], [rows_of_h, per_block])
                spread = ops.one_hot(picked, groups, dtype=h.dtype) * weight[:, :, None]
                spread = ops.reshape(spread, (-1, width))
                grad_h = grad_h + ops.matmul(spread, part)
                pieces = (B.matmul_t(spread, h), ops.sum(spread, axis=0))
                return grad_h, start, pieces

            grad_h, (grad_kernel, grad_bias) = B.loop_rows(
                count, body, ops.zeros_like(h), count * width
            )
            return grad_h, grad_kernel, grad_bias

        return best, grad

    return fn(h, kernel, bias)[:, :num]
