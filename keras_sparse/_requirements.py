"""Fail in one line, before Keras is imported, when the chosen backend is not installed.

keras_sparse depends on Keras, NumPy and SciPy only; each backend is an extra
(`pip install "keras-sparse[tensorflow]"`, `[jax]`, `[torch]`). Keras picks its backend
from `KERAS_BACKEND`, else from `keras.json` in `KERAS_HOME` (default
`~/.keras`), else TensorFlow, and `import keras` itself fails with a bare
`ModuleNotFoundError` when that backend is missing. This module reads the same
settings with the standard library only, so the error can say which extra to
install. Nothing else of the package is imported here.
"""

from __future__ import annotations

import importlib.util
import json
import os

#: Keras backend name -> (module that must be importable, keras-sparse extra).
BACKENDS = {
    "tensorflow": ("tensorflow", "tensorflow"),
    "jax": ("jax", "jax"),
    "torch": ("torch", "torch"),
}


def chosen_backend() -> str:
    """The Keras backend that `import keras` will use, read as Keras reads it."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return str(json.load(f).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a finder that refuses it
        return False


def check_backend() -> None:
    """Raise `ImportError` in one line if the chosen backend is not installed.

    Raises:
        ImportError: naming the backend and the extra that installs it.
    """
    name = chosen_backend()
    if name not in BACKENDS:
        return  # keras_sparse.backend explains which backends are supported
    module, extra = BACKENDS[name]
    if _installed(module):
        return
    others = [n for n, (m, _) in BACKENDS.items() if n != name and _installed(m)]
    also = f", or set KERAS_BACKEND={others[0]} (installed)" if others else ""
    raise ImportError(
        f"keras_sparse: Keras is set to use the {name!r} backend, but {module!r} is not "
        f'installed; run pip install "keras-sparse[{extra}]"{also}.'
    )
