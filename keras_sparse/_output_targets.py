"""How `SparseDenseOutput` learns the target of a training step.

Keras gives a layer its inputs only, but an output layer that scores just the
target's stored entries must know those entries before the loss runs. One
wrapper around `keras.Model.train_step` (installed once by
`import keras_sparse`) unpacks the step's data and, for the duration of the
step only, publishes a `Plan` in a thread-local context:

- the model's output layers that are `SparseDenseOutput` (a functional or
  `Sequential` model whose single output is such a layer);
- the sparse target `y` of the step;
- which kind of loss was compiled (`pointwise`, `bce` or `nll`), read from
  `model.loss`, and whether any compiled metric needs the full scores.

The layer reads the plan in `call`. Without a plan (predict, evaluate,
`model(x)`, a dense target, another loss) it computes ordinary dense scores.
Trace-time only: the wrapper costs nothing per step once a step is compiled.
Under `tf.distribute` each replica runs `train_step` in its own thread, so
each replica sees its own part of the batch.

Known to work on Keras 3.10-3.15 (the step signatures `train_step(data)` on
TensorFlow and `train_step(state, data)` on JAX; `model.loss`,
`model._compile_metrics`).
"""

from __future__ import annotations

import contextlib
import threading
import types
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import keras

from keras_sparse import _compat
from keras_sparse import backend as B

_LOCAL = threading.local()
_MARK = "_keras_sparse_output_layer"  # class attribute of SparseDenseOutput
# Metrics that read only the target's stored entries (no full scores needed).
ENTRY_METRICS = ("SparseRootMeanSquaredError",)


class Plan(NamedTuple):
    """What one training step tells the output layer."""

    layer_id: int  # id() of the SparseDenseOutput that is the model's output
    target: Any  # the step's sparse target
    loss_kind: str | None  # "pointwise", "bce", "bce_probabilities", "nll", or None
    loss_name: str  # for messages
    needs_scores: bool  # a compiled metric ranks or reads every score


class _Step(NamedTuple):
    plan: Plan | None
    sparse_target: bool


def loss_kind(loss: Any) -> str | None:
    """The kind of a keras_sparse masked loss, else None.

    `"pointwise"`, `"bce"` (from logits), `"bce_probabilities"` or `"nll"`.
    """
    from keras_sparse import losses

    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except ValueError:
            return None
    if isinstance(loss, losses.SparseMultinomialNLL) or loss is losses.sparse_multinomial_nll:
        return "nll"
    if isinstance(loss, losses.SparseBinaryCrossentropy):
        return "bce" if loss.from_logits else "bce_probabilities"
    if loss is losses.sparse_binary_crossentropy:
        return "bce_probabilities"
    pointwise = (losses.sparse_mse, losses.sparse_mae, losses.sparse_huber)
    if isinstance(loss, losses.MaskedLoss) or any(loss is fn for fn in pointwise):
        return "pointwise"
    return None


def _loss_name(loss: Any) -> str:
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or repr(loss)


def _needs_scores(model: Any) -> bool:
    compiled = getattr(model, "_compile_metrics", None)
    if compiled is None:
        return False
    names = []
    for attr in ("_user_metrics", "_user_weighted_metrics"):
        for metric in keras.tree.flatten(getattr(compiled, attr, None) or []):
            if metric is None:  # an output without metrics
                continue
            if isinstance(metric, str):
                try:
                    metric = keras.metrics.get(metric)
                except ValueError:
                    return True
            names.append(type(metric).__name__)
    return any(name not in ENTRY_METRICS for name in names)


def output_layer(model: Any) -> Any:
    """The single output layer of a functional / Sequential model, else None."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    outputs = keras.tree.flatten(outputs)
    if len(outputs) != 1:
        return None
    history = getattr(outputs[0], "_keras_history", None)
    return None if history is None else history[0]


def is_output_layer(layer: Any) -> bool:
    """Whether `layer` is a `SparseDenseOutput` (without importing the layers package)."""
    return bool(getattr(layer, _MARK, False))


def _step(model: Any, data: Any) -> _Step:
    _, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    if not B.is_sparse(y):
        return _Step(None, False)
    layer = output_layer(model)
    if layer is None or not is_output_layer(layer):
        return _Step(None, True)
    loss = keras.tree.flatten(model.loss)
    loss = loss[0] if len(loss) == 1 else None
    plan = Plan(id(layer), y, loss_kind(loss), _loss_name(loss), _needs_scores(model))
    return _Step(plan, True)


@contextlib.contextmanager
def training_step(model: Any, data: Any) -> Iterator[None]:
    """Publish the plan of one training step of `model` on `data` (see the module doc)."""
    previous = getattr(_LOCAL, "step", None)
    _LOCAL.step = _step(model, data)
    try:
        yield
    finally:
        _LOCAL.step = previous


def plan_for(layer: Any) -> Plan | None:
    """The plan of the current training step if `layer` is the model's output, else None.

    A `SparseDenseOutput` that sees a sparse target in a step where it is not
    the model's single output (a subclassed model, several outputs, a layer
    after it) warns once that it computes every score.
    """
    step = getattr(_LOCAL, "step", None)
    if step is None:
        return None
    if step.plan is not None and step.plan.layer_id == id(layer):
        return step.plan
    if step.sparse_target:
        warn_dense_once(
            layer,
            f"SparseDenseOutput {layer.name!r} computes every item's score in fit: it is not "
            "the single output of a functional or Sequential model, so it cannot see the "
            "sparse target. Make it the model's only output (keras.Model(inputs, "
            "SparseDenseOutput(...)(h))) to score only the target's entries.",
        )
    return None


def warn_dense_once(layer: Any, message: str) -> None:
    """Warn once per layer that its training step computes dense scores."""
    if not getattr(layer, "_keras_sparse_warned_dense", False):
        layer._keras_sparse_warned_dense = True
        warnings.warn(message, stacklevel=4)


def install() -> bool:
    """Wrap `keras.Model.train_step` once (through `_compat`).

    The wrapper publishes each step's plan, then runs Keras's step through
    `backend.train_step` (which on JAX makes `LazyAdam` updates row-sparse).
    """

    def make(original: Any) -> Any:
        def train_step(self: Any, *args: Any) -> Any:
            with training_step(self, args[-1]):
                return B.train_step(self, types.MethodType(original, self), args)

        return train_step

    return _compat.replace(
        "keras.Model.train_step",
        make,
        feature="SparseDenseOutput scoring only the target's entries in fit, and LazyAdam's "
        "row updates on JAX",
        check=_compat.takes(*(("self", "state", "data") if B.NAME == "jax" else ("self", "data"))),
    )
