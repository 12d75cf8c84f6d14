"""The one door through which keras_sparse changes Keras.

keras_sparse needs a few things Keras does not do by itself: SciPy matrices in
`model(x)`, the sparse target of a step handed to `SparseDenseOutput`, our
string identifiers in `compile`, sparse batches under `keras.distribution`,
and so on. Each such change is installed by `replace` or `add_entries`, which

- resolve the Keras attribute from its dotted path and record what they
  replaced (so `restore` can put it back), the feature it serves and the
  Keras versions the change is known to work on;
- never install twice (a second `import` or `install` is a no-op);
- when the attribute is missing or has another shape on this Keras, change
  nothing and warn once, naming the feature that is lost and the fix.

`scoped_value` sets a Keras flag for one block only. `patches()` lists every
change with its state; `check_keras_version()` warns once when this Keras
lies outside `TESTED_KERAS`, the range CI runs.

Only Keras, the standard library and the leaf `keras_sparse.backend` (for
its warn-once helper) are imported here, so every other module of the
package may use this one.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras

# The one warn-once helper; `keras_sparse.backend` is a leaf, so this makes no circle.
from keras_sparse.backend._once import warn_once

#: The lowest and the latest Keras (major, minor) that CI tests; both ends included.
TESTED_KERAS = ((3, 10), (3, 15))
#: The same range as it is written in messages and in `Patch.keras_versions`.
TESTED = f"{TESTED_KERAS[0][0]}.{TESTED_KERAS[0][1]}-{TESTED_KERAS[1][0]}.{TESTED_KERAS[1][1]}"
_PIN = (
    f"pip install 'keras>={TESTED_KERAS[0][0]}.{TESTED_KERAS[0][1]},"
    f"<{TESTED_KERAS[1][0]}.{TESTED_KERAS[1][1] + 1}'"
)
_ORIGINAL = "_keras_sparse_replaces"


@dataclass(frozen=True)
class Patch:
    """One change keras_sparse makes to Keras, as `keras_sparse.keras_patches()` lists it.

    Attributes:
        target: Dotted path of the Keras attribute changed, e.g.
            `"keras.Model.__call__"`.
        feature: What the change gives keras_sparse users.
        keras_versions: Keras versions it is known to work on, e.g. `"3.10-3.15"`.
        installed: Whether it is in place in this process.
        reason: Why it is not installed (empty when it is).
    """

    target: str
    feature: str
    keras_versions: str
    installed: bool
    reason: str = ""


_REGISTRY: dict[str, Patch] = {}
_RESTORE: dict[str, Callable[[], None]] = {}


def keras_version() -> tuple[int, int]:
    """The installed Keras as `(major, minor)`, e.g. `(3, 15)`."""
    major, minor = keras.version().split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def in_tested_range(version: tuple[int, int] | None = None) -> bool:
    """Whether `version` (default: the installed Keras) lies in `TESTED_KERAS`."""
    low, high = TESTED_KERAS
    return low <= (version or keras_version()) <= high


def check_keras_version() -> bool:
    """Warn once if the installed Keras lies outside the tested range; True if inside."""
    if in_tested_range():
        return True
    warn_once(
        None,
        "keras_version",
        f"keras_sparse is tested on Keras {TESTED}, but Keras {keras.version()} is "
        "installed. Any change keras_sparse cannot make to this Keras is reported by "
        f"its own warning; to be on the tested range, run {_PIN}.",
        stacklevel=3,
    )
    return False


def _resolve(target: str) -> tuple[Any, str]:
    """`(owner, attribute)` of a dotted path: the longest importable module, then getattr."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(f"no module of {target!r} can be imported")


def _find(target: str) -> tuple[Any, str, Any] | str | bool:
    """True if `target` is changed already, else `(owner, name, value)`, or why it is missing."""
    if target in _REGISTRY and _REGISTRY[target].installed:
        return True
    try:
        owner, name = _resolve(target)
        return owner, name, getattr(owner, name)
    except (ImportError, AttributeError) as err:
        return f"not found: {err}"


def _record(target: str, feature: str, versions: str, reason: str = "") -> bool:
    _REGISTRY[target] = Patch(target, feature, versions, not reason, reason)
    if reason:
        warnings.warn(
            f"keras_sparse cannot change {target} on Keras {keras.version()} ({reason}), "
            f"so this is lost: {feature}. That change is known to work on Keras {versions}; "
            f"run {_PIN}.",
            UserWarning,
            stacklevel=4,
        )
    return not reason


def first_found(*targets: str) -> str:
    """The first of `targets` that this Keras has, else the first one (its warning names it).

    For an attribute that Keras renames between versions: Keras 3.16 calls its JAX
    trainer `Trainer`, where 3.10-3.15 call it `JAXTrainer`.
    """
    for target in targets:
        if not isinstance(_find(target), str):
            return target
    return targets[0]


def takes(*names: str, or_also: tuple[str, ...] = ()) -> Callable[[Any], str | None]:
    """A `check` for `replace`: the original's positional parameters are exactly `names`.

    `or_also` lists the parameters of another version of the same function, also
    accepted (a parameter that a later Keras adds).
    """
    import inspect

    def check(original: Any) -> str | None:
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = inspect.signature(original).parameters.values()
        found = tuple(p.name for p in params if p.kind in positional)
        return None if found in (names, or_also) else f"it takes {found}, not {names}"

    return check


