import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from conftest import assert_config_round_trips, host_coo
from keras_sparse import backend as B
from keras_sparse.data import SparseDataset
from keras_sparse.layers import SparseDenseInput, SparseDropout


@pytest.fixture(scope="module")
def x():
    return sp.random(50, 40, density=0.5, format="csr", random_state=5, dtype=np.float32)


def test_training_drops_and_rescales_stored_values(x):
    st = ks.to_sparse(x)
    out = SparseDropout(0.25, seed=3)(st, training=True)
    assert B.is_sparse(out)
    np.testing.assert_array_equal(host_coo(out)[0], host_coo(st)[0])
    kept = host_coo(out)[1] != 0
    np.testing.assert_allclose(host_coo(out)[1][kept], host_coo(st)[1][kept] / 0.75, rtol=1e-6)
    assert 0.15 < 1 - kept.mean() < 0.35  # about a quarter dropped (1000 values)


def test_inference_is_identity(x):
    st = ks.to_sparse(x)
    out = SparseDropout(0.5)(st, training=False)
    np.testing.assert_array_equal(host_coo(out)[1], host_coo(st)[1])


def test_dense_input_gets_ordinary_dropout():
    out = np.asarray(SparseDropout(0.5, seed=1)(np.ones((20, 20), np.float32), training=True))
    assert set(np.unique(out).tolist()) <= {0.0, 2.0}
    assert 0.35 < np.mean(out == 0.0) < 0.65  # about half dropped (400 values), not all


def test_in_a_model_with_fit(x, tmp_path):
    inp = keras.Input((40,), sparse=True)
    model = keras.Model(inp, SparseDenseInput(1)(SparseDropout(0.2, seed=2)(inp)))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(SparseDataset(x, np.ones((50, 1)), batch_size=10), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    ds = SparseDataset(x, batch_size=10)
    np.testing.assert_array_equal(reloaded.predict(ds, verbose=0), model.predict(ds, verbose=0))


def test_config_round_trip():
    layer = assert_config_round_trips(SparseDropout(0.3, seed=9, name="drop"))
    assert layer.rate == 0.3 and layer.seed == 9


@pytest.mark.parametrize(
    ("rate", "error"), [(1.0, ValueError), (-0.1, ValueError), ("a", TypeError)]
)
def test_invalid_rate(rate, error):
    with pytest.raises(error, match="`rate`"):
        SparseDropout(rate)
