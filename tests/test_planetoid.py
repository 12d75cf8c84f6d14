"""load_planetoid: the real Cora/Citeseer files, a hand-made Planetoid and hostile pickles."""

import collections
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import PLANETOID_DIR
from keras_sparse.datasets import load_planetoid

needs_data = pytest.mark.skipif(
    not PLANETOID_DIR.is_dir(), reason=f"Planetoid data not found in {PLANETOID_DIR}"
)


def _write(folder, name, parts, test_index):
    for part, value in parts.items():
        with open(folder / f"ind.{name}.{part}", "wb") as fh:
            pickle.dump(value, fh, protocol=2)
    (folder / f"ind.{name}.test.index").write_text("".join(f"{i}\n" for i in test_index))


@pytest.fixture
def tiny(tmp_path):
    """8 nodes: 0-3 not in test (0-1 train), test ids 7, 4, 5 listed unsorted, node 6 absent.

    Node i's features are the one-hot of i, its label is i % 3, so every
    misplaced row shows.
    """
    eye = np.eye(8, dtype=np.float32)
    labels = np.eye(3)[np.arange(8) % 3]
    test_index = [7, 4, 5]
    parts = {
        "x": sp.csr_matrix(eye[:2]),
        "y": labels[:2],
        "allx": sp.csr_matrix(eye[:4]),
        "ally": labels[:4],
        "tx": sp.csr_matrix(eye[test_index]),
        "ty": labels[test_index],
        "graph": collections.defaultdict(list, {0: [1, 1], 1: [0], 2: [7], 5: [5]}),
    }
    _write(tmp_path, "citeseer", parts, test_index)
    return tmp_path


def test_hand_made_files_are_reordered_and_padded(tiny):
    data = load_planetoid("citeseer", tiny)
    expected = np.eye(8, dtype=np.float32)
    expected[6] = 0  # the isolated node missing from tx
    np.testing.assert_array_equal(data.features.toarray(), expected)
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 2, -1, 1]
    assert np.flatnonzero(data.train_mask).tolist() == [0, 1]
    assert np.flatnonzero(data.val_mask).tolist() == list(range(2, 8))  # clipped at the end
    assert np.flatnonzero(data.test_mask).tolist() == [4, 5, 7]
    dense = data.adjacency.toarray()
    links = {(0, 1), (1, 0), (2, 7), (7, 2), (5, 5)}
    assert {tuple(ij) for ij in np.argwhere(dense)} == links
    assert set(np.unique(dense)) == {0.0, 1.0}  # the repeated 0->1 link counts once
    assert data.num_classes == 3 and data.features.dtype == np.float32


def test_a_crafted_pickle_is_refused_and_never_runs(tiny, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(tiny / "ind.citeseer.graph", "wb") as fh:
        pickle.dump(Exploit(), fh, protocol=2)
    with pytest.raises(
        pickle.UnpicklingError, match=r"ind\.citeseer\.graph' asks to load '[a-z]+\.open'"
    ):
        load_planetoid("citeseer", tiny)
    assert not marker.exists()


def test_os_system_in_a_pickle_is_refused(tiny):
    payload = b"cos\nsystem\n(S'echo hacked'\ntR."
    (tiny / "ind.citeseer.x").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match=r"'os\.system'"):
        load_planetoid("citeseer", tiny)


def test_missing_corrupt_and_invalid_arguments(tiny, tmp_path):
    (tiny / "ind.citeseer.ty").write_bytes(b"\x80\x02not a pickle")
    with pytest.raises(ValueError, match=r"could not read .*ind\.citeseer\.ty"):
        load_planetoid("citeseer", tiny)
    (tiny / "ind.citeseer.ty").unlink()
    with pytest.raises(FileNotFoundError, match=r"ind\.citeseer\.ty' is missing"):
        load_planetoid("citeseer", tiny)
    with pytest.raises(ValueError, match="`name` must be one of"):
        load_planetoid("reddit", tiny)
    with pytest.raises(FileNotFoundError, match="`data_dir`"):
        load_planetoid("cora", tmp_path / "nowhere")
    with pytest.raises(TypeError, match="`data_dir`"):
        load_planetoid("cora", 3)


def _trusted(name, part):
    with open(PLANETOID_DIR / f"ind.{name}.{part}", "rb") as fh:
        return pickle.load(fh, encoding="latin1")  # our own shared copy, known to be safe


@needs_data
@pytest.mark.parametrize(
    ("name", "nodes", "features", "classes", "train", "edges", "unlabelled"),
    # published sizes of the two graphs (README of ../shared/data, PyG's docs)
    [("cora", 2708, 1433, 7, 140, 5278, 0), ("citeseer", 3327, 3703, 6, 120, 4552, 15)],
)
def test_real_files(name, nodes, features, classes, train, edges, unlabelled):
    data = load_planetoid(name, PLANETOID_DIR)
    assert data.features.shape == (nodes, features) and data.num_classes == classes
    assert (data.train_mask.sum(), data.val_mask.sum(), data.test_mask.sum()) == (train, 500, 1000)
    assert (
        not (data.train_mask & data.test_mask).any() and not (data.val_mask & data.test_mask).any()
    )
    assert np.all(np.bincount(data.labels[data.train_mask]) == 20)
    assert (data.labels == -1).sum() == unlabelled
    assert (data.labels[data.train_mask | data.val_mask | data.test_mask] >= 0).all()
    adjacency = data.adjacency
    assert (adjacency != adjacency.T).nnz == 0
    off_diagonal = sp.triu(adjacency, k=1).nnz
    assert off_diagonal == edges
    # every test row sits at the node id its file line names
    test_index = np.loadtxt(PLANETOID_DIR / f"ind.{name}.test.index", dtype=int)
    tx, ty = _trusted(name, "tx"), _trusted(name, "ty")
    np.testing.assert_array_equal(data.features[test_index].toarray(), tx.toarray())
    np.testing.assert_array_equal(data.labels[test_index], ty.argmax(axis=1))
    np.testing.assert_array_equal(
        data.features[: data.train_mask.sum()].toarray(), _trusted(name, "x").toarray()
    )
