import math

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import ranking_mean

import keras_sparse as ks
from conftest import assert_config_round_trips, assert_round_trips
from keras_sparse import metrics
from keras_sparse.data import SparseDataset
from keras_sparse.layers import ExcludeSeen, SparseDenseInput

CLASSES = {
    "precision": metrics.PrecisionAtK,
    "recall": metrics.RecallAtK,
    "ndcg": metrics.NDCGAtK,
    "map": metrics.MAPAtK,
    "hit_rate": metrics.HitRateAtK,
    "mrr": metrics.MRRAtK,
}
L3 = 1 / math.log2(3)

# scores 0.9 > 0.8 > 0.7 > 0.6 > 0.5 for items 0..4; relevant items {1, 3}; k = 3.
# Ranked [0, 1, 2], hits [0, 1, 0] (hand computed).
HAND = [
    ("precision", {}, 1 / 3),
    ("precision", {"denominator": "min"}, 1 / 2),
    ("recall", {}, 1 / 2),
    ("recall", {"denominator": "min"}, 1 / 2),
    ("hit_rate", {}, 1.0),
    ("mrr", {}, 1 / 2),
    ("map", {}, (1 / 2) / 2),
    ("ndcg", {}, L3 / (1 + L3)),
]


def _value(metric, y_true, scores, k, sample_weight=None, **opts):
    m = CLASSES[metric](k=k, **opts)
    m.update_state(y_true, scores, sample_weight=sample_weight)
    return float(m.result())


@pytest.mark.parametrize(("metric", "opts", "expected"), HAND)
def test_hand_computed_table(metric, opts, expected):
    y = ks.to_sparse(sp.csr_matrix(np.array([[0, 1, 0, 1, 0.0]])))
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)
    assert _value(metric, y, scores, 3, **opts) == pytest.approx(expected, rel=1e-6)


def test_graded_gains_hand_computed():
    # relevance values 3 at item 2 and 1 at item 0; ranked [0, 1, 2] with k = 3
    y = ks.to_sparse(sp.csr_matrix(np.array([[1.0, 0, 3.0, 0]])))
    scores = np.array([[0.9, 0.8, 0.7, 0.1]], np.float32)
    linear = (1 + 3 / 2) / (3 + 1 * L3)
    exponential = (1 + 7 / 2) / (7 + 1 * L3)
    assert _value("ndcg", y, scores, 3, gains="linear") == pytest.approx(linear, rel=1e-6)
    assert _value("ndcg", y, scores, 3, gains="exponential") == pytest.approx(exponential, rel=1e-6)


def test_ties_go_to_the_lower_index_and_nan_is_never_ranked():
    scores = np.full((1, 5), 0.5, np.float32)
    first = ks.to_sparse(sp.csr_matrix(np.array([[1.0, 0, 0, 0, 0]])))
    last = ks.to_sparse(sp.csr_matrix(np.array([[0, 0, 0, 0, 1.0]])))
    assert _value("precision", first, scores, 1) == 1.0
    assert _value("precision", last, scores, 1) == 0.0
    with_nan = np.array([[np.nan, 0.1, 0.2, 0.0, 0.0]], np.float32)
    y = ks.to_sparse(sp.csr_matrix(np.array([[1.0, 1.0, 0, 0, 0]])))
    # item 0 (NaN) is not a candidate and leaves G: G = {1}, ranked [2, 1]
    assert _value("mrr", y, with_nan, 2) == pytest.approx(0.5)


def test_k_larger_than_items_and_empty_rows():
    y = ks.to_sparse(sp.csr_matrix(np.array([[0, 1.0, 0], [0, 0, 0]])))
    scores = np.array([[0.3, 0.2, 0.1], [0.1, 0.2, 0.3]], np.float32)
    assert _value("precision", y, scores, 10) == pytest.approx(1 / 10)
    assert _value("recall", y, scores, 10) == 1.0
    assert _value("recall", y, scores, 10, empty_rows="zero") == 0.5
    assert _value("ndcg", y, scores, 10) == pytest.approx(L3)


@st.composite
def ranking_case(draw):
    rows = draw(st.integers(0, 6))
    n = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    # few distinct score values -> many ties; some NaN
    scores = rng.integers(0, 3, size=(rows, n)).astype(np.float32)
    scores[rng.random((rows, n)) < 0.1] = np.nan
    mask = rng.random((rows, n)) < 0.4
    values = rng.integers(0, 4, size=(rows, n)).astype(np.float32)  # 0 = explicit zero
    r, c = np.nonzero(mask)
    y = sp.coo_matrix((values[r, c], (r, c)), shape=(rows, n))
    k = draw(st.integers(1, n + 3))
    return scores, y, k, rng.random(rows).astype(np.float32)


