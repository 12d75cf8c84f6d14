"""`export_saved_model`: a SavedModel whose serving functions accept sparse inputs.

`keras.Model.export()` writes a dense `TensorSpec` for a `sparse=True` input, so
the exported model cannot be called with a `tf.SparseTensor`. Here every sparse
input keeps a `tf.SparseTensorSpec`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import keras

from keras_sparse import _ops, _validation
from keras_sparse import backend as B

if B.NAME == "tensorflow":
    import tensorflow as tf

__all__ = ["export_saved_model"]


def _sparse_part_specs(name: str, spec: tf.SparseTensorSpec) -> dict[str, tf.TensorSpec]:
    """The plain-tensor specs a signature takes for the sparse input `name`."""
    parts = {
        "indices": ([None, 2], tf.int64),
        "values": ([None], spec.dtype),
        "dense_shape": ([2], tf.int64),
    }
    return {
        f"{name}_{part}": tf.TensorSpec(shape, dtype, name=f"{name}_{part}")
        for part, (shape, dtype) in parts.items()
    }


def _input_specs(model: keras.Model) -> dict[str, tuple[Any, int]]:
    """Name -> (spec, id of the input tensor), in the model's input order."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"`model` ({type(model).__name__}) has no symbolic inputs to export. Build it "
            "from keras.Input(...) (functional or Sequential with an Input) before exporting."
        )
    specs: dict[str, tuple[Any, int]] = {}
    for position, tensor in enumerate(inputs):
        name = re.sub(r"\W", "_", tensor.name or f"input_{position}")
        if not re.match(r"[A-Za-z]", name):
            name = f"input_{name}"
        while name in specs:
            name = f"{name}_{position}"
        dtype = tf.as_dtype(tensor.dtype)
        if getattr(tensor, "sparse", False):
            specs[name] = (tf.SparseTensorSpec(tensor.shape, dtype), id(tensor))
        else:
            specs[name] = (tf.TensorSpec(tensor.shape, dtype, name=name), id(tensor))
    return specs


def _output_names(model: keras.Model, count: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count or count == 1:
        return ["scores"] if count == 1 else [f"output_{i}" for i in range(count)]
    return [re.sub(r"\W", "_", name) for name in names]


def export_saved_model(
    model: keras.Model, path: str | os.PathLike, *, top_k: int | None = None
) -> None:
    """Write `model` as a TensorFlow SavedModel that takes sparse inputs as sparse.

    The SavedModel has two ways in:

    * `loaded.serve(inputs)` (Python, `tf.saved_model.load`): `inputs` is a
      dict from input name to a `tf.SparseTensor` (for each `sparse=True`
      input, signature `tf.SparseTensorSpec`) or a dense tensor (`TensorSpec`).
    * `loaded.signatures["serving_default"]` (TF Serving, `saved_model_cli`):
      signatures carry plain tensors only, so each sparse input `name` arrives as
      the three tensors `name_indices` (int64, (nnz, 2)), `name_values` and
      `name_dense_shape` (int64, (2,)); dense inputs keep their name.

    Both return a dict: `{"scores": ...}` for a one-output model (or one entry
    per output name), or, with `top_k`, `{"top_scores": (batch, k),
    "top_indices": (batch, k) int32}`, the best k items per row as
    `keras_sparse.layers.TopK` returns them (items masked to -inf, e.g. by
    `ExcludeSeen`, come last).

    Args:
        model: A built functional or `Sequential` Keras model.
        path: Directory to write the SavedModel to.
        top_k: If set, serve the top k items of the model's (single) output
            instead of all scores.

    Examples:
        >>> import tempfile, keras, numpy as np, scipy.sparse as sp, tensorflow as tf
        >>> import keras_sparse as ks
        >>> inp = keras.Input((30,), sparse=True, name="items")
        >>> model = keras.Model(inp, keras.layers.Dense(30)(ks.layers.SparseDenseInput(4)(inp)))
        >>> path = tempfile.mkdtemp()
        >>> ks.export_saved_model(model, path, top_k=5)
        >>> loaded = tf.saved_model.load(path)
        >>> x = ks.to_sparse_tensor(sp.random(2, 30, density=0.2, format="csr", random_state=0))
        >>> tuple(loaded.serve({"items": tf.cast(x, tf.float32)})["top_indices"].shape)
        (2, 5)
    """
    B.require_tensorflow(
        "keras_sparse.export_saved_model (a TensorFlow SavedModel)",
        "On JAX or torch, save with model.save('model.keras'); to serve from TensorFlow, load that "
        "file in a process with KERAS_BACKEND=tensorflow and export it there.",
    )
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model, got {type(model).__name__}. Pass the model to export."
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a directory path (str or os.PathLike), got {path!r}.")
    top_k = _validation.check_int(top_k, "top_k", allow_none=True)
    specs = _input_specs(model)
    if top_k is not None and len(model.outputs) != 1:
        raise ValueError(
            f"`top_k` needs a model with one output (the item scores), but the model has "
            f"{len(model.outputs)}. Export a model that returns the scores only, or top_k=None."
        )
    names = _output_names(model, len(model.outputs))

    def run(inputs: dict[str, Any]) -> dict[str, tf.Tensor]:
        by_tensor = {tensor_id: inputs[name] for name, (_, tensor_id) in specs.items()}
        # Sequential has no `.input` until called; one input needs no structure.
        layout = model.inputs[0] if len(model.inputs) == 1 else model.input
        structured = keras.tree.map_structure(lambda t: by_tensor[id(t)], layout)
        outputs = model(structured, training=False)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if top_k is not None:
            values, indices, _ = _ops.top_k(outputs[0], top_k)
            return {"top_scores": values, "top_indices": indices}
        return dict(zip(names, outputs, strict=True))

    serve = tf.function(run, input_signature=[{name: spec for name, (spec, _) in specs.items()}])

    flat_signature = {}
    for name, (spec, _) in specs.items():
        if isinstance(spec, tf.SparseTensorSpec):
            flat_signature.update(_sparse_part_specs(name, spec))
        else:
            flat_signature[name] = spec

    def serve_flat(**flat: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = {}
        for name, (spec, _) in specs.items():
            if isinstance(spec, tf.SparseTensorSpec):
                parts = _sparse_part_specs(name, spec)
                inputs[name] = tf.SparseTensor(*(flat[part] for part in parts))
            else:
                inputs[name] = flat[name]
        return run(inputs)

    serving_default = tf.function(serve_flat).get_concrete_function(**flat_signature)

    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, os.fspath(path), signatures={"serving_default": serving_default})
