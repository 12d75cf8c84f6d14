"""The base of keras_sparse's layers."""

from __future__ import annotations

from typing import Any

import keras

from keras_sparse import _scipy_values


class SparseLayer(keras.layers.Layer):
    """A Keras layer that also takes SciPy sparse matrices: `layer(csr)`.

    The matrix becomes the backend's sparse tensor (`keras_sparse.to_sparse`,
    float values as `floatx`) before Keras's own `Layer.__call__` runs, which
    would refuse it. Keras's `Layer.__call__` itself is left as it is, so other
    layers run Keras's code alone.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _scipy_values.call_arguments(args, kwargs)
        return super().__call__(*args, **kwargs)
