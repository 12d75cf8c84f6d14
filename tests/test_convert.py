import keras
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import keras_sparse as ks
from conftest import MATRIX_CLASSES, ZERO_KEEPING, coo_reference, dense_of, host_coo
from keras_sparse import backend as B


def _is_row_major_unique(indices):
    keys = [tuple(i) for i in indices.tolist()]
    return all(a < b for a, b in zip(keys, keys[1:]))


@st.composite
def coo_triplets(draw, max_dim=6, max_nnz=12):
    n = draw(st.integers(0, max_dim))
    m = draw(st.integers(0, max_dim))
    if n == 0 or m == 0:
        return (n, m), [], [], []
    k = draw(st.integers(0, max_nnz))
    rows = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
    cols = draw(st.lists(st.integers(0, m - 1), min_size=k, max_size=k))
    vals = draw(st.lists(st.sampled_from([0.0, 1.0, -2.5, 3.0, 0.25]), min_size=k, max_size=k))
    return (n, m), rows, cols, vals


@pytest.mark.parametrize("cls", MATRIX_CLASSES, ids=lambda c: c.__name__)
def test_every_format_matches_dense(cls, small_coo):
    x = cls(small_coo)
    st_ = ks.to_sparse(x)
    dense = small_coo.toarray()
    assert keras.backend.standardize_dtype(B.coo(st_)[0].dtype) == B.INDEX_DTYPE
    assert host_coo(st_)[2] == dense.shape
    assert _is_row_major_unique(host_coo(st_)[0])
    np.testing.assert_array_equal(dense_of(st_), dense)


@pytest.mark.parametrize("cls", ZERO_KEEPING, ids=lambda c: c.__name__)
def test_explicit_zero_is_kept_and_duplicates_summed(cls, small_coo):
    st_ = ks.to_sparse(cls(small_coo))
    got = {tuple(i): v for i, v in zip(host_coo(st_)[0].tolist(), host_coo(st_)[1])}
    expected = coo_reference((4, 5), small_coo.row, small_coo.col, small_coo.data)
    assert got == pytest.approx(expected)
    assert got[(3, 0)] == 0.0  # the explicit zero is a stored entry
    assert got[(0, 2)] == 7.0  # 2 + 5


def test_user_matrix_is_not_modified(small_coo):
    csr = sp.csr_matrix((small_coo.data, (small_coo.row, small_coo.col)), shape=(4, 5))
    unsorted = sp.csr_matrix(
        (np.array([1.0, 2.0]), np.array([3, 1]), np.array([0, 2, 2])), shape=(2, 4)
    )
    before = unsorted.indices.copy()
    ks.to_sparse(unsorted)
    np.testing.assert_array_equal(unsorted.indices, before)
    assert host_coo(ks.to_sparse(csr))[1].shape[0] == csr.nnz


@given(coo_triplets())
def test_round_trip_property(triplets):
    shape, rows, cols, vals = triplets
    coo = sp.coo_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=shape)
    expected = coo_reference(shape, rows, cols, vals)
    st_ = ks.to_sparse(coo)
    assert _is_row_major_unique(host_coo(st_)[0])
    got = {tuple(i): v for i, v in zip(host_coo(st_)[0].tolist(), host_coo(st_)[1])}
    assert got == pytest.approx(expected)
    back = ks.to_scipy(st_)
    assert back.shape == shape and back.nnz == len(expected)
    np.testing.assert_array_equal(back.toarray(), coo.toarray())
    # Exact inverse: converting back again gives the same tensor.
    again = ks.to_sparse(back)
    np.testing.assert_array_equal(host_coo(again)[0], host_coo(st_)[0])
    np.testing.assert_array_equal(host_coo(again)[1], host_coo(st_)[1])


@pytest.mark.tensorflow_only
@given(coo_triplets())
def test_tf_sparse_input_is_canonicalised(triplets):
    import tensorflow as tf

    shape, rows, cols, vals = triplets
    idx = np.array(list(zip(rows, cols)), dtype=np.int64).reshape(-1, 2)
    raw = tf.SparseTensor(idx, tf.constant(vals, dtype=tf.float32), shape)
    st_ = ks.to_sparse(raw)
    got = {tuple(i): v for i, v in zip(host_coo(st_)[0].tolist(), host_coo(st_)[1])}
    assert got == pytest.approx(coo_reference(shape, rows, cols, vals))
    assert _is_row_major_unique(host_coo(st_)[0])


