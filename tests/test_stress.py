"""Stress: many fits, predictions and top-k calls with random shapes in one process.

A native crash was once seen under load; this runs the public paths back to
back with random shapes, densities (empty matrices included), batch sizes,
SciPy formats, losses and optimizers, checking every result against NumPy.
`KERAS_SPARSE_STRESS_TRIALS` and `KERAS_SPARSE_STRESS_SEED` run it longer or
with other draws (CI runs the defaults).
"""

import gc
import os

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse.data import SparseDataset

pytestmark = pytest.mark.slow

LOSSES = ["sparse_mse", "sparse_mae", "sparse_huber", "sparse_multinomial_nll"]
FORMATS = ["csr", "csc", "coo", "lil", "dok"]


def _reference_top_k(scores, k, exclude):
    """Per row: the best k non-excluded items, ties to the lower index (dense oracle)."""
    masked = np.where(exclude.toarray() != 0, -np.inf, scores)
    out = []
    for row in masked:
        candidates = [j for j in np.lexsort((np.arange(len(row)), -row)) if row[j] > -np.inf]
        out.append(candidates[:k])
    return out


def _reference_precision_recall(ranked, y, exclude, k):
    """Mean precision@k and recall@k over rows with relevant items (DEFINITIONS.md)."""
    truth, excluded = y.toarray() > 0, exclude.toarray() != 0
    precision, recall = [], []
    for u, items in enumerate(ranked):
        relevant = set(np.flatnonzero(truth[u] & ~excluded[u]).tolist())
        if not relevant:
            continue  # rows without relevant items are skipped
        hits = len(relevant.intersection(items))
        precision.append(hits / k)
        recall.append(hits / len(relevant))
    return [np.mean(precision) if precision else 0.0, np.mean(recall) if recall else 0.0]


def test_random_fits_predictions_and_top_k_in_one_process():
    rng = np.random.default_rng(int(os.environ.get("KERAS_SPARSE_STRESS_SEED", "2026")))
    for trial in range(int(os.environ.get("KERAS_SPARSE_STRESS_TRIALS", "10"))):
        rows, n_in, n_out = (int(v) for v in rng.integers(1, [120, 300, 80]))
        density = float(rng.choice([0.0, 0.005, 0.05, 0.3]))
        batch_size = int(rng.integers(1, 48))
        fmt = str(rng.choice(FORMATS))
        x = sp.random(rows, n_in, density=density, format=fmt, random_state=trial, dtype=np.float32)
        y = sp.random(rows, n_out, density=0.1, format="csr", random_state=99 + trial)
        keras.utils.set_random_seed(trial)
        inp = keras.Input((n_in,), sparse=True)
        hidden = ks.layers.SparseDenseInput(int(rng.integers(1, 16)), combiner="sum")(inp)
        model = keras.Model(inp, keras.layers.Dense(n_out)(hidden))
        model.compile(
            optimizer=str(rng.choice(["lazy_adam", "adam", "sgd"])),
            loss=str(rng.choice(LOSSES)),
            metrics=["ndcg", "sparse_rmse"],
        )
        if trial % 2:
            ds = SparseDataset(x, y, batch_size=batch_size, shuffle=True, seed=trial)
            history = model.fit(ds, epochs=2, verbose=0)
        else:
            history = model.fit(x, y, batch_size=batch_size, epochs=2, verbose=0)
        assert all(np.isfinite(v).all() for v in history.history.values()), trial
        scores = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
        (table, table_bias), (kernel, bias) = (layer.get_weights() for layer in model.layers[1:])
        hidden = np.asarray(x.toarray(), np.float64) @ table + table_bias
        reference = hidden @ kernel + bias  # the NumPy forward pass
        np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-4, err_msg=str(trial))
        k = int(rng.integers(1, n_out + 3))
        exclude = sp.random(rows, n_out, density=0.2, format="csr", random_state=7 * trial)
        recs = ks.predict_top_k(model, x, k=k, exclude=exclude, batch_size=batch_size, verbose=0)
        got = [recs.indices[recs.indptr[u] : recs.indptr[u + 1]].tolist() for u in range(rows)]
        want = _reference_top_k(scores, k, exclude)
        # Scores within float rounding of each other may swap; compare the score lists.
        for u in range(rows):
            np.testing.assert_allclose(scores[u, got[u]], scores[u, want[u]], rtol=1e-5, atol=1e-6)
        result = ks.evaluate_top_k(
            model, x, y, k=k, exclude=exclude, metrics=("precision", "recall"), verbose=0
        )
        np.testing.assert_allclose(
            [result[f"precision@{k}"], result[f"recall@{k}"]],
            _reference_precision_recall(want, y, exclude, k),
            rtol=1e-6,
            atol=1e-6,
            err_msg=str(trial),
        )
        del model, history
        gc.collect()
