"""Deprecated: these helpers are private now (`keras_sparse._ops`); removed in the next release.

For top-k selection use `keras_sparse.topk.top_k`; for masking seen items,
`keras_sparse.ranking.mask_scores` or the `ExcludeSeen` layer.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from keras_sparse import _ops

    if name.startswith("__") or not hasattr(_ops, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"keras_sparse.ops.{name} is deprecated and will be removed in the next release: "
        "keras_sparse.ops is private now. Use keras_sparse.topk.top_k or "
        "keras_sparse.ranking.mask_scores.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_ops, name)
