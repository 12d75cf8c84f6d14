"""Old import paths keep working for one release, each warning with the new one."""

import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks


@pytest.mark.parametrize("name", ["split_holdout", "synthetic_interactions"])
def test_moved_names_warn_and_are_the_new_functions(name):
    with pytest.warns(DeprecationWarning, match=f"keras_sparse.interactions.{name}"):
        old = getattr(ks.datasets, name)
    assert old is getattr(ks.interactions, name)


def test_read_interactions_warns_and_reads_the_matrix(tmp_path):
    path = tmp_path / "x.npz"
    x = sp.random(5, 4, density=0.5, format="csr", random_state=0, dtype=np.float32)
    sp.save_npz(path, x)
    with pytest.warns(DeprecationWarning, match="load_interactions"):
        read = ks.datasets.read_interactions
    np.testing.assert_array_equal(read(path).toarray(), x.toarray())


@pytest.mark.parametrize(
    ("module", "name", "new"),
    [
        ("outputs", "TopKToCSR", "topk"),
        ("streaming", "predict_top_k", "topk"),
        ("streaming", "evaluate_top_k", "topk"),
        ("ranking", "top_k", "topk"),
    ],
)
def test_old_top_k_paths_warn_and_name_the_new_home(module, name, new):
    with pytest.warns(DeprecationWarning, match=f"keras_sparse.{new}"):
        getattr(getattr(ks, module), name)


def test_unknown_names_still_raise_attribute_error():
    for module in (ks.datasets, ks.outputs, ks.streaming, ks.ranking):
        with pytest.raises(AttributeError):
            module.no_such_name  # noqa: B018


def test_the_old_ops_module_warns_and_forwards():
    from keras_sparse import _ops, ops

    with pytest.warns(DeprecationWarning, match="keras_sparse.topk.top_k"):
        assert ops.mask_scores is _ops.mask_scores
    with pytest.raises(AttributeError):
        ops.no_such_name  # noqa: B018


def test_the_old_cli_module_warns_and_forwards():
    from keras_sparse import cli
    from keras_sparse_cli import _work

    with pytest.warns(DeprecationWarning, match="keras_sparse_cli"):
        assert cli.build_recommender is _work.build_recommender
