"""`tf.distribute` with sparse inputs and targets: `enable_sparse` and `distribute_dataset`.

Keras builds a model that lives under a `tf.distribute` strategy
*symbolically* before its first step, from the cross-replica mean of a first
batch. For a `tf.SparseTensor` that mean fails (`'SparseTensor' object has no
attribute 'device'`), and the placeholders it builds are dense, so losses see
a dense `y_true` there. `enable_sparse(model)` replaces that one build step,
on that one model, by a sparse-aware one; nothing in Keras is patched
globally. `distribute_dataset` feeds a `SparseDataset` to a strategy shard by
shard, one shard per worker.
"""

from __future__ import annotations

import types
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp

from keras_sparse import _compat
from keras_sparse import backend as B
from keras_sparse.data import SparseDataset

if B.NAME == "tensorflow":
    import tensorflow as tf

_ON_JAX = (
    "On JAX, scale out with keras.distribution (DataParallel / ModelParallel) instead; "
    "Keras has no multi-device training for torch."
)

__all__ = ["SUPPORTED_KERAS", "distribute_dataset", "enable_sparse"]

#: Keras versions (major, minor), both ends included, whose private build step
#: `enable_sparse` knows how to replace: the range CI tests.
SUPPORTED_KERAS = _compat.TESTED_KERAS

_MARK = "_keras_sparse_distribute"


def _check_keras_version() -> None:
    low, high = SUPPORTED_KERAS
    version = _compat.keras_version()
    if not low <= version <= high:
        raise RuntimeError(
            f"keras_sparse.distribute.enable_sparse supports Keras {low[0]}.{low[1]} to "
            f"{high[0]}.{high[1]}, but Keras {keras.version()} is installed. It replaces a "
            "private Keras build step whose shape may differ in this version; install a "
            f"supported Keras (e.g. pip install 'keras>={low[0]}.{low[1]},"
            f"<{high[0]}.{high[1] + 1}') or upgrade keras_sparse."
        )
    trainer = keras.Model
    for name in ("_maybe_symbolic_build", "_compute_loss", "_post_build"):
        if not hasattr(trainer, name):  # pragma: no cover - only on a changed Keras
            raise RuntimeError(
                f"Keras {keras.version()} has no `Model.{name}`, which "
                "keras_sparse.distribute.enable_sparse relies on; please report this."
            )


def _symbolic(value: Any) -> Any:
    """A `KerasTensor` with the spec of one replica's batch (batch size left open)."""
    if value is None:
        return None
    if isinstance(value, tf.distribute.DistributedValues):
        value = value.values[0]
    sparse = B.is_sparse(value) or sp.issparse(value)
    if not sparse and not (hasattr(value, "shape") and hasattr(value, "dtype")):
        value = np.asarray(value)
    shape = tuple(value.shape)
    shape = (None,) + tuple(shape[1:]) if shape else shape
    dtype = value.dtype.name if hasattr(value.dtype, "name") else str(value.dtype)
    return keras.KerasTensor(shape, dtype=dtype, sparse=sparse)


def _first_batch(iterator: Any) -> Any:
    for *_, data in iterator:  # (step, data) to Keras 3.10, (begin, end, data) after
        return data[0] if isinstance(data, (list, tuple)) else next(data)
    return None


def _sparse_symbolic_build(
    model: keras.Model, iterator: Any = None, data_batch: Any = None
) -> None:
    """Build model, compiled loss/metrics and optimizer from sparse-aware specs."""
    _compat.symbolic_build(
        model,
        lambda: _first_batch(iterator) if data_batch is None else data_batch,
        _symbolic,
    )


def _multi_worker(strategy: Any) -> bool:
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and _compat.in_multi_worker_mode(strategy)


def _one_element_logs(step: Any) -> Any:
    """Wrap a train/test step so its scalar logs have shape (1,) under multi-worker.

    Keras reduces step logs across workers with `reduce("MEAN", axis=0)`, which
    fails on the scalars every metric returns; a (1,) value reduces to the mean
    over replicas. The epoch logs are read from the metric variables themselves,
    so `fit`'s history holds exact global values either way.
    """

    def wrapped(data: Any) -> Any:
        logs = step(data)
        if not _multi_worker(tf.distribute.get_strategy()):
            return logs
        return keras.tree.map_structure(
            lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v, logs
        )

    return wrapped