def replace(
    target: str,
    make: Callable[[Any], Any],
    *,
    feature: str,
    versions: str = TESTED,
    check: Callable[[Any], str | None] | None = None,
    only_where: Callable[[Any], bool] | None = None,
) -> bool:
    """Replace the Keras attribute `target` by `make(original)`, once.

    Args:
        target: Dotted path, e.g. `"keras.Model.train_step"`.
        make: Builds the replacement from the original; the replacement should
            do its one job and call the original.
        feature: What is lost if the change cannot be made (for the warning).
        versions: Keras versions the change is known to work on.
        check: Returns why `original` is not the one `make` expects (another
            signature, say), or None when it is.
        only_where: For a method: which instances see the replacement. Any
            other instance that looks the method up gets Keras's own function,
            bound, with nothing of ours in its frames (see `_OnlyWhere`).

    Returns:
        Whether the change is in place; when not, one warning said why.
    """
    found = _find(target)
    if found is True or isinstance(found, str):
        return found is True or _record(target, feature, versions, found)
    owner, name, original = found
    reason = check(original) if check is not None else None
    if reason:
        return _record(target, feature, versions, reason)
    if getattr(original, _ORIGINAL, None) == target:  # installed by an earlier copy of us
        return _record(target, feature, versions)
    made = make(original)
    # A static or class method is wrapped inside: their own attributes are read-only.
    kind = type(made) if isinstance(made, (staticmethod, classmethod)) else None
    function = functools.wraps(original)(made.__func__ if kind else made)
    setattr(function, _ORIGINAL, target)
    replacement = kind(function) if kind else function
    if only_where is not None:
        replacement = _OnlyWhere(function, original, only_where)
    own = name in vars(owner)  # False: a class inherits it, so restoring deletes ours
    setattr(owner, name, replacement)
    _RESTORE[target] = (
        (lambda: setattr(owner, name, original)) if own else (lambda: delattr(owner, name))
    )
    return _record(target, feature, versions)


class _OnlyWhere:
    """A method that only some instances see replaced.

    `instance.method` is the replacement, bound, when `uses(instance)`, and
    Keras's own function, bound, for every other instance, so their calls run
    Keras's code alone (`super().method` passes the instance, so it chooses
    too). Looked up on the class (`type(model).train_step(model, ...)`, as
    Keras's JAX trainer does under NNX), it is the replacement, which must
    itself hand instances that do not use it to the original.
    """

    def __init__(self, function: Callable, original: Callable, uses: Callable[[Any], bool]):
        self.function = function
        self.original = original
        self.uses = uses
        setattr(self, _ORIGINAL, getattr(function, _ORIGINAL, None))

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self.function
        chosen = self.function if self.uses(instance) else self.original
        return types.MethodType(chosen, instance)


@contextlib.contextmanager
def scoped_value(target: str, value: Any) -> Iterator[None]:
    """Give the Keras module constant `target` the value `value` inside the block only.

    For a flag that Keras reads in one constructor (`SUPPORTS_SPARSE_TENSORS`),
    so that the rest of the process, Keras's own code paths included, sees
    Keras's value.
    """
    owner, name = _resolve(target)
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


def add_entries(
    target: str, entries: dict[str, Any], *, feature: str, versions: str = TESTED
) -> bool:
    """Add `entries` to the Keras dict `target`, keeping every name Keras already has.

    Returns:
        Whether they were added; when not, one warning said why.
    """
    found = _find(target)
    if found is True or isinstance(found, str):
        return found is True or _record(target, feature, versions, found)
    _, _, table = found
    if not isinstance(table, dict):
        return _record(target, feature, versions, f"a {type(table).__name__}, not a dict")
    added = [key for key in entries if key not in table]
    for key in added:
        table[key] = entries[key]
    _RESTORE[target] = lambda: [table.pop(key, None) for key in added]
    return _record(target, feature, versions)


def restore(target: str) -> None:
    """Undo the change to `target` (for tests); a later install makes it again."""
    undo = _RESTORE.pop(target, None)
    if undo is not None:
        undo()
    _REGISTRY.pop(target, None)


def replaces(value: Any) -> str | None:
    """The target that `value` replaced, if it is one of our replacements."""
    return getattr(value, _ORIGINAL, None)


def patches() -> tuple[Patch, ...]:
    """Every change to Keras attempted in this process, installed or not.

    Returns:
        One `Patch` per Keras attribute, in the order they were made.

    Examples:
        >>> import keras_sparse as ks
        >>> changed = {p.target: p.installed for p in ks.keras_patches()}
        >>> changed["keras.Model.__call__"]
        True
    """
    return tuple(_REGISTRY.values())


# Keras's private state, read here only. Every function below names the
# private attribute it reads; each is known on Keras 3.10-3.15 (`TESTED`: CI
# runs our tests on both ends, and Keras's own, `.ci/keras_suite.py`, on the latest).


