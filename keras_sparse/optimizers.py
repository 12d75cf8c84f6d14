"""`LazyAdam`: Adam that updates only the rows a sparse gradient touches."""

from __future__ import annotations

import numbers
from typing import Any

import keras

from keras_sparse import _validation
from keras_sparse import backend as B
from keras_sparse._registry import register

__all__ = ["LazyAdam"]


@register
class LazyAdam(keras.optimizers.Adam):
    """Adam that updates only the rows of a table that a training step touched.

    Keras's `Adam` updates the whole kernel of
    `keras_sparse.layers.SparseDenseInput` and both moment estimates every
    step. `LazyAdam` updates the variable and both moments only at the touched
    rows (duplicate rows are summed first); for every other variable it is
    exactly `keras.optimizers.Adam`. On TensorFlow it acts on the sparse
    (`tf.IndexedSlices`) gradient of the table; on JAX, whose gradients are
    dense, `model.fit` takes the gradient with respect to the gathered rows
    only and updates those rows in place (see the Backends guide), so a step
    costs the same at 1M and at 4M features; on torch the gathered rows'
    gradient is a sparse COO tensor over those rows, updated in place. On JAX
    and torch, `clipnorm`, `clipvalue`, `global_clipnorm`, gradient
    accumulation and loss scaling read gradients densely: `LazyAdam` then
    warns once and updates whole tables (still correctly).

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

    #: Tells the JAX and torch training steps that `update_step` takes row gradients.
    row_sparse_updates = True

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
        if isinstance(learning_rate, (numbers.Real, str)):  # schedules, tensors: Keras checks
            learning_rate = _validation.check_float(learning_rate, "learning_rate", low=0.0)
        beta_1 = _validation.check_float(beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        beta_2 = _validation.check_float(beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        epsilon = _validation.check_float(epsilon, "epsilon", low=0.0)
        amsgrad = _validation.check_bool(amsgrad, "amsgrad")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            name=name,
            **kwargs,
        )

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> Any:
        """Apply one update; sparse gradients only touch their rows."""
        if not B.is_sparse_gradient(gradient):
            return super().update_step(gradient, variable, learning_rate)
        return B.lazy_adam_update(self, gradient, variable, learning_rate)
