"""Smoke tests: every recipe and example runs (small sizes) and checks its own result."""

import importlib.util
import runpy
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


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs(recipe, capsys):
    runpy.run_path(str(recipe), run_name="__main__")  # each asserts its own result
    assert capsys.readouterr().out.strip()


def test_recommender_example_writes_top_k(tmp_path, capsys):
    out = tmp_path / "recs.npz"
    recommender = _load("recommender")
    args = ["--users", "200", "--items", "80", "--epochs", "1", "--k", "7", "--out", str(out)]
    assert recommender.main(args) == 0
    top = sp.load_npz(out)
    assert top.shape == (200, 80) and np.all(np.diff(top.indptr) <= 7)
    assert "ndcg@10" in capsys.readouterr().out


def test_tfidf_example_learns_the_topics(capsys):
    pytest.importorskip("sklearn")
    assert _load("tfidf_text").main(["--docs-per-topic", "100", "--epochs", "8"]) == 0
    accuracy = float(capsys.readouterr().out.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.4  # four topics: chance is 0.25
