"""Smoke tests: every recipe and example runs (small sizes) and checks its own result."""

import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RECIPES = sorted((EXAMPLES / "recipes").glob("*.py"))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_six_recipes_are_there():
    names = {path.stem for path in RECIPES}
    assert names == {
        "scipy_to_sparse_tensor",
        "sparse_matmul",
        "batched_3d_input",
        "threshold_predictions",
        "sparse_outputs",
        "custom_sparse_loss",
    }


def _check_scipy_to_sparse_tensor(ns):
    x = ns["x"]
    dense = np.zeros(x.shape)
    np.add.at(dense, (x.row, x.col), x.data)  # duplicates summed, as a sparse tensor holds them
    np.testing.assert_array_equal(ns["back"].toarray(), dense)
    assert ns["back"].nnz == np.count_nonzero(dense)


def _check_sparse_matmul(ns):
    np.testing.assert_allclose(ns["out"], ns["adjacency"].toarray() @ ns["h"], atol=1e-5)


def _check_batched_3d_input(ns):
    want = np.einsum("bij,bjk->bik", np.stack([g.toarray() for g in ns["graphs"]]), ns["features"])
    np.testing.assert_allclose(ns["out"], want, atol=1e-5)


def _check_threshold_predictions(ns):
    scores = ns["scores"]
    rows, cols = np.nonzero(scores > 0.8)
    kept = ns["kept"].tocoo()
    assert sorted(zip(kept.row, kept.col)) == sorted(zip(rows, cols))
    np.testing.assert_array_equal(ns["kept"].toarray()[rows, cols], scores[rows, cols])


def _check_sparse_outputs(ns):
    seen, top = ns["seen"], ns["top"]
    scores = ns["model"].predict(seen.toarray(), verbose=0)  # dense NumPy reference
    scores[seen.toarray() != 0] = -np.inf
    for user in range(seen.shape[0]):
        want = np.sort(scores[user])[::-1][:5]
        got = np.sort(top[user].toarray().ravel()[top[user].indices])[::-1]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _check_custom_sparse_loss(ns):
    model, train, held_out = ns["model"], ns["train"], ns["held_out"]
    assert ns["losses"][-1] < ns["losses"][0]
    pred = model.predict(train, verbose=0)  # the reference: per-row mean log-cosh, O(u) only
    rows = []
    for user in range(held_out.shape[0]):
        cols = held_out[user].indices
        if cols.size:
            rows.append(np.mean(np.log(np.cosh(pred[user, cols] - held_out[user].data))))
    want = np.sum(rows) / held_out.shape[0]  # rows without entries count 0, as sparse_mse
    got = model.evaluate(ns["ks"].data.SparseDataset(train, held_out), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4)


RECIPE_CHECKS = {
    "scipy_to_sparse_tensor": _check_scipy_to_sparse_tensor,
    "sparse_matmul": _check_sparse_matmul,
    "batched_3d_input": _check_batched_3d_input,
    "threshold_predictions": _check_threshold_predictions,
    "sparse_outputs": _check_sparse_outputs,
    "custom_sparse_loss": _check_custom_sparse_loss,
}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_and_its_result_equals_numpy(recipe, capsys):
    namespace = runpy.run_path(str(recipe), run_name="__main__")
    assert capsys.readouterr().out.strip()
    RECIPE_CHECKS[recipe.stem](namespace)  # the recipe's own asserts aside


def test_recommender_example_writes_top_k(tmp_path, capsys):
    out = tmp_path / "recs.npz"
    recommender = _load("recommender")
    args = ["--users", "200", "--items", "80", "--epochs", "1", "--k", "7", "--out", str(out)]
    assert recommender.main(args) == 0
    top = sp.load_npz(out)
    train, _ = recommender.split_holdout(
        recommender.synthetic_interactions(200, 80, seed=0), fraction=0.2, seed=0
    )
    assert top.shape == (200, 80) and top.multiply(train).nnz == 0  # seen items excluded
    np.testing.assert_array_equal(np.diff(top.indptr), np.minimum(7, 80 - np.diff(train.indptr)))
    printed = {
        line.split(":")[0].strip(): float(line.split(":")[1])
        for line in capsys.readouterr().out.splitlines()
        if line.strip().startswith(("ndcg@", "recall@"))
    }
    assert set(printed) >= {"ndcg@10", "recall@20"}
    assert all(0 < value <= 1 for value in printed.values())


