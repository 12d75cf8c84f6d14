"""`ExcludeSeen`: seen items get -inf at inference only; against NumPy; serialization."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse.layers import ExcludeSeen

SEEN = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 0, 0, 0], [0, 2, 0, 0]], np.float32))
SCORES = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


@pytest.mark.parametrize("seen", [SEEN, SEEN.toarray()], ids=["sparse", "dense"])
def test_seen_entries_are_minus_inf_at_inference(seen):
    seen = ks.to_sparse(seen) if sp.issparse(seen) else seen
    got = np.asarray(ExcludeSeen()([SCORES, seen], training=False))
    want = np.where(SEEN.toarray() != 0, -np.inf, SCORES)
    np.testing.assert_array_equal(got, want)


def test_scores_pass_unchanged_in_training():
    got = np.asarray(ExcludeSeen()([SCORES, ks.to_sparse(SEEN)], training=True))
    np.testing.assert_array_equal(got, SCORES)


def test_called_on_anything_but_a_pair_raises():
    with pytest.raises(ValueError, match=r"\[scores, seen\]"):
        ExcludeSeen()(SCORES)


def test_a_model_with_exclude_seen_round_trips_through_a_keras_file(tmp_path):
    items = keras.Input((4,), sparse=True)
    scores = keras.layers.Dense(4)(ks.layers.SparseDenseInput(3)(items))
    model = keras.Model(items, ExcludeSeen()([scores, items]))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(SEEN, verbose=0), model.predict(SEEN, verbose=0))
    assert np.isneginf(model.predict(SEEN, verbose=0)[SEEN.toarray() != 0]).all()
