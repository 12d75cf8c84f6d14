"""Deprecated: these helpers are private now (`keras_sparse._ops`); removed in the next release.

For top-k selection use `keras_sparse.topk.top_k`; for masking seen items,
`keras_sparse.ranking.mask_scores` or the `ExcludeSeen` layer.
"""

from __future__ import annotations

from typing import Any

from keras_sparse import _deprecation


def _resolve(name: str) -> Any:
    from keras_sparse import _ops

    return getattr(_ops, name)


def _instead(name: str) -> str | None:
    from keras_sparse import _ops

    if not hasattr(_ops, name):
        return None
    return (
        "keras_sparse.topk.top_k or keras_sparse.ranking.mask_scores "
        "(keras_sparse.ops is private now)"
    )


__getattr__ = _deprecation.moved(__name__, _instead, _resolve)
