"""The GCN example reaches the paper's accuracy floor on Cora (reads ../shared/data)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import PLANETOID_DIR
from keras_sparse.datasets import load_planetoid

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gcn_planetoid.py"


@pytest.fixture(scope="module")
def gcn():
    spec = importlib.util.spec_from_file_location("gcn_planetoid", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_normalized_adjacency_matches_the_dense_formula(gcn):
    adjacency = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32))
    a = adjacency.toarray() + np.eye(3)
    d = np.diag(1 / np.sqrt(a.sum(axis=1)))
    np.testing.assert_allclose(gcn.normalized_adjacency(adjacency).toarray(), d @ a @ d, rtol=1e-6)
    features = sp.csr_matrix(np.array([[1, 3], [0, 0]], dtype=np.float32))
    np.testing.assert_allclose(gcn.row_normalized(features).toarray(), [[0.25, 0.75], [0, 0]])


@pytest.mark.slow
@pytest.mark.skipif(not PLANETOID_DIR.is_dir(), reason=f"no Planetoid data in {PLANETOID_DIR}")
def test_gcn_reaches_the_accuracy_floor_on_cora(gcn):
    data = load_planetoid("cora", PLANETOID_DIR)
    accuracies = [gcn.run(data, seed) for seed in range(3)]
    # the floor for the 10-seed mean is 80.5 %; the paper reports 81.5 %
    assert np.mean(accuracies) >= 0.805, accuracies
