import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from conftest import MATRIX_CLASSES, dense_of, host_coo
from keras_sparse import backend as B
from keras_sparse.data import SparseDataset, mark_excluded


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = sp.random(70, 12, density=0.2, format="csr", random_state=1, dtype=np.float64)
    x = sp.lil_matrix(x)
    x[5] = 0  # an empty row
    x = sp.csr_matrix(x)
    y = rng.normal(size=(70, 1))
    return x, y


def _dense_model(n, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((n,), sparse=True)
    return keras.Model(inp, keras.layers.Dense(1)(inp))


@pytest.mark.parametrize("cls", MATRIX_CLASSES, ids=lambda c: c.__name__)
def test_batches_equal_dense_rows_for_every_format(cls, xy):
    x, y = xy
    ds = SparseDataset(cls(x), y, batch_size=32)
    assert len(ds) == 3
    seen = []
    for i in range(len(ds)):
        bx, by = ds[i]
        assert B.is_sparse(bx) and host_coo(bx)[1].dtype == np.float32
        seen.append(dense_of(bx))
        assert keras.backend.standardize_dtype(by.dtype) == "float32"
    np.testing.assert_allclose(np.concatenate(seen), x.toarray(), rtol=1e-6)
    assert seen[-1].shape[0] == 70 - 64  # the partial last batch is kept


def test_unsorted_duplicate_coo_and_csc_train_where_keras_native_path_fails(xy):
    x, y = xy
    coo = x.tocoo()
    perm = np.random.default_rng(0).permutation(coo.nnz)
    rows = np.concatenate([coo.row[perm], [0]])
    cols = np.concatenate([coo.col[perm], [0]])
    vals = np.concatenate([coo.data[perm], [0.5]])
    unsorted = sp.coo_matrix((vals, (rows, cols)), shape=x.shape)
    canonical = _dense_model(12)
    canonical.compile(optimizer="sgd", loss="mse")
    canonical.fit(SparseDataset(unsorted.tocsr(), y, batch_size=16), epochs=1, verbose=0)
    for data in (unsorted, unsorted.tocsc()):
        model = _dense_model(12)  # the same initial weights: _dense_model seeds
        model.compile(optimizer="sgd", loss="mse")
        model.fit(SparseDataset(data, y, batch_size=16), epochs=1, verbose=0)
        for got, want in zip(model.get_weights(), canonical.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    pred = model.predict(SparseDataset(unsorted, batch_size=16), verbose=0)
    kernel, bias = (np.asarray(w) for w in model.layers[-1].weights)
    np.testing.assert_allclose(pred, unsorted.toarray() @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_fit_evaluate_predict_sequential_matches_dense_reference(xy):
    x, y = xy
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((12,), sparse=True), keras.layers.Dense(3), keras.layers.Dense(1)]
    )
    model.compile(optimizer="adam", loss="mse")
    ds = SparseDataset(x, y, batch_size=16, shuffle=True, seed=3)
    model.fit(ds, epochs=2, verbose=0)
    pred = model.predict(SparseDataset(x, batch_size=16), verbose=0)
    dense_model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(3), keras.layers.Dense(1)]
    )
    dense_model.set_weights(model.get_weights())
    np.testing.assert_allclose(
        pred, dense_model.predict(x.toarray(), verbose=0), rtol=1e-5, atol=1e-5
    )
    loss = model.evaluate(SparseDataset(x, y, batch_size=16), verbose=0)
    np.testing.assert_allclose(loss, np.mean((pred - y) ** 2), rtol=1e-4)


def test_train_on_batch_with_a_dataset_batch(xy):
    x, y = xy
    model = _dense_model(12)
    model.compile(optimizer="sgd", loss="mse")
    ds = SparseDataset(x.tocsc(), y, batch_size=16)
    before = np.asarray(model.predict_on_batch(x[:16]))
    loss = model.train_on_batch(*ds[0])
    np.testing.assert_allclose(loss, np.mean((before - y[:16]) ** 2), rtol=1e-5)  # pre-step loss
    assert not np.allclose(model.predict_on_batch(x[:16]), before)  # and the step moved it


