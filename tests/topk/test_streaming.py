"""Streaming top-k (`keras_sparse.topk`) against one-shot scoring and dense references."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp
from reference import entries as reference_entries
from reference import ranked_list, ranking_mean

import keras_sparse as ks
from keras_sparse import backend as B
from keras_sparse.data import SparseDataset
from keras_sparse.topk import TopKToCSR
from keras_sparse.topk import _streaming as streaming


def _rows_of(csr):
    return [csr.indices[csr.indptr[u] : csr.indptr[u + 1]].tolist() for u in range(csr.shape[0])]


def _scorer(items=12, features=10):
    keras.utils.set_random_seed(0)
    inp = keras.Input((features,), sparse=True)
    return keras.Model(inp, keras.layers.Dense(items)(ks.layers.SparseDenseInput(4)(inp)))


def test_predict_top_k_streaming_equals_one_shot():
    model = _scorer()
    x = sp.random(53, 10, density=0.3, format="csr", random_state=0, dtype=np.float32)
    exclude = sp.random(53, 12, density=0.2, format="csc", random_state=1)
    streamed = ks.predict_top_k(model, x, k=4, exclude=exclude, batch_size=8, verbose=0)
    scores = model.predict(SparseDataset(x, batch_size=64), verbose=0)
    one_shot = TopKToCSR(4)(scores, exclude=exclude)
    assert _rows_of(streamed) == _rows_of(one_shot)
    np.testing.assert_allclose(streamed.data, one_shot.data, rtol=1e-6)
    ranks = ks.predict_top_k(model, SparseDataset(x, batch_size=20), k=2, values="ranks", verbose=0)
    assert set(ranks.data.tolist()) == {1.0, 2.0}


def test_evaluate_top_k_equals_metric_classes_and_reference():
    model = _scorer()
    rng = np.random.default_rng(3)
    x = sp.random(41, 10, density=0.3, format="csr", random_state=2, dtype=np.float32)
    y = sp.csr_matrix((rng.random((41, 12)) < 0.25).astype(np.float32))
    exclude = sp.csr_matrix((rng.random((41, 12)) < 0.2).astype(np.float32))
    result = ks.evaluate_top_k(
        model,
        x,
        y,
        k=(3, 5),
        exclude=exclude,
        batch_size=7,
        metrics=list(ks.ranking.METRICS),
        verbose=0,
    )
    scores = model.predict(SparseDataset(x, batch_size=64), verbose=0)
    for name, value in result.items():
        metric, k = name.split("@")
        expected = ranking_mean(metric, scores, y, int(k), exclude=exclude)
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: ks.evaluate_top_k(_scorer(), sp.eye(3, 10), sp.eye(4, 12), verbose=0),
            ValueError,
            "`y_true` has 4 rows but `x` has 3",
        ),
        (
            lambda: ks.evaluate_top_k(
                _scorer(), sp.eye(3, 10), sp.eye(3, 12), metrics=["auc"], verbose=0
            ),
            ValueError,
            "`metrics`",
        ),
        (
            lambda: ks.evaluate_top_k(_scorer(), sp.eye(3, 10), sp.eye(3, 7), verbose=0),
            ValueError,
            r"evaluate_top_k: `y_true` has shape \(\w+, 7\) but `y_pred` has shape \(\w+, 12\)",
        ),
        (
            lambda: ks.predict_top_k(_scorer(), SparseDataset(sp.eye(3, 10), shuffle=True), 2),
            ValueError,
            "shuffle",
        ),
        (lambda: ks.predict_top_k(_scorer(), sp.eye(3, 10), 2, verbose=5), ValueError, "`verbose`"),
    ],
)
def test_invalid_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_both_exclusion_paths_agree(monkeypatch):
    model = _scorer()
    rng = np.random.default_rng(4)
    x = sp.random(30, 10, density=0.3, format="csr", random_state=5, dtype=np.float32)
    y = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    exclude = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    fast = ks.predict_top_k(model, x, k=5, exclude=exclude, batch_size=8, verbose=0)
    fast_eval = ks.evaluate_top_k(model, x, y, k=(2, 5), exclude=exclude, verbose=0)
    monkeypatch.setattr(streaming, "MAX_EXTRA", 0)  # force masking of the whole score block
    slow = ks.predict_top_k(model, x, k=5, exclude=exclude, batch_size=8, verbose=0)
    slow_eval = ks.evaluate_top_k(model, x, y, k=(2, 5), exclude=exclude, verbose=0)
    assert _rows_of(fast) == _rows_of(slow)
    assert fast_eval == pytest.approx(slow_eval, rel=1e-6)


class SubclassedScorer(keras.Model):
    """A model whose item count is unknown until it runs (no `outputs`)."""

    def __init__(self):
        super().__init__()
        self.embed = ks.layers.SparseDenseInput(4)
        self.out = keras.layers.Dense(12)

    def call(self, x):
        return self.out(self.embed(x))


@pytest.mark.parametrize("subclassed", [False, True])
def test_scoring_batches_in_row_parts_matches_the_reference(monkeypatch, subclassed):
    """Batches cut into row parts (`backend.dense_score_rows`, JAX's CPU) rank as a whole.

    Parts of 3 rows of batches of 8 (a last part of 2), over a shard whose rows
    are not contiguous, with exclusions masked in place; the subclassed model
    learns its item count from its first batch, scored whole.
    """
    asked = []

    def three_rows(num_items):
        asked.append(num_items)
        return 3

    monkeypatch.setattr(streaming.B, "dense_score_rows", three_rows)
    keras.utils.set_random_seed(0)
    model = SubclassedScorer() if subclassed else _scorer()
    rng = np.random.default_rng(7)
    x = sp.random(45, 10, density=0.3, format="csr", random_state=8, dtype=np.float32)
    ds = SparseDataset(x, batch_size=8).shard(2, 1)
    rows = np.concatenate([ds.batch_rows(i) for i in range(len(ds))])
    y = sp.csr_matrix((rng.random((len(rows), 12)) < 0.3).astype(np.float32))
    exclude = sp.csr_matrix((rng.random((len(rows), 12)) < 0.25).astype(np.float32))
    top = ks.predict_top_k(model, ds, k=4, exclude=exclude, verbose=0)
    result = ks.evaluate_top_k(model, ds, y, k=(2, 4), exclude=exclude, verbose=0)
    assert asked and set(asked) == {12}
    scores = np.asarray(model.predict(SparseDataset(x[rows], batch_size=64), verbose=0))
    excluded = reference_entries(exclude)
    for u in range(len(rows)):
        want, _ = ranked_list(list(scores[u]), 4, {c for (r, c) in excluded if r == u})
        assert _rows_of(top)[u] == want
    for name, value in result.items():
        metric, k = name.split("@")
        expected = ranking_mean(metric, scores, y, int(k), exclude=exclude)
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), name


def test_dense_score_rows_bounds_the_score_block():
    rows = B.dense_score_rows(20_000)
    if B.NAME != "jax" or keras.config.backend() != "jax" or _jax_device() != "cpu":
        assert rows is None  # whole batches: TensorFlow, torch, JAX off the CPU
        return
    # JAX's CPU: at most SCORE_BLOCK_BYTES of float32 scores, 16 rows at least
    assert 16 < rows and rows * 20_000 * 4 <= B._backend.SCORE_BLOCK_BYTES
    assert (rows + 1) * 20_000 * 4 > B._backend.SCORE_BLOCK_BYTES
    assert B.dense_score_rows(10**8) == 16


def _jax_device():
    import jax

    return jax.default_backend()


def test_streaming_steps_do_not_keep_the_model_alive():
    import gc
    import weakref

    x = sp.random(20, 8, density=0.3, format="csr", random_state=0, dtype=np.float32)
    inp = keras.Input((8,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(8)(ks.layers.SparseDenseInput(4)(inp)))
    ks.predict_top_k(model, x, k=3, exclude=x, batch_size=8, verbose=0)
    ks.evaluate_top_k(model, x, x, k=3, batch_size=8, verbose=0)
    ref = weakref.ref(model)
    del model, inp
    gc.collect()
    assert ref() is None


def test_predict_top_k_uses_the_inputs_of_a_dataset_that_also_holds_targets():
    x = sp.random(30, 12, density=0.3, format="csr", random_state=4, dtype=np.float32)
    inp = keras.Input((12,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(12)(ks.layers.SparseDenseInput(4)(inp)))
    with_targets = ks.predict_top_k(model, SparseDataset(x, x, batch_size=8), k=3, verbose=0)
    inputs_only = ks.predict_top_k(model, SparseDataset(x, batch_size=8), k=3, verbose=0)
    assert (with_targets != inputs_only).nnz == 0 and with_targets.nnz == 30 * 3


def test_shuffled_or_sharded_rows_line_up_with_exclude():
    model = _scorer()
    x = sp.random(40, 10, density=0.3, format="csr", random_state=6, dtype=np.float32)
    exclude = sp.random(40, 12, density=0.3, format="csr", random_state=7)
    full = ks.predict_top_k(model, x, k=3, exclude=exclude, batch_size=8, verbose=0)
    shard = SparseDataset(x, batch_size=8).shard(2, 1)
    rows = np.concatenate([shard.batch_rows(i) for i in range(len(shard))])
    part = ks.predict_top_k(model, shard, k=3, exclude=exclude[rows], verbose=0)
    assert _rows_of(part) == [_rows_of(full)[r] for r in rows]


class CountingDense(keras.layers.Dense):
    """Counts Python calls of `call`: a compiled step runs it only while tracing."""

    calls = 0

    def call(self, inputs):
        CountingDense.calls += 1
        return super().call(inputs)


def test_second_call_with_the_same_model_and_shapes_does_not_retrace():
    inp = keras.Input((10,), sparse=True)
    model = keras.Model(inp, CountingDense(12)(ks.layers.SparseDenseInput(4)(inp)))
    x = sp.random(32, 10, density=0.3, format="csr", random_state=9, dtype=np.float32)
    y = sp.random(32, 12, density=0.3, format="csr", random_state=10, dtype=np.float32)
    CountingDense.calls = 0
    first = ks.evaluate_top_k(model, x, y, k=3, batch_size=16, verbose=0)
    ks.predict_top_k(model, x, k=3, batch_size=16, verbose=0)
    traced = CountingDense.calls
    assert traced > 0
    second = ks.evaluate_top_k(model, x, y, k=3, batch_size=16, verbose=0)
    ks.predict_top_k(model, x, k=3, batch_size=16, verbose=0)
    # torch runs eagerly (nothing is traced): the layer runs once per batch of each call.
    assert CountingDense.calls == (2 * traced if B.NAME == "torch" else traced)
    assert second == first


def _output_model(items=23, features=10, block_size=4, activation=None, tie=False):
    """A model ending in SparseDenseOutput (scored by blocks); `tie` repeats item rows."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((features,), sparse=True)
    h = ks.layers.SparseDenseInput(4, activation="tanh")(inp)
    layer = ks.layers.SparseDenseOutput(items, activation=activation, block_size=block_size)
    model = keras.Model(inp, layer(h))
    if tie:  # items 1, 3, 7 and 21 score the same (across blocks)
        # Zero rows make the tie exact: equal rows could score an ulp apart in two blocks
        # (a matrix product's rounding depends on its operands' shape and alignment).
        kernel, bias = np.array(layer.kernel), np.array(layer.bias) + 0.1
        for j in (1, 3, 7, 21):
            kernel[j], bias[j] = 0.0, bias[1]
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
    return model


@pytest.mark.parametrize("activation", [None, "sigmoid"])
@pytest.mark.parametrize("k", [3, 6, 40])
def test_predict_top_k_by_item_blocks_equals_the_dense_reference(k, activation):
    model = _output_model(activation=activation, tie=True)
    x = sp.random(37, 10, density=0.3, format="csr", random_state=4, dtype=np.float32)
    exclude = sp.random(37, 23, density=0.2, format="coo", random_state=5)
    streamed = ks.predict_top_k(model, x, k=k, exclude=exclude, batch_size=8, verbose=0)
    scores = np.asarray(model.predict(x, verbose=0))
    excluded = reference_entries(exclude)
    for u, row in enumerate(_rows_of(streamed)):
        skip = {j for (r, j) in excluded if r == u}
        want, _ = ranked_list(scores[u].tolist(), k, skip)
        assert row == want, u
        got = streamed.data[streamed.indptr[u] : streamed.indptr[u + 1]]
        np.testing.assert_allclose(got, scores[u, want], rtol=1e-5, atol=1e-6)


def test_predict_top_k_by_blocks_never_scores_the_whole_catalogue(monkeypatch):
    model = _output_model(items=50, block_size=8)
    widths = []
    original = ks._item_blocks._block_scores

    def recording(h, kernel, bias, start, stop):
        widths.append(stop - start)
        return original(h, kernel, bias, start, stop)

    monkeypatch.setattr(ks._item_blocks, "_block_scores", recording)
    monkeypatch.setattr(model.layers[-1], "_dense", None)  # a dense scoring would fail
    recs = ks.predict_top_k(model, sp.eye(5, 10, format="csr"), k=3, verbose=0)
    assert recs.nnz == 15 and max(widths) == 8


def test_evaluate_top_k_by_item_blocks_equals_the_dense_reference():
    model = _output_model(tie=True)
    rng = np.random.default_rng(6)
    x = sp.random(41, 10, density=0.3, format="csr", random_state=2, dtype=np.float32)
    y = sp.csr_matrix((rng.random((41, 23)) < 0.2) * rng.integers(1, 4, (41, 23)), dtype="float32")
    exclude = sp.csr_matrix((rng.random((41, 23)) < 0.15).astype(np.float32))
    scores = np.asarray(model.predict(x, verbose=0))
    for gains in ("binary", "exponential"):
        result = ks.evaluate_top_k(
            model, x, y, k=(3, 5), exclude=exclude, batch_size=7, gains=gains,
            metrics=list(ks.ranking.METRICS), verbose=0,
        )  # fmt: skip
        for name, value in result.items():
            metric, k = name.split("@")
            expected = ranking_mean(metric, scores, y, int(k), exclude=exclude, gains=gains)
            assert value == pytest.approx(expected, rel=1e-5, abs=1e-6), (gains, name)


def test_a_subclassed_model_never_called_is_built_on_the_first_batch():
    x = sp.random(9, 10, density=0.3, format="csr", random_state=7, dtype=np.float32)
    y = sp.random(9, 12, density=0.3, format="csr", random_state=8, dtype=np.float32)
    recs = ks.predict_top_k(SubclassedScorer(), x, k=3, batch_size=4, verbose=0)
    assert recs.shape == (9, 12) and recs.nnz == 27
    model = SubclassedScorer()
    result = ks.evaluate_top_k(model, x, y, k=3, metrics=["recall"], batch_size=4, verbose=0)
    scores = np.asarray(model.predict(x, verbose=0))
    assert result["recall@3"] == pytest.approx(ranking_mean("recall", scores, y, 3), rel=1e-5)


@pytest.mark.tensorflow_only
def test_several_models_in_one_process_trigger_no_retracing_warning():
    import logging

    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        x = sp.random(26, 12, density=0.2, format="csr", random_state=0, dtype=np.float32)
        for i in range(8):  # as when comparing models: each is new, so each step traces once
            inputs = keras.Input((12,), sparse=True)
            hidden = ks.layers.SparseDenseInput(4 + i)(inputs)
            model = keras.Model(inputs, keras.layers.Dense(6 + i)(hidden))
            truth = sp.random(26, 6 + i, density=0.2, format="csr", random_state=i)
            ks.evaluate_top_k(model, x, truth, k=3, batch_size=13, verbose=0)
            ks.predict_top_k(model, x, k=3, batch_size=13, verbose=0)
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert not [m for m in messages if "retracing" in m]
