"""Tests that start their own processes: JAX without TensorFlow, and .keras files across backends.

They run from the TensorFlow session of the README's test command only (each
starts the processes and backends it needs), so they run once per test run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
        reason="starts its own JAX and TensorFlow processes; runs once, from the TensorFlow run",
    ),
]


def _run(script, *args, backend="jax"):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(HERE / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_everything_runs_on_jax_where_tensorflow_cannot_be_imported():
    assert "OK without tensorflow" in _run("jax_without_tensorflow.py")


@pytest.mark.parametrize("saved, loaded", [("tensorflow", "jax"), ("jax", "tensorflow")])
def test_a_model_saved_under_one_backend_predicts_the_same_under_the_other(tmp_path, saved, loaded):
    _run("cross_backend.py", "save", tmp_path, backend=saved)
    assert "identical predictions" in _run("cross_backend.py", "load", tmp_path, backend=loaded)
