"""One battery for every public Keras object of the package, written once.

For each layer, loss, metric and optimizer: it is registered under
`keras_sparse>Name`, its config round-trips (directly and through Keras
serialization), it trains and evaluates inside a model on sparse data, the
model survives `.keras` save + load with identical predictions and metrics,
and invalid constructor arguments raise a ValueError/TypeError naming the
argument.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import layers, losses, metrics, optimizers
from keras_sparse.data import SparseDataset

ROWS, FEATURES, ITEMS = 24, 12, 10
X = sp.random(ROWS, FEATURES, density=0.3, format="csr", random_state=0, dtype=np.float32)
Y = sp.csr_matrix(
    (np.random.default_rng(1).random((ROWS, ITEMS)) < 0.3).astype(np.float32)
)  # 0/1 so that every loss (BCE included) accepts it
ADJACENCY = sp.random(ITEMS, ITEMS, density=0.3, format="csr", random_state=2, dtype=np.float32)


@keras.saving.register_keras_serializable(package="keras_sparse_tests")
def squared_log_error(t, p):
    return keras.ops.square(keras.ops.log1p(keras.ops.abs(p)) - keras.ops.log1p(t))


def _recommender(head=None):
    inp = keras.Input((FEATURES,), sparse=True)
    out = keras.layers.Dense(ITEMS)(layers.SparseDenseInput(4)(inp))
    return keras.Model(inp, out if head is None else head(out, inp))


def _layer_model(name, layer):
    if name == "SparseDenseInput":
        inp = keras.Input((FEATURES,), sparse=True)
        return keras.Model(inp, keras.layers.Dense(ITEMS)(layer(inp)))
    if name == "SparseDropout":
        inp = keras.Input((FEATURES,), sparse=True)
        return keras.Model(inp, keras.layers.Dense(ITEMS)(layers.SparseDenseInput(4)(layer(inp))))
    if name == "ExcludeSeen":
        inp = keras.Input((ITEMS,), sparse=True)
        scores = keras.layers.Dense(ITEMS)(layers.SparseDenseInput(4)(inp))
        return keras.Model(inp, layer([scores, inp]))
    if name == "SparseMatMul":  # full-batch graph: the batch is the node set
        inp = keras.Input((5,))
        return keras.Model(inp, keras.layers.Dense(ITEMS)(layer(inp)))
    if name == "TopK":
        inp = keras.Input((FEATURES,), sparse=True)
        return keras.Model(inp, layer(keras.layers.Dense(ITEMS)(layers.SparseDenseInput(4)(inp))))
    if name == "SparseDenseOutput":
        inp = keras.Input((FEATURES,), sparse=True)
        return keras.Model(inp, layer(layers.SparseDenseInput(4)(inp)))
    raise KeyError(name)


def _data(name):
    """(x, y, batch_size) that a model holding the named object trains on."""
    if name == "SparseMatMul":
        x = np.random.default_rng(3).normal(size=(ITEMS, 5)).astype(np.float32)
        return x, sp.csr_matrix(Y[:ITEMS]), ITEMS
    if name == "ExcludeSeen":
        return sp.csr_matrix(Y), Y, 8
    return X, Y, 8


@dataclass
class Spec:
    make: Callable[[], Any]
    kind: str  # "layer", "loss", "metric", "optimizer"
    invalid: list = field(default_factory=list)  # (kwargs, error, argument name)


SPECS = {
    "SparseDenseInput": Spec(
        lambda: layers.SparseDenseInput(4, combiner="sqrtn"),
        "layer",
        [
            ({"units": 0}, ValueError, "units"),
            ({"units": 2, "combiner": "max"}, ValueError, "combiner"),
        ],
    ),
    "SparseMatMul": Spec(
        lambda: layers.SparseMatMul(ADJACENCY),
        "layer",
        [
            ({"matrix": np.ones((2, 2, 2))}, ValueError, "matrix"),
            ({"transpose_a": 1}, TypeError, "transpose_a"),
        ],
    ),
    "SparseDropout": Spec(
        lambda: layers.SparseDropout(0.25, seed=3),
        "layer",
        [({"rate": 1.0}, ValueError, "rate"), ({"rate": 0.1, "seed": -1}, ValueError, "seed")],
    ),
    "ExcludeSeen": Spec(lambda: layers.ExcludeSeen(), "layer"),
    "SparseDenseOutput": Spec(
        lambda: layers.SparseDenseOutput(
            ITEMS, negatives=4, item_counts=np.arange(1, ITEMS + 1), seed=5, block_size=3
        ),
        "layer",
        [
            ({"units": 0}, ValueError, "units"),
            ({"units": 4, "negatives": 0}, ValueError, "negatives"),
            ({"units": 4, "item_counts": [1, 2]}, ValueError, "item_counts"),
            ({"units": 2, "item_counts": [-1, 2]}, ValueError, "item_counts"),
            ({"units": 2, "sampling": "popular"}, ValueError, "sampling"),
            ({"units": 2, "block_size": 0}, ValueError, "block_size"),
            ({"units": 2, "seed": -3}, ValueError, "seed"),
        ],
    ),
    "TopK": Spec(lambda: layers.TopK(3), "layer", [({"k": 0}, ValueError, "k")]),
    "SparseMeanSquaredError": Spec(
        lambda: losses.SparseMeanSquaredError(normalize="entries"),
        "loss",
        [({"normalize": "batch"}, ValueError, "normalize")],
    ),
    "SparseMeanAbsoluteError": Spec(
        losses.SparseMeanAbsoluteError, "loss", [({"normalize": 1}, ValueError, "normalize")]
    ),
    "SparseHuber": Spec(
        lambda: losses.SparseHuber(delta=0.5), "loss", [({"delta": -1.0}, ValueError, "delta")]
    ),
    "SparseBinaryCrossentropy": Spec(
        lambda: losses.SparseBinaryCrossentropy(from_logits=True),
        "loss",
        [({"from_logits": "yes"}, TypeError, "from_logits")],
    ),
    "SparseMultinomialNLL": Spec(
        losses.SparseMultinomialNLL, "loss", [({"normalize": "rows"}, ValueError, "normalize")]
    ),
    "MaskedLoss": Spec(
        lambda: losses.MaskedLoss(squared_log_error, normalize="entries"),
        "loss",
        [({"fn": "mse"}, TypeError, "fn")],
    ),
    "PrecisionAtK": Spec(
        lambda: metrics.PrecisionAtK(3, denominator="min"),
        "metric",
        [({"k": 0}, ValueError, "k"), ({"denominator": "max"}, ValueError, "denominator")],
    ),
    "RecallAtK": Spec(lambda: metrics.RecallAtK(5), "metric", [({"k": 2.5}, TypeError, "k")]),
    "NDCGAtK": Spec(
        lambda: metrics.NDCGAtK(4, gains="linear"),
        "metric",
        [({"gains": "log"}, ValueError, "gains")],
    ),
    "MAPAtK": Spec(
        lambda: metrics.MAPAtK(3), "metric", [({"empty_rows": "drop"}, ValueError, "empty_rows")]
    ),
    "HitRateAtK": Spec(
        lambda: metrics.HitRateAtK(2, empty_rows="zero"),
        "metric",
        [({"relevance_threshold": "high"}, TypeError, "relevance_threshold")],
    ),
    "MRRAtK": Spec(lambda: metrics.MRRAtK(5), "metric", [({"k": -1}, ValueError, "k")]),
    "SparseRootMeanSquaredError": Spec(metrics.SparseRootMeanSquaredError, "metric"),
    "LazyAdam": Spec(
        lambda: optimizers.LazyAdam(learning_rate=0.01, beta_1=0.8),
        "optimizer",
        [
            ({"beta_1": 1.0}, ValueError, "beta_1"),
            ({"epsilon": -1.0}, ValueError, "epsilon"),
            ({"learning_rate": "fast"}, TypeError, "learning_rate"),
        ],
    ),
}


def test_the_battery_covers_every_public_class():
    public = set()
    for module in (layers, losses, metrics):
        public |= {n for n in module.__all__ if isinstance(getattr(module, n), type)}
    public.add("LazyAdam")
    assert public == set(SPECS)


def _compiled(name, spec, obj):
    if spec.kind == "layer":
        model = _layer_model(name, obj)
        loss = {"TopK": None, "SparseDenseOutput": losses.SparseMultinomialNLL()}
        model.compile(optimizer="adam", loss=loss.get(name, "sparse_mse"))
        return model
    model = _recommender()
    model.compile(
        optimizer=obj if spec.kind == "optimizer" else "adam",
        loss=obj if spec.kind == "loss" else "sparse_mse",
        metrics=[obj] if spec.kind == "metric" else [],
    )
    return model


@pytest.mark.parametrize("name", list(SPECS))
def test_registered_and_config_round_trips(name):
    obj = SPECS[name].make()
    cls = type(obj)
    assert keras.saving.get_registered_name(cls) == f"keras_sparse>{name}"
    config = obj.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is cls and revived.get_config() == config


@pytest.mark.parametrize("name", list(SPECS))
def test_trains_in_a_model_and_survives_save_and_load(name, tmp_path):
    keras.utils.set_random_seed(7)
    spec = SPECS[name]
    model = _compiled(name, spec, spec.make())
    x, y, batch_size = _data(name)
    if name == "TopK":  # an inference head: nothing to train
        values, indices = model.predict(x, verbose=0)
        assert values.shape == indices.shape == (ROWS, 3)
    else:
        ds = SparseDataset(x, y, batch_size=batch_size)
        history = model.fit(ds, epochs=2, verbose=0)
        assert all(np.isfinite(v).all() for v in history.history.values())
        before = model.evaluate(ds, verbose=0, return_dict=True)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    for got, want in zip(
        keras.tree.flatten(reloaded.predict(x, verbose=0)),
        keras.tree.flatten(model.predict(x, verbose=0)),
    ):
        np.testing.assert_array_equal(got, want)
    if name != "TopK":
        after = reloaded.evaluate(ds, verbose=0, return_dict=True)
        assert after == pytest.approx(before, rel=1e-6)
    if spec.kind == "optimizer":
        assert type(reloaded.optimizer) is type(model.optimizer)


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "argument"),
    [(name, *case) for name, spec in SPECS.items() for case in spec.invalid],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_arguments_name_the_argument(name, kwargs, error, argument):
    cls = type(SPECS[name].make())
    with pytest.raises(error, match=f"`{argument}`"):
        cls(**kwargs)


def test_top_k_to_csr_config_and_arguments():
    converter = ks.topk.TopKToCSR(4, values="ranks", min_score=0.5)
    assert type(converter)(**converter.get_config()).get_config() == converter.get_config()
    with pytest.raises(ValueError, match="`k`"):
        ks.topk.TopKToCSR(0)
