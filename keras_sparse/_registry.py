"""One decorator that registers a public class for Keras serialization."""

import keras

PACKAGE = "keras_sparse"


def register(cls):
    """Register `cls` with Keras under the `keras_sparse` package name."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
