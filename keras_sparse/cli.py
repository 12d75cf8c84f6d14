"""Deprecated: the command line's work moved to `keras_sparse_cli` (removed in the next release).

`keras_sparse.cli.build_recommender`, `save_model`, `load_model` and `run`
still work here for one release and warn; import them from
`keras_sparse_cli._work`, or run the `keras-sparse` command.
"""

from __future__ import annotations

from typing import Any

from keras_sparse import _deprecation


def _resolve(name: str) -> Any:
    from keras_sparse_cli import _work

    return getattr(_work, name)


def _instead(name: str) -> str | None:
    from keras_sparse_cli import _work

    if not hasattr(_work, name):
        return None
    return f"the keras-sparse command, or keras_sparse_cli._work.{name}"


__getattr__ = _deprecation.moved(__name__, _instead, _resolve)
