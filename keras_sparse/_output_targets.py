"""How a `SparseDenseOutput` meets its target in `fit`.

Keras hands a layer its inputs and the loss its target, never the layer its
target. So in a training step the output layer scores nothing itself: it
defers, and the loss side, which holds the target, scores what the compiled
loss reads.

1. `train_step` (wrapped once through `_compat`, see `install`) opens a
   *step* for a model that holds a `SparseDenseOutput` and runs Keras's own
   step inside it. Models without one run Keras's step as it is.
2. In a step, each `SparseDenseOutput` called with `training=True` returns a
   stand-in for its scores: a copy of its input, or (when the model has
   compiled metrics, which read the scores) the full scores without gradient.
   It records its input, its weights as the step sees them and its sampled
   negatives (`Step.defer`).
3. The model's `compute_loss`, Keras's public override point, is shadowed on
   the model (`shadow_compute_loss`): it pairs each stand-in in `y_pred` with
   its target in `y` and its compiled loss, by Keras's own structure of
   outputs (one output; a list by position; a dict by name), replaces both by
   what that loss reads (`SparseDenseOutput._loss_inputs`), then runs the
   model's own `compute_loss` (a subclass's override included).
4. A stand-in that does not reach `y_pred` unchanged (another layer used it)
   raises: its values are not scores.

So the target reaches the scoring explicitly, through `compute_loss(y=...)`,
for functional, Sequential, subclassed and multi-output models alike, and
with `add_loss` terms, which Keras's `compute_loss` adds as usual. Outside a
step (predict, evaluate, `model(x)`, a custom loop) the layer returns dense
scores. The step lives in a thread-local, so each `tf.distribute` replica
sees its own.

Known to work on Keras 3.10-3.15 (`train_step(data)` on TensorFlow and torch,
`train_step(state, data)` on JAX; `Model.compute_loss(x, y, y_pred,
sample_weight, training)`; `model.loss`, `model.output_names`).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import types
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import keras

from keras_sparse import _compat
from keras_sparse import backend as B

_LOCAL = threading.local()
_MARK = "_keras_sparse_output_layer"  # class attribute of SparseDenseOutput
_SHADOW = "_keras_sparse_compute_loss"
_HAS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> holds one


class Deferred(NamedTuple):
    """What a `SparseDenseOutput` recorded in a step, for `compute_loss` to score."""

    layer: Any
    stand_in: Any  # what the layer returned
    h: Any  # its input, (batch, ..., d) in the layer's compute dtype
    state: Any  # [(variable, value)] the step read them as (JAX), or None
    sample: Any  # (items, log_expected) sampled negatives, or None


class Step:
    """One training step of a model that holds `SparseDenseOutput` layers."""

    def __init__(self, needs_scores: bool) -> None:
        self.needs_scores = needs_scores
        self.deferred: dict[int, Deferred] = {}

    def defer(self, entry: Deferred) -> Any:
        self.deferred[id(entry.stand_in)] = entry
        return entry.stand_in

    def substitute(self, model: Any, y: Any, y_pred: Any) -> tuple[Any, Any]:
        """`(y, y_pred)` with each stand-in and its target replaced by what its loss reads."""
        pending, self.deferred = self.deferred, {}
        if not pending:
            return y, y_pred
        for slot in _slots(model, y, y_pred):
            entry = pending.pop(id(slot.prediction), None)
            if entry is None:
                continue
            target, prediction = entry.layer._loss_inputs(entry, slot.target, slot.loss)
            y, y_pred = slot.put(y, target), slot.put(y_pred, prediction, pred=True)
        if pending:
            layer = next(iter(pending.values())).layer
            raise ValueError(
                f"SparseDenseOutput {layer.name!r} was called in fit, but its output is not "
                "one of the model's outputs as it returned it: a layer or an op used it. In "
                "fit its output stands for scores it has not computed yet, so return it "
                "unchanged from the model (as the output, or one entry of a list or dict of "
                "outputs), or put the layer after it into the loss instead."
            )
        return y, y_pred


class _Slot(NamedTuple):
    """One output of `y_pred`, its target in `y` and its compiled loss."""

    key: Any  # None for a single output, else the dict key or list index in y_pred
    y_key: Any  # where its target sits in y (None: y itself)
    prediction: Any
    target: Any
    loss: Any

    def put(self, tree: Any, value: Any, pred: bool = False) -> Any:
        key = self.key if pred else self.y_key
        if key is None:
            return value
        if isinstance(tree, dict):
            return {**tree, key: value}
        items = list(tree)
        items[key] = value
        return type(tree)(items) if isinstance(tree, tuple) else items


def _pick(tree: Any, key: Any, position: int, names: list) -> tuple[Any, Any]:
    """`(where, value)` of one output's entry in `y` or in the compiled loss."""
    if isinstance(tree, dict):
        name = key if key in tree else (names[position] if position < len(names) else None)
        return name, tree.get(name)
    if isinstance(tree, (list, tuple)) and not B.is_sparse(tree):
        if isinstance(key, str) and key in names:
            position = names.index(key)
        return position, tree[position] if position < len(tree) else None
    return None, tree


