"""Collection rules shared by the tests and the docstring examples.

The README's test command runs the suite once per supported Keras backend
(KERAS_BACKEND=tensorflow, then jax, then torch). Tests marked `tensorflow_only`,
`jax_only` or `torch_only`, and the docstring examples of one backend's modules,
are skipped on the other backends.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

BACKEND = os.environ["KERAS_BACKEND"]

# Modules that only import (and whose docstring examples only run) under one backend.
BACKEND_MODULES = {
    "tensorflow": [
        "keras_sparse/distribute/_tensorflow.py",
        "keras_sparse/export.py",
        "keras_sparse/backend/tensorflow.py",
    ],
    "jax": [
        "keras_sparse/backend/jax.py",
        "keras_sparse/backend/_jax_bcoo.py",
        "keras_sparse/distribute/_jax.py",
        "keras_sparse/backend/_jax_lazy.py",
        "keras_sparse/backend/_jax_distribution.py",
    ],
    "torch": ["keras_sparse/backend/torch.py"],
}
# Scripts that tests start as processes (tests/support): never collected, nor their doctests.
collect_ignore = ["tests/support"]
for _backend, _modules in BACKEND_MODULES.items():
    if _backend != BACKEND:
        collect_ignore.extend(_modules)


def pytest_collection_modifyitems(config, items):
    """Skip `tensorflow_only` / `jax_only` / `torch_only` tests on other backends, saying why."""
    for backend in ("tensorflow", "jax", "torch"):
        marker = f"{backend}_only"
        if BACKEND == backend:
            continue
        skip = pytest.mark.skip(reason=f"needs the {backend} backend; Keras backend is {BACKEND}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
