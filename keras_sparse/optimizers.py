"""`LazyAdam`: Adam that updates only the rows a sparse gradient touches."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_sparse import _tf
from keras_sparse._registry import register


@register
class LazyAdam(keras.optimizers.Adam):
    """Adam whose update for a sparse (`tf.IndexedSlices`) gradient is sparse too.

    Keras's `Adam` turns a sparse gradient (as produced by
    `keras_sparse.layers.SparseDenseInput` or an `Embedding`) into a dense one
    and updates the whole variable and both moment estimates every step.
    `LazyAdam` updates the variable and both moments only at the touched rows
    (duplicate rows are summed first); for dense gradients it is exactly
    `keras.optimizers.Adam`.

    Semantic difference: the moments of rows that a step does not touch do not
    decay, and those rows do not move (Adam would keep moving them with their
    stale momentum). The bias correction still uses the global step count.
    Training therefore differs from Adam for sparse gradients, usually only
    slightly; `benchmarks/bench_sparse_input.py` prints the losses side by side.
    Weight decay, if set, is applied to the whole variable as in Keras.

    Args:
        learning_rate: Learning rate or schedule.
        beta_1: Decay of the first moment.
        beta_2: Decay of the second moment.
        epsilon: Small constant for numerical stability.
        amsgrad: Whether to use the AMSGrad variant.
        name: Name of the optimizer.
        **kwargs: Other `keras.optimizers.Optimizer` arguments (`weight_decay`,
            `clipnorm`, ...).

    Examples:
        >>> import keras
        >>> from keras_sparse.layers import SparseDenseInput
        >>> from keras_sparse.optimizers import LazyAdam
        >>> model = keras.Sequential([keras.Input((1000,), sparse=True), SparseDenseInput(1)])
        >>> model.compile(optimizer=LazyAdam(learning_rate=1e-3), loss="mse")

    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        name: str = "lazy_adam",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            name=name,
            **kwargs,
        )

    def update_step(self, gradient, variable, learning_rate):
        """Apply one update; sparse gradients only touch their rows."""
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, position = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(
            tf.cast(gradient.values, dtype), position, tf.shape(rows)[0]
        )
        lr = tf.cast(learning_rate, dtype)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, local_step)) / (1 - tf.pow(beta_1, local_step))

        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = beta_1 * _tf.gather_rows(m, rows) + (1 - beta_1) * grad
        v_rows = beta_2 * _tf.gather_rows(v, rows) + (1 - beta_2) * tf.square(grad)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            v_rows = tf.maximum(_tf.gather_rows(v_hat, rows), v_rows)
            self.assign(v_hat, tf.IndexedSlices(v_rows, rows))
        step = m_rows * alpha / (tf.sqrt(v_rows) + self.epsilon)
        self.assign_sub(variable, tf.IndexedSlices(step, rows))
