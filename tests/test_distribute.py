"""tf.distribute with sparse data: one device vs MirroredStrategy, multi-worker, guards.

The strategy runs need two logical CPU devices, configured before TensorFlow
starts, so they run in subprocesses (`support/distribute_checks.py`,
`support/multiworker_worker.py`) and leave this process untouched.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

import keras_sparse as ks

pytestmark = pytest.mark.tensorflow_only

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUPPORT = HERE / "support"  # the scripts these tests run


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def mirrored():
    """Values on one device and under MirroredStrategy(2 CPUs), from one subprocess."""
    done = subprocess.run(
        [sys.executable, str(SUPPORT / "distribute_checks.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _assert_same(case):
    single, dist = case["single"], case["dist"]
    if isinstance(single, dict):
        assert set(single) == set(dist)
        for name in single:
            assert dist[name] == pytest.approx(single[name], rel=1e-5, abs=1e-6), name
    else:
        for a, b in zip(single, dist, strict=True):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_every_loss_and_metric_matches_one_device(mirrored):
    case = mirrored["evaluate/losses"]
    names = case["names"]
    # one loss per output, all eight present, plus the six ranking metrics and RMSE
    assert {f"o{i}_loss" for i in range(len(names))} <= set(case["single"])
    assert {"o0_ndcg_at_5", "o0_map_at_5", "o0_sparse_rmse"} <= set(case["single"])
    assert all(v > 0 for v in case["single"].values())
    _assert_same(case)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse/entries", "nll/row", "bce/entries"])
def test_training_step_matches_one_device(mirrored, loss):
    _assert_same(mirrored[f"fit/{loss}"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mse/entries", "nll/exact", "nll/sampled"])
def test_sparse_dense_output_training_matches_one_device(mirrored, case):
    _assert_same(mirrored[f"output/{case}"])


@pytest.mark.slow
@pytest.mark.parametrize("feed", ["scipy", "SparseDataset", "tf.data", "distribute_dataset"])
@pytest.mark.parametrize("job", ["fit", "evaluate", "predict"])
def test_every_feed_matches_one_device(mirrored, feed, job):
    _assert_same(mirrored[f"{job}/{feed}"])


@pytest.mark.slow
def test_keras_alone_fails_on_sparse_under_a_strategy(mirrored):
    # Why enable_sparse exists; if a future Keras passes, revisit SUPPORTED_KERAS.
    error = mirrored["without_enable_sparse"]["error"]
    if error is None:
        pytest.skip("this Keras trains on sparse data under a strategy by itself")
    assert "SparseTensor" in error


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_training_on_shards_agrees_across_workers(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(
            subprocess.Popen(
                [sys.executable, str(SUPPORT / "multiworker_worker.py"), str(tmp_path)],
                env=_env(TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
    first, second = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    assert first.files == second.files
    for name in first.files:
        np.testing.assert_allclose(second[name], first[name], rtol=1e-6, atol=1e-7)
    # One process, no strategy: each step trains on the two workers' batches joined.
    from support import multiworker_worker

    x, y, model = multiworker_worker.data_and_model()
    data = ks.data.SparseDataset(x, y, batch_size=16, shuffle=True, seed=3)
    shards = [data.shard(2, i, batch_size=8) for i in range(2)]
    for _ in range(3):
        for step in range(len(shards[0])):
            rows = np.concatenate([shard.batch_rows(step) for shard in shards])
            model.train_on_batch(*data.batch_of_rows(rows))
        for shard in shards:
            shard.on_epoch_end()
    for i, weight in enumerate(model.get_weights()):
        np.testing.assert_allclose(first[f"w{i}"], weight, rtol=1e-4, atol=1e-5)


def _model():
    keras.utils.set_random_seed(0)  # every call starts from the same weights
    inputs = keras.Input((12,), sparse=True)
    model = keras.Model(inputs, keras.layers.Dense(12)(ks.layers.SparseDenseInput(4)(inputs)))
    model.compile(optimizer="sgd", loss=ks.losses.SparseMeanSquaredError())
    return model


def test_enable_sparse_rejects_a_non_model():
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        ks.distribute.enable_sparse(keras.layers.Dense(3))


def test_enable_sparse_refuses_an_unknown_keras_version(monkeypatch):
    monkeypatch.setattr(keras, "version", lambda: "3.99.0")
    with pytest.raises(RuntimeError, match="Keras 3.99.0 is installed"):
        ks.distribute.enable_sparse(_model())


def test_enable_sparse_is_idempotent_and_harmless_without_a_strategy():
    model = _model()
    assert ks.distribute.enable_sparse(ks.distribute.enable_sparse(model)) is model
    x = sp.random(16, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    plain = _model()
    for m in (model, plain):
        m.fit(x, x, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)  # exactly Keras's own fit
    embed, dense = model.layers[1], model.layers[2]
    hidden = x.toarray() @ embed.get_weights()[0]
    if len(embed.get_weights()) > 1:
        hidden = hidden + embed.get_weights()[1]
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(
        model.predict(x, verbose=0), hidden @ kernel + bias, rtol=1e-5, atol=1e-5
    )


def test_enable_sparse_under_a_one_device_strategy_trains():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = ks.distribute.enable_sparse(_model())
    x = sp.random(16, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    dataset = ks.distribute.distribute_dataset(ks.data.SparseDataset(x, x, batch_size=8), strategy)
    history = model.fit(dataset, epochs=2, verbose=0)
    one_device = _model()  # the same weights, no strategy, the same batches
    reference = one_device.fit(ks.data.SparseDataset(x, x, batch_size=8), epochs=2, verbose=0)
    # The strategy sums in another order: float32 rounding, nothing more.
    np.testing.assert_allclose(history.history["loss"], reference.history["loss"], rtol=1e-4)
    for got, want in zip(model.get_weights(), one_device.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_distribute_dataset_validates_its_arguments():
    strategy = tf.distribute.get_strategy()
    x = sp.random(8, 4, density=0.5, format="csr", random_state=0)
    with pytest.raises(TypeError, match="`dataset` must be a keras_sparse.data.SparseDataset"):
        ks.distribute.distribute_dataset(x, strategy)
    with pytest.raises(TypeError, match="`strategy` must be a tf.distribute.Strategy"):
        ks.distribute.distribute_dataset(ks.data.SparseDataset(x), "mirrored")


def test_initialize_is_jax_only_and_names_the_tensorflow_way():
    with pytest.raises(RuntimeError, match=r"'tensorflow'.*MultiWorkerMirroredStrategy"):
        ks.distribute.initialize("localhost:1234", 2, 0)
