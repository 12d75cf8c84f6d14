"""The backend's exact top-k: same values, indices and tie order as a stable NumPy sort."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keras_sparse import _ops
from keras_sparse import backend as B


def _reference(scores, k):
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return np.take_along_axis(scores, order, axis=1), order


@given(
    rows=st.integers(0, 4),
    n=st.sampled_from([5, 2047, 2048, 3001, 6000]),
    k=st.integers(1, 40),
    levels=st.sampled_from([3, 50, 10_000]),
    seed=st.integers(0, 2**16),
)
def test_exact_top_k_equals_a_stable_sort(rows, n, k, levels, seed):
    rng = np.random.default_rng(seed)
    # few distinct levels: many ties; some -inf (excluded) and +inf entries
    scores = rng.integers(0, levels, size=(rows, n)).astype(np.float32)
    scores[rng.random((rows, n)) < 0.05] = -np.inf
    scores[rng.random((rows, n)) < 0.001] = np.inf
    values, indices = B.best_k(keras.ops.convert_to_tensor(scores), k)
    expected_values, expected_indices = _reference(scores, k)
    np.testing.assert_array_equal(np.asarray(indices), expected_indices)
    np.testing.assert_array_equal(np.asarray(values), expected_values)


@pytest.mark.tensorflow_only
def test_block_path_is_taken_for_wide_rows_and_small_k():
    from keras_sparse.backend import tensorflow as tf_backend

    assert tf_backend._block_size(20_000, 10) is not None
    assert tf_backend._block_size(20_000, 2_000) is None  # k too large: plain top-k
    assert tf_backend._block_size(1_000, 5) is None  # too few items to gain
    assert tf_backend._block_size(None, 5) is None  # unknown width


@pytest.mark.parametrize("n", [4096, 5000])
def test_all_minus_inf_rows_and_the_last_block(n):
    scores = np.full((3, n), -np.inf, np.float32)
    scores[1, -1] = 2.0  # in the padded last block
    scores[2, [0, n - 1]] = 1.0  # a tie across the first and last blocks
    values, indices, valid = (np.asarray(t) for t in _ops.top_k(scores, 3))
    assert indices[1, 0] == n - 1 and valid[1].tolist() == [True, False, False]
    assert indices[2, :2].tolist() == [0, n - 1]
    assert indices[0].tolist() == [0, 1, 2] and not valid[0].any()
