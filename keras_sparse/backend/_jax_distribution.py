"""Sparse batches under `keras.distribution` on JAX: split by rows, padded per device.

Keras's JAX trainer hands every leaf of a batch to
`jax.make_array_from_process_local_data` with the distribution's data layout,
`P(batch_axis, None, ...)`. A `BCOO` is a pytree of a rank-1 `data` and a
rank-2 `indices` array, so that layout does not fit it, and sharding its
entries evenly would not line them up with the rows each device holds.

Layout used here (the *device-aligned* BCOO): the global batch of
`rows_per_shard * num_shards` rows is cut into `num_shards` row blocks, one per
position of the batch mesh axis. The entries of block `g` fill slots
`[g * size, (g + 1) * size)` of `data` and `indices`, padded to the same
`size` on every shard (a power of two, `bucket_size` of the fullest shard), so
every device holds the same static shapes and exactly its own rows' entries.
`data` is sharded `P(batch_axis)` and `indices` `P(batch_axis, None)` on the
distribution's mesh, which places entry block `g` on the devices of row block
`g`. Padding slots sit at the out-of-range index `shape` with value 0, as in
`keras_sparse.backend.jax`, so the arrays are not sorted globally:
`indices_sorted=False`, `unique_indices=True` (stored entries are unique).

Several processes (`jax.distributed`): each process passes its own rows; the
per-shard size is agreed with one all-gather of an integer per batch. A
process's row blocks take the global row positions Keras gives its dense
arrays (its addressable blocks in increasing order), so sparse and dense parts
of a batch stay aligned.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import keras
import numpy as np
from jax.experimental import sparse as jsparse
from jax.sharding import NamedSharding, PartitionSpec

from keras_sparse.backend import _jax_bcoo


def _axis_size(mesh: Any, axis: Any) -> int:
    names = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([mesh.shape[name] for name in names]))


def _host_entries(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Stored entries of a `BCOO` on the host, row-major, duplicates summed, padding dropped."""
    indices, values, shape = _jax_bcoo.sparse_to_coo(x)
    if x.unique_indices and x.indices_sorted:
        return indices, values
    flat = np.ravel_multi_index(tuple(indices.T), shape) if indices.size else np.zeros(0, int)
    unique, inverse = np.unique(flat, return_inverse=True)
    summed = np.zeros(unique.shape[0], dtype=values.dtype)
    np.add.at(summed, inverse.reshape(-1), values)
    return np.stack(np.unravel_index(unique, shape), axis=1).astype(np.int64), summed


def _agreed_size(largest: int) -> int:
    """The padded entries per shard: the same on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        largest = int(np.max(multihost_utils.process_allgather(np.int64(largest))))
    return _jax_bcoo.bucket_size(largest)


def shard_sparse(x: Any, sharding: Any) -> Any:
    """A process-local `BCOO` batch as a global, device-aligned `BCOO` (see the module doc).

    Args:
        x: This process's batch, a `BCOO` whose first axis is the batch.
        sharding: The distribution's data layout for it, a `NamedSharding`
            whose first spec entry names the batch mesh axis.

    Returns:
        A `BCOO` over the global batch, its `data` and `indices` sharded by row block.

    Raises:
        ValueError: the batch's rows do not divide evenly among this process's devices.
    """
    mesh, spec = sharding.mesh, tuple(sharding.spec)
    axis = spec[0] if spec else None
    if axis is None:  # the batch axis is not sharded: every device holds the whole batch
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
    num_shards = _axis_size(mesh, axis)
    entry_sharding = NamedSharding(mesh, PartitionSpec(axis))
    index_sharding = NamedSharding(mesh, PartitionSpec(axis, None))
    shard_of = {
        device: index[0].start
        for device, index in entry_sharding.addressable_devices_indices_map((num_shards,)).items()
    }
    local = sorted(set(shard_of.values()))
    rows = int(x.shape[0])
    if rows % len(local):
        raise ValueError(
            f"A batch of {rows} rows cannot be split evenly across {len(local)} devices "
            f"(mesh axis {axis!r}). Use a batch size that is a multiple of {len(local)}, "
            "and a number of rows that is too, or drop the last partial batch "
            "(SparseDataset(..., batch_size=...) over a row count that divides, or fewer "
            "devices in keras.distribution.DataParallel(devices=...))."
        )
    per_shard = rows // len(local)
    shape = (per_shard * num_shards, *(int(d) for d in x.shape[1:]))
    indices, values = _host_entries(x)
    bounds = np.searchsorted(indices[:, 0], np.arange(len(local) + 1) * per_shard)
    size = _agreed_size(int(np.diff(bounds).max(initial=0)))
    padding = np.asarray(shape, dtype=np.int32)
    blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, shard in enumerate(local):
        part = slice(bounds[j], bounds[j + 1])
        count = part.stop - part.start
        idx = np.empty((size, len(shape)), dtype=np.int32)
        idx[:count] = indices[part]
        idx[:count, 0] += (shard - j) * per_shard  # local row -> global row
        idx[count:] = padding
        data = np.zeros(size, dtype=values.dtype)
        data[:count] = values[part]
        blocks[shard] = (data, idx)
    devices = list(shard_of)
    data = jax.make_array_from_single_device_arrays(
        (num_shards * size,),
        entry_sharding,
        [jax.device_put(blocks[shard_of[d]][0], d) for d in devices],
    )
    idx = jax.make_array_from_single_device_arrays(
        (num_shards * size, len(shape)),
        index_sharding,
        [jax.device_put(blocks[shard_of[d]][1], d) for d in devices],
    )
    return jsparse.BCOO((data, idx), shape=shape, indices_sorted=False, unique_indices=True)


def distribute(data: Any, distribution: Any) -> Any:
    """Place every leaf of a batch on the distribution's devices; sparse leaves by row block."""
    from keras.src.backend.jax import distribution_lib as jax_distribution_lib

    def place(leaf: Any) -> Any:
        if leaf is None:
            return None
        layout = distribution.get_data_layout(leaf.shape).backend_layout
        if isinstance(leaf, jsparse.BCOO):
            return shard_sparse(leaf, layout)
        return jax_distribution_lib.distribute_data_input(leaf, layout, distribution.batch_dim_name)

    return jax.tree_util.tree_map(
        place, data, is_leaf=lambda v: v is None or isinstance(v, jsparse.BCOO)
    )