@given(
    ranking_case(), st.sampled_from(list(CLASSES)), st.sampled_from(["skip", "zero"]), st.booleans()
)
def test_property_matches_reference(case, metric, empty_rows, weighted):
    scores, y, k, w = case
    weights = w if weighted else None
    opts = {}
    if metric in ("precision", "recall"):
        opts["denominator"] = "min" if k % 2 else "k"
    if metric == "ndcg":
        opts["gains"] = ["binary", "linear", "exponential"][k % 3]
    expected = ranking_mean(
        metric, scores, y, k, sample_weight=weights, empty_rows=empty_rows, **opts
    )
    got = _value(
        metric,
        ks.to_sparse(y),
        scores,
        k,
        sample_weight=weights,
        empty_rows=empty_rows,
        **opts,
    )
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    dense_got = _value(
        metric, y.toarray(), scores, k, sample_weight=weights, empty_rows=empty_rows, **opts
    )
    explicit_zero_free = sp.csr_matrix(y)
    explicit_zero_free.eliminate_zeros()  # a dense target cannot hold explicit zeros
    assert dense_got == pytest.approx(
        ranking_mean(
            metric,
            scores,
            explicit_zero_free,
            k,
            sample_weight=weights,
            empty_rows=empty_rows,
            **opts,
        ),
        rel=1e-5,
        abs=1e-6,
    )


@given(ranking_case(), st.sampled_from(list(CLASSES)))
def test_accumulation_over_batches_equals_one_batch(case, metric):
    scores, y, k, w = case
    y = sp.csr_matrix(y)
    whole = CLASSES[metric](k=k)
    whole.update_state(ks.to_sparse(y), scores, sample_weight=w)
    split = CLASSES[metric](k=k)
    for start in range(0, scores.shape[0], 2):
        stop = start + 2
        split.update_state(
            ks.to_sparse(y[start:stop]), scores[start:stop], sample_weight=w[start:stop]
        )
    assert float(split.result()) == pytest.approx(float(whole.result()), rel=1e-5, abs=1e-7)


def test_sparse_rmse_accumulates_entries_not_batch_means():
    y = sp.csr_matrix(np.array([[3.0, 0, 0], [1.0, 2.0, 2.0]]))
    pred = np.array([[1.0, 9, 9], [1.0, 2.0, 3.0]], np.float32)
    m = metrics.SparseRootMeanSquaredError()
    m.update_state(ks.to_sparse(y[:1]), pred[:1])
    m.update_state(ks.to_sparse(y[1:]), pred[1:])
    assert float(m.result()) == pytest.approx(math.sqrt((4 + 0 + 0 + 1) / 4))
    w = metrics.SparseRootMeanSquaredError()
    w.update_state(ks.to_sparse(y), pred, sample_weight=np.array([0.0, 1.0]))
    assert float(w.result()) == pytest.approx(math.sqrt(1 / 3))
    m.reset_state()
    assert float(m.result()) == 0.0


@pytest.mark.parametrize("gains", ["binary", "linear", "exponential"])
def test_update_with_empty_batch_changes_nothing(gains):
    # Graded gains sort the relevant entries per row: with no row at all (and, on JAX,
    # only padding slots) that must still leave the state untouched.
    m = metrics.NDCGAtK(k=5, gains=gains)
    m.update_state(ks.to_sparse(sp.csr_matrix((0, 4))), np.zeros((0, 4), np.float32))
    assert float(m.count) == 0.0 and float(m.result()) == 0.0


