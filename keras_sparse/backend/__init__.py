"""The one place where keras_sparse meets a Keras backend.

The backend file is picked by `keras.backend.backend()`, as Keras picks its
own. Everything outside this package uses `keras.ops`, NumPy and the names
below, so adding a backend means adding one file here, named like the Keras
backend, that defines them, and its import below.

This package is a leaf: it imports Keras, NumPy and the backend's own
library, never the rest of keras_sparse, and importing it changes nothing in
Keras (the changes are made by `keras_sparse._compat`).

Each backend file defines the names in `API` below:

- `NAME`, `INDEX_DTYPE` (widest integer the backend uses by default), `SUPPORTS_JIT`;
- sparse tensors: `is_sparse`, `is_dense_tensor`, `sparse_from_coo` (host arrays ->
  the backend's sparse tensor, padded where the backend needs static shapes),
  `sparse_to_coo` (the inverse, on the host), `coo` (in-graph canonical entries
  with a validity mask), `make_sparse`, `with_values`;
- gathers and scatters that are safe on padding: `gather_entries`, `gather_rows`,
  `scatter_set`;
- `best_k` (values and indices of the k largest, ties to the lower index),
  `dense_score_rows` (how many rows of dense scores one compiled call of
  `predict_top_k` / `evaluate_top_k` should hold),
  `stable_argsort`, `searchsorted`, `replace_nan`,
  `segment_sum` and `segment_max` (safe on empty batches), `replica_sum`, `compile_fn`
  (compiles an inference function: no gradients), `sparse_dense_matmul`,
  `sparse_num_rows`, `sparse_shape`;
- item-block loops: `loop_rows` (a loop whose blocks write rows of large outputs),
  `matmul_t` (`a.T @ b` without a transposed copy of `a`) and `dense_gradient`;
- Keras's batches and steps: `host_sparse_from_coo` (a SciPy batch as Keras's
  data adapters hand it over), `pydataset_adapter` (a Keras data adapter that
  cuts a `SparseDataset`'s batches in the backend's own pipeline, or None for
  Keras's `PyDataset` adapter) and
  `train_step` (runs Keras's step; row-sparse `LazyAdam` updates where the
  backend's gradients are dense) and `takes_train_step` (whether `train_step`
  does anything for this model beyond calling Keras's step);
- the lazy optimizer hooks `is_sparse_gradient`,
  `lazy_adam_update`, `mark_row_sparse` and `note_dense_read`;
- multi-device runs: `place_batch` (a batch of our own loops, split across the
  devices of a `keras.distribution` on JAX) and `check_distribution` (refuse a
  model that cannot run under it).
"""

from __future__ import annotations

import keras

SUPPORTED = ("tensorflow", "jax", "torch")  # one file each in this package

_name = keras.backend.backend()
if _name not in SUPPORTED:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"keras_sparse supports the Keras backends {list(SUPPORTED)}, but Keras is using "
        f"{_name!r}. Set the environment variable KERAS_BACKEND to one of them before "
        "importing keras."
    )
# The interface every backend file defines (see the module docstring).
API = (
    "INDEX_DTYPE",
    "NAME",
    "SUPPORTS_JIT",
    "check_distribution",
    "compile_fn",
    "coo",
    "best_k",
    "dense_gradient",
    "dense_score_rows",
    "gather_entries",
    "gather_rows",
    "host_sparse_from_coo",
    "is_dense_tensor",
    "is_sparse",
    "is_sparse_gradient",
    "lazy_adam_update",
    "loop_rows",
    "make_sparse",
    "matmul_t",
    "mark_row_sparse",
    "note_dense_read",
    "place_batch",
    "pydataset_adapter",
    "replace_nan",
    "replica_sum",
    "scatter_set",
    "searchsorted",
    "segment_max",
    "segment_sum",
    "sparse_dense_matmul",
    "sparse_from_coo",
    "sparse_num_rows",
    "sparse_shape",
    "sparse_to_coo",
    "stable_argsort",
    "step_state",
    "takes_train_step",
    "train_step",
    "with_values",
)
# Not per backend: the one warn-once helper, here so that every module may use it.
from keras_sparse.backend._once import warn_once, warned  # noqa: E402, F401

if _name == "tensorflow":
    from keras_sparse.backend import tensorflow as _backend
elif _name == "jax":
    from keras_sparse.backend import jax as _backend
else:
    from keras_sparse.backend import torch as _backend
_missing = [name for name in API if not hasattr(_backend, name)]
if _missing:  # pragma: no cover - a backend file under construction
    raise ImportError(f"keras_sparse.backend.{_name} does not define {_missing}.")
# The backend API, name by name (a name missing from API above is missing here too).
INDEX_DTYPE = _backend.INDEX_DTYPE
NAME = _backend.NAME
SUPPORTS_JIT = _backend.SUPPORTS_JIT
check_distribution = _backend.check_distribution
compile_fn = _backend.compile_fn
coo = _backend.coo
best_k = _backend.best_k
dense_gradient = _backend.dense_gradient
dense_score_rows = _backend.dense_score_rows
gather_entries = _backend.gather_entries
gather_rows = _backend.gather_rows
host_sparse_from_coo = _backend.host_sparse_from_coo
is_dense_tensor = _backend.is_dense_tensor
is_sparse = _backend.is_sparse
is_sparse_gradient = _backend.is_sparse_gradient
lazy_adam_update = _backend.lazy_adam_update
loop_rows = _backend.loop_rows
make_sparse = _backend.make_sparse
matmul_t = _backend.matmul_t
mark_row_sparse = _backend.mark_row_sparse
note_dense_read = _backend.note_dense_read
place_batch = _backend.place_batch
pydataset_adapter = _backend.pydataset_adapter
replace_nan = _backend.replace_nan
replica_sum = _backend.replica_sum
scatter_set = _backend.scatter_set
searchsorted = _backend.searchsorted
segment_max = _backend.segment_max
segment_sum = _backend.segment_sum
sparse_dense_matmul = _backend.sparse_dense_matmul
sparse_from_coo = _backend.sparse_from_coo
sparse_num_rows = _backend.sparse_num_rows
sparse_shape = _backend.sparse_shape
sparse_to_coo = _backend.sparse_to_coo
stable_argsort = _backend.stable_argsort
step_state = _backend.step_state
takes_train_step = _backend.takes_train_step
train_step = _backend.train_step
with_values = _backend.with_values


def require_tensorflow(feature: str, instead: str) -> None:
    """Raise a clear error when a TensorFlow-only `feature` is used on another backend."""
    if _name != "tensorflow":
        raise RuntimeError(
            f"{feature} needs the TensorFlow backend of Keras, but Keras is using {_name!r}. "
            f"{instead}"
        )
