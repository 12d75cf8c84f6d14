"""PyTorch backend of keras_sparse: `torch.sparse_coo_tensor` batches, row-sparse gradients.

Keras's torch trainer runs eagerly, so nothing here is padded or bucketed:
a sparse tensor holds exactly its stored entries, in row-major order with
duplicates summed when it comes from the host (`sparse_from_coo`), and `coo`
canonicalises a user's tensor with `coalesce()`. The validity mask of `coo`
is `None`, as on TensorFlow. CSR tensors (`torch.sparse_csr_tensor`) are
accepted wherever COO ones are.

Row-sparse updates (`LazyAdam`'s training step, `gather_rows`,
`lazy_adam_update`) live in `_torch_lazy`; every other step, and every other
optimizer, sees Keras's ordinary dense gradients.

`torch.compile` does not trace sparse tensors, so `compile_fn` runs functions
eagerly (`SUPPORTS_JIT` is False).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from keras_sparse.backend import _common
from keras_sparse.backend._torch_lazy import (  # noqa: F401 - the backend API, from its home
    gather_rows,
    is_sparse_gradient,
    lazy_adam_update,
    mark_row_sparse,
    note_dense_read,
    train_step,
)

NAME = "torch"
INDEX_DTYPE = "int64"
# torch.compile cannot trace sparse tensors (pytorch/pytorch#169119): layers run eagerly.
SUPPORTS_JIT = False

_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)
# The values an uncoalesced tensor was built from, kept for their gradients.
_VALUES = "_keras_sparse_values"


def _device() -> torch.device:
    """The device Keras puts new tensors on."""
    from keras.src.backend.torch.core import get_device

    return torch.device(get_device())


def is_sparse(x: Any) -> bool:
    """Return True for a sparse COO or CSR `torch.Tensor`."""
    return isinstance(x, torch.Tensor) and x.layout in _SPARSE_LAYOUTS


def is_dense_tensor(x: Any) -> bool:
    """Return True for a dense (strided) `torch.Tensor`."""
    return isinstance(x, torch.Tensor) and x.layout == torch.strided


def _as_coo(x: torch.Tensor) -> torch.Tensor:
    return x.to_sparse_coo() if x.layout != torch.sparse_coo else x


def sparse_from_coo(
    indices: np.ndarray, values: np.ndarray, shape: tuple[int, ...], device: Any = None
) -> torch.Tensor:
    """Build a coalesced `torch.sparse_coo_tensor` from canonical host arrays (no padding).

    `indices` is `(nnz, rank)` in row-major order without duplicates, as
    `keras_sparse.convert.coo_parts` returns it. The tensor is placed on
    `device` (default: Keras's device).
    """
    device = _device() if device is None else device
    index = torch.from_numpy(np.ascontiguousarray(np.asarray(indices, np.int64).T))
    data = torch.from_numpy(np.ascontiguousarray(values))
    if index.shape[1] == 0:
        index = index.reshape(len(shape), 0)
    tensor = torch.sparse_coo_tensor(
        index, data, tuple(int(d) for d in shape), is_coalesced=True, check_invariants=False
    )
    return tensor if device.type == "cpu" else tensor.to(device)


def sparse_to_coo(x: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Host `(indices, values, shape)` of a torch sparse tensor (as stored)."""
    x = _as_coo(x.detach())
    indices = x._indices().T.cpu().numpy().astype(np.int64)
    return indices, x._values().cpu().numpy(), tuple(int(d) for d in x.shape)


def sparse_num_rows(x: Any) -> int:
    """Number of rows of a sparse tensor."""
    return int(x.shape[0])


def sparse_shape(x: Any) -> tuple[int, ...]:
    """Shape of a sparse tensor."""
    return tuple(int(d) for d in x.shape)


def _check_placement(x: torch.Tensor) -> None:
    """Refuse a sparse tensor that Keras's layers cannot use: another device, a complex dtype."""
    device = _device()
    if x.device.type != device.type:
        raise ValueError(
            f"Got a sparse tensor on the {x.device} device, but Keras runs on {device}. Move "
            f"it first (x.to({str(device)!r})), or set Keras's device with "
            "keras.device(...)."
        )
    if x.dtype.is_complex:
        raise TypeError(
            f"Got a sparse tensor of dtype {x.dtype}; keras_sparse supports real values only. "
            "Split the real and imaginary parts into two inputs."
        )


def coo(x: Any, canonical: bool = True) -> tuple[torch.Tensor, torch.Tensor, None, tuple]:
    """`(indices, values, valid, shape)` of a sparse tensor.

    With `canonical=True` indices are int64 `(nnz, rank)` in row-major order,
    duplicates summed (`coalesce`), explicit zeros kept; `canonical=False`
    returns them as stored, with the gradients of values that `make_sparse` or
    `with_values` were given. `valid` is None: nothing is padded on torch.
    """
    x = _as_coo(x)
    _check_placement(x)
    if canonical and not x.is_coalesced():
        x = x.coalesce()
    if x.is_coalesced():  # `values()` carries gradients, but only on a coalesced tensor
        return x.indices().T, x.values(), None, sparse_shape(x)
    values = getattr(x, _VALUES, None)  # as stored, with their gradients (`_values()` has none)
    return x._indices().T, x._values() if values is None else values, None, sparse_shape(x)


def make_sparse(
    indices: Any, values: Any, dense_shape: Any, canonical: bool = False
) -> torch.Tensor:
    """Build a sparse COO tensor; `canonical=True` promises sorted, unique `(nnz, rank)` indices."""
    shape = tuple(int(d) for d in dense_shape)
    index = torch.as_tensor(indices, dtype=torch.int64).T
    values = torch.as_tensor(values)
    tensor = torch.sparse_coo_tensor(
        index, values, shape, is_coalesced=bool(canonical), check_invariants=False
    )
    return _keep_values(tensor, values)


def _keep_values(tensor: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    if values.requires_grad and not tensor.is_coalesced():
        setattr(tensor, _VALUES, values)
    return tensor


def with_values(x: Any, values: Any) -> torch.Tensor:
    """The same sparsity structure as `x` with new stored values."""
    x = _as_coo(x)
    tensor = torch.sparse_coo_tensor(
        x._indices(), values, x.shape, is_coalesced=x.is_coalesced(), check_invariants=False
    )
    return _keep_values(tensor, torch.as_tensor(values))


def gather_entries(dense: Any, indices: Any) -> torch.Tensor:
    """`dense[indices[:, 0], indices[:, 1]]` of a 2-D tensor."""
    return dense[indices[:, 0], indices[:, 1]]


def scatter_set(dense: Any, indices: Any, valid: Any, value: float) -> torch.Tensor:
    """`dense` with the entries at `indices` set to `value` (a new tensor)."""
    fill = torch.tensor(value, dtype=dense.dtype, device=dense.device)
    return dense.index_put((indices[:, 0], indices[:, 1]), fill)


def replace_nan(scores: Any, fill: float) -> torch.Tensor:
    """Scores with NaN replaced by `fill` (no copy when there is no NaN)."""
    if not torch.isnan(scores.sum()):
        return scores
    return torch.where(torch.isnan(scores), scores.new_tensor(fill), scores)


def best_k(scores: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top min(k, n) values and indices per row, sorted; ties go to the lower index.

    `torch.topk` leaves the order of equal values unspecified. One more item
    than asked for is taken: where the (k+1)-th value equals the k-th, an item
    outside the result ties with it (and a lower index may have been left
    out), so that row is taken again with a stable sort; the result is put in
    (value, index) order. Rows without such a tie, nearly all of them for real
    scores, cost one `torch.topk` and a sort of k items.
    """
    n = int(scores.shape[-1])
    k = min(int(k), n)
    if k == 0 or scores.ndim != 2 or scores.shape[0] == 0:
        return torch.topk(scores, k, dim=-1, largest=True, sorted=True)
    values, indices = torch.topk(scores, min(k + 1, n), dim=-1, largest=True, sorted=True)
    tied = values[:, k] == values[:, k - 1] if n > k else None
    values, indices = values[:, :k], indices[:, :k]
    # Within the result: equal values by index (sort by index, then stably by value).
    by_index, order = torch.sort(indices, dim=-1)
    values = torch.gather(values, 1, order)
    values, order = torch.sort(values, dim=-1, descending=True, stable=True)
    indices = torch.gather(by_index, 1, order)
    if tied is not None and bool(tied.any()):
        rows = torch.nonzero(tied)[:, 0]
        again_values, again = torch.sort(scores[rows], dim=-1, descending=True, stable=True)
        values = values.index_copy(0, rows, again_values[:, :k].contiguous())
        indices = indices.index_copy(0, rows, again[:, :k].contiguous())
    return values, indices


def dense_score_rows(num_items: int) -> int | None:
    """Rows of dense scores one compiled call should hold: None, any number (the whole batch)."""
    return None


def stable_argsort(x: Any) -> torch.Tensor:
    """Indices that sort the 1-D `x` ascending; equal values keep their order."""
    return torch.sort(x, stable=True).indices


def replica_sum(*values: Any) -> list[Any]:
    """Values as they are: a torch step sees its whole batch."""
    return list(values)


def place_batch(data: Any) -> Any:
    """The batch as it is (Keras's torch trainer places batches on its device)."""
    return data


def check_distribution(model: Any) -> None:
    """Nothing to check: `keras.distribution` is a JAX feature."""


def compile_fn(fn: Callable) -> Callable:
    """`fn` run eagerly without autograd (`torch.compile` does not trace sparse tensors).

    Every caller compiles an inference step (scoring, top-k), so no graph for
    gradients is recorded.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


def segment_sum(values: Any, segments: Any, num_segments: Any) -> torch.Tensor:
    """Sum `values` into `num_segments` rows by `segments` (`index_add`; empty input works).

    Keras's torch `segment_sum` fails on an empty batch and computes in float32.
    """
    values = torch.as_tensor(values)
    out = values.new_zeros((int(num_segments), *values.shape[1:]))
    return out.index_add(0, torch.as_tensor(segments, device=values.device).long(), values)


def segment_max(values: Any, segments: Any, num_segments: Any) -> torch.Tensor:
    """Maximum of `values` per segment; -inf for a segment without values."""
    values = torch.as_tensor(values)
    segments = torch.as_tensor(segments, device=values.device).long()
    out = values.new_full((int(num_segments), *values.shape[1:]), float("-inf"))
    index = segments.reshape(-1, *([1] * (values.ndim - 1))).expand_as(values)
    return out.scatter_reduce(0, index, values, "amax", include_self=True)


def sparse_dense_matmul(sparse: Any, dense: Any, transpose_a: bool = False) -> torch.Tensor:
    """Multiply a 2-D or 3-D sparse tensor by a dense tensor (see the TensorFlow twin).

    Gathers the dense rows named by the stored entries and adds them into
    their output rows (`index_add`); gradients flow to `dense` and to the
    sparse values.
    """
    indices, values, _, shape = coo(sparse, canonical=False)
    dense = torch.as_tensor(dense)
    values = values.to(dense.dtype)
    rank = len(shape)
    if rank == 2:
        row_axis, col_axis = (1, 0) if transpose_a else (0, 1)
        rows, cols = indices[:, row_axis], indices[:, col_axis]
        if dense.ndim == 2:
            picked = dense.index_select(0, cols) * values[:, None]
            return segment_sum(picked, rows, shape[row_axis])
        moved = dense.movedim(1, 0)  # (m, batch, d)
        picked = moved.index_select(0, cols) * values[:, None, None]
        return segment_sum(picked, rows, shape[row_axis]).movedim(0, 1)
    if rank != 3:
        raise ValueError(f"sparse operand must be 2-D or 3-D, got rank {rank}.")
    row_axis, col_axis = (2, 1) if transpose_a else (1, 2)
    batch, out_rows = shape[0], shape[row_axis]
    cols = indices[:, col_axis]
    picked = dense.index_select(0, cols) if dense.ndim == 2 else dense[indices[:, 0], cols]
    segment = indices[:, 0] * out_rows + indices[:, row_axis]
    summed = segment_sum(picked * values[:, None], segment, batch * out_rows)
    return summed.reshape(batch, out_rows, dense.shape[-1])


def matmul_t(a: Any, b: Any) -> torch.Tensor:
    """`a.T @ b` of two 2-D tensors (`a.T` is a view)."""
    return torch.matmul(a.T, b)


def loop_rows(count: int, body: Callable, carry: Any, num_rows: int) -> tuple[Any, tuple]:
    """Run `body(i, carry) -> (carry, start, pieces)` for i < count; assemble the pieces.

    See the JAX twin. Each block's pieces are copied into their rows of outputs
    allocated at the first block, then dropped, so the outputs exist once: joining
    a list of pieces at the end held the table gradient twice (pieces and joined
    copy; 256 MB more for a 1M x 64 table). Where blocks overlap they hold equal
    values, so the last block's rewrite of the rows it shares changes nothing.
    """
    outputs: tuple = ()
    for i in range(count):
        carry, start, pieces = body(i, carry)
        if not pieces:
            continue
        if not outputs:
            outputs = tuple(p.new_empty((num_rows, *p.shape[1:])) for p in pieces)
        start = int(start)
        for out, piece in zip(outputs, pieces):
            out[start : start + piece.shape[0]] = piece
        del pieces
    return carry, outputs


def dense_gradient(gradient: Any) -> torch.Tensor:
    """A gradient as a dense tensor."""
    return gradient.to_dense() if is_sparse(gradient) else gradient


def host_sparse_from_coo(indices: np.ndarray, values: np.ndarray, shape: tuple) -> Any:
    """`sparse_from_coo` on the CPU, as Keras's torch data loaders build their batches."""
    return sparse_from_coo(indices, values, shape, device=torch.device("cpu"))


def searchsorted(sorted_sequence: Any, values: Any, side: str = "left") -> torch.Tensor:
    """Insertion points of `values` in the 1-D `sorted_sequence` (int32)."""
    found = torch.searchsorted(
        sorted_sequence.contiguous(), values.contiguous(), right=side == "right"
    )
    return found.to(torch.int32)


def pydataset_adapter(
    py_dataset: Any, structure: Any, epoch_rows: Callable, shuffle: bool, class_weight: Any
) -> Any:
    """None: Keras's own `PyDataset` adapter feeds the data set on this backend."""
    return None


step_state = _common.stateless_step_state
takes_train_step = _common.has_lazy_optimizer