def has_sparse(data: Any) -> bool:
    """Whether any leaf of `data` is a `BCOO`."""
    leaves = jax.tree_util.tree_leaves(data, is_leaf=lambda v: isinstance(v, jsparse.BCOO))
    return any(isinstance(leaf, jsparse.BCOO) for leaf in leaves)


def place_batch(data: Any) -> Any:
    """`data` placed under the active distribution if its rows split evenly, else as it is.

    For loops of our own (`predict_top_k`, `evaluate_top_k`) whose last batch
    may be partial: such a batch runs unsplit, under the variables' layout.
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        return data
    if getattr(distribution, "_is_multi_process", False):
        raise RuntimeError(
            "predict_top_k and evaluate_top_k gather their results in one process, but a "
            "multi-process keras.distribution is set. Save the trained model (model.save) and "
            "run them in a single-process run on the loaded model, or use model.evaluate, "
            "which runs across processes."
        )
    devices = _axis_size(distribution.device_mesh.backend_mesh, distribution.batch_dim_name)
    leaves = [
        leaf
        for leaf in jax.tree_util.tree_leaves(data, is_leaf=lambda v: isinstance(v, jsparse.BCOO))
        if hasattr(leaf, "shape")
    ]
    if not leaves or any(int(leaf.shape[0]) % devices for leaf in leaves):
        return data
    return distribute(data, distribution)


def _devices_of(variable: Any) -> set:
    return set(variable.value.sharding.device_set)


def _fullmatch_any(pattern: str, paths: list[str]) -> bool:
    return any(pattern == path or re.fullmatch(pattern, path) for path in paths)


def check_model(model: Any) -> None:
    """Refuse a model that cannot run under the active distribution, saying how to fix it.

    Raises:
        ValueError: the model's variables were created before the distribution
            was set (they live on other devices), or a `ModelParallel`
            layout map has a key that matches none of the model's variables.
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        return
    mesh_devices = set(distribution.device_mesh.backend_mesh.devices.flat)
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    outside = [v.path for v in variables if _devices_of(v) != mesh_devices]
    if outside:
        raise ValueError(
            f"The model's variables ({outside[:3]}{' ...' if len(outside) > 3 else ''}) were "
            "created before keras.distribution.set_distribution(...) was called, so they live "
            "outside the distribution's devices. Set the distribution first and then create "
            "(or load) and compile the model, or create it inside `with distribution.scope():`."
        )
    layout_map = getattr(distribution, "_layout_map", None)
    if layout_map is None:
        return
    paths = [v.path for v in variables]
    # Keras full-matches a key against variable paths and, for output layouts,
    # against "<call path>/output" (a regex such as ".*dense.*output" included).
    # The call path is known only while the model runs, so any key written as
    # ".../output" passes, as do keys matching a layer's path or name so written.
    outputs = [
        f"{prefix}{getattr(layer, attr)}/output"
        for layer in model._flatten_layers()
        for attr in ("path", "name")
        for prefix in ("", f"{model.name}/")
        if hasattr(layer, attr)
    ]
    for key in layout_map:
        if key.endswith("/output") or _fullmatch_any(key, paths + outputs):
            continue
        tables = [v.path for v in model.variables if v.path.endswith("/kernel")]
        raise ValueError(
            f"The LayoutMap key {key!r} matches none of the model's variables. Keys are "
            "regular expressions that must match a whole variable path (re.fullmatch), "
            f"such as {tables[:3] or paths[:3]}; to shard a SparseDenseInput table named "
            "'embed', use layout_map['.*embed/kernel'] = ('model', None). Fix the key or "
            "remove it."
        )


def seed_processes() -> None:
    """Give every process of a `jax.distributed` run Keras's one seed, where Keras can."""
    from keras.src.backend.jax import distribution_lib as jax_distribution_lib

    if hasattr(jax_distribution_lib, "initialize_rng"):
        jax_distribution_lib.initialize_rng()


def py_dataset_adapter(dataset: Any, class_weight: Any, shuffle: bool) -> Any:
    """Keras's own adapter for a `keras.utils.PyDataset` (private in Keras 3.10-3.15)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    return PyDatasetAdapter(dataset, class_weight=class_weight, shuffle=shuffle)