def test_examples_never_write_into_the_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(EXAMPLES.parent)
    before = {p for p in EXAMPLES.parent.rglob("*") if ".git" not in p.parts}
    assert _load("recommender").main(["--users", "120", "--items", "40", "--epochs", "2"]) == 0
    written = capsys.readouterr().out.split("users to ")[1].strip()
    assert not written.startswith(str(EXAMPLES.parent)) and os.path.exists(written)
    after = {p for p in EXAMPLES.parent.rglob("*") if ".git" not in p.parts}
    assert {p for p in after - before if "__pycache__" not in p.parts} == set()


def test_tfidf_example_names_its_extra_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "sklearn.feature_extraction.text", None)
    with pytest.raises(SystemExit, match="needs scikit-learn: pip install scikit-learn"):
        _load("tfidf_text")


def test_tfidf_example_learns_the_topics(capsys):
    pytest.importorskip("sklearn")
    assert _load("tfidf_text").main(["--docs-per-topic", "100", "--epochs", "8"]) == 0
    accuracy = float(capsys.readouterr().out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.4  # four topics: chance is 0.25


def test_movielens_like_example_writes_files_the_cli_reads(tmp_path, capsys):
    from keras_sparse.interactions import load_interactions

    assert _load("movielens_like").main(["--out-dir", str(tmp_path), "--users", "50"]) == 0
    ratings = load_interactions(tmp_path / "ratings.csv")
    later = load_interactions(tmp_path / "later.csv")
    assert ratings.matrix.shape[0] == 50 and set(later.user_ids) <= set(ratings.user_ids)
    assert ratings.item_ids.dtype.kind == "i" and all(ratings.item_ids % 10 == 7)
    assert "wrote ratings.csv" in capsys.readouterr().out


@pytest.mark.jax_only
@pytest.mark.slow
def test_distributed_jax_example_shards_the_table_and_matches_one_device():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # it sets its own
    env["KERAS_BACKEND"] = "jax"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "distributed_jax.py"),
            "--users",
            "400",
            "--epochs",
            "2",
            "--layout",
            "model",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "model parallel on 4 cpu devices: table (800, 64), [400] rows on each device" in (
        done.stdout
    )
    assert done.stdout.strip().endswith("same as one device")


@pytest.mark.slow
def test_large_catalogue_example_beats_popularity(capsys):
    example = _load("large_catalogue")
    args = ["--items", "20000", "--users", "2000", "--epochs", "4", "--eval-users", "600"]
    assert example.main(args) == 0
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if "@" in line}
    ours, popularity = (float(v) for v in table["recall@20"])
    assert ours > 2 * popularity, out
    assert out.count("top 10 = ") == 3


def test_lm_head_example_learns_the_successors(capsys):
    args = ["--vocab", "3000", "--steps", "20", "--epochs", "5", "--length", "16"]
    assert _load("lm_head").main(args) == 0
    out = capsys.readouterr().out
    losses = [float(v) for v in out.split("loss per epoch [")[1].split("]")[0].split(",")]
    uniform = float(out.split("(uniform: ")[1].split(")")[0])
    assert losses[-1] < 0.8 * uniform  # far below guessing
    share = float(out.split("last position: ")[1].split(" ")[0])
    assert share > 0.2  # 4 of 3000 tokens are right: guessing gives about 0.001
    assert "(2, 16, 3000)" in out


@pytest.mark.slow
def test_sasrec_example_beats_popularity_on_movielens(capsys):
    sasrec = _load("sasrec_movielens")
    if sasrec.find_data(None) is None:
        pytest.skip("MovieLens-100K not available (../shared/tools/fetch_movielens_100k.sh)")
    assert sasrec.main(["--epochs", "12", "--only", "exact", "--length", "30", "--lr", "3e-3"]) == 0
    out = capsys.readouterr().out
    popularity = float(out.split("popularity: NDCG@10 ")[1].split()[0])
    exact = float(out.split("exact")[1].split("NDCG@10 ")[1].split()[0])
    assert exact > popularity
