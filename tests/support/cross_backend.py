"""Run by test_backend_processes.py: save a model under one backend, load it under another.

The loading side also recomputes losses and metrics on the same data and
compares them with the saving side's values, so the two backends are checked
against each other directly (padded JAX batches, an explicit zero, empty rows
and a shorter last batch included), not only each against the NumPy reference.

Usage: python cross_backend.py save|load FOLDER (the backend comes from KERAS_BACKEND).
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks


def data():
    x = sp.random(30, 50, density=0.1, format="csr", random_state=1, dtype=np.float32)
    return x, sp.eye(50, format="csr", dtype=np.float32)


def values(model) -> dict:
    """Losses and metrics of `model` on fixed data, computed with the active backend."""
    x, _ = data()
    y = sp.random(30, 50, density=0.08, format="csr", random_state=2, dtype=np.float32)
    keep = np.ones(30, np.float32)
    keep[[3, 4]] = 0.0
    y = sp.csr_matrix(sp.diags(keep) @ y)
    y.eliminate_zeros()  # rows 3 and 4 are empty
    y.data[::5] = 0.0  # explicit zeros: observed, never relevant
    scores = model.predict(ks.data.SparseDataset(x, batch_size=30), verbose=0)
    scores = np.where(np.isfinite(scores), scores, -1.0)  # ExcludeSeen wrote -inf
    target = ks.to_sparse(y)
    out = {
        name: float(keras.ops.mean(fn(target, scores)))
        for name, fn in (
            ("mse", ks.losses.sparse_mse),
            ("mae", ks.losses.sparse_mae),
            ("huber", ks.losses.sparse_huber),
            ("nll", ks.losses.sparse_multinomial_nll),
        )
    }
    assert all(np.isfinite(v) for v in out.values()), out
    rmse = ks.metrics.SparseRootMeanSquaredError()
    for start in range(0, 30, 8):  # batches of 8, 8, 8 and a shorter last one of 6
        rmse.update_state(ks.to_sparse(y[start : start + 8]), scores[start : start + 8])
    out["rmse"] = float(rmse.result())
    metrics = ks.evaluate_top_k(
        model,
        x,
        y,
        k=(3, 10),
        exclude=x,
        batch_size=8,
        verbose=0,
        metrics=("precision", "recall", "ndcg", "map", "hit_rate", "mrr"),
    )
    return {**out, **metrics}


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
    (folder / "values.json").write_text(json.dumps(values(model)))
    output_model().save(folder / "output.keras")
    (folder / "output.json").write_text(json.dumps(output_values(folder / "output.keras")))


def output_model():
    """A SparseDenseOutput recommender trained with a sampled softmax from item counts."""
    x, _ = data()
    keras.utils.set_random_seed(1)
    inputs = keras.Input((50,), sparse=True)
    hidden = ks.layers.SparseDenseInput(6, "tanh")(inputs)
    counts = np.arange(50) % 7
    layer = ks.layers.SparseDenseOutput(50, negatives=9, item_counts=counts, seed=3, block_size=7)
    model = keras.Model(inputs, layer(hidden))
    model.compile(optimizer=ks.optimizers.LazyAdam(0.01), loss=ks.losses.SparseMultinomialNLL())
    model.fit(x, x, batch_size=10, epochs=2, verbose=0, shuffle=False)
    return model


def output_values(path: Path) -> dict:
    """Predictions, blockwise top-k metrics and one sampled training step of a saved model."""
    x, _ = data()
    model = keras.models.load_model(path)
    out = {"predict": model.predict(x, batch_size=10, verbose=0).tolist()}
    out.update(ks.evaluate_top_k(model, x, x, k=5, batch_size=10, verbose=0))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=ks.losses.SparseMultinomialNLL())
    out["sampled_step_loss"] = float(model.train_on_batch(x, x))  # the same negatives
    return out


def load(folder: Path) -> None:
    x, _ = data()
    model = keras.models.load_model(folder / "model.keras")
    got = model.predict(ks.data.SparseDataset(x, batch_size=30), verbose=0)
    np.testing.assert_allclose(got, np.load(folder / "predictions.npy"), rtol=1e-5, atol=1e-6)
    expected = json.loads((folder / "values.json").read_text())
    mine = values(model)
    assert set(mine) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(mine[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    theirs = json.loads((folder / "output.json").read_text())
    ours = output_values(folder / "output.keras")
    np.testing.assert_allclose(ours.pop("predict"), theirs.pop("predict"), rtol=1e-5, atol=1e-6)
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    print(f"loaded under {keras.backend.backend()}: identical predictions and {len(mine)} values")


if __name__ == "__main__":
    {"save": save, "load": load}[sys.argv[1]](Path(sys.argv[2]))
