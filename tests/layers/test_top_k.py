"""`TopK`: the k best items inside a model, against a NumPy reference; serialization."""

import re

import keras
import numpy as np
import pytest

import keras_sparse as ks
from keras_sparse.layers import TopK


def _reference(scores, k):
    """Per row: indices of the k largest scores, NaN last, ties to the lower index."""
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -ranked))
    return order[:, :k]


@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_k_matches_numpy_with_ties_and_nan(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, size=(5, 6)).astype(np.float32)  # many ties
    scores[1, 2] = np.nan
    values, indices = TopK(k)(scores)
    want = _reference(scores, k)
    np.testing.assert_array_equal(np.asarray(indices), want)
    picked = np.take_along_axis(np.where(np.isnan(scores), -np.inf, scores), want, axis=1)
    np.testing.assert_array_equal(np.asarray(values), picked)
    assert np.asarray(indices).shape == (5, min(k, 6))


def test_top_k_survives_a_keras_file_round_trip(tmp_path):
    scores = keras.Input((7,))
    model = keras.Model(scores, TopK(3)(keras.layers.Dense(7)(scores)))
    x = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for got, want in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(got, want)
    assert TopK.from_config(TopK(4).get_config()).k == 4


@pytest.mark.parametrize(
    "k, error, shown",
    [
        (0, ValueError, "0"),
        (-1, ValueError, "-1"),
        (2.5, TypeError, "2.5"),
        ("3", TypeError, "'3'"),
    ],
)
def test_bad_k_is_refused_naming_it_the_value_and_the_fix(k, error, shown):
    with pytest.raises(
        error, match=rf"^`k` must be an integer >= 1, got {re.escape(shown)}[ .].*k=1"
    ):
        TopK(k)


def test_top_k_is_the_home_module_and_the_layers_export():
    assert ks.topk.TopK is ks.layers.TopK
