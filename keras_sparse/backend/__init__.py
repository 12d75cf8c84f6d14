"""The one place where keras_sparse meets a Keras backend.

The backend file is picked by `keras.backend.backend()`, as Keras picks its
own. Everything outside this package uses `keras.ops`, NumPy and the names
below, so adding a backend means adding one file here that defines them.

Each backend file defines:

- `NAME`, `INDEX_DTYPE` (widest integer the backend uses by default);
- sparse tensors: `is_sparse`, `is_dense_tensor`, `sparse_from_coo` (host arrays ->
  the backend's sparse tensor, padded where the backend needs static shapes),
  `sparse_to_coo` (the inverse, on the host), `coo` (in-graph canonical entries
  with a validity mask), `make_sparse`, `with_values`;
- gathers and scatters that are safe on padding: `gather_entries`, `gather_rows`,
  `scatter_set`;
- `top_k` (ties to the lower index), `replace_nan`, `replica_sum`, `compile_fn`,
  `sparse_dense_matmul`, and the lazy optimizer hooks `is_sparse_gradient` and
  `lazy_adam_update`.
"""

from __future__ import annotations

import keras

SUPPORTED = ("tensorflow", "jax")

_name = keras.backend.backend()
if _name == "tensorflow":
    from keras_sparse.backend.tensorflow import *  # noqa: F403
elif _name == "jax":
    from keras_sparse.backend.jax import *  # noqa: F403
else:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"keras_sparse supports the Keras backends {list(SUPPORTED)}, but Keras is using "
        f"{_name!r}. Set the environment variable KERAS_BACKEND=jax or "
        "KERAS_BACKEND=tensorflow before importing keras."
    )


def require_tensorflow(feature: str, instead: str) -> None:
    """Raise a clear error when a TensorFlow-only `feature` is used on another backend."""
    if _name != "tensorflow":
        raise RuntimeError(
            f"{feature} needs the TensorFlow backend of Keras, but Keras is using {_name!r}. "
            f"{instead}"
        )
