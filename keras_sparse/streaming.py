"""Deprecated: `predict_top_k` and `evaluate_top_k` live in `keras_sparse.topk` now.

Their old paths here (`keras_sparse.streaming.predict_top_k`, ...) still work
for one release and warn; `keras_sparse.predict_top_k` is unchanged.
"""

from __future__ import annotations

from typing import Any

from keras_sparse import _deprecation

_MOVED = ("predict_top_k", "evaluate_top_k", "predict_topk", "evaluate_topk")


def _resolve(name: str) -> Any:
    from keras_sparse.topk import _streaming

    return getattr(_streaming, name)


__getattr__ = _deprecation.moved(
    __name__, lambda name: f"keras_sparse.topk.{name}" if name in _MOVED else None, _resolve
)
