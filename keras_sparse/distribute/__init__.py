"""Training on many devices: `tf.distribute` on TensorFlow, `keras.distribution` on JAX.

On JAX, `keras.distribution.DataParallel` / `ModelParallel` work with sparse
inputs and targets as they are (each sparse batch is split by rows, see
`keras_sparse.backend._jax_distribution`); `initialize` starts several
processes so that one failing process stops the others. On TensorFlow,
`enable_sparse` and `distribute_dataset` let a `tf.distribute` strategy take
sparse data.
"""

from __future__ import annotations

from keras_sparse import _validation
from keras_sparse import backend as B
from keras_sparse.distribute._tensorflow import SUPPORTED_KERAS, distribute_dataset, enable_sparse

__all__ = ["SUPPORTED_KERAS", "distribute_dataset", "enable_sparse", "initialize"]


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    heartbeat_timeout_seconds: int = 30,
    shutdown_timeout_seconds: int = 30,
    exit_on_error: bool = False,
) -> None:
    """Join a multi-process JAX run (`jax.distributed`), failing fast when a process dies.

    Use it instead of `keras.distribution.initialize` (same first three
    arguments; it also seeds every process alike). Keras's version keeps
    JAX's defaults, under which a process that raises waits up to 5 minutes
    in a shutdown barrier while the others wait for it in a collective. Here
    the other processes end with an error once a lost process's heartbeat is
    missed for `heartbeat_timeout_seconds`. With `exit_on_error=True` (opt-in:
    it replaces the process-wide `sys.excepthook` and `threading.excepthook`)
    an uncaught exception also prints its traceback and ends the process at
    once, so its peers stop within that timeout instead of JAX's minutes.

    After it, set a distribution over all processes' devices (e.g.
    `keras.distribution.DataParallel()`) and train on a `SparseDataset` or
    SciPy data: each process reads only its own rows of every global batch.

    Args:
        coordinator_address: `"host:port"` of process 0, the same on every process.
        num_processes: Number of processes, at least 1.
        process_id: This process's number, in `[0, num_processes)`.
        heartbeat_timeout_seconds: Seconds without a heartbeat after which a
            process counts as dead and the others stop.
        shutdown_timeout_seconds: Seconds a process waits for the others when it ends.
        exit_on_error: Whether an uncaught exception ends the process at once
            (installs process-wide exception hooks; off by default).

    Raises:
        RuntimeError: on the TensorFlow backend (use
            `tf.distribute.MultiWorkerMirroredStrategy`, see `enable_sparse`) and on torch.

    Examples:
        >>> import keras, keras_sparse  # doctest: +SKIP
        >>> keras_sparse.distribute.initialize("10.0.0.1:1234", 2, 0)  # doctest: +SKIP
        >>> keras.distribution.set_distribution(keras.distribution.DataParallel())  # doctest: +SKIP
    """
    if B.NAME != "jax":
        raise RuntimeError(
            "keras_sparse.distribute.initialize starts a multi-process JAX run, but Keras is "
            f"using {B.NAME!r}. On TensorFlow, use tf.distribute.MultiWorkerMirroredStrategy "
            "with keras_sparse.distribute.enable_sparse and distribute_dataset (Keras has no "
            "multi-process training for torch)."
        )
    if not isinstance(coordinator_address, str) or ":" not in coordinator_address:
        raise ValueError(
            "`coordinator_address` must be a 'host:port' string such as 'localhost:1234', "
            f"got {coordinator_address!r}."
        )
    num_processes = _validation.check_int(num_processes, "num_processes")
    process_id = _validation.check_int(process_id, "process_id", minimum=0)
    if process_id >= num_processes:
        raise ValueError(
            f"`process_id` must be in [0, num_processes) = [0, {num_processes}), got {process_id}."
        )
    from keras_sparse.distribute import _jax

    _jax._start(
        coordinator_address,
        num_processes,
        process_id,
        _validation.check_int(heartbeat_timeout_seconds, "heartbeat_timeout_seconds"),
        _validation.check_int(shutdown_timeout_seconds, "shutdown_timeout_seconds"),
        _validation.check_bool(exit_on_error, "exit_on_error"),
    )


def install() -> bool:
    """Make the changes to Keras that sparse batches need under `keras.distribution` (JAX)."""
    if B.NAME != "jax":
        return True
    from keras_sparse.distribute import _jax

    return _jax.install()