def test_multi_input_dict_and_multi_output_tuple(xy):
    x, y = xy
    dense_part = np.arange(70 * 2, dtype=np.float64).reshape(70, 2) / 100
    a = keras.Input((12,), sparse=True, name="items")
    b = keras.Input((2,), name="extra")
    h = keras.layers.Concatenate()([keras.layers.Dense(4, name="hidden")(a), b])
    out1 = keras.layers.Dense(1, name="o1")(h)
    out2 = keras.layers.Dense(1, name="o2")(h)
    model = keras.Model({"items": a, "extra": b}, (out1, out2))
    model.compile(optimizer="sgd", loss=("mse", "mse"))
    weights = np.linspace(0.5, 1.5, 70)
    ds = SparseDataset({"items": x, "extra": dense_part}, (y, 2 * y), weights, batch_size=20)
    bx, by, bw = ds[0]
    assert B.is_sparse(bx["items"]) and not B.is_sparse(bx["extra"])
    assert len(by) == 2 and bw.shape == (20,)
    history = model.fit(ds, epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    preds = model.predict(SparseDataset({"items": x, "extra": dense_part}), verbose=0)
    (wa, ba), (w1, b1), (w2, b2) = (
        model.get_layer(name).get_weights() for name in ("hidden", "o1", "o2")
    )
    hidden = np.concatenate([x.toarray() @ wa + ba, dense_part], axis=1)  # NumPy forward
    np.testing.assert_allclose(preds[0], hidden @ w1 + b1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(preds[1], hidden @ w2 + b2, rtol=1e-5, atol=1e-5)


def test_tuple_input_without_target_is_one_element_batch(xy):
    x, _ = xy
    ds = SparseDataset((x, x.tocsc()), batch_size=10)
    batch = ds[0]
    assert len(batch) == 1 and len(batch[0]) == 2


def test_shuffle_reorders_each_epoch_and_is_reproducible(xy):
    x, y = xy
    ids = np.arange(70, dtype=np.float64)[:, None]

    def epoch_orders(seed, epochs=3):
        ds = SparseDataset(x, ids, batch_size=32, shuffle=True, seed=seed)
        orders = []
        for _ in range(epochs):
            orders.append(np.concatenate([np.asarray(ds[i][1])[:, 0] for i in range(len(ds))]))
            ds.on_epoch_end()
        return orders

    first, second = epoch_orders(7), epoch_orders(7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])
    assert sorted(first[0].tolist()) == list(range(70))
    # The rows of x travel with their targets.
    ds = SparseDataset(x, ids, batch_size=32, shuffle=True, seed=7)
    bx, by = ds[1]
    np.testing.assert_allclose(
        dense_of(bx), x.toarray()[np.asarray(by)[:, 0].astype(int)], rtol=1e-6
    )


def test_integer_labels_keep_their_dtype(xy):
    x, _ = xy
    ds = SparseDataset(x, np.arange(70) % 3, batch_size=8)
    expected = "int32" if B.NAME == "jax" else "int64"  # JAX runs without x64
    assert keras.backend.standardize_dtype(ds[0][1].dtype) == expected


def test_nan_values_are_passed_through():
    x = sp.csr_matrix(np.array([[np.nan, 1.0], [0.0, 2.0]]))
    (bx,) = SparseDataset(x)[0]
    assert np.isnan(host_coo(bx)[1][0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "`batch_size`"),
        ({"batch_size": -4}, ValueError, "`batch_size`"),
        ({"batch_size": 2.5}, TypeError, "`batch_size`"),
        ({"shuffle": "yes"}, TypeError, "`shuffle`"),
        ({"seed": -1}, ValueError, "`seed`"),
        ({"y": np.ones(69)}, ValueError, "`y` has 69 rows but `x` has 70"),
        ({"y": np.ones(70), "sample_weight": np.ones((70, 2))}, ValueError, "`sample_weight`"),
        ({"sample_weight": np.ones(70)}, ValueError, "without `y`"),
        ({"y": {"a": np.ones(70), "b": np.ones(3)}}, ValueError, r"`y\['b'\]` has 3 rows"),
    ],
)
def test_invalid_arguments(xy, kwargs, error, match):
    x, _ = xy
    with pytest.raises(error, match=match):
        SparseDataset(x, **kwargs)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (sp.csr_matrix(np.eye(3, dtype=np.complex64)), TypeError, "complex"),
        (sp.csr_matrix((0, 4)), ValueError, "0 rows"),
        ("abc", TypeError, "`x` must be"),
        (np.array(3.0), ValueError, "scalar"),
        (np.float32(3.0), TypeError, "`x` must be"),
    ],
)
def test_invalid_x(x, error, match):
    with pytest.raises(error, match=match):
        SparseDataset(x)