def _slots(model: Any, y: Any, y_pred: Any) -> list[_Slot]:
    """Each output of `y_pred` with its target and loss, as Keras's compiled loss pairs them."""
    loss = getattr(model, "loss", None)
    names = list(getattr(model, "output_names", None) or [])
    if isinstance(y_pred, dict):
        outputs = list(y_pred.items())
    elif isinstance(y_pred, (list, tuple)) and not B.is_sparse(y_pred):
        outputs = list(enumerate(y_pred))
    else:
        if isinstance(y, (list, tuple)) and len(y) == 1 and not B.is_sparse(y):
            return [_Slot(None, 0, y_pred, y[0], _single(loss))]
        return [_Slot(None, None, y_pred, y, _single(loss))]
    slots = []
    for position, (key, prediction) in enumerate(outputs):
        y_key, target = _pick(y, key, position, names)
        _, own_loss = _pick(loss, key, position, names)
        slots.append(_Slot(key, y_key, prediction, target, own_loss))
    return slots


def _single(loss: Any) -> Any:
    flat = loss if isinstance(loss, (list, tuple)) else [loss]
    if isinstance(loss, dict):
        flat = list(loss.values())
    return flat[0] if len(flat) == 1 else loss


def current() -> Step | None:
    """The training step this thread is in, else None."""
    return getattr(_LOCAL, "step", None)


def resolve_loss(loss: Any) -> Any:
    """A loss given by name as Keras resolves it (None for an unknown name); others as they are."""
    if not isinstance(loss, str):
        return loss
    try:
        return keras.losses.get(loss)
    except ValueError:
        return None


def loss_kind(loss: Any) -> str | None:
    """The kind of a keras_sparse masked loss, else None.

    `"pointwise"`, `"bce"` (from logits), `"bce_probabilities"` or `"nll"`.
    """
    from keras_sparse import losses

    loss = resolve_loss(loss)
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


class LabelLoss(NamedTuple):
    """A cross-entropy over integer labels: Keras's `SparseCategoricalCrossentropy` or ours."""

    name: str
    from_logits: bool
    ignore_class: int | None


def label_loss(loss: Any) -> LabelLoss | None:
    """How `loss` reads integer labels, or None for a loss that does not."""
    from keras_sparse import losses

    loss = resolve_loss(loss)
    if isinstance(loss, losses.SparseMultinomialNLL):
        return LabelLoss(loss.name, True, loss.ignore_class)
    if loss is losses.sparse_multinomial_nll:
        return LabelLoss("sparse_multinomial_nll", True, None)
    if isinstance(loss, keras.losses.SparseCategoricalCrossentropy):
        config = loss.get_config()
        return LabelLoss(loss.name, bool(config["from_logits"]), config.get("ignore_class"))
    if loss is keras.losses.sparse_categorical_crossentropy:
        return LabelLoss("sparse_categorical_crossentropy", False, None)
    return None


