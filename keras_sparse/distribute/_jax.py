"""Multi-process JAX runs: `initialize`, per-process shards, and sparse batches on meshes.

Keras's JAX trainer places every batch leaf with the distribution's data
layout, which does not fit a `BCOO`; `install()` routes batches that hold one
through `backend._jax_distribution.distribute` (rows split by device, see
there), checks each model against the active distribution before its first
step, and lets `fit` take SciPy data and `SparseDataset`s under a
multi-process distribution. All three changes go through `_compat` and are
known to work on Keras 3.10-3.15; they also install on keras-nightly 3.16 (whose
trainer class and `_distribute_data` signature changed).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

import jax
import keras
import numpy as np
import scipy.sparse as sp

from keras_sparse import _compat
from keras_sparse.backend import _jax_distribution
from keras_sparse.data import SparseDataset


def _exit_on_uncaught(hook: Any) -> Any:
    """An exception hook that reports the error, then ends the process at once.

    A plain exit runs JAX's shutdown barrier, where the failed process waits
    for peers that are themselves blocked in a collective waiting for it: both
    hang until the barrier times out. Leaving with `os._exit` skips the barrier;
    the peers then miss its heartbeat and end with an error.
    """

    @functools.wraps(hook)
    def report_and_exit(*args: Any) -> None:
        import os
        import sys

        try:
            hook(*args)
            print(
                f"keras_sparse: process {jax.process_index()} failed; exiting so that the "
                "other processes stop too (they end once its heartbeat is missed).",
                file=sys.stderr,
            )
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            os._exit(1)

    return report_and_exit


def _start(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    heartbeat_timeout_seconds: int,
    shutdown_timeout_seconds: int,
    exit_on_error: bool,
) -> None:
    """Start `jax.distributed` with timeouts that turn a lost process into an error."""
    import sys
    import threading

    timeouts = {
        "heartbeat_timeout_seconds": heartbeat_timeout_seconds,
        "shutdown_timeout_seconds": shutdown_timeout_seconds,
    }
    accepted = inspect.signature(jax.distributed.initialize).parameters
    missing = [name for name in timeouts if name not in accepted]
    if missing:  # an older JAX: its own timeouts apply
        warnings.warn(
            f"JAX {jax.__version__} does not take {missing} in jax.distributed.initialize, so "
            "its defaults apply: after a process fails the others may wait minutes before "
            "they end. Upgrade JAX (pip install -U jax) to stop them sooner.",
            stacklevel=3,
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **{name: value for name, value in timeouts.items() if name in accepted},
    )
    _jax_distribution.seed_processes()  # one seed on every process, as Keras does
    if exit_on_error:
        sys.excepthook = _exit_on_uncaught(sys.excepthook)
        original = threading.excepthook
        threading.excepthook = _exit_on_uncaught(lambda a: original(a))


def process_shard(dataset: Any) -> Any:
    """Return this process's rows of every global batch of a `SparseDataset`.

    `dataset.batch_size` is the global batch size; each of the `P` processes
    yields `batch_size // P` rows per batch, every `P`-th row from its index,
    so the global batches hold the same rows as one process's would.
    """
    count, index = jax.process_count(), jax.process_index()
    if count == 1 or dataset.sharded:
        return dataset
    if dataset.batch_size % count:
        raise ValueError(
            f"`batch_size` {dataset.batch_size} of the SparseDataset is the global batch size "
            f"and must be a multiple of the {count} processes (jax.process_count()); pass "
            f"batch_size={-(-dataset.batch_size // count) * count}."
        )
    return dataset.shard(count, index, batch_size=dataset.batch_size // count)


def _multi_process(distribution: Any) -> bool:
    """A multi-process distribution that shards the data (`auto_shard_dataset`, its default)."""
    return _compat.shards_across_processes(distribution)


def _install_data_adapter() -> bool:
    """Let `fit` / `evaluate` / `predict` take SciPy data and `SparseDataset`s across processes.

    Keras refuses anything but a `tf.data.Dataset` under a multi-process
    distribution with `auto_shard_dataset` (its default). A `SparseDataset`
    shards itself instead (`process_shard`), and SciPy or NumPy inputs are
    wrapped in one with the `fit` arguments. Every other input, and every
    single-process run, takes Keras's path unchanged. (Keras 3.11 added
    `auto_shard_dataset=False`, under which Keras takes any input but leaves
    the sharding to the user; this keeps the default working.)
    """

    def wrap(original: Any) -> Any:
        def get_data_adapter(
            x: Any, y: Any = None, sample_weight: Any = None, **kwargs: Any
        ) -> Any:
            if not _multi_process(keras.distribution.distribution()):
                return original(x, y, sample_weight, **kwargs)
            shuffle = bool(kwargs.get("shuffle"))
            if not isinstance(x, SparseDataset):
                leaves = jax.tree_util.tree_leaves(x, is_leaf=sp.issparse)
                arrays = all(sp.issparse(v) or isinstance(v, np.ndarray) for v in leaves)
                if not leaves or not arrays:
                    return original(x, y, sample_weight, **kwargs)
                # Rows shuffle inside each process's shard; batches then go in order.
                batch_size = kwargs.get("batch_size") or 32
                x = SparseDataset(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle)
                shuffle = False
            # As Keras does for any PyDataset: `fit(shuffle=True)` shuffles the batch order.
            return _jax_distribution.py_dataset_adapter(
                process_shard(x), class_weight=kwargs.get("class_weight"), shuffle=shuffle
            )

        return get_data_adapter

    return _compat.replace(
        "keras.src.trainers.data_adapters.get_data_adapter",
        wrap,
        feature="fit/evaluate/predict on SciPy data and SparseDatasets across JAX processes",
    )


def _checked(original: Any) -> Any:
    def make_function(self: Any, *args: Any, **kwargs: Any) -> Any:
        _jax_distribution.check_model(self)
        return original(self, *args, **kwargs)

    return make_function


def _sparse_distribute_data(original: Any) -> Any:
    def distribute_data(data: Any, layouts: Any = None, *args: Any, **kwargs: Any) -> Any:
        # Keras 3.16 adds `is_super_batch` (steps_per_execution stacks batches; it
        # refuses sparse ones itself), which goes to Keras's own function.
        distribution = keras.distribution.distribution()
        stacked = bool(args[0] if args else kwargs.get("is_super_batch", False))
        if distribution is None or stacked or not _jax_distribution.has_sparse(data):
            return original(data, layouts, *args, **kwargs)
        return _jax_distribution.distribute(data, distribution)

    return distribute_data


#: Keras's JAX trainer class: `JAXTrainer` on Keras 3.10-3.15, `Trainer` from 3.16.
_TRAINER = ("keras.src.backend.jax.trainer.JAXTrainer", "keras.src.backend.jax.trainer.Trainer")


def install() -> bool:
    """Make the three changes of the module doc (idempotent); False if any is missing."""
    trainer = _compat.first_found(*_TRAINER)
    done = [
        _compat.replace(
            f"{trainer}.{name}",
            _checked,
            feature="the clear error for a model created before keras.distribution was set",
        )
        for name in ("make_train_function", "make_test_function", "make_predict_function")
    ]
    done.append(
        _compat.replace(
            "keras.src.backend.jax.trainer._distribute_data",
            _sparse_distribute_data,
            feature="sparse batches under keras.distribution (DataParallel, ModelParallel)",
            check=_compat.takes("data", "layouts", or_also=("data", "layouts", "is_super_batch")),
        )
    )
    done.append(_install_data_adapter())
    return all(done)
