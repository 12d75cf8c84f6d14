"""keras_sparse: train and serve Keras 3 models on sparse data without densifying it."""

from keras_sparse import (
    _identifiers,
    _keras_hooks,
    _output_targets,
    backend,  # noqa: F401 - picks the backend, fails clearly if unsupported
    data,
    datasets,
    distribute,
    interactions,
    layers,
    losses,
    metrics,
    optimizers,
    outputs,
    ranking,
    streaming,
)
from keras_sparse.convert import stack, to_scipy, to_sparse, to_sparse_tensor
from keras_sparse.export import export_saved_model
from keras_sparse.streaming import evaluate_top_k, evaluate_topk, predict_top_k, predict_topk

__version__ = "0.1.0"

_identifiers.install()  # compile(loss="sparse_mse", metrics=["ndcg"], optimizer="lazy_adam")
_keras_hooks.install()  # SciPy in model(...)/train_on_batch; warnings that name the fix
_output_targets.install()  # SparseDenseOutput sees the sparse target of each training step

__all__ = [
    "__version__",
    "data",
    "datasets",
    "distribute",
    "evaluate_top_k",
    "evaluate_topk",
    "export_saved_model",
    "interactions",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "outputs",
    "predict_top_k",
    "predict_topk",
    "ranking",
    "streaming",
    "stack",
    "to_scipy",
    "to_sparse",
    "to_sparse_tensor",
]
