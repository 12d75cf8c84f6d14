"""Pytest plugin for `.ci/keras_suite.py`: Keras's tests run with keras_sparse imported first."""

import keras_sparse  # noqa: F401  (the import is the point: it installs keras_sparse's changes)
