"""`SparseDenseInput`: a dense layer for sparse features that reads only touched rows."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_sparse import _ops, _validation
from keras_sparse import backend as B
from keras_sparse._registry import register
from keras_sparse.layers._base import SparseLayer

COMBINERS = ("sum", "mean", "sqrtn")


@register
class SparseDenseInput(SparseLayer):
    """Dense projection of sparse features: `combine(x) @ kernel + bias`.

    For a sparse input the kernel is read by gathering only the rows of the
    features present in the batch, so the cost of a step grows with the number
    of stored entries, not with the number of features. Pair it with
    `keras_sparse.optimizers.LazyAdam` to keep the update sparse too: on
    TensorFlow the kernel's gradient is a `tf.IndexedSlices` over the touched
    rows; on JAX the training step takes the gradient with respect to the
    gathered rows and updates only those (see the Backends guide).

    The stored values are feature weights. With `combiner="sum"` row `u` gives
    `sum_j x[u, j] * kernel[j]`; `"mean"` divides that by `sum_j x[u, j]` and
    `"sqrtn"` by `sqrt(sum_j x[u, j]**2)` (a zero denominator gives 0). A row
    without entries gives the bias, then the activation. A dense input gives
    the same result (its non-zero entries are the features).

    Args:
        units: Output width, a positive integer.
        activation: Activation name or callable, `None` for linear.
        use_bias: Whether to add a bias.
        combiner: One of `"sum"`, `"mean"`, `"sqrtn"`.
        kernel_initializer: Initializer of the `(features, units)` kernel.
        bias_initializer: Initializer of the bias.
        kernel_regularizer: Regularizer of the kernel (note: a regularizer
            reads the whole kernel every step).
        bias_regularizer: Regularizer of the bias.
        kernel_constraint: Constraint of the kernel.
        bias_constraint: Constraint of the bias.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        2-D `(batch, features)`, sparse (`tf.SparseTensor` / JAX `BCOO`) or dense.

    Output shape:
        `(batch, units)`.

    Examples:
        >>> import keras
        >>> from keras_sparse.layers import SparseDenseInput
        >>> inputs = keras.Input((10_000,), sparse=True)
        >>> outputs = SparseDenseInput(16, activation="relu", combiner="mean")(inputs)
        >>> keras.Model(inputs, outputs).output_shape
        (None, 16)

    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        combiner: str = "sum",
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _validation.check_int(units, "units")
        self.activation = keras.activations.get(activation)
        self.use_bias = _validation.check_bool(use_bias, "use_bias")
        self.combiner = _validation.check_choice(combiner, "combiner", COMBINERS)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.supports_masking = False
        self.supports_jit = B.SUPPORTS_JIT

    def build(self, input_shape: tuple) -> None:
        _validation.check_ndim(tuple(input_shape), "input shape of SparseDenseInput", 2)
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "The last dimension (number of features) of the input to "
                "SparseDenseInput must be known; got input shape "
                f"{tuple(input_shape)}. Use keras.Input((num_features,), sparse=True)."
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(features, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.kernel_regularizer is None and self.kernel_constraint is None:
            B.mark_row_sparse(self.kernel)  # read only row by row: LazyAdam may update lazily
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def _combine_sparse(self, inputs: Any) -> Any:
        indices, values, _, _ = B.coo(inputs, canonical=False)
        rows, cols = indices[:, 0], indices[:, 1]
        weights = ops.cast(values, self.compute_dtype)  # 0 at padding slots
        picked = ops.cast(B.gather_rows(self.kernel, cols), self.compute_dtype)
        batch = B.sparse_num_rows(inputs)
        out = _ops.row_sum(picked * weights[:, None], rows, batch)
        if self.combiner == "mean":
            out = _ops.divide_no_nan(out, _ops.row_sum(weights, rows, batch)[:, None])
        elif self.combiner == "sqrtn":
            norm = ops.sqrt(_ops.row_sum(ops.square(weights), rows, batch))
            out = _ops.divide_no_nan(out, norm[:, None])
        return out

    def _combine_dense(self, inputs: Any) -> Any:
        B.note_dense_read(self.kernel)
        inputs = ops.cast(inputs, self.compute_dtype)
        out = ops.matmul(inputs, ops.cast(self.kernel, self.compute_dtype))
        if self.combiner == "mean":
            out = _ops.divide_no_nan(out, ops.sum(inputs, axis=1, keepdims=True))
        elif self.combiner == "sqrtn":
            norm = ops.sqrt(ops.sum(ops.square(inputs), axis=1, keepdims=True))
            out = _ops.divide_no_nan(out, norm)
        return out

    def call(self, inputs: Any) -> Any:
        if B.is_sparse(inputs):
            out = self._combine_sparse(inputs)
        else:
            out = self._combine_dense(inputs)
        if self.bias is not None:
            out = out + ops.cast(self.bias, self.compute_dtype)
        if self.activation is not None:
            out = self.activation(out)
        return out

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*tuple(input_shape)[:-1], self.units)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "combiner": self.combiner,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config
