"""Collection rules shared by the tests and the docstring examples.

The README's test command runs the suite once per supported Keras backend
(KERAS_BACKEND=tensorflow, then jax). Tests marked `tensorflow_only` and the
docstring examples of TensorFlow-only modules are skipped on other backends.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

BACKEND = os.environ["KERAS_BACKEND"]

# Modules whose docstring examples need tf.distribute / SavedModel.
TENSORFLOW_ONLY_MODULES = ["keras_sparse/distribute.py", "keras_sparse/export.py"]
collect_ignore = [] if BACKEND == "tensorflow" else list(TENSORFLOW_ONLY_MODULES)


def pytest_collection_modifyitems(config, items):
    """Skip `tensorflow_only` / `jax_only` tests on other backends, saying why."""
    for marker, backend in (("tensorflow_only", "tensorflow"), ("jax_only", "jax")):
        if BACKEND == backend:
            continue
        skip = pytest.mark.skip(reason=f"needs the {backend} backend; Keras backend is {BACKEND}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