def enable_sparse(model: keras.Model) -> keras.Model:
    """Let `model` run `fit`/`evaluate`/`predict` on sparse data under a strategy.

    Call it once on a model created inside `strategy.scope()`, before `fit`.
    It replaces, on this model only, the Keras step that builds a distributed
    model from a cross-replica mean of the first batch (which fails for a
    `tf.SparseTensor`) by one that builds from per-replica specs and keeps
    sparse inputs and targets sparse. Models without a strategy, and every other
    model, are unaffected. Under `MultiWorkerMirroredStrategy` it also gives
    the per-step logs a shape Keras can reduce across workers (Keras 3.15 fails
    there on any scalar metric). Raises `RuntimeError` on a Keras version
    outside `SUPPORTED_KERAS` rather than guessing.

    Args:
        model: A compiled or uncompiled `keras.Model`.

    Returns:
        The same model, for chaining.

    Examples:
        >>> import keras, tensorflow as tf
        >>> import keras_sparse as ks
        >>> strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        >>> with strategy.scope():
        ...     model = keras.Sequential([keras.Input((30,), sparse=True),
        ...                               ks.layers.SparseDenseInput(4)])
        ...     model.compile(optimizer="adam", loss=ks.losses.SparseMeanSquaredError())
        >>> model = ks.distribute.enable_sparse(model)
    """
    B.require_tensorflow("keras_sparse.distribute.enable_sparse (tf.distribute)", _ON_JAX)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model, got {type(model).__name__}. Build the model "
            "first, then pass it to enable_sparse."
        )
    _check_keras_version()
    if not getattr(model, _MARK, False):
        # object.__setattr__: an instance attribute, kept out of Keras's layer tracking.
        object.__setattr__(
            model, "_maybe_symbolic_build", types.MethodType(_sparse_symbolic_build, model)
        )
        object.__setattr__(model, "train_step", _one_element_logs(model.train_step))
        object.__setattr__(model, "test_step", _one_element_logs(model.test_step))
        object.__setattr__(model, _MARK, True)
    return model


def _tf_spec(value: Any) -> tf.TypeSpec:
    if B.is_sparse(value):
        return tf.SparseTensorSpec(shape=[None] + list(value.shape[1:]), dtype=value.dtype)
    return tf.TensorSpec(shape=[None] + list(value.shape[1:]), dtype=value.dtype)


def _as_tf_dataset(dataset: SparseDataset, pieces: int) -> tf.data.Dataset:
    """Each batch of `dataset`, split into `pieces` near-equal consecutive parts.

    One pass per epoch. Splitting every batch the same way Keras splits a
    global batch among replicas keeps per-replica batches even, so the replicas
    together compute what one device computes on the whole batch.
    """
    signature = tf.nest.map_structure(_tf_spec, dataset[0])

    def batches():
        for index in range(len(dataset)):
            for part in np.array_split(dataset.batch_rows(index), pieces):
                yield dataset.batch_of_rows(part)
        dataset.on_epoch_end()

    return tf.data.Dataset.from_generator(batches, output_signature=signature)


def distribute_dataset(
    dataset: SparseDataset, strategy: tf.distribute.Strategy
) -> tf.distribute.DistributedDataset:
    """Feed a `SparseDataset` to `strategy`, each worker reading only its shard.

    `dataset.batch_size` is the global batch size, as in Keras. Each input
    pipeline (one per worker) reads only its shard, every
    `num_input_pipelines`-th row of the data (`SparseDataset.shard`), cuts
    the worker's part of each global batch from it and splits that evenly
    among the worker's replicas. All pipelines produce the same number of
    batches (a short shard ends with a smaller, possibly empty, batch), so no
    worker waits for another at the end of an epoch. Pass the result to `fit`,
    `evaluate` or `predict` like any dataset. On a single machine you can also
    pass the `SparseDataset` itself; this function is what multi-worker
    training needs.

    Args:
        dataset: The `keras_sparse.data.SparseDataset` to distribute.
        strategy: A `tf.distribute` strategy, e.g. `MirroredStrategy` or
            `MultiWorkerMirroredStrategy`.

    Returns:
        A distributed dataset for `model.fit` / `evaluate` / `predict`.

    Examples:
        >>> import numpy as np, scipy.sparse as sp, tensorflow as tf
        >>> import keras_sparse as ks
        >>> x = sp.random(64, 30, density=0.1, format="csr", random_state=0)
        >>> ds = ks.data.SparseDataset(x, np.ones((64, 1)), batch_size=16)
        >>> strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        >>> dist = ks.distribute.distribute_dataset(ds, strategy)
    """
    B.require_tensorflow("keras_sparse.distribute.distribute_dataset (tf.distribute)", _ON_JAX)
    if not isinstance(dataset, SparseDataset):
        raise TypeError(
            f"`dataset` must be a keras_sparse.data.SparseDataset, got "
            f"{type(dataset).__name__}. Wrap SciPy/NumPy data in SparseDataset(x, y, ...) first."
        )
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            f"`strategy` must be a tf.distribute.Strategy, got {type(strategy).__name__}. "
            "Pass e.g. tf.distribute.MirroredStrategy()."
        )
    replicas = strategy.num_replicas_in_sync
    if dataset.batch_size % replicas:
        raise ValueError(
            f"`dataset.batch_size` ({dataset.batch_size}) is the global batch size and must "
            f"divide evenly among the {replicas} replicas; use a multiple of {replicas}."
        )

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        pieces = context.num_replicas_in_sync // context.num_input_pipelines
        shard = dataset.shard(
            context.num_input_pipelines,
            context.input_pipeline_id,
            batch_size=context.get_per_replica_batch_size(dataset.batch_size) * pieces,
        )
        tf_dataset = _as_tf_dataset(shard, pieces)
        if pieces == 1:
            # One replica per pipeline: batches are steps, so Keras can show progress.
            # (With more, tf.distribute would count per-replica batches as steps.)
            tf_dataset = tf_dataset.apply(tf.data.experimental.assert_cardinality(len(shard)))
        return tf_dataset

    return strategy.distribute_datasets_from_function(dataset_fn)
