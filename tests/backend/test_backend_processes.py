"""Tests that start their own processes: JAX without TensorFlow, .keras files across backends.

They run from the TensorFlow session of the README's test command only (each
starts the processes and backends it needs), so they run once per test run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SUPPORT = HERE.parent / "support"  # the scripts these tests run
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
        reason="starts its own processes of each backend; runs once, from the TensorFlow run",
    ),
]


def _run(script, *args, backend="jax"):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(SUPPORT / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_everything_runs_on_jax_where_tensorflow_cannot_be_imported():
    assert "OK without tensorflow" in _run("jax_without_tensorflow.py")


@pytest.mark.parametrize(
    "saved, loaded",
    [("tensorflow", "jax"), ("jax", "tensorflow"), ("torch", "tensorflow"), ("jax", "torch")],
)
def test_a_model_saved_under_one_backend_predicts_the_same_under_the_other(tmp_path, saved, loaded):
    _run("cross_backend.py", "save", tmp_path, backend=saved)
    assert "identical predictions" in _run("cross_backend.py", "load", tmp_path, backend=loaded)


def test_loading_without_importing_keras_sparse_says_to_import_it(tmp_path):
    import keras

    import keras_sparse as ks

    inp = keras.Input((6,), sparse=True)
    model = keras.Model(inp, keras.layers.Dense(3)(ks.layers.SparseDenseInput(2)(inp)))
    model.compile(optimizer="lazy_adam", loss="sparse_mse", metrics=["ndcg"])
    path = tmp_path / "model.keras"
    model.save(path)
    code = f"import keras; keras.models.load_model({str(path)!r})"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "imported" in message and "keras_sparse" in message, message
    fixed = subprocess.run(
        [sys.executable, "-c", "import keras_sparse; " + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fixed.returncode == 0, fixed.stderr[-2000:]