def test_out_of_range_index_raises_index_error(xy):
    x, _ = xy
    ds = SparseDataset(x, batch_size=32)
    with pytest.raises(IndexError):
        ds[3]
    assert tuple(ds[-1][0].shape)[0] == 6


def _rows_of(batch):
    return dense_of(batch) if B.is_sparse(batch) else np.asarray(batch)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_partition_the_rows_and_finish_together(num_shards, shuffle):
    n = 10
    # row i of x holds i + 1 in column 0, so batches say which rows they hold
    x = sp.csr_matrix((np.arange(1.0, n + 1), (np.arange(n), np.zeros(n, int))), shape=(n, 3))
    y = np.arange(n, dtype=np.float32)[:, None]
    ds = SparseDataset(x, y, batch_size=4, shuffle=shuffle, seed=5)
    lengths, seen = set(), []
    for index in range(num_shards):
        shard = ds.shard(num_shards, index, batch_size=2)
        lengths.add(len(shard))
        for b in range(len(shard)):
            bx, by = shard[b]
            ids = _rows_of(bx)[:, 0] - 1
            np.testing.assert_array_equal(ids, np.asarray(by)[:, 0])  # x and y rows stay paired
            assert all(int(i) % num_shards == index for i in ids)  # only its own rows
            seen.extend(int(i) for i in ids)
    assert len(lengths) == 1  # every shard has the same number of batches
    assert sorted(seen) == list(range(n))  # together: every row exactly once


def test_short_shard_ends_with_an_empty_batch():
    ds = SparseDataset(sp.eye(5, format="csr"), np.ones((5, 1)), batch_size=3)
    last = ds.shard(2, 1, batch_size=1)  # rows 1, 3 against 3 rows in shard 0
    assert len(last) == 3 and last.num_samples == 2
    bx, by = last[2]
    assert tuple(bx.shape) == (0, 5) and tuple(by.shape) == (0, 1)


def test_shard_shuffles_reproducibly_and_validates():
    ds = SparseDataset(np.arange(20.0)[:, None], batch_size=20, shuffle=True, seed=1)
    first = np.asarray(ds.shard(2, 0)[0][0]).ravel().tolist()
    assert first == np.asarray(ds.shard(2, 0)[0][0]).ravel().tolist()
    assert sorted(first) == list(range(0, 20, 2))
    with pytest.raises(ValueError, match=r"`index` must be in \[0, num_shards\)"):
        ds.shard(2, 2)
    with pytest.raises(TypeError, match="`num_shards`"):
        ds.shard(1.5, 0)
    with pytest.raises(ValueError, match="`batch_size`"):
        ds.shard(2, 0, batch_size=0)


