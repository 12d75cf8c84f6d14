"""Row-sparse training on JAX: `LazyAdam`'s updates of `SparseDenseInput` tables, the step.

The backend's training API (`train_step`, `takes_train_step`, `step_state`,
`lazy_adam_update`, `mark_row_sparse`, `note_dense_read`, `is_sparse_gradient`,
`dense_gradient`) lives here; `jax.py` re-exports it.

Keras's JAX trainer differentiates the loss with respect to every trainable
variable, so the gradient of a 1M x 64 table is a dense 1M x 64 array (a
scatter into zeros), and Adam then rewrites the table and both moments every
step: the step costs as much as the table, not as much as the batch.

Design (chosen because it keeps `model.compile` / `model.fit` the only
interface and reuses Keras's optimizer machinery):

1. `SparseDenseInput` marks its kernel as row-sparse (`mark_row_sparse`) and
   reads it only through `backend.gather_rows`.
2. When the model's optimizer is `LazyAdam` (it says so by its class
   attribute `row_sparse_updates`), `backend.train_step` runs this step
   instead of Keras's (for that model only; every other model takes Keras's
   own step, unchanged). A first,
   abstract pass (`jax.eval_shape`, at trace time only) records the shape of
   every gather from a marked table. The real pass adds a zero *probe* of that
   shape to each gathered block and differentiates with respect to the other
   variables and the probes, never the table: the probe's gradient is exactly
   the gradient of the gathered rows.
3. Each table gets a `RowGradient(rows, values)` instead of a dense gradient,
   and Keras's `optimizer.stateless_apply` runs as usual; `LazyAdam.update_step`
   sees the row gradient and updates the weights and both moments at those
   rows only (`lazy_adam_update`), with `.at[rows].set(mode="drop")` scatters.
   Keras's jitted step donates the state, so XLA updates the buffers in place
   instead of copying them: the step time follows the entries per batch and
   stays flat from 1M to 4M features.

Falls back to Keras's dense step (correct, slower, with one warning) when a
table is also read densely (a dense input), or the optimizer clips gradients,
accumulates them, keeps an EMA or scales the loss. Under a
`keras.distribution` the same step runs on the global batch, and the row
scatters follow the table's layout (rows sharded by `ModelParallel`, or
replicated). Reads of the kernel outside the layer (weight tying) are not seen:
tie weights through the layer, or use `keras.optimizers.Adam`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import keras

from keras_sparse.backend._common import has_lazy_optimizer
from keras_sparse.backend._once import warn_once

_LOCAL = threading.local()
_MARK = "_keras_sparse_row_sparse"
#: Class attribute of an optimizer whose `update_step` takes a `RowGradient` (`LazyAdam`).
LAZY_ROWS = "row_sparse_updates"


class RowGradient(NamedTuple):
    """The gradient of a table at some of its rows (rows may repeat or be padding)."""

    rows: Any  # (n,) row ids; out-of-range ids are padding
    values: Any  # (n, *row_shape) gradient of each gathered row


class _Context:
    """What one trace of the loss sees: which variables are tables, and the probes."""

    def __init__(self, tables: dict[int, int], probes: list | None) -> None:
        self.tables = tables  # id(variable) -> index among the trainable variables
        self.probes = probes  # None while recording shapes
        self.gathers: list[tuple[int, Any, tuple, Any]] = []  # (index, rows, shape, dtype)
        self.dense_reads: set[int] = set()
        self.expected_dense_reads: set[int] = set()


def mark_row_sparse(variable: Any) -> None:
    """Mark a (Keras) variable as a table read only through `gather_rows`."""
    setattr(variable, _MARK, True)


def track_gather(variable: Any, rows: Any, picked: Any) -> Any:
    """Return the gathered rows; inside a lazy step, route their gradient to a probe."""
    context = getattr(_LOCAL, "context", None)
    if context is None:
        return picked
    index = context.tables.get(id(variable))
    if index is None:
        return picked
    position = len(context.gathers)
    context.gathers.append((index, rows, tuple(picked.shape), picked.dtype))
    if context.probes is None:
        return picked
    return jax.lax.stop_gradient(picked) + context.probes[position]


def note_dense_read(variable: Any, expected: bool = False) -> None:
    """Record that a table was read whole, so it cannot be updated lazily this step.

    `expected=True` marks a read that the layer documents (no warning).
    """
    context = getattr(_LOCAL, "context", None)
    if context is not None and id(variable) in context.tables:
        index = context.tables[id(variable)]
        (context.expected_dense_reads if expected else context.dense_reads).add(index)


def _warn_once(model: Any, message: str) -> None:
    warn_once(model, "lazy_step", message, stacklevel=2)


def _missing_trainer_parts(model: Any) -> list[str]:
    """What the lazy step uses of Keras's JAX trainer and this Keras lacks."""
    import inspect

    missing = []
    if "optimizer_variables" not in inspect.signature(model.compute_loss_and_updates).parameters:
        missing.append("compute_loss_and_updates(optimizer_variables=...)")
    if not hasattr(model, "_update_metrics_variables"):
        missing.append("_update_metrics_variables")
    return missing