@pytest.mark.parametrize("metric", list(CLASSES))
def test_config_round_trip_keeps_options(metric):
    opts = {"k": 7, "relevance_threshold": 0.5, "empty_rows": "zero"}
    if metric in ("precision", "recall"):
        opts["denominator"] = "min"
    if metric == "ndcg":
        opts["gains"] = "exponential"
    clone = assert_config_round_trips(CLASSES[metric](**opts))
    for key, value in opts.items():
        assert getattr(clone, key) == value
    assert clone.name == f"{metric}_at_7"


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: metrics.NDCGAtK(k=0), ValueError, "`k`"),
        (lambda: metrics.NDCGAtK(k=2.5), TypeError, "`k`"),
        (lambda: metrics.NDCGAtK(gains="log"), ValueError, "`gains`"),
        (lambda: metrics.RecallAtK(denominator="max"), ValueError, "`denominator`"),
        (lambda: metrics.MAPAtK(empty_rows="drop"), ValueError, "`empty_rows`"),
        (lambda: metrics.MRRAtK(relevance_threshold="high"), TypeError, "`relevance_threshold`"),
    ],
)
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def _interactions(users=60, items=20, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.csr_matrix((rng.random((users, items)) < 0.2).astype(np.float32))
    return x


def test_model_compiled_with_every_metric_saves_and_loads(tmp_path):
    x = _interactions()
    inp = keras.Input((20,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(20)(SparseDenseInput(4)(inp)))
    all_metrics = [cls(k=5) for cls in CLASSES.values()] + [metrics.SparseRootMeanSquaredError()]
    model.compile(optimizer="adam", loss=ks.losses.SparseMultinomialNLL(), metrics=all_metrics)
    ds = SparseDataset(x, x, batch_size=16)
    model.fit(ds, epochs=1, verbose=0)
    reloaded = assert_round_trips(model, SparseDataset(x, batch_size=16), tmp_path)
    np.testing.assert_allclose(
        reloaded.evaluate(ds, verbose=0), model.evaluate(ds, verbose=0), rtol=1e-6
    )


def _echo_model(items):
    inp = keras.Input((items,), sparse=True)
    densify = keras.layers.Lambda(  # a test oracle: the scores are the input itself
        lambda t: keras.ops.convert_to_tensor(t, sparse=False), output_shape=(items,)
    )
    dense = densify(inp)
    return inp, dense


def test_echo_model_is_perfect_without_exclusion_and_not_with_it():
    x = _interactions(seed=1)
    inp, scores = _echo_model(20)
    leaky = keras.Model(inp, scores)
    excluded = keras.Model(inp, ExcludeSeen()([scores, inp]))
    for model in (leaky, excluded):  # one metric object per model: metrics hold state
        model.compile(
            loss=ks.losses.sparse_mse,
            metrics=[metrics.NDCGAtK(k=5, name="ndcg"), metrics.RecallAtK(k=5)],
        )
    ds = SparseDataset(x, x, batch_size=16)
    leaky_ndcg = leaky.evaluate(ds, verbose=0, return_dict=True)["ndcg"]
    assert leaky_ndcg == pytest.approx(1.0)  # the leak: echoing the input looks perfect
    # Target = train items + held-out items; the echo model knows nothing about the held-out.
    rng = np.random.default_rng(2)
    held_out = sp.csr_matrix((rng.random((60, 20)) < 0.1).astype(np.float32))
    target = sp.csr_matrix(((x + held_out) > 0).astype(np.float32))
    val = excluded.evaluate(SparseDataset(x, target, batch_size=16), verbose=0, return_dict=True)
    assert val["ndcg"] < 0.8
    ref = ranking_mean("ndcg", x.toarray(), target, 5, exclude=x)
    assert val["ndcg"] == pytest.approx(ref, rel=1e-5)


def test_exclude_seen_only_at_inference():
    scores = np.array([[0.5, 0.7, 0.1]], np.float32)
    seen = ks.to_sparse(sp.csr_matrix(np.array([[0, 1.0, 0]])))
    out = np.asarray(ExcludeSeen()([scores, seen], training=False))
    assert out[0, 1] == -np.inf and out[0, 0] == 0.5
    np.testing.assert_array_equal(np.asarray(ExcludeSeen()([scores, seen], training=True)), scores)
    with pytest.raises(ValueError, match=r"\[scores, seen\]"):
        ExcludeSeen()(scores)


def test_matches_implicit_ndcg_and_map():
    implicit = pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import mean_average_precision_at_k, ndcg_at_k

    rng = np.random.default_rng(5)
    users, items, factors, k = 80, 40, 6, 10
    train = sp.csr_matrix((rng.random((users, items)) < 0.15).astype(np.float32))
    test = sp.csr_matrix(
        ((rng.random((users, items)) < 0.1) & (train.toarray() == 0)).astype(np.float32)
    )
    model = AlternatingLeastSquares(factors=factors, random_state=0)
    model.user_factors = rng.normal(size=(users, factors)).astype(np.float32)
    model.item_factors = rng.normal(size=(items, factors)).astype(np.float32)
    scores = model.user_factors @ model.item_factors.T
    masked = ks.ranking.mask_scores(scores, ks.to_sparse(train))
    assert implicit.__version__.startswith("0.7")
    kwargs = {"K": k, "show_progress": False, "num_threads": 1}
    for cls, fn in ((metrics.NDCGAtK, ndcg_at_k), (metrics.MAPAtK, mean_average_precision_at_k)):
        ours = cls(k=k)
        ours.update_state(ks.to_sparse(test), masked)
        assert float(ours.result()) == pytest.approx(fn(model, train, test, **kwargs), abs=1e-6)


@pytest.mark.slow
def test_autoencoder_recommender_beats_popularity():
    # Planted structure: 6 user groups that each prefer one sixth of the items, with a
    # log-normal popularity skew; 20 % of each user's items are held out.
    rng = np.random.default_rng(0)
    users, items, groups = 600, 120, 6
    group_of_user = rng.integers(0, groups, users)
    group_of_item = np.arange(items) % groups
    pop = np.exp(rng.normal(size=items))
    prob = np.where(group_of_user[:, None] == group_of_item[None, :], 0.2, 0.02) * pop / pop.mean()
    inter = rng.random((users, items)) < np.clip(prob, 0, 0.9)
    held = inter & (rng.random((users, items)) < 0.2)
    train = sp.csr_matrix((inter & ~held).astype(np.float32))
    held = sp.csr_matrix(held.astype(np.float32))
    inp = keras.Input((items,), sparse=True)
    noisy = ks.layers.SparseDropout(0.5, seed=0)(inp)
    hidden = SparseDenseInput(32, activation="tanh", combiner="sqrtn")(noisy)
    model = keras.Model(inp, ExcludeSeen()([keras.layers.Dense(items)(hidden), inp]))
    model.compile(
        optimizer=ks.optimizers.LazyAdam(0.01),
        loss=ks.losses.SparseMultinomialNLL(),
        metrics=[metrics.RecallAtK(20, name="recall")],
    )
    model.fit(
        SparseDataset(train, train, batch_size=64, shuffle=True, seed=0), epochs=20, verbose=0
    )
    ours = model.evaluate(SparseDataset(train, held, batch_size=128), verbose=0, return_dict=True)[
        "recall"
    ]
    popularity = np.tile(np.asarray(train.sum(axis=0)).ravel(), (users, 1)).astype(np.float32)
    base = metrics.RecallAtK(20)
    base.update_state(ks.to_sparse(held), ks.ranking.mask_scores(popularity, ks.to_sparse(train)))
    assert ours > float(base.result()) + 0.05, (ours, float(base.result()))


@pytest.mark.parametrize("metric", list(CLASSES))
def test_update_state_shape_mismatch_names_both_shapes(metric):
    y = ks.to_sparse(sp.eye(4, 6, format="csr", dtype=np.float32))
    m = CLASSES[metric](k=2)
    with pytest.raises(ValueError, match=rf"metric '{m.name}': `y_true` has shape \(4, 6\)"):
        m.update_state(y, np.zeros((4, 5), "float32"))
    with pytest.raises(ValueError, match=r"`sample_weight` has 3 rows but the batch has 4"):
        m.update_state(y, np.zeros((4, 6), "float32"), sample_weight=np.ones(3))


def test_every_metric_in_evaluate_with_sample_weight_matches_the_reference():
    x = sp.random(30, 8, density=0.4, format="csr", random_state=8, dtype=np.float32)
    rng = np.random.default_rng(9)
    y = sp.csr_matrix((rng.random((30, 8)) < 0.3).astype(np.float32))
    weights = rng.random(30).astype(np.float32)
    model = keras.Sequential([keras.Input((8,), sparse=True), keras.layers.Dense(8)])
    # Keras convention: `weighted_metrics` use `sample_weight`, `metrics` do not.
    model.compile(
        loss="sparse_mse",
        metrics=[cls(k=3, name=f"plain_{m}") for m, cls in CLASSES.items()],
        weighted_metrics=[cls(k=3) for cls in CLASSES.values()],
    )
    got = model.evaluate(x, y, sample_weight=weights, batch_size=7, verbose=0, return_dict=True)
    scores = np.asarray(model.predict(x, verbose=0))
    for metric in CLASSES:
        want = ranking_mean(metric, scores, y, 3, sample_weight=weights)
        assert got[f"{metric}_at_3"] == pytest.approx(want, rel=1e-5, abs=1e-6), metric
        plain = ranking_mean(metric, scores, y, 3)
        assert got[f"plain_{metric}"] == pytest.approx(plain, rel=1e-5, abs=1e-6), metric
