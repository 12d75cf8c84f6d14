"""Shared fixtures. TensorFlow is imported once, quietly, for the whole session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# On JAX, four host CPU devices (set before JAX starts) let the keras.distribution
# tests run without accelerators; nothing else uses more than the first one.
HOST_DEVICES = 4
if os.environ["KERAS_BACKEND"] == "jax" and "xla_force_host_platform_device_count" not in (
    os.environ.get("XLA_FLAGS", "")
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={HOST_DEVICES}"
    ).strip()

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("keras_sparse", max_examples=40, deadline=None)
settings.load_profile("keras_sparse")

PLANETOID_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "planetoid"

MATRIX_CLASSES = [
    sp.csr_matrix,
    sp.csc_matrix,
    sp.coo_matrix,
    sp.lil_matrix,
    sp.dok_matrix,
    sp.bsr_matrix,
    sp.dia_matrix,
    sp.csr_array,
    sp.csc_array,
    sp.coo_array,
    sp.lil_array,
    sp.dok_array,
    sp.bsr_array,
    sp.dia_array,
]
# Formats whose construction from COO keeps explicit zeros as stored entries.
ZERO_KEEPING = [
    sp.csr_matrix,
    sp.csc_matrix,
    sp.coo_matrix,
    sp.csr_array,
    sp.csc_array,
    sp.coo_array,
]


def coo_reference(shape, rows, cols, vals):
    """Independent reference: {(r, c): summed value} of COO triplets, duplicates summed."""
    out = {}
    for r, c, v in zip(rows, cols, vals):
        out[(int(r), int(c))] = out.get((int(r), int(c)), 0.0) + float(v)
    return out


@pytest.fixture
def small_coo():
    """A 4 x 5 COO with unsorted, duplicate entries, an explicit zero and an empty row."""
    rows = np.array([3, 0, 3, 1, 0, 3])
    cols = np.array([4, 2, 0, 1, 2, 4])
    vals = np.array([1.0, 2.0, 0.0, 3.0, 5.0, 0.5], dtype=np.float32)
    return sp.coo_matrix((vals, (rows, cols)), shape=(4, 5))


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def assert_round_trips(model, x, tmp_path):
    """`.keras` save + load gives identical predictions; returns the reloaded model."""
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        np.asarray(reloaded.predict(x, verbose=0)), np.asarray(model.predict(x, verbose=0))
    )
    return reloaded


def assert_config_round_trips(obj):
    """`from_config(get_config())` gives an object with the same config."""
    clone = type(obj).from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()
    return clone


def host_coo(x):
    """(indices, values, shape) of a backend sparse tensor on the host, padding removed."""
    from keras_sparse.convert import sparse_tensor_parts

    return sparse_tensor_parts(x)


def dense_of(x):
    """Dense NumPy array of a backend sparse tensor (test oracle only) or a dense tensor."""
    from keras_sparse import backend as B

    if B.is_sparse(x):
        indices, values, shape = host_coo(x)
        out = np.zeros(shape, dtype=values.dtype)
        np.add.at(out, tuple(indices.T), values)
        return out
    return keras.ops.convert_to_numpy(x)


def gradient(fn, value):
    """Gradient of `sum(fn(v))` with respect to `v` at `value`, as NumPy, on any backend."""
    value = np.asarray(value, dtype=np.float32)
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: jax.numpy.sum(fn(v)))(jax.numpy.asarray(value)))
    if keras.backend.backend() == "torch":
        import torch

        v = torch.tensor(value, requires_grad=True)
        torch.sum(fn(v)).backward()
        return v.grad.numpy()
    import tensorflow as tf

    v = tf.Variable(value)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fn(v))
    return np.asarray(tf.convert_to_tensor(tape.gradient(loss, v)))
