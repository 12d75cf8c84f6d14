"""keras.distribution on JAX with sparse data, on the forced host CPU devices of conftest.

Every result under a distribution is compared with the same model trained on
one device (no distribution) from the same seed.
"""

import warnings

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import backend as B
from keras_sparse.data import SparseDataset
from keras_sparse.layers import SparseDenseInput
from keras_sparse.losses import SparseMeanSquaredError
from keras_sparse.metrics import NDCGAtK, RecallAtK
from keras_sparse.optimizers import LazyAdam

pytestmark = pytest.mark.jax_only

if B.NAME == "jax":
    import jax
    from jax.experimental import sparse as jsparse
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from keras_sparse.backend import _jax_distribution
    from keras_sparse.distribute import _jax as jax_distribute

    DEVICES = jax.device_count()
else:  # pragma: no cover - collected on TensorFlow and skipped
    DEVICES = 0

needs_devices = pytest.mark.skipif(
    DEVICES < 4, reason="needs 4 JAX devices (tests/conftest.py forces 4 host CPU devices)"
)

ROWS, FEATURES, ITEMS = 64, 40, 20


@pytest.fixture(autouse=True)
def _no_distribution():
    keras.distribution.set_distribution(None)
    yield
    keras.distribution.set_distribution(None)


@pytest.fixture(scope="module")
def data():
    x = sp.random(ROWS, FEATURES, density=0.1, format="csr", random_state=0, dtype=np.float32)
    x = sp.csr_matrix(sp.diags((np.arange(ROWS) != 5).astype(np.float32)) @ x)  # row 5 empty
    x.eliminate_zeros()
    assert x[5].nnz == 0
    y = sp.random(ROWS, ITEMS, density=0.1, format="csr", random_state=1, dtype=np.float32)
    return x, y


def _model(optimizer):
    model = keras.Sequential(
        [
            keras.Input((FEATURES,), sparse=True),
            SparseDenseInput(8, name="embed"),
            keras.layers.Dense(ITEMS),
        ]
    )
    model.compile(
        optimizer=optimizer(),
        loss=SparseMeanSquaredError(),
        metrics=[NDCGAtK(5), RecallAtK(5)],
    )
    return model


def _data_parallel():
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices()[:4])


def _model_parallel():
    mesh = keras.distribution.DeviceMesh(
        (2, 2), ["batch", "model"], keras.distribution.list_devices()[:4]
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*embed/kernel"] = ("model", None)
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def _run(distribution, optimizer, data):
    """Train, evaluate and predict; everything a test compares."""
    x, y = data
    keras.utils.set_random_seed(7)
    keras.distribution.set_distribution(distribution)
    model = _model(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. LazyAdam falling back to whole-table updates
        history = model.fit(
            SparseDataset(x, y, batch_size=16, shuffle=True, seed=3), epochs=2, verbose=0
        )
        history2 = model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    return {
        "model": model,
        "loss": history.history["loss"] + history2.history["loss"],
        "weights": model.get_weights(),
        "evaluate": model.evaluate(x, y, batch_size=16, verbose=0),
        "predict": model.predict(x, batch_size=16, verbose=0),
        "top_k": ks.predict_top_k(model, x, k=3, exclude=y, batch_size=16, verbose=0),
        "top_k_partial": ks.predict_top_k(model, x, k=3, batch_size=24, verbose=0),
        "evaluate_top_k": ks.evaluate_top_k(
            model, x, y, k=(3, 5), exclude=x[:, :ITEMS], batch_size=16, verbose=0
        ),
    }


def _assert_same(one, many):
    np.testing.assert_allclose(many["loss"], one["loss"], rtol=1e-5)
    for a, b in zip(one["weights"], many["weights"]):
        np.testing.assert_allclose(b, a, atol=1e-5)
    np.testing.assert_allclose(many["evaluate"], one["evaluate"], rtol=1e-5)
    np.testing.assert_allclose(many["predict"], one["predict"], atol=1e-5)
    for key in ("top_k", "top_k_partial"):
        np.testing.assert_array_equal(many[key].indices, one[key].indices)
        np.testing.assert_array_equal(many[key].indptr, one[key].indptr)
        np.testing.assert_allclose(many[key].data, one[key].data, atol=1e-5)
    assert many["evaluate_top_k"].keys() == one["evaluate_top_k"].keys()
    for name, value in one["evaluate_top_k"].items():
        assert many["evaluate_top_k"][name] == pytest.approx(value, abs=1e-6), name


@pytest.fixture(scope="module")
def one_device(data):
    runs = {
        name: _run(None, optimizer, data)
        for name, optimizer in (("adam", lambda: "adam"), ("lazy", lambda: LazyAdam(0.01)))
    }
    keras.distribution.set_distribution(None)
    return runs


@needs_devices
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "lazy"])
def test_data_parallel_matches_one_device(data, one_device, optimizer):
    make = (lambda: "adam") if optimizer == "adam" else (lambda: LazyAdam(0.01))
    many = _run(_data_parallel(), make, data)
    _assert_same(one_device[optimizer], many)
    kernel = many["model"].get_layer("embed").kernel.value
    assert len(kernel.sharding.device_set) == 4  # replicated on every device


