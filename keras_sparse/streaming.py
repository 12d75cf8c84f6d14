"""Deprecated: `predict_top_k` and `evaluate_top_k` live in `keras_sparse.topk` now.

Their old paths here (`keras_sparse.streaming.predict_top_k`, ...) still work
for one release and warn; `keras_sparse.predict_top_k` is unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = ("predict_top_k", "evaluate_top_k", "predict_topk", "evaluate_topk")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from keras_sparse.topk import _streaming

        warnings.warn(
            f"keras_sparse.streaming.{name} is deprecated and will be removed in the next "
            f"release; use keras_sparse.topk.{name}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_streaming, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