def test_mark_excluded_matches_a_dense_reference():
    rng = np.random.default_rng(11)
    y = sp.random(7, 9, density=0.4, format="coo", random_state=3, dtype=np.float64)
    y.data[:3] = 0.0  # explicit zeros stay observed
    exclude = sp.csr_matrix((rng.random((7, 9)) < 0.3).astype(np.int8))
    got = mark_excluded(sp.csc_matrix(y), exclude)
    expected = np.zeros((7, 9))
    stored = np.zeros((7, 9), bool)
    for r, c, v in zip(y.row, y.col, y.data):
        expected[r, c] += v
        stored[r, c] = True
    expected[exclude.toarray() != 0] = -np.inf
    stored |= exclude.toarray() != 0
    assert got.has_canonical_format and got.dtype == np.float64
    coo = got.tocoo()
    np.testing.assert_array_equal(np.sort(coo.row * 9 + coo.col), np.flatnonzero(stored))
    np.testing.assert_array_equal(got.toarray()[stored], expected[stored])
    dense_y = mark_excluded(np.eye(3, dtype=np.int64), [[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert dense_y.dtype == np.dtype(keras.backend.floatx())
    assert dense_y.toarray().tolist() == [[-np.inf, 0, 0], [0, 1, 0], [0, 0, -np.inf]]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: mark_excluded(sp.eye(3), sp.eye(4)), ValueError, "`exclude` has shape"),
        (lambda: mark_excluded(np.ones(3), sp.eye(3)), ValueError, "`y` must be 2-D"),
        (lambda: mark_excluded(sp.eye(3), "seen"), TypeError, "`exclude`"),
        (lambda: SparseDataset(sp.eye(3), exclude=sp.eye(3)), ValueError, "one target matrix"),
        (
            lambda: SparseDataset(sp.eye(3), (sp.eye(3), sp.eye(3)), exclude=sp.eye(3)),
            ValueError,
            "mark_excluded",
        ),
    ],
)
def test_invalid_exclusion_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_evaluate_with_excluded_items_matches_evaluate_top_k():
    keras.utils.set_random_seed(5)
    x = sp.random(45, 20, density=0.2, format="csr", random_state=6, dtype=np.float32)
    rng = np.random.default_rng(7)
    y = sp.csr_matrix((rng.random((45, 20)) < 0.15).astype(np.float32))
    inp = keras.Input((20,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(20)(ks.layers.SparseDenseInput(6)(inp)))
    names = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
    model.compile(
        loss="sparse_mse",
        metrics=[
            ks.metrics.PrecisionAtK(3),
            ks.metrics.RecallAtK(5),
            ks.metrics.NDCGAtK(5),
            ks.metrics.MAPAtK(5),
            ks.metrics.HitRateAtK(3),
            ks.metrics.MRRAtK(5),
        ],
    )
    got = model.evaluate(SparseDataset(x, y, batch_size=16, exclude=x), verbose=0, return_dict=True)
    want = ks.evaluate_top_k(model, x, y, k=(3, 5), exclude=x, metrics=names, verbose=0)
    for name, k in zip(names, (3, 5, 5, 5, 3, 5)):
        assert got[f"{name}_at_{k}"] == pytest.approx(want[f"{name}@{k}"], rel=1e-5, abs=1e-6)
    plain = model.evaluate(SparseDataset(x, y, batch_size=16), verbose=0, return_dict=True)
    assert plain["ndcg_at_5"] != pytest.approx(got["ndcg_at_5"])  # exclusion changed something


def test_batch_rows_follow_order_shuffle_and_shards():
    ds = SparseDataset(np.arange(10.0)[:, None], batch_size=4)
    assert [ds.batch_rows(i).tolist() for i in range(len(ds))] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    assert ds.batch_rows(-1).tolist() == [8, 9]
    shuffled = SparseDataset(np.arange(10.0)[:, None], batch_size=4, shuffle=True, seed=0)
    for i in range(len(shuffled)):
        np.testing.assert_array_equal(
            np.asarray(shuffled[i][0])[:, 0], shuffled.batch_rows(i).astype(float)
        )
    shard = ds.shard(2, 1)
    assert np.concatenate([shard.batch_rows(i) for i in range(len(shard))]).tolist() == [
        1,
        3,
        5,
        7,
        9,
    ]
    with pytest.raises(IndexError, match="out of range"):
        ds.batch_rows(3)


def test_batch_of_rows_returns_those_rows_and_checks_them(xy):
    x, y = xy
    ds = SparseDataset(x, y, np.arange(x.shape[0], dtype=np.float32), batch_size=5)
    bx, by, bw = ds.batch_of_rows([7, 2, 2])
    np.testing.assert_allclose(dense_of(bx), x[[7, 2, 2]].toarray(), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(bw), [7, 2, 2])
    for bad in ([x.shape[0]], [[1, 2]], [0.5]):
        with pytest.raises(ValueError, match="`rows`"):
            ds.batch_of_rows(bad)


def test_sharded_tells_a_shard_from_a_whole_data_set():
    ds = SparseDataset(np.zeros((6, 2)), batch_size=2)
    assert not ds.sharded
    assert ds.shard(2, 0).sharded and ds.shard(2, 1).shard(1, 0).sharded


def _two_input_model():
    keras.utils.set_random_seed(0)
    words = keras.Input((30,), sparse=True, name="words")
    extra = keras.Input((3,), name="extra")
    h = keras.layers.Concatenate()([ks.layers.SparseDenseInput(4)(words), extra])
    model = keras.Model({"words": words, "extra": extra}, keras.layers.Dense(12)(h))
    model.compile(optimizer="adam", loss="sparse_mse", metrics=[ks.metrics.NDCGAtK(3)])
    return model


@pytest.mark.tensorflow_only
def test_the_tensorflow_feeding_path_trains_exactly_as_keras_pydataset_adapter(monkeypatch):
    rng = np.random.default_rng(3)
    x = {
        "words": sp.random(90, 30, density=0.1, format="coo", random_state=4),
        "extra": rng.normal(size=(90, 3)),
    }
    y = sp.random(90, 12, density=0.2, format="csr", random_state=5, dtype=np.float32)
    exclude = sp.random(90, 12, density=0.1, format="csr", random_state=6)
    weights = rng.random(90)
    used = []
    original = B.pydataset_adapter

    def spy(*args):
        adapter = original(*args)
        used.append(type(adapter).__name__)
        return adapter

    runs = []
    for fast in (True, False):
        monkeypatch.setattr(B, "pydataset_adapter", spy if fast else lambda *args: None)
        model = _two_input_model()
        train = SparseDataset(x, y, weights, batch_size=16, shuffle=True, seed=2, exclude=exclude)
        history = model.fit(train, epochs=3, verbose=0).history
        scores = model.predict(SparseDataset(x, batch_size=40), verbose=0)
        logs = model.evaluate(SparseDataset(x, y, exclude=exclude, batch_size=25), verbose=0)
        runs.append((history, scores, logs, model.get_weights()))
    assert used and set(used) == {"SparseDatasetAdapter"}
    (h1, s1, l1, w1), (h2, s2, l2, w2) = runs
    assert h1 == h2 and l1 == l2
    np.testing.assert_array_equal(s1, s2)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def _not_canonical(x):
    """The same matrix as a CSR whose rows list their columns backwards, with duplicates.

    Every other entry is stored as two halves (a duplicate pair), so the values
    only add up once duplicates are summed.
    """
    rows, cols, vals = [], [], []
    for i in range(x.shape[0]):
        lo, hi = x.indptr[i], x.indptr[i + 1]
        for k, (j, v) in enumerate(zip(x.indices[lo:hi][::-1], x.data[lo:hi][::-1])):
            parts = [v / 2, v / 2] if k % 2 else [v]
            rows += [i] * len(parts)
            cols += [j] * len(parts)
            vals += parts
    indptr = np.searchsorted(rows, np.arange(x.shape[0] + 1))
    out = sp.csr_matrix((np.array(vals), np.array(cols), indptr), shape=x.shape)
    assert not out.has_canonical_format and out.nnz > x.nnz
    return out


def test_a_csr_with_unsorted_and_duplicate_entries_is_kept_and_each_batch_made_canonical():
    x = sp.random(19, 8, density=0.4, format="csr", random_state=3, dtype=np.float64)
    x.data[::5] = 0.0  # explicit zeros
    messy = _not_canonical(x)
    before = (messy.indptr.copy(), messy.indices.copy(), messy.data.copy())
    ds = SparseDataset(messy, batch_size=6, shuffle=True, seed=0)
    assert ds.feeding_structure()[0] is messy  # no copy of the caller's matrix
    for i in range(len(ds)):
        rows = ds.batch_rows(i)
        (batch,) = ds[i]
        indices, values, shape = host_coo(batch)
        want = x[rows]  # canonical reference, explicit zeros stored
        assert shape == (len(rows), 8)
        np.testing.assert_array_equal(
            indices[:, 0], np.repeat(np.arange(len(rows)), np.diff(want.indptr))
        )
        np.testing.assert_array_equal(indices[:, 1], want.indices)
        np.testing.assert_allclose(values, want.data, rtol=1e-6)
    for got, was in zip((messy.indptr, messy.indices, messy.data), before):
        np.testing.assert_array_equal(got, was)  # the caller's arrays untouched


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("canonical", [True, False], ids=["canonical", "unsorted-duplicates"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_tensorflow_feeding_path_cuts_exactly_the_data_sets_batches(
    shuffle, canonical, monkeypatch
):
    import random

    from keras_sparse.backend import _tf_data

    monkeypatch.setattr(_tf_data, "_FILL_CHUNK", 5)  # several blocks, canonicalised one by one
    x = sp.random(23, 7, density=0.3, format="csr", random_state=0)
    x[5] = 0  # an empty row
    x = sp.csr_matrix(x)
    x.eliminate_zeros()
    x.data[::4] = 0.0  # explicit zeros stay stored
    if not canonical:
        x = _not_canonical(x)
    labels = np.arange(23) % 3
    ds = SparseDataset({"a": x, "b": x.toarray()}, labels, batch_size=4, shuffle=True, seed=1)
    shard = ds.shard(3, 1, batch_size=2)  # shorter shards end with an empty batch
    for data in (ds, shard):
        adapter = B.pydataset_adapter(
            data, data.feeding_structure(), data.epoch_rows, shuffle, None
        )
        spec = adapter.get_tf_dataset().element_spec
        assert spec[0]["a"].shape.as_list() == [None, 7]  # what the model's Input sees
        # No autotuning: its model thread made destroying the iterator wait seconds.
        assert adapter.get_tf_dataset().options().autotune.enabled is False
        assert adapter.num_batches == len(data)
        for epoch in range(2):  # two epochs: a new shuffling order, as Keras's adapter does
            random.seed(epoch)
            adapter.on_epoch_begin()
            random.seed(epoch)
            order = list(range(len(data)))
            if shuffle:
                random.shuffle(order)
            got = list(adapter.get_tf_dataset())
            assert len(got) == len(data)
            for i, (bx, by) in zip(order, got):
                ex, ey = data[i]
                assert host_coo(bx["a"])[2] == host_coo(ex["a"])[2]
                np.testing.assert_array_equal(host_coo(bx["a"])[0], host_coo(ex["a"])[0])
                np.testing.assert_array_equal(host_coo(bx["a"])[1], host_coo(ex["a"])[1])
                np.testing.assert_array_equal(dense_of(bx["b"]), dense_of(ex["b"]))
                assert by.dtype == ey.dtype
                np.testing.assert_array_equal(dense_of(by), dense_of(ey))
            adapter.on_epoch_end()
