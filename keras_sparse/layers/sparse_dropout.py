"""`SparseDropout`: dropout on the stored values of a sparse input."""

from __future__ import annotations

from typing import Any

import keras

from keras_sparse import _validation
from keras_sparse import backend as B
from keras_sparse._registry import register
from keras_sparse.layers._base import SparseLayer


@register
class SparseDropout(SparseLayer):
    """Dropout on the stored values of a sparse input (Keras `Dropout` fails on it).

    In training each stored value is zeroed with probability `rate` and the
    kept ones are scaled by `1 / (1 - rate)`; the sparsity structure is kept
    (dropped entries become stored zeros, which contribute nothing to
    `SparseDenseInput` or `SparseMatMul`). At inference it is the identity. A
    dense input gets ordinary dropout.

    Args:
        rate: Fraction of stored values to drop, in [0, 1).
        seed: Optional integer seed for reproducible masks.
        **kwargs: Base `keras.layers.Layer` arguments.

    Examples:
        >>> import keras
        >>> from keras_sparse.layers import SparseDenseInput, SparseDropout
        >>> inputs = keras.Input((1000,), sparse=True)
        >>> hidden = SparseDenseInput(8)(SparseDropout(0.5, seed=1)(inputs))
        >>> keras.Model(inputs, hidden).output_shape
        (None, 8)

    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = _validation.check_float(rate, "rate", low=0.0, high=1.0, high_open=True)
        self.seed = _validation.check_int(seed, "seed", minimum=0, allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training or self.rate == 0.0:
            return inputs
        if B.is_sparse(inputs):
            _, values, _, _ = B.coo(inputs, canonical=False)
            values = keras.random.dropout(values, self.rate, seed=self.seed_generator)
            return B.with_values(inputs, values)
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def compute_output_spec(self, inputs: Any, training: bool | None = None) -> Any:
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype, sparse=inputs.sparse)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
