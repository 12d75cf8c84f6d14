"""Run by test_backend_processes.py: save a model under one backend, load it under another.

Usage: python cross_backend.py save|load FOLDER (the backend comes from KERAS_BACKEND).
"""

import sys
from pathlib import Path

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks


def data():
    x = sp.random(30, 50, density=0.1, format="csr", random_state=1, dtype=np.float32)
    return x, sp.eye(50, format="csr", dtype=np.float32)


def save(folder: Path) -> None:
    x, adjacency = data()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((50,), sparse=True)
    hidden = ks.layers.SparseDenseInput(6, "tanh", combiner="sqrtn")(inputs)
    scores = keras.layers.Dense(50)(hidden)
    propagated = ks.layers.SparseMatMul(adjacency, transpose_a=True)(keras.ops.transpose(scores))
    model = keras.Model(inputs, ks.layers.ExcludeSeen()([keras.ops.transpose(propagated), inputs]))
    model.compile(optimizer=ks.optimizers.LazyAdam(0.01), loss=ks.losses.SparseMeanSquaredError())
    model.fit(ks.data.SparseDataset(x, x, batch_size=30), epochs=2, verbose=0, shuffle=False)
    model.save(folder / "model.keras")
    np.save(folder / "predictions.npy", model.predict(ks.data.SparseDataset(x, batch_size=30)))


def load(folder: Path) -> None:
    x, _ = data()
    model = keras.models.load_model(folder / "model.keras")
    got = model.predict(ks.data.SparseDataset(x, batch_size=30), verbose=0)
    np.testing.assert_allclose(got, np.load(folder / "predictions.npy"), rtol=1e-5, atol=1e-6)
    print(f"loaded under {keras.backend.backend()}: identical predictions")


if __name__ == "__main__":
    {"save": save, "load": load}[sys.argv[1]](Path(sys.argv[2]))