@needs_devices
@pytest.mark.slow
def test_model_parallel_shards_the_table_and_its_slots_by_rows(data, one_device):
    many = _run(_model_parallel(), lambda: LazyAdam(0.01), data)
    _assert_same(one_device["lazy"], many)
    model = many["model"]
    kernel = model.get_layer("embed").kernel
    shards = kernel.value.addressable_shards
    assert {s.data.shape for s in shards} == {(FEATURES // 2, 8)}
    slots = [v for v in model.optimizer.variables if "embed_kernel" in v.path]
    assert len(slots) == 2  # both Adam moments
    for slot in slots:
        assert tuple(slot.value.sharding.spec) == ("model", None)
        assert {s.data.shape for s in slot.value.addressable_shards} == {(FEATURES // 2, 8)}


@needs_devices
def test_model_parallel_model_saves_and_loads_with_identical_predictions(data, tmp_path):
    x, _ = data
    keras.distribution.set_distribution(_model_parallel())
    model = _model(lambda: LazyAdam(0.01))
    model.fit(x, data[1], batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(x, batch_size=16, verbose=0), model.predict(x, batch_size=16, verbose=0)
    )
    assert tuple(reloaded.get_layer("embed").kernel.value.sharding.spec) == ("model", None)


def _bcoo(matrix):
    indices = np.stack([matrix.row, matrix.col], axis=1)
    return jsparse.BCOO(
        (np.asarray(matrix.data, np.float32), indices.astype(np.int32)), shape=matrix.shape
    )


def _device_blocks(global_bcoo, num_shards):
    """{shard: (rows, cols, values)} of the valid entries each data shard holds."""
    blocks = {}
    for data_shard, index_shard in zip(
        sorted(global_bcoo.data.addressable_shards, key=lambda s: s.index[0].start),
        sorted(global_bcoo.indices.addressable_shards, key=lambda s: s.index[0].start),
    ):
        size = global_bcoo.data.shape[0] // num_shards
        shard = data_shard.index[0].start // size
        idx = np.asarray(index_shard.data)
        valid = idx[:, 0] < global_bcoo.shape[0]
        blocks[shard] = (idx[valid, 0], idx[valid, 1], np.asarray(data_shard.data)[valid])
    return blocks


@needs_devices
@pytest.mark.parametrize("case", ["random", "duplicates", "empty_batch", "one_full_row"])
def test_shard_sparse_gives_each_device_exactly_its_rows(case):
    rng = np.random.default_rng(0)
    rows, cols = 8, 6
    if case == "random":
        matrix = sp.random(rows, cols, density=0.4, random_state=1, format="coo")
    elif case == "duplicates":  # unsorted, duplicated, an explicit zero
        r = np.array([7, 0, 7, 3, 0, 3, 5])
        c = np.array([1, 2, 1, 0, 2, 5, 4])
        v = np.array([1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 7.0])
        matrix = sp.coo_matrix((v, (r, c)), shape=(rows, cols))
    elif case == "empty_batch":
        matrix = sp.coo_matrix((rows, cols))
    else:  # every entry in one row: one device gets them all, the others only padding
        matrix = sp.coo_matrix(
            (rng.random(cols), (np.full(cols, 6), np.arange(cols))), (rows, cols)
        )
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    out = _jax_distribution.shard_sparse(
        _bcoo(matrix), NamedSharding(mesh, PartitionSpec("batch", None))
    )
    assert out.shape == (rows, cols)
    assert out.data.shape[0] % 4 == 0 and out.data.shape[0] // 4 >= 16  # equal padded blocks
    expected = matrix.tocsr()  # the reference sums duplicates and keeps the explicit zero
    expected.sum_duplicates()
    blocks = _device_blocks(out, 4)
    for shard, (r, c, v) in blocks.items():
        assert np.all((r >= shard * 2) & (r < shard * 2 + 2)), "an entry on the wrong device"
        dense = np.zeros((rows, cols))
        np.add.at(dense, (r, c), v)
        np.testing.assert_allclose(
            dense[shard * 2 : shard * 2 + 2], expected[shard * 2 : shard * 2 + 2].toarray()
        )
    stored = sum(len(b[0]) for b in blocks.values())
    assert stored == expected.nnz


@needs_devices
def test_a_batch_that_does_not_split_across_devices_is_refused(data):
    x, y = data
    keras.distribution.set_distribution(_data_parallel())
    model = _model(lambda: "adam")
    with pytest.raises(
        ValueError, match=r"batch of 6 rows cannot be split evenly across 4 devices.*multiple of 4"
    ):
        model.fit(x[:6], y[:6], batch_size=6, epochs=1, verbose=0)


@needs_devices
def test_a_distribution_set_after_the_model_was_built_is_refused(data):
    x, y = data
    model = _model(lambda: "adam")
    keras.distribution.set_distribution(_data_parallel())
    with pytest.raises(
        ValueError, match=r"created before keras.distribution.set_distribution.*scope"
    ):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="created before"):
        ks.predict_top_k(model, x, k=2, verbose=0)


@needs_devices
def test_a_layout_key_that_names_no_variable_is_refused(data):
    x, y = data
    mesh = keras.distribution.DeviceMesh(
        (2, 2), ["batch", "model"], keras.distribution.list_devices()[:4]
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["embed/kernel"] = ("model", None)  # not a full-path match: needs ".*embed/kernel"
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    )
    model = _model(lambda: LazyAdam(0.01))
    with pytest.raises(
        ValueError, match=r"'embed/kernel' matches none of the model's variables.*fullmatch"
    ):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)


@needs_devices
@pytest.mark.parametrize("key", ["dense/output", ".*dense.*output"])
def test_an_output_layout_key_is_checked_the_way_keras_matches_it(data, key):
    x, y = data
    mesh = keras.distribution.DeviceMesh(
        (2, 2), ["batch", "model"], keras.distribution.list_devices()[:4]
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*embed/kernel"] = ("model", None)
    layout_map[key] = ("batch", None)  # Keras full-matches it against "<layer path>/output"
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
    )
    model = _model(lambda: LazyAdam(0.01))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    bad = keras.distribution.LayoutMap(mesh)
    bad["nothing.*output"] = ("batch", None)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=bad, batch_dim_name="batch")
    )
    with pytest.raises(ValueError, match=r"'nothing\.\*output' matches none"):
        _model(lambda: LazyAdam(0.01)).fit(x, y, batch_size=16, epochs=1, verbose=0)