def loss_name(loss: Any) -> str:
    """A name of `loss` for messages."""
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or repr(loss)


def output_layer(model: Any) -> Any:
    """The single output layer of a functional / Sequential model, else None."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    outputs = keras.tree.flatten(outputs)
    if len(outputs) != 1:
        return None
    return _compat.producing_layer(outputs[0])


def is_output_layer(layer: Any) -> bool:
    """Whether `layer` is a `SparseDenseOutput` (without importing the layers package)."""
    return bool(getattr(layer, _MARK, False))


def has_output_layers(model: Any) -> bool:
    """Whether `model` holds a `SparseDenseOutput` at any depth (asked once per built model).

    Kept beside the model, not on it: every model's `train_step` lookup asks.
    """
    found = _HAS.get(model)
    if found is None:
        found = any(is_output_layer(layer) for layer in _compat.sublayers(model))
        if getattr(model, "built", False):
            _HAS[model] = found
    return found


@contextlib.contextmanager
def training_step(model: Any) -> Iterator[Step]:
    """Open the step of one `train_step` of `model` (see the module doc)."""
    previous = current()
    _LOCAL.step = Step(_compat.has_compiled_metrics(model))
    try:
        yield _LOCAL.step
    finally:
        _LOCAL.step = previous


def shadow_compute_loss(model: Any) -> None:
    """Give `model` (once) a `compute_loss` that scores its stand-ins, then runs its own.

    An attribute of this model only: it calls the class's `compute_loss`
    (Keras's, or a subclass's override), so nothing changes outside a step.
    """
    if _SHADOW in vars(model):
        return
    own = type(model).compute_loss
    takes_training = "training" in inspect.signature(own).parameters

    def compute_loss(
        x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training=True
    ) -> Any:
        step = current()
        if step is not None:
            y, y_pred = step.substitute(model, y, y_pred)
        if takes_training:
            return own(model, x, y, y_pred, sample_weight, training=training)
        return own(model, x, y, y_pred, sample_weight)

    object.__setattr__(model, "compute_loss", compute_loss)
    object.__setattr__(model, _SHADOW, True)


def warn_dense_once(layer: Any, message: str) -> None:
    """Warn once per layer that its training step computes dense scores."""
    B.warn_once(layer, "dense_scores", message, stacklevel=3)


def uses_our_step(model: Any) -> bool:
    """Whether `model`'s `train_step` needs ours.

    It does when the model holds a `SparseDenseOutput`, or when its backend's
    step acts on its optimizer (`LazyAdam` on JAX and torch).
    """
    return has_output_layers(model) or B.takes_train_step(model)


def install() -> bool:
    """Wrap `keras.Model.train_step` once (through `_compat`), for the models that use it.

    Only a model for which `uses_our_step` holds sees the wrapper; every other
    model's `train_step` is Keras's own, bound, with nothing of ours in its
    step. For a model that holds a `SparseDenseOutput`, the wrapper opens the
    step and shadows `compute_loss` (above); its step then runs through
    `backend.train_step` (which on JAX and torch makes `LazyAdam` updates
    row-sparse).
    """

    def make(original: Any) -> Any:
        def train_step(self: Any, *args: Any) -> Any:
            step = types.MethodType(original, self)
            if not has_output_layers(self):
                return B.train_step(self, step, args)
            shadow_compute_loss(self)
            with training_step(self):
                return B.train_step(self, step, args)

        return train_step

    return _compat.replace(
        "keras.Model.train_step",
        make,
        feature="SparseDenseOutput scoring only the target's entries in fit, and LazyAdam's "
        "row updates on JAX and torch",
        check=_compat.takes(*(("self", "state", "data") if B.NAME == "jax" else ("self", "data"))),
        only_where=uses_our_step,
    )
