"""Row-sparse training on TensorFlow: the row gather, `LazyAdam`'s update, the step.

TensorFlow already gives a gather's gradient as `tf.IndexedSlices` (only the
gathered rows), so `gather_rows` reads only the requested rows of a
variable, `lazy_adam_update` updates only those rows and their moments, and
the training step is Keras's own (`train_step` only calls it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


def gather_rows(variable: Any, rows: Any) -> tf.Tensor:
    """Gather `rows` of a (Keras) variable without reading the whole variable.

    `tf.gather` on a Keras variable first converts it to a full tensor (and,
    under a mixed-precision policy, casts all of it), which costs as much as a
    dense read and forces a copy when the optimizer updates it in place.
    Gathering from the underlying `tf.Variable` reads only the requested rows,
    and its gradient is a `tf.IndexedSlices` over them. Inside a Keras
    `StatelessScope` (`stateless_call`) the value the scope maps the variable
    to is read instead, as Keras itself does.
    """
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    raw = getattr(variable, "_value", None)
    if in_stateless_scope() and raw is not None:
        raw = variable.value
    elif not isinstance(raw, tf.Variable):  # a plain tf.Variable or a tensor
        raw = variable
    return tf.gather(raw, rows)


def dense_gradient(gradient: Any) -> tf.Tensor:
    """A gradient as a dense tensor (TensorFlow passes gathers' gradients as `IndexedSlices`)."""
    return tf.convert_to_tensor(gradient)


def is_sparse_gradient(gradient: Any) -> bool:
    """Whether an optimizer received a row-sparse gradient (`tf.IndexedSlices`)."""
    return isinstance(gradient, tf.IndexedSlices)


def lazy_adam_update(optimizer: Any, gradient: Any, variable: Any, learning_rate: Any) -> None:
    """Adam's update of `variable` and its moments at the rows of a sparse gradient only."""
    dtype = variable.dtype
    rows, position = tf.unique(gradient.indices)
    grad = tf.math.unsorted_segment_sum(
        tf.cast(gradient.values, dtype), position, tf.shape(rows)[0]
    )
    lr = tf.cast(learning_rate, dtype)
    local_step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1 = tf.cast(optimizer.beta_1, dtype)
    beta_2 = tf.cast(optimizer.beta_2, dtype)
    alpha = lr * tf.sqrt(1 - tf.pow(beta_2, local_step)) / (1 - tf.pow(beta_1, local_step))

    index = optimizer._get_variable_index(variable)
    m, v = optimizer._momentums[index], optimizer._velocities[index]
    m_rows = beta_1 * gather_rows(m, rows) + (1 - beta_1) * grad
    v_rows = beta_2 * gather_rows(v, rows) + (1 - beta_2) * tf.square(grad)
    optimizer.assign(m, tf.IndexedSlices(m_rows, rows))
    optimizer.assign(v, tf.IndexedSlices(v_rows, rows))
    if optimizer.amsgrad:
        v_hat = optimizer._velocity_hats[index]
        v_rows = tf.maximum(gather_rows(v_hat, rows), v_rows)
        optimizer.assign(v_hat, tf.IndexedSlices(v_rows, rows))
    step = m_rows * alpha / (tf.sqrt(v_rows) + optimizer.epsilon)
    optimizer.assign_sub(variable, tf.IndexedSlices(step, rows))


def mark_row_sparse(variable: Any) -> None:
    """Nothing to mark: TensorFlow's gather already gives a row-sparse gradient."""


def note_dense_read(variable: Any, expected: bool = False) -> None:
    """Nothing to note: a dense read gives a dense gradient on TensorFlow."""


def train_step(model: Any, step: Callable, args: tuple) -> Any:
    """Run Keras's train step: TensorFlow's gradients of gathered rows are already sparse."""
    return step(*args)


def takes_train_step(model: Any) -> bool:
    """False: `train_step` only calls Keras's step here."""
    return False