def test_place_batch_is_a_no_op_without_a_distribution(data):
    x, _ = data
    batch = ks.to_sparse(x[:4])
    assert B.place_batch((batch, None))[0] is batch


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"coordinator_address": "localhost"}, ValueError, "host:port"),
        ({"num_processes": 0}, ValueError, "num_processes"),
        ({"process_id": 2}, ValueError, r"process_id.*\[0, 2\)"),
        ({"heartbeat_timeout_seconds": 0}, ValueError, "heartbeat_timeout_seconds"),
        ({"exit_on_error": "yes"}, TypeError, "exit_on_error"),
    ],
)
def test_initialize_validates_its_arguments_before_starting_anything(kwargs, error, match):
    arguments = {"coordinator_address": "localhost:1234", "num_processes": 2, "process_id": 0}
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        ks.distribute.initialize(**arguments)


@pytest.fixture
def two_processes(monkeypatch):
    """This process posing as process 1 of 2 (only `process_shard` asks)."""
    monkeypatch.setattr(jax_distribute.jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax_distribute.jax, "process_index", lambda: 1)


def test_process_shard_reads_this_processs_rows_of_every_global_batch(data, two_processes):
    x, y = data
    shard = jax_distribute.process_shard(SparseDataset(x, y, batch_size=16))
    assert shard.sharded and shard.batch_size == 8 and len(shard) == ROWS // 16
    np.testing.assert_array_equal(shard.batch_rows(0), np.arange(1, 16, 2))
    batch_x, batch_y = shard[1]
    np.testing.assert_allclose(ks.to_scipy(batch_y).toarray(), y[17:32:2].toarray())
    assert jax_distribute.process_shard(shard) is shard  # already a shard: as it is


def test_process_shard_refuses_a_global_batch_that_does_not_divide(data, two_processes):
    with pytest.raises(ValueError, match=r"`batch_size` 15 .* multiple of the 2 processes.*16"):
        jax_distribute.process_shard(SparseDataset(data[0], batch_size=15))


@needs_devices
def test_top_k_under_a_multi_process_distribution_is_refused(data):
    x, _ = data
    distribution = _data_parallel()
    keras.distribution.set_distribution(distribution)
    model = _model(lambda: "adam")
    distribution._is_multi_process = True  # as keras_sparse.distribute.initialize would make it
    with pytest.raises(RuntimeError, match=r"one process.*model.save"):
        ks.predict_top_k(model, x, k=2, batch_size=16, verbose=0)


