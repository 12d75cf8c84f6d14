"""SciPy sparse matrices in call arguments, turned into the backend's sparse tensors."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import scipy.sparse as sp


def has_scipy(value: Any) -> bool:
    """Whether `value`, or an item of a list, tuple or dict `value`, is a SciPy matrix."""
    if sp.issparse(value):
        return True
    if isinstance(value, (list, tuple)):
        return any(sp.issparse(v) for v in value)
    if isinstance(value, dict):
        return any(sp.issparse(v) for v in value.values())
    return False


def to_backend(value: Any) -> Any:
    """SciPy leaves of `value` as backend sparse tensors (float values as `floatx`)."""
    from keras_sparse.convert import to_sparse

    def convert(leaf: Any) -> Any:
        if not sp.issparse(leaf):
            return leaf
        floating = np.issubdtype(leaf.dtype, np.floating)
        return to_sparse(leaf, dtype=keras.backend.floatx() if floating else None)

    if sp.issparse(value):  # before the dict test: dok_matrix is a dict subclass
        return convert(value)
    if isinstance(value, (list, tuple)):
        return type(value)(convert(v) for v in value)
    if isinstance(value, dict):
        return {key: convert(v) for key, v in value.items()}
    return value


def call_arguments(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """`layer(*args, **kwargs)`'s inputs (the first argument, or `inputs=`) with SciPy converted."""
    if args and has_scipy(args[0]):
        args = (to_backend(args[0]), *args[1:])
    elif "inputs" in kwargs and has_scipy(kwargs["inputs"]):
        kwargs = {**kwargs, "inputs": to_backend(kwargs["inputs"])}
    return args, kwargs