def _tables(model: Any) -> list[int]:
    """Indices of the row-sparse tables among the model's trainable variables, if lazy."""
    optimizer = getattr(model, "optimizer", None)
    if not getattr(optimizer, LAZY_ROWS, False):
        return []
    missing = _missing_trainer_parts(model)
    if missing:
        _warn_once(
            model,
            f"LazyAdam updates whole tables on JAX with Keras {keras.version()}: its JAX "
            f"trainer lacks {missing}, which the lazy step needs. Training is correct but "
            "each step costs as much as the table; Keras 3.10-3.15 are tested "
            "(pip install -U keras).",
        )
        return []
    tables = [i for i, v in enumerate(model.trainable_variables) if getattr(v, _MARK, False)]
    if not tables:
        return []
    blockers = {
        "clipnorm": optimizer.clipnorm,
        "clipvalue": optimizer.clipvalue,
        "global_clipnorm": optimizer.global_clipnorm,
        "gradient_accumulation_steps": optimizer.gradient_accumulation_steps,
        "use_ema": optimizer.use_ema,
        "loss_scale_factor": optimizer.loss_scale_factor,
    }
    used = [name for name, value in blockers.items() if value]
    if used:
        _warn_once(
            model,
            f"LazyAdam updates whole tables on JAX when {used} is set (lazy row updates "
            "support none of clipnorm, clipvalue, global_clipnorm, gradient accumulation, "
            "EMA or loss scaling yet). Training is correct but each "
            "step costs as much as the table.",
        )
        return []
    return tables


def _run(model: Any, tables: dict, probes: list | None, args: tuple) -> tuple:
    trainable, non_trainable, metrics, x, y, sample_weight, optimizer_vars = args
    context = _Context(tables, probes)
    previous = getattr(_LOCAL, "context", None)
    _LOCAL.context = context
    try:
        loss, aux = model.compute_loss_and_updates(
            trainable,
            non_trainable,
            metrics,
            x,
            y,
            sample_weight,
            training=True,
            optimizer_variables=optimizer_vars,
        )
    finally:
        _LOCAL.context = previous
    return loss, aux, context


def _record(model: Any, trainable: list, table_indices: list, rest_args: tuple) -> _Context:
    """Record the gathers of one loss pass (shapes only: abstract evaluation at trace time)."""
    variables = model.trainable_variables
    tables = {id(variables[i]): i for i in table_indices}
    non_trainable, metrics_vars, x, y, sample_weight, optimizer_vars = rest_args
    recorded: list = []

    def record(values: list) -> Any:
        args = (values, non_trainable, metrics_vars, x, y, sample_weight, optimizer_vars)
        loss, _, context = _run(model, tables, None, args)
        recorded.append(context)
        return loss

    jax.eval_shape(record, list(trainable))
    return recorded[0]


def lazy_train_step(model: Any, step: Any, state: Any, data: Any) -> Any:
    """Keras's JAX `train_step` (`step`, bound), with row-sparse gradients for `LazyAdam` tables."""
    table_indices = _tables(model)
    if not table_indices:
        return step(state, data)
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    context = _record(
        model,
        trainable,
        table_indices,
        (non_trainable, metrics_vars, x, y, sample_weight, optimizer_vars),
    )
    gathered = {index for index, _, _, _ in context.gathers}
    dense = {i for i in table_indices if i in context.dense_reads}
    if dense:
        _warn_once(
            model,
            "LazyAdam updates whole tables on JAX for tables read densely in the step "
            f"({[variables[i].path for i in sorted(dense)]}), e.g. a SparseDenseInput "
            "fed a dense input. Feed it sparse data (keras.Input(..., sparse=True)) for lazy "
            "row updates.",
        )
    dense |= {i for i in table_indices if i in context.expected_dense_reads or i not in gathered}
    if dense:  # those tables take dense gradients; the others stay lazy
        table_indices = [i for i in table_indices if i not in dense]
        if not table_indices:
            return step(state, data)
        context = _record(
            model,
            trainable,
            table_indices,
            (non_trainable, metrics_vars, x, y, sample_weight, optimizer_vars),
        )
    tables = {id(variables[i]): i for i in table_indices}
    rest_indices = [i for i in range(len(trainable)) if i not in table_indices]

    def full(rest: list) -> list:
        values = list(trainable)
        for j, i in enumerate(rest_indices):
            values[i] = rest[j]
        return values

    def args(rest: list) -> tuple:
        return (full(rest), non_trainable, metrics_vars, x, y, sample_weight, optimizer_vars)

    probes = [jnp.zeros(shape, dtype) for _, _, shape, dtype in context.gathers]

    # 2. Differentiate with respect to the other variables and the gathered rows.
    def loss_fn(rest: list, probes: list) -> tuple:
        loss, aux, ctx = _run(model, tables, probes, args(rest))
        return loss, (aux, [rows for _, rows, _, _ in ctx.gathers])

    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    (_, (aux, rows)), (rest_grads, probe_grads) = grad_fn(
        [trainable[i] for i in rest_indices], probes
    )
    unscaled_loss, y_pred, non_trainable, metrics_vars = aux

    # 3. Row gradients for the tables, dense gradients for the rest; Keras applies them.
    grads: list = [None] * len(trainable)
    for j, i in enumerate(rest_indices):
        grads[i] = rest_grads[j]
    for i in tables.values():
        parts = [p for p, (index, _, _, _) in enumerate(context.gathers) if index == i]
        grads[i] = RowGradient(
            jnp.concatenate([jnp.reshape(rows[p], (-1,)) for p in parts]),
            jnp.concatenate([probe_grads[p] for p in parts]),
        )
    trainable, optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, grads, trainable)
    logs, metrics_vars = model._update_metrics_variables(
        metrics_vars, unscaled_loss, x, y, y_pred, sample_weight
    )
    return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


