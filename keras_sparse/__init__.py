"""keras_sparse: train and serve Keras 3 models on sparse data without densifying it."""

from keras_sparse import _requirements

_requirements.check_backend()  # before Keras: one line naming the extra if the backend is missing

from keras_sparse import (  # noqa: E402 - after the check, so a missing backend fails clearly
    _compat,
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
    topk,
)
from keras_sparse._compat import patches as keras_patches  # noqa: E402
from keras_sparse.convert import stack, to_scipy, to_sparse, to_sparse_tensor  # noqa: E402
from keras_sparse.export import export_saved_model  # noqa: E402
from keras_sparse.topk._streaming import evaluate_top_k, predict_top_k  # noqa: E402

__version__ = "0.1.0"  # the version, written only here (pyproject.toml reads it)

# Every change to Keras goes through keras_sparse._compat; keras_patches() lists them.
_compat.check_keras_version()  # one warning outside the tested Keras range
_identifiers.install()  # compile(loss="sparse_mse", metrics=["ndcg"], optimizer="lazy_adam")
_keras_hooks.install()  # SciPy in model(...)/train_on_batch; warnings that name the fix
_output_targets.install()  # SparseDenseOutput sees the sparse target; LazyAdam rows on JAX
distribute.install()  # sparse batches under keras.distribution (JAX)

__all__ = [
    "__version__",
    "data",
    "datasets",
    "distribute",
    "evaluate_top_k",
    "export_saved_model",
    "interactions",
    "keras_patches",
    "layers",
    "losses",
    "metrics",
    "optimizers",
    "outputs",
    "predict_top_k",
    "ranking",
    "topk",
    "stack",
    "to_scipy",
    "to_sparse",
    "to_sparse_tensor",
]
