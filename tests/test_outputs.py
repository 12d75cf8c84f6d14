import keras
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from reference import ranked_list

import keras_sparse as ks
from conftest import assert_config_round_trips, assert_round_trips
from keras_sparse import _ops
from keras_sparse.layers import TopK
from keras_sparse.outputs import threshold_to_csr
from keras_sparse.topk import TopKToCSR


def _reference_rows(scores, k, exclude=None, min_score=None):
    rows = []
    excl = exclude.toarray() != 0 if exclude is not None else np.zeros(scores.shape, bool)
    stored = set(zip(*exclude.nonzero())) if exclude is not None else set()
    for u in range(scores.shape[0]):
        excluded = {j for j in range(scores.shape[1]) if (u, j) in stored or excl[u, j]}
        ranked, _ = ranked_list(list(scores[u]), k, excluded)
        if min_score is not None:
            ranked = [j for j in ranked if scores[u, j] >= min_score]
        rows.append(ranked)
    return rows


def _rows_of(csr):
    return [csr.indices[csr.indptr[u] : csr.indptr[u + 1]].tolist() for u in range(csr.shape[0])]


@st.composite
def score_case(draw):
    rows, n = draw(st.integers(0, 6)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scores = rng.integers(0, 3, size=(rows, n)).astype(np.float32)  # many ties
    scores[rng.random((rows, n)) < 0.15] = np.nan
    exclude = sp.csr_matrix((rng.random((rows, n)) < 0.3).astype(np.float32))
    return scores, exclude, draw(st.integers(1, n + 2))


@given(score_case(), st.booleans(), st.sampled_from([None, 1.0]))
def test_topk_to_csr_matches_reference(case, use_exclude, min_score):
    scores, exclude, k = case
    exclude = exclude if use_exclude else None
    csr = TopKToCSR(k, min_score=min_score)(scores, exclude=exclude)
    assert csr.shape == scores.shape and csr.data.dtype == np.float32
    expected = _reference_rows(scores, k, exclude, min_score)
    assert _rows_of(csr) == expected  # rank order, ties to the lower index, no NaN/excluded
    for u, row in enumerate(expected):
        np.testing.assert_array_equal(csr.data[csr.indptr[u] : csr.indptr[u + 1]], scores[u, row])
    ranks = TopKToCSR(k, values="ranks", min_score=min_score)(scores, exclude=exclude)
    for u, row in enumerate(expected):
        got = ranks.data[ranks.indptr[u] : ranks.indptr[u + 1]].tolist()
        assert got == [float(i) for i in range(1, len(row) + 1)]


def test_fewer_candidates_than_k_gives_fewer_entries():
    scores = np.array([[0.5, 0.4, 0.3]], np.float32)
    csr = TopKToCSR(3)(scores, exclude=sp.csr_matrix([[1.0, 0, 1.0]]))
    assert _rows_of(csr) == [[1]]  # not the excluded items with a sentinel score


def test_empty_inputs():
    assert TopKToCSR(5)(np.zeros((0, 4), np.float32)).shape == (0, 4)
    assert threshold_to_csr(np.zeros((0, 4)), 0.5).shape == (0, 4)


def test_pair_from_topk_layer_equals_dense_path():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 9)).astype(np.float32)
    exclude = sp.csr_matrix((rng.random((6, 9)) < 0.3).astype(np.float32))
    masked = ks.ranking.mask_scores(scores, ks.to_sparse(exclude))
    pair = TopK(4)(masked)
    from_pair = TopKToCSR(4)(pair, num_items=9)
    dense = TopKToCSR(4)(scores, exclude=exclude)
    assert _rows_of(from_pair) == _rows_of(dense)
    np.testing.assert_array_equal(from_pair.data, dense.data)
    # Excluding after the fact drops items from the pair (fewer than k may remain).
    late = TopKToCSR(4)(TopK(4)(scores), exclude=exclude)
    for got, full in zip(_rows_of(late), _rows_of(dense)):
        assert got == full[: len(got)]


def test_threshold_to_csr_matches_numpy():
    rng = np.random.default_rng(1)
    scores = rng.random((5, 6)).astype(np.float32)
    scores[0, 0] = np.nan
    csr = threshold_to_csr(scores, 0.5)
    expected = np.where(scores > 0.5, scores, 0)
    np.testing.assert_array_equal(csr.toarray(), np.nan_to_num(expected))
    assert csr.has_canonical_format


def test_topk_layer_ties_nan_small_n_and_save(tmp_path):
    layer = TopK(3)
    values, indices = layer(np.array([[0.2, np.nan, 0.2, 0.9]], np.float32))
    assert np.asarray(indices).tolist() == [[3, 0, 2]]
    _, small = TopK(5)(np.array([[1.0, 2.0]], np.float32))
    assert np.asarray(small).tolist() == [[1, 0]]
    inp = keras.Input((8,))
    model = keras.Model(inp, TopK(3)(keras.layers.Dense(8)(inp)))
    assert model.output_shape == [(None, 3), (None, 3)]
    assert_round_trips(model, np.eye(8, dtype=np.float32), tmp_path)
    assert assert_config_round_trips(TopK(7)).k == 7


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: TopKToCSR(0), ValueError, "`k`"),
        (lambda: TopKToCSR(2, values="probs"), ValueError, "`values`"),
        (lambda: TopKToCSR(2)(np.ones(3)), ValueError, "`scores` must be 2-D"),
        (lambda: TopKToCSR(2)(np.ones((2, 3)), exclude=sp.eye(3)), ValueError, "`exclude`"),
        (lambda: TopKToCSR(2)((np.ones((2, 2)), np.ones((2, 2)))), ValueError, "`num_items`"),
        (lambda: threshold_to_csr(np.ones((2, 2)), "x"), TypeError, "`threshold`"),
    ],
)
def test_invalid_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@given(score_case(), st.integers(0, 3))
def test_top_k_excluding_equals_masking(case, slack):
    scores, exclude, k = case
    most = int(np.diff(exclude.indptr).max(initial=0))
    vals, idx, valid = _ops.top_k_excluding(scores, ks.to_sparse(exclude), k, most + slack)
    expected = _reference_rows(scores, k, exclude)
    got = [np.asarray(idx)[u][np.asarray(valid)[u]].tolist() for u in range(scores.shape[0])]
    assert got == expected
