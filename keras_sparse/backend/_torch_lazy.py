"""The torch backend's row-sparse training: `LazyAdam`'s step and updates.

Inside a training step whose optimizer asks for row-sparse updates
(`LazyAdam`, see `train_step`), `gather_rows` of a table that its layer marked
(`mark_row_sparse`) returns rows whose gradient is a sparse COO tensor over
the gathered rows only; `loss.backward()` leaves it in the table's `.grad`,
Keras hands it to the optimizer unchanged, and `lazy_adam_update` moves those
rows and their moments only. `note_dense_read` warns once when a marked table
is read whole instead. Re-exported by `keras_sparse.backend.torch`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from keras_sparse.backend._once import warn_once

_LOCAL = threading.local()  # `row_sparse`: whether the running training step is LazyAdam's
_ROW_SPARSE = "_keras_sparse_row_sparse"


class _RowGather(torch.autograd.Function):
    """`table[rows]` whose gradient is a sparse COO tensor over `rows` only."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.table_shape = table.shape
        return table.index_select(0, rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (rows,) = ctx.saved_tensors
        sparse = torch.sparse_coo_tensor(
            rows[None, :], grad, ctx.table_shape, check_invariants=False
        )
        return sparse, None


def _raw(variable: Any) -> torch.Tensor:
    value = getattr(variable, "value", variable)  # a Keras variable holds a torch Parameter
    return value


def gather_rows(variable: Any, rows: Any) -> torch.Tensor:
    """Rows `rows` of a (Keras) variable.

    Inside a row-sparse training step (see the module docstring) the gradient
    of a marked table is a sparse tensor over the gathered rows.
    """
    table = _raw(variable)
    rows = torch.as_tensor(rows, device=table.device).long()
    lazy = getattr(_LOCAL, "row_sparse", False)
    if lazy and getattr(variable, _ROW_SPARSE, False) and table.requires_grad:
        return _RowGather.apply(table, rows)
    return table.index_select(0, rows)


def is_sparse_gradient(gradient: Any) -> bool:
    """Whether an optimizer received a row-sparse gradient (a sparse COO tensor)."""
    return isinstance(gradient, torch.Tensor) and gradient.layout == torch.sparse_coo


@torch.no_grad()
def lazy_adam_update(optimizer: Any, gradient: Any, variable: Any, learning_rate: Any) -> None:
    """Adam's update of `variable` and its moments at the rows of a sparse gradient only."""
    gradient = gradient.coalesce()  # duplicate rows summed
    rows = gradient.indices()[0]
    table = _raw(variable)
    grad = gradient.values().to(table.dtype)

    def scalar(value: Any) -> torch.Tensor:
        return torch.as_tensor(_raw(value), dtype=table.dtype, device=table.device)

    lr = scalar(learning_rate)
    step = scalar(optimizer.iterations) + 1
    beta_1, beta_2 = scalar(optimizer.beta_1), scalar(optimizer.beta_2)
    alpha = lr * torch.sqrt(1 - beta_2**step) / (1 - beta_1**step)

    index = optimizer._get_variable_index(variable)
    m = _raw(optimizer._momentums[index])
    v = _raw(optimizer._velocities[index])
    m_rows = beta_1 * m.index_select(0, rows) + (1 - beta_1) * grad
    v_rows = beta_2 * v.index_select(0, rows) + (1 - beta_2) * grad.square()
    m.index_copy_(0, rows, m_rows)
    v.index_copy_(0, rows, v_rows)
    if optimizer.amsgrad:
        v_hat = _raw(optimizer._velocity_hats[index])
        v_rows = torch.maximum(v_hat.index_select(0, rows), v_rows)
        v_hat.index_copy_(0, rows, v_rows)
    table.index_add_(0, rows, -(m_rows * alpha / (v_rows.sqrt() + optimizer.epsilon)))


def mark_row_sparse(variable: Any) -> None:
    """Mark a table that `LazyAdam` may update row by row (see the module docstring)."""
    setattr(variable, _ROW_SPARSE, True)


def note_dense_read(variable: Any, expected: bool = False) -> None:
    """Warn once when a marked table is read whole in a row-sparse step.

    Its gradient is then dense, so `LazyAdam` updates every row (correctly).
    `expected=True` (a read the layer documents, e.g. an exact softmax) does
    not warn.
    """
    lazy = getattr(_LOCAL, "row_sparse", False)
    if not lazy or expected or not getattr(variable, _ROW_SPARSE, False):
        return
    warn_once(
        variable,
        "dense_read",
        f"The table {getattr(variable, 'path', variable)!r} was read whole in a training "
        "step (a dense input reached its layer), so LazyAdam updates all of its rows. "
        "Feed a sparse input (keras.Input(..., sparse=True)) to keep the update row-sparse.",
        stacklevel=2,
    )


#: Optimizer options under which Keras's update reads gradients as dense tensors.
_DENSE_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps")


def _dense_options(optimizer: Any) -> list[str]:
    return [name for name in _DENSE_OPTIONS if getattr(optimizer, name, None)]


@contextlib.contextmanager
def _row_sparse_step() -> Iterator[None]:
    previous = getattr(_LOCAL, "row_sparse", False)
    _LOCAL.row_sparse = True
    try:
        yield
    finally:
        _LOCAL.row_sparse = previous


def train_step(model: Any, step: Callable, args: tuple) -> Any:
    """Run Keras's train step, with row-sparse gradients where the optimizer takes them.

    Only an optimizer with `row_sparse_updates` (`LazyAdam`) gets sparse
    gradients. Gradient clipping, accumulation and loss scaling read gradients
    densely: with them `LazyAdam` warns once and updates every row.
    """
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", None)  # a LossScaleOptimizer's
    if getattr(inner, "row_sparse_updates", False):
        _warn_dense_once(
            inner,
            "LazyAdam inside a LossScaleOptimizer (a mixed_float16 policy, or loss scaling) "
            "on the torch backend updates every row of its tables: Keras checks and unscales "
            "gradients as dense tensors. Train in float32 to keep the updates row-sparse.",
        )
        return step(*args)
    if not getattr(optimizer, "row_sparse_updates", False):
        return step(*args)
    dense = _dense_options(optimizer)
    if dense:
        _warn_dense_once(
            optimizer,
            f"LazyAdam with {', '.join(f'{n}=' for n in dense)} on the torch backend "
            "updates every row of its tables: Keras clips and accumulates gradients as "
            "dense tensors. Drop those options to keep the updates row-sparse.",
        )
        return step(*args)
    with _row_sparse_step():
        return step(*args)


def _warn_dense_once(optimizer: Any, message: str) -> None:
    warn_once(optimizer, "dense_update", message, stacklevel=3)
