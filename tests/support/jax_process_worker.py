"""One process of the multi-process JAX test (run by test_jax_processes.py).

    python jax_process_worker.py OUT_DIR PROCESS_ID NUM_PROCESSES PORT MODE

Each process has `4 // NUM_PROCESSES` host CPU devices, so every run uses 4
devices in all. With NUM_PROCESSES=1 it is the one-process reference. The
process trains one model under `DataParallel` over all devices, from the same
SciPy matrices: a `SparseDataset` (which reads only this process's rows of
each global batch) and `fit(csr)`. It writes the weights (gathered from all
processes) and the losses to OUT_DIR/process_<id>.npz. MODE "fail" makes
process 1 raise after its first epoch, to check that the others stop.
"""

from __future__ import annotations

import os
import sys


def main(out_dir: str, process_id: int, num_processes: int, port: int, mode: str) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={4 // num_processes}"
    import keras
    import numpy as np
    import scipy.sparse as sp

    import keras_sparse as ks
    from keras_sparse.data import SparseDataset
    from keras_sparse.layers import SparseDenseInput
    from keras_sparse.losses import SparseMeanSquaredError
    from keras_sparse.optimizers import LazyAdam

    if num_processes > 1:
        ks.distribute.initialize(
            f"localhost:{port}",
            num_processes,
            process_id,
            heartbeat_timeout_seconds=5,
            exit_on_error=True,
        )
    import jax
    from jax.experimental import multihost_utils

    x = sp.random(96, 40, density=0.1, format="csr", random_state=0, dtype=np.float32)
    y = sp.random(96, 20, density=0.1, format="csr", random_state=1, dtype=np.float32)
    keras.utils.set_random_seed(0)
    keras.distribution.set_distribution(keras.distribution.DataParallel())

    class FailAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if mode == "fail" and process_id == 1:
                raise RuntimeError("process 1 fails on purpose")

    results = {}
    for name, optimizer in (
        ("sgd", lambda: keras.optimizers.SGD(0.5)),
        ("lazy", lambda: LazyAdam(0.01)),
    ):
        model = keras.Sequential(
            [
                keras.Input((40,), sparse=True),
                SparseDenseInput(8, name="embed"),
                keras.layers.Dense(20),
            ]
        )
        model.compile(optimizer=optimizer(), loss=SparseMeanSquaredError())
        first = model.fit(
            SparseDataset(x, y, batch_size=16),
            epochs=2,
            verbose=0,
            shuffle=False,  # Keras shuffles a PyDataset's batch order otherwise
            callbacks=[FailAfterFirstEpoch()],
        )
        second = model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
        results[f"{name}_loss"] = np.array(first.history["loss"] + second.history["loss"])
        results[f"{name}_evaluate"] = np.array(model.evaluate(x, y, batch_size=16, verbose=0))
        for i, variable in enumerate(model.weights):
            value = variable.value
            if jax.process_count() > 1:
                value = multihost_utils.process_allgather(value, tiled=True)
            results[f"{name}_weight_{i}"] = np.asarray(value)
        model.save(os.path.join(out_dir, f"{name}_{process_id}.keras"))
    results["devices"] = np.array([jax.device_count(), jax.local_device_count()])
    np.savez(os.path.join(out_dir, f"process_{process_id}.npz"), **results)


if __name__ == "__main__":
    out, pid, count, port, mode = sys.argv[1:6]
    main(out, int(pid), int(count), int(port), mode)
