"""TensorFlow feeding of `SparseDataset`: every batch cut inside `tf.data`, no Python per batch.

Keras feeds any `PyDataset` through `tf.data.Dataset.from_generator`: a Python
generator builds each batch (for a sparse input an eager `tf.SparseTensor`),
holding the interpreter lock while the training loop also needs it. Here the
data set's arrays (the CSR parts of each sparse leaf, each dense leaf) are
captured once by a `tf.data` pipeline whose `map` cuts batch `i` in C++: the
rows of the batch, their entries (a ragged range over `indptr`), a canonical
`tf.SparseTensor` with the static column count the model's `Input` declares,
dense rows by `gather`. Values are cast to the dtypes `ds[i]` has.

The rows of each batch come from the data set itself: `on_epoch_begin` writes
this epoch's rows (its shuffling order, its shard) and Keras's batch order
(`fit(shuffle=True)` draws it with Python's `random`, as Keras's own adapter
does) into two variables that the pipeline reads, so batches are exactly the
data set's `ds[i]`. The iterator is only read after `on_epoch_begin`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf


def _options() -> tf.data.Options:
    """No autotuning: the pipeline has nothing to tune (no parallel calls, no prefetch).

    With autotuning on, `tf.data` runs a model thread for every iterator, and
    destroying the iterator at the end of `fit` waits for that thread: about
    2.5 s in one `fit` of several on this 2-core machine (docs/benchmarks.md).
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


_OPTIONS = _options()


#: Elements written per step when a variable is filled (`_tensor`): 256 KB of int32.
_FILL_CHUNK = 1 << 16


def _variable(shape: tuple, dtype: Any) -> tf.Variable:
    """A zero CPU variable, to be written in place by `_write`."""
    with tf.device("/cpu:0"):
        return tf.Variable(tf.zeros(shape, dtype), trainable=False)