@needs_devices
def test_dense_targets_and_sample_weights_line_up_with_sparse_rows(data):
    x, _ = data
    rng = np.random.default_rng(0)
    y = rng.normal(size=(ROWS, 1)).astype(np.float32)
    weights = rng.random(ROWS).astype(np.float32)
    results = []
    for distribution in (None, _data_parallel()):
        keras.utils.set_random_seed(3)
        keras.distribution.set_distribution(distribution)
        model = keras.Sequential(
            [keras.Input((FEATURES,), sparse=True), SparseDenseInput(4), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, sample_weight=weights, batch_size=16, epochs=2, verbose=0, shuffle=False)
        results.append(
            (model.get_weights(), model.evaluate(x, y, sample_weight=weights, verbose=0))
        )
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert results[1][1] == pytest.approx(results[0][1], rel=1e-6)


@needs_devices
def test_the_model_parallel_lazy_step_moves_no_table_sized_array(data, monkeypatch):
    """Compile Keras's train step and read its collectives: none is as big as a table shard."""
    import re

    from keras.src.backend.jax import trainer

    compiled = []
    owner = trainer if hasattr(trainer, "jit") else trainer.jax  # Keras < 3.11: jax.jit
    original_jit = owner.jit

    def recording_jit(fn, *args, **kwargs):
        compiled.append(original_jit(fn, *args, **kwargs))
        return compiled[-1]

    monkeypatch.setattr(owner, "jit", recording_jit)
    features = 4096
    x = sp.random(64, features, density=0.01, format="csr", random_state=0, dtype=np.float32)
    y = np.random.default_rng(0).normal(size=(64, 1)).astype(np.float32)
    keras.distribution.set_distribution(_model_parallel())
    model = keras.Sequential(
        [
            keras.Input((features,), sparse=True),
            SparseDenseInput(64, name="embed"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=LazyAdam(), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
        purge_model_variables=False,
    )
    batch = trainer._distribute_data(SparseDataset(x, y, batch_size=16)[0])
    text = compiled[0].lower(state, batch).compile().as_text()
    moved = re.findall(
        r"= \w+\[([\d,]*)\]\S* (?:all-gather|all-reduce|all-to-all|collective-permute)\(", text
    )
    assert moved, "expected some collectives in a 4-device step"
    largest = max(int(np.prod([int(d) for d in shape.split(",") if d])) for shape in moved)
    assert largest < (features // 2) * 64 // 2, f"a collective moves {largest} values"


def _output_run(distribution, loss, data, **kwargs):
    """SparseDenseInput -> SparseDenseOutput with LazyAdam: fit, predict, top-k."""
    x, y = data
    keras.utils.set_random_seed(11)
    keras.distribution.set_distribution(distribution)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,), sparse=True),
            SparseDenseInput(8, activation="tanh", name="embed"),
            ks.layers.SparseDenseOutput(ITEMS, name="out", **kwargs),
        ]
    )
    model.compile(optimizer=LazyAdam(0.01), loss=loss())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    return {
        "model": model,
        "loss": history.history["loss"],
        "weights": model.get_weights(),
        "predict": model.predict(x, batch_size=16, verbose=0),
        "top_k": ks.predict_top_k(model, x, k=3, exclude=y, batch_size=16, verbose=0),
    }


def _output_model_parallel():
    mesh = keras.distribution.DeviceMesh(
        (2, 2), ["batch", "model"], keras.distribution.list_devices()[:4]
    )
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*out/kernel"] = ("model", None)  # one row per item: rows sharded
    layout_map[".*out/bias"] = ("model",)
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


OUTPUT_CASES = {
    "mse": (SparseMeanSquaredError, {}),
    "nll": (ks.losses.SparseMultinomialNLL, {"block_size": 6}),
    "sampled": (ks.losses.SparseMultinomialNLL, {"negatives": 5, "seed": 2}),
}


@needs_devices
@pytest.mark.slow
@pytest.mark.parametrize("case", list(OUTPUT_CASES))
@pytest.mark.parametrize("layout", ["data", "model"])
def test_sparse_dense_output_under_a_distribution_matches_one_device(data, case, layout):
    loss, kwargs = OUTPUT_CASES[case]
    one = _output_run(None, loss, data, **kwargs)
    distribution = _data_parallel() if layout == "data" else _output_model_parallel()
    many = _output_run(distribution, loss, data, **kwargs)
    np.testing.assert_allclose(many["loss"], one["loss"], rtol=1e-5)
    for a, b in zip(one["weights"], many["weights"]):
        np.testing.assert_allclose(b, a, atol=1e-5)
    np.testing.assert_allclose(many["predict"], one["predict"], atol=1e-5)
    np.testing.assert_array_equal(many["top_k"].indices, one["top_k"].indices)
    if layout == "model":
        kernel = many["model"].get_layer("out").kernel.value
        assert {s.data.shape for s in kernel.addressable_shards} == {(ITEMS // 2, 8)}
