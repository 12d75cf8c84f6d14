"""Interaction files with ids: every format, column choice, errors with line numbers, npz."""

import os

import numpy as np
import pytest
import scipy.sparse as sp

from keras_sparse.interactions import (
    _atomic_write,
    load_interactions,
    load_npz,
    save_npz,
    split_holdout,
    synthetic_interactions,
)

# (user, item, rating) triples shared by the format tests; ids are numbers that sort
# differently as text (2 < 10) and a repeated pair that must be summed.
TRIPLES = [(10, 300, 4.0), (2, 7, 1.5), (10, 7, 5.0), (2, 300, 3.0), (10, 300, 1.0)]


def _reference(triples):
    users = sorted({u for u, _, _ in triples})
    items = sorted({i for _, i, _ in triples})
    dense = np.zeros((len(users), len(items)))
    for u, i, r in triples:
        dense[users.index(u), items.index(i)] += r
    return users, items, dense


FORMATS = {
    "ratings.csv": ("userId,movieId,rating,timestamp\n", ",", True),
    "u.data": ("", "\t", True),
    "plain.csv": ("", ",", False),
    "with_header.tsv": ("user\titem\trating\n", "\t", False),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_text_format_matches_the_reference(tmp_path, name):
    head, sep, timestamp = FORMATS[name]
    rows = [
        sep.join([str(u), str(i), str(r)] + (["881250949"] if timestamp else []))
        for u, i, r in TRIPLES
    ]
    path = tmp_path / name
    path.write_text(head + "\n".join(rows) + "\n")
    data = load_interactions(path)
    users, items, dense = _reference(TRIPLES)
    assert data.user_ids.tolist() == users and data.item_ids.tolist() == items
    assert data.user_ids.dtype.kind == "i" and data.item_ids.dtype.kind == "i"
    np.testing.assert_allclose(data.matrix.toarray(), dense)
    assert data.matrix.has_canonical_format and data.matrix.dtype == np.float32


def test_string_ids_columns_by_name_and_position_and_min_rating(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("ts,item,who,stars\n1,book b,ann,5\n2,book a,bob,2\n3,book a,ann,4\n")
    by_name = load_interactions(path, user_col="who", item_col="item", rating_col="stars")
    by_position = load_interactions(path, user_col=2, item_col="1", rating_col="3")
    for data in (by_name, by_position):
        assert data.user_ids.tolist() == ["ann", "bob"]
        assert data.item_ids.tolist() == ["book a", "book b"]
        np.testing.assert_allclose(data.matrix.toarray(), [[4, 5], [2, 0]])
    positive = load_interactions(
        path, user_col="who", item_col="item", rating_col="stars", min_rating=4
    )
    np.testing.assert_allclose(positive.matrix.toarray(), [[1, 1], [0, 0]])
    implicit = load_interactions(path, user_col="who", item_col="item", rating_col="none")
    np.testing.assert_allclose(implicit.matrix.toarray(), [[1, 1], [1, 0]])


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        ("userId,movieId,rating\n1,2,5\n1,x\n", {}, "line 3: expected at least 3 fields"),
        ("userId,movieId,rating\n1,2,five\n", {}, "line 2: rating 'five' is not a number"),
        ("userId,movieId\n", {}, "holds no interactions"),
        ("", {}, "holds no interactions"),
        ("1,2\n", {"user_col": "userId"}, "has no header line"),
        ("user,item\n1,2\n", {"item_col": "movie"}, "not a column"),
        ("user,item,rating\n1,2,1\n", {"min_rating": 3}, "no interaction is rated 3"),
        ("user,item\n1,\n", {}, "line 2: empty user or item id"),
    ],
)
def test_bad_files_name_the_line_or_the_column(tmp_path, content, kwargs, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_interactions(path, **kwargs)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_interactions(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="is a folder"):
        load_interactions(tmp_path)


def test_npz_keeps_ids_and_scipy_still_reads_it(tmp_path):
    matrix = sp.random(3, 4, density=0.5, format="csr", random_state=0)
    save_npz(tmp_path / "m.npz", matrix, np.array([5, 9, 11]), np.array(["a", "b", "c", "d"]))
    data = load_npz(tmp_path / "m.npz")
    assert data.user_ids.tolist() == [5, 9, 11] and data.item_ids.tolist() == ["a", "b", "c", "d"]
    np.testing.assert_allclose(data.matrix.toarray(), matrix.toarray(), rtol=1e-6)
    np.testing.assert_allclose(sp.load_npz(tmp_path / "m.npz").toarray(), matrix.toarray())
    sp.save_npz(tmp_path / "plain.npz", matrix)
    assert load_npz(tmp_path / "plain.npz").user_ids.tolist() == [0, 1, 2]


def test_outputs_honour_the_umask_and_interrupted_writes_leave_nothing(tmp_path):
    old = os.umask(0o022)
    try:
        save_npz(tmp_path / "a.npz", sp.eye(2, format="csr"))
        assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        save_npz(tmp_path / "b.npz", sp.eye(2, format="csr"))
        assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    before = (tmp_path / "a.npz").read_bytes()

    def explode(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic_write(tmp_path / "a.npz", explode)
    assert (tmp_path / "a.npz").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz"]


def test_auto_rating_column_follows_the_header(tmp_path):
    path = tmp_path / "views.csv"
    path.write_text("userId,movieId,timestamp\n1,2,964982703\n1,3,964982704\n")
    np.testing.assert_allclose(load_interactions(path).matrix.toarray(), [[1, 1]])  # no rating
    path.write_text("item,score,user\n2,4.5,1\n3,2,1\n")
    data = load_interactions(path, user_col="user", item_col="item")
    np.testing.assert_allclose(data.matrix.toarray(), [[4.5, 2]])


def _matrix(path):
    return load_interactions(path).matrix


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
    x = _matrix(path)
    assert x.shape == (2, 3)
    np.testing.assert_array_equal(x.toarray(), [[0, 5, 1], [1, 0, 0]])
    path2 = tmp_path / "y.csv"
    path2.write_text("1,10\n2,20\n")
    assert _matrix(path2).nnz == 2


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
        _matrix(path)


def test_read_npz_round_trip(tmp_path):
    x = sp.random(5, 4, density=0.5, format="coo", random_state=0)
    sp.save_npz(tmp_path / "x.npz", x)
    np.testing.assert_allclose(_matrix(tmp_path / "x.npz").toarray(), x.toarray(), rtol=1e-6)
