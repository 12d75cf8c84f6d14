"""keras_sparse: train and serve Keras 3 models on sparse data without densifying it."""

import keras as _keras

if _keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_sparse needs the TensorFlow backend of Keras, but Keras is using "
        f"{_keras.backend.backend()!r}. Set the environment variable KERAS_BACKEND=tensorflow "
        "before importing keras."
    )

from keras_sparse import (  # noqa: E402
    data,
    datasets,
    distribute,
    layers,
    losses,
    metrics,
    optimizers,
    outputs,
    ranking,
)
from keras_sparse.convert import stack, to_scipy, to_sparse_tensor  # noqa: E402
from keras_sparse.export import export_saved_model  # noqa: E402
from keras_sparse.outputs import evaluate_topk, predict_topk  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "data",
    "datasets",
    "distribute",
    "evaluate_topk",
    "export_saved_model",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "outputs",
    "predict_topk",
    "ranking",
    "stack",
    "to_scipy",
    "to_sparse_tensor",
]
