"""`warn_once`: the one way keras_sparse says a thing once per object (or once per process)."""

from __future__ import annotations

import warnings
from typing import Any

_PROCESS: set[str] = set()


def warned(owner: Any, topic: str) -> bool:
    """Whether `warn_once` already warned about `topic` for `owner` (None: the process)."""
    if owner is None:
        return topic in _PROCESS
    return bool(getattr(owner, f"_keras_sparse_warned_{topic}", False))


def warn_once(
    owner: Any,
    topic: str,
    message: str,
    category: type[Warning] = UserWarning,
    stacklevel: int = 2,
) -> bool:
    """Warn `message` the first time `topic` comes up for `owner`; later calls are silent.

    Args:
        owner: The object the warning is about (a model, layer, optimizer or
            variable); it remembers, in the attribute `_keras_sparse_warned_<topic>`,
            that it was warned. None: once per process.
        topic: A short identifier of what is warned about, e.g. `"dense_read"`.
        message: The warning's text.
        category: The warning class.
        stacklevel: As `warnings.warn`'s, counted from the caller of `warn_once`.

    Returns:
        Whether it warned now.
    """
    if warned(owner, topic):
        return False
    if owner is None:
        _PROCESS.add(topic)
    else:  # past Keras's attribute tracking
        object.__setattr__(owner, f"_keras_sparse_warned_{topic}", True)
    warnings.warn(message, category, stacklevel=stacklevel + 1)
    return True
