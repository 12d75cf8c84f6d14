"""Old names that keep working for one release, each with a `DeprecationWarning` naming the new one.

`moved` builds the module-level `__getattr__` of a module whose names moved
elsewhere (the old module imports nothing of the new one until a name is
used); `renamed` wraps a function under its old spelling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

_WHEN = "is deprecated and will be removed in the next release"


def moved(
    module: str, new_name: Callable[[str], str | None], resolve: Callable[[str], Any]
) -> Callable[[str], Any]:
    """A module `__getattr__` for names of `module` that live elsewhere now.

    Args:
        module: The old module's dotted name, for messages.
        new_name: What to use instead of `name` (text for the warning), or None
            for a name that never lived here (`AttributeError`).
        resolve: The object `name` now is, imported when first asked for.

    Returns:
        The `__getattr__` to assign in the old module.
    """

    def __getattr__(name: str) -> Any:
        instead = None if name.startswith("__") else new_name(name)
        if instead is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} {_WHEN}; use {instead}.", DeprecationWarning, stacklevel=2)
        return resolve(name)

    return __getattr__


def renamed(new: Callable, old_name: str) -> Callable:
    """`new` under its old top-level spelling `old_name`: it warns, then calls `new`."""

    def old(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            f"keras_sparse.{old_name} {_WHEN}; use keras_sparse.{new.__name__} (same arguments).",
            DeprecationWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    old.__name__ = old.__qualname__ = old_name
    old.__doc__ = f"Deprecated spelling of `{new.__name__}`; it warns and calls it."
    return old
