import numpy as np
import pytest
import scipy.sparse as sp

from keras_sparse.datasets import read_interactions, split_holdout, synthetic_interactions


def test_synthetic_is_deterministic_and_about_as_dense_as_asked():
    a = synthetic_interactions(500, 300, density=0.02, seed=3)
    b = synthetic_interactions(500, 300, density=0.02, seed=3)
    assert (a != b).nnz == 0
    assert 0.01 < a.nnz / (500 * 300) < 0.03
    counts = np.asarray(a.sum(axis=0)).ravel()
    assert counts.max() > 5 * np.median(counts)  # popularity skew


def test_split_holdout_partitions_each_row():
    x = synthetic_interactions(300, 100, density=0.05, seed=1)
    train, held = split_holdout(x, fraction=0.2, seed=0)
    assert train.multiply(held).nnz == 0
    assert ((train + held) != x).nnz == 0
    per_row = np.diff(x.indptr)
    held_rows = np.diff(held.indptr)
    assert np.all(held_rows[per_row >= 2] >= 1) and np.all(held_rows[per_row < 2] == 0)
    assert abs(held.nnz / x.nnz - 0.2) < 0.05


def test_read_csv_with_header_string_ids_and_duplicates(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user,item,rating\nann,b,2\nbob,a,1\nann,b,3\n\nann,c,1\n")
    x = read_interactions(path)
    assert x.shape == (2, 3)
    np.testing.assert_array_equal(x.toarray(), [[0, 5, 1], [1, 0, 0]])
    path2 = tmp_path / "y.csv"
    path2.write_text("1,10\n2,20\n")
    assert read_interactions(path2).nnz == 2


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing.npz", None, "does not exist"),
        ("bad.npz", b"not a zip", "could not read"),
        ("bad.csv", b"a,b,c,d\n", "line 1: rating 'c' is not a number"),
        ("bad2.csv", b"a,b,1\nc,d,x\n", "not a number"),
        ("empty.csv", b"\n", "holds no interactions"),
        ("short.txt", b"1\t2\n3\n", "line 2: expected at least 2 fields"),
    ],
)
def test_read_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_interactions(path)


def test_read_npz_round_trip(tmp_path):
    x = sp.random(5, 4, density=0.5, format="coo", random_state=0)
    sp.save_npz(tmp_path / "x.npz", x)
    np.testing.assert_allclose(
        read_interactions(tmp_path / "x.npz").toarray(), x.toarray(), rtol=1e-6
    )
