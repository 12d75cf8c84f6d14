"""The negative samplers of SparseDenseOutput (in-batch, mixed, hard) and gBCE, against NumPy.

Each reference rebuilds the step's draws from the shared hash stream
(`_negatives.hashes`, itself checked across backends) with NumPy and computes
the loss from its definition in docs/definitions.md.
"""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import scipy.sparse as sp

from keras_sparse import _negatives, losses
from keras_sparse.layers import SparseDenseOutput
from tests.layers.test_sparse_dense_output import (
    ITEMS,
    ROWS,
    Y,
    _canonical,
    _models,
    _numpy_parts,
    _sampled,
    _sampled_bce,
    _sampled_nll,
    _step,
)

SEED = 7


def _hashes(num):
    return np.asarray(_negatives.hashes(np.array([SEED, 0]), num)).astype(np.uint64)


def _from_batch_reference(y, num, uniform):
    """NumPy draws of the in-batch / mixed sampler on the canonical target `y`."""
    cols = y.indices.astype(np.int64)  # row-major, every entry valid
    h = _hashes(num)
    in_batch = num - uniform
    drawn = np.concatenate([cols[h[:in_batch] % len(cols)], h[in_batch:] % ITEMS]).astype(int)
    share = np.array([np.sum(cols == i) for i in drawn]) / len(cols)
    return drawn, np.log(in_batch * share + uniform / ITEMS)


