"""Deprecated: the command line's work moved to `keras_sparse_cli` (removed in the next release).

`keras_sparse.cli.build_recommender`, `save_model`, `load_model` and `run`
still work here for one release and warn; import them from
`keras_sparse_cli._work`, or run the `keras-sparse` command.
"""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from keras_sparse_cli import _work

    if name.startswith("__") or not hasattr(_work, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"keras_sparse.cli.{name} is deprecated and will be removed in the next release; "
        "run the keras-sparse command, or import it from keras_sparse_cli._work.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_work, name)