def test_numpy_input_and_dtype():
    arr = np.array([[0, 1.5], [0, 0], [2, 0]])
    st_ = ks.to_sparse(arr, dtype="float32")
    assert host_coo(st_)[1].dtype == np.float32
    assert host_coo(st_)[0].tolist() == [[0, 1], [2, 0]]
    np.testing.assert_array_equal(dense_of(st_), arr)


def test_nan_values_pass_through():
    x = sp.csr_matrix(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    st_ = ks.to_sparse(x)
    assert np.isnan(host_coo(st_)[1][0])


def test_zero_dimension_shapes():
    for shape in [(0, 3), (3, 0), (0, 0)]:
        st_ = ks.to_sparse(sp.csr_matrix(shape))
        assert host_coo(st_)[2] == shape
        assert ks.to_scipy(st_).shape == shape


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ks.to_sparse("abc"), TypeError, "`x` must be"),
        (
            lambda: ks.to_sparse(sp.csr_matrix(np.eye(2, dtype=complex))),
            TypeError,
            "complex",
        ),
        (lambda: ks.to_sparse(np.eye(2), dtype="nope"), TypeError, "`dtype`"),
        (lambda: ks.to_scipy(np.eye(2)), TypeError, "`st` must be a tf.SparseTensor"),
        (lambda: ks.to_scipy(ks.stack([np.eye(2)])), ValueError, "must be 2-D"),
        (lambda: ks.stack([]), ValueError, "empty"),
        (lambda: ks.stack(np.eye(2)), TypeError, "list or tuple"),
        (lambda: ks.stack([np.eye(2), "x"]), TypeError, r"matrices\[1\]"),
    ],
)
def test_invalid_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_stack_matches_each_slice(small_coo):
    mats = [
        sp.csc_matrix(small_coo),
        small_coo.toarray() * 2,
        ks.to_sparse(sp.lil_matrix(small_coo)),
    ]
    st_ = ks.stack(mats)
    assert tuple(st_.shape) == (3, 4, 5)
    assert _is_row_major_unique(host_coo(st_)[0])
    dense = dense_of(st_)
    for b, expected in enumerate(
        [small_coo.toarray(), small_coo.toarray() * 2, small_coo.toarray()]
    ):
        np.testing.assert_array_equal(dense[b], expected)


def test_stack_keeps_batch_shape_the_recipe_gets_wrong():
    # The copied recipe concatenates two (2, 3, 3) tensors into (4, 3, 3); stack of
    # two 3 x 3 matrices must give (2, 3, 3) with batch indices 0 and 1 only.
    st_ = ks.stack([np.eye(3), np.eye(3)])
    assert host_coo(st_)[2] == (2, 3, 3)
    assert set(host_coo(st_)[0][:, 0].tolist()) == {0, 1}


def test_stack_names_first_mismatching_shape():
    with pytest.raises(ValueError, match=r"matrices\[2\] has shape \(3, 4\)"):
        ks.stack([np.eye(3), np.eye(3), np.ones((3, 4)), np.ones((2, 2))])


@given(st.lists(coo_triplets(max_dim=3), min_size=1, max_size=4))
def test_stack_property(triplet_list):
    shape = triplet_list[0][0]
    mats = []
    for _, rows, cols, vals in triplet_list:
        keep = [(r, c, v) for r, c, v in zip(rows, cols, vals) if r < shape[0] and c < shape[1]]
        r, c, v = (list(t) for t in zip(*keep)) if keep else ([], [], [])
        mats.append(sp.coo_matrix((np.asarray(v, dtype=float), (r, c)), shape=shape))
    st_ = ks.stack(mats)
    dense = dense_of(st_)
    assert dense.shape == (len(mats), *shape)
    for b, m in enumerate(mats):
        np.testing.assert_array_equal(dense[b], m.toarray())