def _write(variable: tf.Variable, array: np.ndarray, offset: int = 0) -> None:
    """Write `array` into rows `offset:offset + len(array)` of `variable`, in chunks."""
    rows = max(1, _FILL_CHUNK // max(1, int(np.prod(array.shape[1:]))))
    with tf.device("/cpu:0"):
        for start in range(0, len(array), rows):
            stop = min(start + rows, len(array))
            where = tf.range(offset + start, offset + stop)
            variable.scatter_update(tf.IndexedSlices(array[start:stop], where))


def _tensor(array: np.ndarray) -> tf.Variable:
    """`array` in a CPU variable: one copy, which the pipeline reads by handle.

    A captured `tf.constant` costs twice its size, and `tf.data` copies it
    again into the pipeline's function; a variable's rows are gathered in place.
    `tf.Variable(array)` itself converts the whole array first, about twice
    its size for a moment (1.98x measured for 40 MB of int32), so the variable
    starts as zeros and is written in chunks of `_FILL_CHUNK` elements in
    place: 1.15x at the peak in the same measurement.
    """
    variable = _variable(array.shape, array.dtype)
    _write(variable, array)
    return variable


def _csr_tensors(csr: Any) -> tuple[tf.Variable, tf.Variable, tf.Variable]:
    """`(indptr, indices, data)` variables of `csr` in canonical form.

    A CSR with unsorted or duplicate entries is made canonical block by block
    (about `_FILL_CHUNK` entries each) as it is written, so that no canonical
    copy of the whole matrix exists beside the variables. The variables keep
    the stored entry count; duplicates summed leave an unread tail.
    """
    indptr = np.asarray(csr.indptr, np.int64)
    if csr.has_canonical_format:
        return _tensor(indptr), _tensor(csr.indices), _tensor(csr.data)
    indices = _variable((csr.nnz,), csr.indices.dtype)
    data = _variable((csr.nnz,), csr.data.dtype)
    canonical = np.zeros_like(indptr)
    rows, written, start = csr.shape[0], 0, 0
    while start < rows:
        stop = int(np.searchsorted(indptr, indptr[start] + _FILL_CHUNK, side="right")) - 1
        stop = min(max(stop, start + 1), rows)
        block = csr[start:stop].copy()  # never sort the caller's arrays in place
        block.sum_duplicates()
        _write(indices, block.indices, written)
        _write(data, block.data, written)
        canonical[start + 1 : stop + 1] = written + block.indptr[1:]
        written += block.nnz
        start = stop
    return _tensor(canonical), indices, data


def _capture(structure: Any, floatx: str) -> Any:
    """The leaves of a batch structure as captured tensors and the dtypes to cast them to."""
    if hasattr(structure, "indptr"):  # a CSR (SciPy), canonical or not
        return ("sparse", *_csr_tensors(structure), int(structure.shape[1]), floatx)
    if isinstance(structure, dict):
        return ("dict", {k: _capture(v, floatx) for k, v in structure.items()})
    if isinstance(structure, tuple):
        return ("tuple", tuple(_capture(v, floatx) for v in structure))
    array = np.asarray(structure)
    dtype = floatx if array.dtype.kind == "f" else array.dtype.name
    return ("dense", _tensor(array), dtype)


def _cut(leaf: Any, rows: tf.Tensor) -> Any:
    kind = leaf[0]
    if kind == "dict":
        return {k: _cut(v, rows) for k, v in leaf[1].items()}
    if kind == "tuple":
        return tuple(_cut(v, rows) for v in leaf[1])
    if kind == "dense":
        return tf.cast(tf.gather(leaf[1], rows), leaf[2])
    _, indptr, indices, data, width, dtype = leaf
    starts = tf.gather(indptr, rows)
    counts = tf.gather(indptr, rows + 1) - starts
    positions = tf.ragged.range(starts, starts + counts).flat_values
    row_ids = tf.repeat(tf.range(tf.size(rows, out_type=tf.int64)), counts)
    cols = tf.cast(tf.gather(indices, positions), tf.int64)
    values = tf.cast(tf.gather(data, positions), dtype)
    shape = tf.stack([tf.size(rows, out_type=tf.int64), tf.constant(width, tf.int64)])
    return tf.SparseTensor(tf.stack([row_ids, cols], axis=1), values, shape)


def pydataset_adapter(
    py_dataset: Any,
    structure: Any,
    epoch_rows: Callable[[], tuple[np.ndarray, np.ndarray]],
    shuffle: bool,
    class_weight: Any,
) -> Any | None:
    """A Keras data adapter that cuts `py_dataset`'s batches inside `tf.data`.

    None under a `tf.distribute` strategy, which keeps Keras's own adapter
    (see `keras_sparse.distribute`).

    Args:
        py_dataset: The data set (its `on_epoch_begin` / `on_epoch_end` run
            as with Keras's `PyDataset` adapter).
        structure: The batch structure with the whole data as leaves: canonical
            SciPy CSR matrices and NumPy arrays, in tuples and dicts.
        epoch_rows: Returns this epoch's `(rows, bounds)`: batch `i` holds rows
            `rows[bounds[i]:bounds[i + 1]]`.
        shuffle: Keras's batch-order shuffling (`fit(shuffle=True)`).
        class_weight: Passed to Keras's adapter.
    """
    import keras
    from keras.src.trainers.data_adapters.tf_dataset_adapter import TFDatasetAdapter

    if tf.distribute.has_strategy():
        return None

    leaves = _capture(structure, keras.backend.floatx())
    num_batches = len(py_dataset)
    rows, bounds = epoch_rows()  # Keras reads the data's spec before its first epoch
    rows_var = tf.Variable(rows, shape=[None], trainable=False)
    bounds_var = tf.Variable(bounds, trainable=False)
    order_var = tf.Variable(np.arange(num_batches, dtype=np.int64), trainable=False)

    def batch(i: tf.Tensor) -> Any:
        b = tf.gather(order_var, i)
        rows = rows_var[bounds_var[b] : bounds_var[b + 1]]
        return _cut(leaves, rows)

    # No prefetching: with `steps_per_epoch` Keras keeps one iterator across epochs, and a
    # prefetched batch would be cut before `on_epoch_begin` writes the next epoch's rows; it
    # also gained nothing measurable (2.35-2.75 s against 2.27-3.05 s an epoch).
    # Plain TensorFlow ops, no Python control flow: traced as written, without autograph.
    cut = tf.autograph.experimental.do_not_convert(batch)
    dataset = tf.data.Dataset.range(num_batches).map(cut).with_options(_OPTIONS)

    class SparseDatasetAdapter(TFDatasetAdapter):
        def on_epoch_begin(self) -> None:
            py_dataset.on_epoch_begin()
            rows, bounds = epoch_rows()
            order = list(range(num_batches))
            if shuffle:
                random.shuffle(order)
            rows_var.assign(rows)
            bounds_var.assign(bounds)
            order_var.assign(np.asarray(order, np.int64))

        def on_epoch_end(self) -> None:
            py_dataset.on_epoch_end()

    return SparseDatasetAdapter(dataset, class_weight=class_weight)
