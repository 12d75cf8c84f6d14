"""Several JAX processes on one machine (jax.distributed over CPU devices).

Each test starts `jax_process_worker.py` processes itself: two processes with
two host devices each against one process with four, the same global batches.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_sparse import backend as B

pytestmark = [pytest.mark.jax_only, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKER = HERE.parent / "support" / "jax_process_worker.py"
LIMIT = 240  # seconds; a run past it counts as a hang


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(out_dir, process_id, count, port, mode):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="jax")
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out_dir), str(process_id), str(count), str(port), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_all(out_dir, count, mode="train"):
    """Start `count` processes and wait for all, killing them past LIMIT.

    Returns `[(returncode, stderr), ...]` and the seconds it took.
    """
    port = _free_port()
    procs = [_start(out_dir, i, count, port, mode) for i in range(count)]
    start = time.monotonic()
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=max(1.0, LIMIT - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            pytest.fail(f"a process was still running after {LIMIT} s: the run hung")
        results.append((proc.returncode, err))
    return results, time.monotonic() - start


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if B.NAME != "jax":
        pytest.skip("JAX backend only")
    one_dir = tmp_path_factory.mktemp("one")
    two_dir = tmp_path_factory.mktemp("two")
    for out_dir, count in ((one_dir, 1), (two_dir, 2)):
        results, _ = _run_all(out_dir, count)
        for rc, err in results:
            assert rc == 0, err[-3000:]
    return (
        dict(np.load(one_dir / "process_0.npz")),
        [dict(np.load(two_dir / f"process_{i}.npz")) for i in range(2)],
        two_dir,
    )


def test_two_processes_train_the_same_model_as_one(runs):
    one, (first, second), runs_dir = runs
    assert one["devices"].tolist() == [4, 4]
    assert first["devices"].tolist() == [4, 2]  # four devices in all, two per process
    for key, value in one.items():
        if key == "devices":
            continue
        # Both processes hold the same global state.
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        if key.startswith("sgd"):  # SGD: the same steps up to summation order
            np.testing.assert_allclose(first[key], value, atol=2e-5, rtol=1e-5, err_msg=key)
    # A model trained across processes saves, and loads in a single process.
    reloaded = keras.models.load_model(runs_dir / "sgd_0.keras")
    for i, weight in enumerate(reloaded.get_weights()):
        np.testing.assert_array_equal(weight, first[f"sgd_weight_{i}"])
    # Adam divides by the root of tiny second moments, which magnifies the
    # summation-order noise of near-zero gradients: compare the losses only.
    np.testing.assert_allclose(first["lazy_loss"], one["lazy_loss"], rtol=1e-2)
    np.testing.assert_allclose(first["lazy_evaluate"], one["lazy_evaluate"], rtol=1e-2)


def test_a_failing_process_makes_the_others_exit_with_an_error(tmp_path):
    if B.NAME != "jax":
        pytest.skip("JAX backend only")
    results, seconds = _run_all(tmp_path, 2, mode="fail")
    (rc0, err0), (rc1, err1) = results
    assert rc1 != 0 and "process 1 fails on purpose" in err1, err1[-2000:]
    assert "keras_sparse: process 1 failed" in err1
    assert rc0 != 0, err0[-2000:]  # process 0 did not finish as if nothing happened
    assert not (tmp_path / "process_0.npz").exists()
    print(f"both processes ended {seconds:.0f} s after the start")