@pytest.mark.parametrize("sampling, uniform", [("in_batch", 0), ("mixed", 3)])
def test_in_batch_and_mixed_softmax_match_their_numpy_definition(sampling, uniform):
    ours, _ = _models(negatives=6, sampling=sampling, seed=SEED)
    _, scores = _numpy_parts(ours)
    y = _canonical(Y)
    drawn, log_expected = _from_batch_reference(y, 6, uniform)

    def negatives(u, observed):
        keep = ~np.isin(drawn, observed)  # accidental hits removed
        return scores[u, drawn[keep]], log_expected[keep]

    logs, _ = _step(ours, losses.SparseMultinomialNLL(), optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(_sampled_nll(scores, y, negatives), rel=1e-5)


@pytest.mark.parametrize("pool_size", [None, 9])
def test_hard_softmax_keeps_the_best_of_each_group_as_its_definition_says(pool_size):
    negatives = 2
    groups = min(8, ITEMS // negatives) if pool_size is None else pool_size // negatives
    ours, _ = _models(negatives=negatives, sampling="hard", pool_size=pool_size, seed=SEED)
    _, scores = _numpy_parts(ours)
    y = _canonical(Y)
    pool, _ = _sampled(SEED, negatives * groups)

    def best_of_groups(u, observed):
        s = np.where(np.isin(pool, observed), -np.inf, scores[u, pool])
        return s.reshape(negatives, groups).max(axis=1), np.log(negatives / ITEMS)

    logs, _ = _step(ours, losses.SparseMultinomialNLL(), optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(_sampled_nll(scores, y, best_of_groups), rel=1e-5)


def test_hard_sampler_on_integer_labels_matches_numpy():
    steps, negatives, groups = 3, 2, 8
    tokens = keras.Input((steps,), dtype="int32")
    h = keras.layers.Embedding(ITEMS, 4)(tokens)
    out = SparseDenseOutput(ITEMS, negatives=negatives, sampling="hard", seed=SEED)
    model = keras.Model(tokens, out(h))
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype="int32")
    labels = np.array([[2, 3, 7], [5, 6, 22]], dtype="int32")
    emb = np.asarray(model.layers[1].embeddings)
    scores = emb[x] @ np.asarray(out.kernel).T + np.asarray(out.bias)
    pool, _ = _sampled(SEED, negatives * groups)
    want = []
    for s, label in zip(scores.reshape(-1, ITEMS), labels.ravel()):
        rest = np.where(pool == label, -np.inf, s[pool]).reshape(negatives, groups).max(axis=1)
        log_rest = np.log(np.exp(rest - np.log(negatives / ITEMS)).sum())
        want.append(np.logaddexp(s[label], log_rest) - s[label])
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    logs = model.train_on_batch(x, labels, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(want), rel=1e-5)


def test_in_batch_draws_follow_the_batch_frequency_and_skip_invalid_entries():
    items = np.array([3, 3, 3, 9, 1, 1, 5])
    valid = np.array([True, True, True, True, False, False, True])
    drawn, log_expected = _negatives.from_batch(np.array([4, 2]), 6000, items, valid, 12)
    drawn, log_expected = np.asarray(drawn), np.asarray(log_expected)
    assert set(drawn.tolist()) == {3, 9, 5}  # never an invalid entry's item
    np.testing.assert_allclose(np.mean(drawn == 3), 0.6, atol=0.03)
    np.testing.assert_allclose(log_expected[drawn == 3], np.log(6000 * 0.6), rtol=1e-5)
    empty, log_empty = _negatives.from_batch(np.array([4, 2]), 4, items, valid * False, 12, 2)
    assert np.all(np.isinf(np.asarray(log_empty)[:2]))  # no batch item to draw
    np.testing.assert_allclose(np.asarray(log_empty)[2:], np.log(2 / 12), rtol=1e-5)
    assert np.asarray(empty).min() >= 0


def test_gbce_scales_the_positives_loss_by_beta():
    negatives, t = 5, 0.75
    ours, _ = _models(negatives=negatives, sampling="uniform", gbce_t=t, seed=3)
    _, scores = _numpy_parts(ours)
    items, _ = _sampled(3, negatives)
    y = _canonical(Y)
    y.data = np.clip(y.data, 0, 1)
    alpha = negatives / (ITEMS - 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)

    def positive(target, s):  # BCE of sigmoid(s) ** beta against the target
        p = np.exp(-beta * np.logaddexp(0.0, -s))
        return -(target * np.log(p) + (1 - target) * np.log1p(-p))

    want = _sampled_bce(
        scores, y, lambda u, observed: [n for n in items if n not in observed], positive
    )
    loss = losses.SparseBinaryCrossentropy(from_logits=True)
    logs, _ = _step(ours, loss, y, optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("sampling", ["in_batch", "mixed", "hard"])
def test_negative_sampled_bce_matches_numpy_for_every_sampler(sampling):
    negatives, groups = 3, 7  # hard: ITEMS // 3 = 7 draws per kept negative
    ours, _ = _models(negatives=negatives, sampling=sampling, seed=SEED)
    _, scores = _numpy_parts(ours)
    y = _canonical(Y)
    y.data = np.clip(y.data, 0, 1)
    if sampling == "hard":
        pool, _ = _sampled(SEED, negatives * groups)
    else:
        drawn, _ = _from_batch_reference(y, negatives, 1 if sampling == "mixed" else 0)

    def picked(u, observed):
        if sampling != "hard":
            return [n for n in drawn if n not in observed]
        s = np.where(np.isin(pool, observed), -np.inf, scores[u, pool])
        best = s.reshape(negatives, groups).argmax(axis=1)
        chosen = pool.reshape(negatives, groups)[np.arange(negatives), best]
        return [n for n in chosen if n not in observed]

    want = _sampled_bce(scores, y, picked)
    loss = losses.SparseBinaryCrossentropy(from_logits=True)
    logs, _ = _step(ours, loss, y, optimizer=keras.optimizers.SGD(0.0))
    assert logs["loss"] == pytest.approx(want, rel=1e-5)


def test_the_same_seed_draws_the_same_batch_items_on_every_backend():
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    code = (
        "import numpy as np; from keras_sparse import _negatives; "
        "d = _negatives.from_batch(np.array([17, 4]), 40, np.arange(30) % 7, "
        "np.arange(30) % 4 > 0, 50, 10); print(np.asarray(d[0]).tolist())"
    )
    env = {**os.environ, "KERAS_BACKEND": other}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    here = _negatives.from_batch(
        np.array([17, 4]), 40, np.arange(30) % 7, np.arange(30) % 4 > 0, 50, 10
    )
    assert out.stdout.strip().splitlines()[-1] == str(np.asarray(here[0]).tolist())


def test_sampler_arguments_round_trip_through_save(tmp_path):
    ours, _ = _models(negatives=2, sampling="hard", pool_size=10, gbce_t=0.5, seed=1)
    layer = ours.layers[-1]
    config = layer.get_config()
    assert (config["sampling"], config["pool_size"], config["gbce_t"]) == ("hard", 10, 0.5)
    again = SparseDenseOutput.from_config(config)
    assert (again.sampling, again.pool_size, again.gbce_t) == ("hard", 10, 0.5)
    path = str(tmp_path / "m.keras")
    ours.save(path)
    loaded = keras.models.load_model(path)
    x = sp.random(ROWS, 11, density=0.4, format="csr", random_state=0, dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ours.predict(x, verbose=0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"negatives": 3, "sampling": "popular"}, "`sampling` must be one of"),
        ({"negatives": 23}, "`negatives` must be smaller than `units`"),
        ({"negatives": 5, "sampling": "hard", "pool_size": 4}, "pool_size=4"),
        ({"negatives": 5, "sampling": "uniform", "pool_size": 40}, "Pass sampling='hard'"),
        ({"negatives": 3, "item_counts": np.ones(5)}, r"shape \(23,\)"),
        ({"negatives": 3, "item_counts": -np.ones(ITEMS)}, "non-negative"),
        ({"negatives": 3, "item_counts": np.zeros(ITEMS)}, "not all zero"),
        ({"negatives": 3, "item_counts": np.ones(ITEMS), "sampling": "hard"}, "item_counts"),
        ({"negatives": 3, "gbce_t": 0.0}, r"`gbce_t` must lie in \(0.0, 1.0\]"),
        ({"negatives": 3, "gbce_t": 1.5}, r"`gbce_t` must lie in \(0.0, 1.0\], got 1.5"),
        ({"gbce_t": 0.5}, "negatives=None"),
        ({"sampling": "hard", "pool_size": 40}, "negatives=None"),
    ],
)
def test_bad_sampler_arguments_name_the_argument_value_and_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparseDenseOutput(ITEMS, **kwargs)


def test_gbce_with_a_softmax_loss_names_the_fix():
    ours, _ = _models(negatives=3, gbce_t=0.5, seed=1)
    with pytest.raises(ValueError, match="gbce_t=0.5.*SparseBinaryCrossentropy"):
        _step(ours, losses.SparseMultinomialNLL())
    tokens = keras.Input((3,), dtype="int32")
    h = keras.layers.Embedding(ITEMS, 4)(tokens)
    model = keras.Model(tokens, SparseDenseOutput(ITEMS, negatives=3, gbce_t=0.5)(h))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="gbce_t=0.5.*integer labels"):
        model.train_on_batch(np.ones((2, 3), "int32"), np.ones((2, 3), "int32"))


def test_every_sampler_trains_a_sequence_output_with_padding():
    tokens = keras.Input((4,), dtype="int32")
    hidden = keras.layers.Embedding(ITEMS, 4, mask_zero=True)(tokens)
    outs = {}
    for sampling in ("uniform", "in_batch", "mixed", "hard"):
        layer = SparseDenseOutput(ITEMS, negatives=4, sampling=sampling, seed=2)
        model = keras.Model(tokens, layer(hidden))
        model.compile(
            optimizer=keras.optimizers.SGD(0.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        )
        x = np.array([[0, 0, 3, 4], [0, 5, 6, 7]], dtype="int32")
        y = np.array([[0, 0, 4, 9], [0, 6, 7, 22]], dtype="int32")
        outs[sampling] = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert all(np.isfinite(v) and v > 0 for v in outs.values()), outs
