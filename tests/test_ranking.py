"""ranking's exact top-k: same values, indices and tie order as a stable NumPy sort."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_sparse import ranking


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
    values, indices = ranking._exact_top_k(tf.constant(scores), k)
    expected_values, expected_indices = _reference(scores, k)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    np.testing.assert_array_equal(values.numpy(), expected_values)


def test_block_path_is_taken_for_wide_rows_and_small_k():
    assert ranking._block_size(20_000, 10) is not None
    assert ranking._block_size(20_000, 2_000) is None  # k too large: plain top-k
    assert ranking._block_size(1_000, 5) is None  # too few items to gain
    assert ranking._block_size(None, 5) is None  # unknown width


@pytest.mark.parametrize("n", [4096, 5000])
def test_all_minus_inf_rows_and_the_last_block(n):
    scores = np.full((3, n), -np.inf, np.float32)
    scores[1, -1] = 2.0  # in the padded last block
    scores[2, [0, n - 1]] = 1.0  # a tie across the first and last blocks
    values, indices, valid = ranking._top_k(tf.constant(scores), 3)
    assert indices.numpy()[1, 0] == n - 1 and valid.numpy()[1].tolist() == [True, False, False]
    assert indices.numpy()[2, :2].tolist() == [0, n - 1]
    assert indices.numpy()[0].tolist() == [0, 1, 2] and not valid.numpy()[0].any()
