"""Run by test_backend_processes.py: the whole public surface on JAX, TensorFlow blocked."""

import importlib.abc
import os
import sys
import tempfile


class _BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is blocked in this process")
        return None


def main():
    """Block TensorFlow, then exercise the public surface on JAX."""
    sys.meta_path.insert(0, _BlockTensorFlow())
    os.environ["KERAS_BACKEND"] = "jax"

    import keras
    import numpy as np
    import scipy.sparse as sp

    import keras_sparse as ks

    assert keras.backend.backend() == "jax"
    data = sp.random(120, 40, density=0.15, format="csr", random_state=0, dtype=np.float32)
    data.data[:] = 1.0
    items = 40
    inputs = keras.Input((items,), sparse=True)
    hidden = ks.layers.SparseDenseInput(8, "relu")(ks.layers.SparseDropout(0.2, seed=1)(inputs))
    scores = keras.layers.Dense(items)(hidden)
    model = keras.Model(inputs, ks.layers.ExcludeSeen()([scores, inputs]))
    model.compile(
        optimizer=ks.optimizers.LazyAdam(0.01),
        loss=ks.losses.SparseMultinomialNLL(),
        metrics=[ks.metrics.NDCGAtK(5), ks.metrics.RecallAtK(5)],
    )
    dataset = ks.data.SparseDataset(data, data, batch_size=32, shuffle=True, seed=0)
    model.fit(dataset, epochs=2, verbose=0)
    model.fit(data, data, batch_size=32, epochs=1, verbose=0)  # Keras's own SciPy path
    results = model.evaluate(data, data, batch_size=32, verbose=0, return_dict=True)
    assert set(results) >= {"loss", "ndcg_at_5", "recall_at_5"}, results
    recs = ks.predict_top_k(model, data, k=5, exclude=data, batch_size=50, verbose=0)
    assert recs.shape == data.shape and recs.multiply(data).nnz == 0
    metrics = ks.evaluate_top_k(model, data, data, k=(5, 10), batch_size=50, verbose=0)
    names = ("precision", "recall", "ndcg", "map")
    assert set(metrics) == {f"{m}@{k}" for m in names for k in (5, 10)}
    csr = ks.topk.TopKToCSR(3)(model.predict(data, verbose=0), exclude=data)
    assert csr.shape == data.shape
    back = ks.to_scipy(ks.to_sparse(data))
    assert (back != data).nnz == 0
    assert tuple(ks.stack([data[:5], data[5:10]]).shape) == (2, 5, items)
    adjacency = sp.eye(6, format="csr", dtype=np.float32) * 2
    assert np.allclose(ks.layers.SparseMatMul(adjacency)(np.ones((6, 2), np.float32)), 2.0)
    top_scores, top_items = ks.layers.TopK(3)(np.arange(12, dtype=np.float32).reshape(2, 6))
    assert np.asarray(top_items).tolist() == [[5, 4, 3], [5, 4, 3]]

    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(data, verbose=0), model.predict(data, verbose=0))

    for call, instead in (
        (lambda: ks.to_sparse_tensor(data), "to_sparse"),
        (lambda: ks.export_saved_model(model, tempfile.mkdtemp()), "model.save"),
        (lambda: ks.distribute.enable_sparse(model), "keras.distribution"),
    ):
        try:
            call()
        except RuntimeError as err:
            assert "'jax'" in str(err) and instead in str(err), err
        else:
            raise AssertionError("a TensorFlow-only feature ran on JAX")
    assert "tensorflow" not in sys.modules
    print("OK without tensorflow")


if __name__ == "__main__":
    main()
