"""String identifiers in `compile` (keras_sparse._identifiers)."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import _compat, losses, metrics
from keras_sparse.data import SparseDataset

LOSS_STRINGS = {
    "sparse_mse": losses.SparseMeanSquaredError,
    "sparse_mae": losses.SparseMeanAbsoluteError,
    "sparse_huber": losses.SparseHuber,
    "sparse_binary_crossentropy": losses.SparseBinaryCrossentropy,
    "sparse_multinomial_nll": losses.SparseMultinomialNLL,
    "SparseMeanSquaredError": losses.SparseMeanSquaredError,
    "sparse_mean_absolute_error": losses.SparseMeanAbsoluteError,
}
METRIC_STRINGS = {
    "ndcg": metrics.NDCGAtK,
    "ndcg_at_k": metrics.NDCGAtK,
    "NDCGAtK": metrics.NDCGAtK,
    "precision_at_k": metrics.PrecisionAtK,
    "recall_at_k": metrics.RecallAtK,
    "map": metrics.MAPAtK,
    "map_at_k": metrics.MAPAtK,
    "hit_rate": metrics.HitRateAtK,
    "mrr": metrics.MRRAtK,
    "sparse_rmse": metrics.SparseRootMeanSquaredError,
    "sparse_root_mean_squared_error": metrics.SparseRootMeanSquaredError,
}


@pytest.mark.parametrize(("name", "cls"), list(LOSS_STRINGS.items()))
def test_loss_strings_build_our_classes(name, cls):
    assert type(keras.losses.get(name)) is cls


@pytest.mark.parametrize(("name", "cls"), list(METRIC_STRINGS.items()))
def test_metric_strings_build_our_classes_with_defaults(name, cls):
    metric = keras.metrics.get(name)
    assert type(metric) is cls
    if hasattr(metric, "k"):
        assert metric.k == 10


@pytest.mark.parametrize("name", ["lazy_adam", "LazyAdam", "lazyadam"])
def test_optimizer_strings(name):
    assert type(keras.optimizers.get(name)) is ks.optimizers.LazyAdam


@pytest.mark.skipif(
    _compat.keras_version() > (3, 15), reason="Keras 3.16 reads optimizer strings from its table"
)
def test_optimizer_names_go_through_keras_public_table_of_custom_objects():
    from keras.src import optimizers as keras_optimizers

    assert keras.saving.get_custom_objects()["lazy_adam"] is ks.optimizers.LazyAdam
    assert "lazy_adam" not in keras_optimizers.ALL_OBJECTS_DICT  # Keras's own table is untouched
    targets = {patch.target for patch in ks.keras_patches()}
    assert "keras.src.optimizers.ALL_OBJECTS_DICT" not in targets


def test_keras_own_identifiers_keep_their_meaning():
    assert type(keras.metrics.get("precision")) is keras.metrics.Precision
    assert type(keras.metrics.get("recall")) is keras.metrics.Recall
    assert keras.losses.get("mse") is keras.losses.mean_squared_error
    adam = keras.optimizers.get("adam")  # on torch, Keras's own torch subclass of Adam
    assert isinstance(adam, keras.optimizers.Adam) and not isinstance(adam, ks.optimizers.LazyAdam)


def test_compile_fit_save_and_load_with_strings_only(tmp_path):
    x = sp.random(40, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    inp = keras.Input((12,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(12)(ks.layers.SparseDenseInput(4)(inp)))
    model.compile(
        optimizer="lazy_adam", loss="sparse_mse", metrics=["ndcg", "recall_at_k", "sparse_rmse"]
    )
    ds = SparseDataset(x, x, batch_size=16)
    history = model.fit(ds, epochs=1, verbose=0)
    # As for Keras's own strings, a metric is named by the string that built it.
    assert {"loss", "ndcg", "recall_at_k", "sparse_rmse"} <= set(history.history)
    path = tmp_path / "strings.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects
    assert type(reloaded.optimizer) is ks.optimizers.LazyAdam
    np.testing.assert_allclose(
        reloaded.predict(ds, verbose=0), model.predict(ds, verbose=0), rtol=0, atol=0
    )
    before = model.evaluate(ds, verbose=0, return_dict=True)
    after = reloaded.evaluate(ds, verbose=0, return_dict=True)
    assert after == pytest.approx(before, rel=1e-6)