def sublayers(model: Any) -> list:
    """Every layer inside `model`, at any depth (Keras's `_flatten_layers`)."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return list(getattr(model, "layers", []))
    return list(flatten(include_self=False, recursive=True))


def model_inputs(model: Any) -> list:
    """The `keras.Input` tensors a model was built from, flat, else [].

    A functional model's `_inputs` (in the order its `_convert_inputs_to_tensors`
    takes them); a Sequential model's public `inputs` once it has them.
    """
    found = getattr(model, "_inputs", None)
    if found is None:
        try:
            found = model.inputs
        except (AttributeError, ValueError):  # a subclassed or unbuilt model
            found = None
    return list(keras.tree.flatten(found)) if found else []


def producing_layer(tensor: Any) -> Any:
    """The layer that produced a symbolic tensor (`_keras_history[0]`), or None."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history[0]


def call_takes_training(layer: Any) -> bool:
    """Whether `layer.call` has a `training` argument (`_call_has_training_arg`)."""
    return bool(getattr(layer, "_call_has_training_arg", False))


def has_compiled_metrics(model: Any) -> bool:
    """Whether `compile(metrics=..., weighted_metrics=...)` gave `model` any metric.

    Reads `_compile_metrics` and its `_user_metrics` / `_user_weighted_metrics`.
    """
    compiled = getattr(model, "_compile_metrics", None)
    if compiled is None:
        return False
    for attr in ("_user_metrics", "_user_weighted_metrics"):
        if any(m is not None for m in keras.tree.flatten(getattr(compiled, attr, None) or [])):
            return True
    return False


def compiled_user_loss(compile_loss: Any) -> Any:
    """The `loss=` a `CompileLoss` was given in `compile` (`_user_loss`), or None."""
    return getattr(compile_loss, "_user_loss", None)


def in_symbolic_scope() -> bool:
    """Whether Keras is tracing shapes only (`compute_output_spec`, `Trainer._symbolic_build`).

    There a `CompileLoss` is called with dense stand-ins of the real targets
    (`KerasTensor`s that drop `sparse`), so what it sees says nothing of them.
    """
    from keras.src.backend.common import symbolic_scope

    return bool(symbolic_scope.in_symbolic_scope())


def shards_across_processes(distribution: Any) -> bool:
    """Whether a `keras.distribution` spans processes and shards the data by process.

    Reads `_is_multi_process`, and `auto_shard_dataset` (public from Keras
    3.11; `_auto_shard_dataset` before).
    """
    if distribution is None or not getattr(distribution, "_is_multi_process", False):
        return False
    shard = getattr(distribution, "auto_shard_dataset", None)
    return bool(getattr(distribution, "_auto_shard_dataset", True) if shard is None else shard)


def symbolic_build(model: Any, first_batch: Callable[[], Any], to_symbolic: Callable) -> None:
    """Keras's `Trainer._symbolic_build`, from the specs `to_symbolic` gives each batch leaf.

    For `keras_sparse.distribute.enable_sparse`, which puts it in the place of
    `_maybe_symbolic_build` on one model under a `tf.distribute` strategy:
    Keras's own builds from a cross-replica mean, which fails on sparse
    tensors. Reads `_distribute_strategy`, `_compile_metrics`,
    `_compile_loss`, `_compute_loss` and `_post_build`.
    """
    if model._distribute_strategy is None:
        return
    metrics_unbuilt = model._compile_metrics is not None and not model._compile_metrics.built
    loss_unbuilt = model._compile_loss is not None and not model._compile_loss.built
    layers_unbuilt = not all(layer.built for layer in sublayers(model))
    output_spec = importlib.import_module("keras.src.backend").compute_output_spec
    with model.distribute_strategy.scope():
        if layers_unbuilt or metrics_unbuilt or loss_unbuilt:
            spec = keras.tree.map_structure(to_symbolic, first_batch())
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(spec)
            y_pred = output_spec(model, x, training=False)
            if metrics_unbuilt:
                output_spec(model.compute_metrics, x, y, y_pred, sample_weight=sample_weight)
            if loss_unbuilt:
                output_spec(
                    model._compute_loss, x, y, y_pred, sample_weight=sample_weight, training=False
                )
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model._post_build()


def in_multi_worker_mode(strategy: Any) -> bool:
    """TensorFlow's `strategy.extended._in_multi_worker_mode()`: several workers run."""
    return bool(strategy.extended._in_multi_worker_mode())


def keras_mask(x: Any) -> Any:
    """The Keras mask a tensor carries (`_keras_mask`), or None."""
    try:
        from keras.src.backend.common.masking import get_keras_mask
    except ImportError:  # pragma: no cover - older layouts keep it as an attribute
        return getattr(x, "_keras_mask", None)
    return get_keras_mask(x)


def set_keras_mask(x: Any, mask: Any) -> None:
    """Give a tensor the Keras mask `mask` (as Keras's layers do with their outputs)."""
    try:
        from keras.src.backend.common.masking import set_keras_mask as setter
    except ImportError:  # pragma: no cover
        x._keras_mask = mask
        return
    setter(x, mask)