def lazy_adam_update(optimizer: Any, gradient: RowGradient, variable: Any, learning_rate: Any):
    """Adam's update of `variable` and its moments at the rows of `gradient` only.

    Duplicate rows are summed first; padding rows (out of range) are dropped.
    Same arithmetic as Keras's Adam and as the TensorFlow `LazyAdam` path.
    """
    dtype = variable.dtype
    size = gradient.rows.shape[0]
    num_rows = variable.shape[0]
    rows = jnp.where(
        (gradient.rows >= 0) & (gradient.rows < num_rows), gradient.rows, num_rows
    ).astype(jnp.int32)
    unique, inverse = jnp.unique(rows, size=size, fill_value=num_rows, return_inverse=True)
    grad = jax.ops.segment_sum(gradient.values.astype(dtype), inverse.reshape(-1), size)
    lr = jnp.asarray(learning_rate, dtype)
    local_step = jnp.asarray(optimizer.iterations.value + 1, dtype)
    beta_1 = jnp.asarray(optimizer.beta_1, dtype)
    beta_2 = jnp.asarray(optimizer.beta_2, dtype)
    alpha = lr * jnp.sqrt(1 - beta_2**local_step) / (1 - beta_1**local_step)

    # `unique` is sorted and, but for the out-of-range fill slots (which "fill" reads
    # as 0 and "drop" never writes), unique: telling XLA so makes the scatters cheaper.
    hints = {"indices_are_sorted": True, "unique_indices": True}

    def rows_of(var: Any) -> Any:
        return var.value.at[unique].get(mode="fill", fill_value=0, **hints)

    def set_rows(var: Any, values: Any) -> None:
        optimizer.assign(var, var.value.at[unique].set(values, mode="drop", **hints))

    index = optimizer._get_variable_index(variable)
    m, v = optimizer._momentums[index], optimizer._velocities[index]
    m_rows = beta_1 * rows_of(m) + (1 - beta_1) * grad
    v_rows = beta_2 * rows_of(v) + (1 - beta_2) * jnp.square(grad)
    set_rows(m, m_rows)
    set_rows(v, v_rows)
    if optimizer.amsgrad:
        v_hat = optimizer._velocity_hats[index]
        v_rows = jnp.maximum(rows_of(v_hat), v_rows)
        set_rows(v_hat, v_rows)
    step = m_rows * alpha / (jnp.sqrt(v_rows) + optimizer.epsilon)
    optimizer.assign(variable, variable.value.at[unique].add(-step, mode="drop", **hints))


def train_step(model: Any, step: Callable, args: tuple) -> Any:
    """Run Keras's train step, with row-sparse `LazyAdam` updates (`lazy_train_step`)."""
    return lazy_train_step(model, step, *args)


takes_train_step = has_lazy_optimizer


def dense_gradient(gradient: Any) -> Any:
    """A gradient as a dense array (JAX gradients already are)."""
    return gradient


def is_sparse_gradient(gradient: Any) -> bool:
    """Whether an optimizer received a row gradient from the lazy training step."""
    return isinstance(gradient, RowGradient)


def step_state(variables: list) -> list | None:
    """`[(variable, value)]` as this trace reads them, to read them so again later in the step.

    Keras's JAX step maps variables to traced values only while the model runs
    (`stateless_call`); `compute_loss` runs after it, where a variable would read
    its stored value. `keras.StatelessScope(state_mapping=...)` over this list
    restores the step's values there.
    """
    return [(v, v.value) for v in variables]
