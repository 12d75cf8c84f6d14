"""Small, guarded additions to Keras so that sparse data behaves the same everywhere.

`install()` (run by `import keras_sparse`) makes these changes through
`keras_sparse._compat`; each wrapper does its one job and then calls the
original unchanged:

- `Model.__call__` converts SciPy sparse inputs to the backend's sparse
  tensor for models that use keras_sparse, so `model(csr)` works as
  `fit(csr)` does (our layers convert in their own `__call__`, and no other
  layer meets this change);
- `Model.train_on_batch` / `test_on_batch` / `predict_on_batch` do the same
  for `x` and `y`;
- the compiled loss warns once when a Keras built-in loss (`"mse"`, ...) gets
  a sparse target, naming our masked loss (checked at its first real call);
- a functional model warns once when a sparse tensor reaches an `Input`
  declared without `sparse=True` (Keras densifies it there);
- Keras's SciPy -> backend batch conversion becomes canonical and bucketed
  (`keras_batch_from_scipy`);
- on torch, where Keras has no sparse support, `Input(sparse=True)` is allowed,
  `convert_to_tensor` keeps torch sparse tensors, SciPy batches of the array
  adapter and of `PyDataset` / generator loaders become coalesced torch sparse
  tensors instead of dense arrays, and `jit_compile=True` on a model with a
  sparse `Input` runs eagerly with a warning (`_install_torch`).

Known to work on Keras 3.10-3.15. A change this Keras cannot take is left
out with one warning naming what is lost.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import scipy.sparse as sp

from keras_sparse import _compat, _output_targets, _validation
from keras_sparse import backend as B
from keras_sparse._identifiers import snake_case
from keras_sparse._scipy_values import call_arguments, has_scipy, to_backend

# Keras built-in loss -> the masked loss that scores only observed entries.
SPARSE_ALTERNATIVES = {
    "mean_squared_error": "keras_sparse.losses.sparse_mse",
    "mean_absolute_error": "keras_sparse.losses.sparse_mae",
    "huber": "keras_sparse.losses.sparse_huber",
    "binary_crossentropy": "keras_sparse.losses.sparse_binary_crossentropy",
    "categorical_crossentropy": "keras_sparse.losses.sparse_multinomial_nll",
}


_TAKES_SCIPY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def takes_scipy(layer: Any) -> bool:
    """Whether `model(x)` converts SciPy matrices.

    It does for models that hold a sparse `Input` or one of our layers; any
    other layer's `__call__` is Keras's own. Our layers convert in their own
    `__call__` (`layers._base.SparseLayer`).
    """
    if not isinstance(layer, keras.Model):
        return False
    found = _TAKES_SCIPY.get(layer)
    if found is None:
        found = _uses_sparse(layer)
        if layer.built:  # a model's layers and inputs are settled once it is built
            _TAKES_SCIPY[layer] = found
    return found


def _scipy_call(original: Callable) -> Callable:
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        # On torch every model comes here, under torch.compile too: a type test
        # first, the model's cached answer only for a SciPy input.
        scipy = has_scipy(args[0]) if args else has_scipy(kwargs.get("inputs"))
        if scipy and takes_scipy(self):
            args, kwargs = call_arguments(args, kwargs)
        return original(self, *args, **kwargs)

    return __call__


def _scipy_batch(original: Callable) -> Callable:
    def on_batch(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(to_backend(a) if has_scipy(a) else a for a in args)
        kwargs = {k: to_backend(v) if has_scipy(v) else v for k, v in kwargs.items()}
        x = to_backend(x) if has_scipy(x) else x
        named = dict(zip(("y", "sample_weight"), args))
        named.update({k: v for k, v in kwargs.items() if k in ("y", "sample_weight")})
        parts = {f"x{path}": v for path, v in _flat_with_paths(x)}
        parts.update({f"y{path}": v for path, v in _flat_with_paths(named.get("y"))})
        parts["sample_weight"] = named.get("sample_weight")
        _validation.check_batch_rows(parts)
        return original(self, x, *args, **kwargs)

    return on_batch


def _flat_with_paths(value: Any) -> list[tuple[str, Any]]:
    if sp.issparse(value):
        return [("", value)]
    if isinstance(value, dict):
        return [(f"[{k!r}]", v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [(f"[{i}]", v) for i, v in enumerate(value)]
    return [("", value)]


def _leaves(value: Any) -> list[Any]:
    """Leaves of nested lists/tuples/dicts; a sparse tensor (a JAX pytree) is one leaf."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, (list, tuple)) and not B.is_sparse(value):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _builtin_loss_name(loss: Any) -> str | None:
    """The Keras built-in name of `loss` (`"mean_squared_error"`, ...), None if not built in."""
    loss = _output_targets.resolve_loss(loss)
    if loss is None:
        return None
    fn = getattr(loss, "fn", loss)  # a LossFunctionWrapper holds the function
    module = getattr(fn, "__module__", None) or type(fn).__module__
    if not module.startswith("keras."):
        return None
    return getattr(fn, "__name__", None) or snake_case(type(fn).__name__)


def _loss_target_pairs(user_loss: Any, y_true: Any) -> list[tuple[Any, Any]]:
    """Each compiled loss with the target it scores (by key or position, as Keras pairs them)."""
    if isinstance(user_loss, dict) and isinstance(y_true, dict):
        return [(loss, y_true.get(key)) for key, loss in user_loss.items()]
    sequence = (list, tuple)
    if (
        isinstance(user_loss, sequence)
        and isinstance(y_true, sequence)
        and not B.is_sparse(y_true)
        and len(user_loss) == len(y_true)
    ):
        return list(zip(user_loss, y_true))
    return [(loss, y_true) for loss in _leaves(user_loss)]


_CHECKS_TARGET: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def checks_target(compile_loss: Any) -> bool:
    """Whether this call of a compiled loss goes through the sparse-target check.

    Only a `CompileLoss` that holds a Keras loss with a masked twin
    (`SPARSE_ALTERNATIVES`) is checked, and only at its first real call (when
    the step is traced on TensorFlow and JAX, the first step on torch); from
    then on only one that got a sparse target (and warned) keeps the check, for
    its error message. Every other call runs Keras's own `__call__`.
    """
    found = _CHECKS_TARGET.get(compile_loss)
    if found is None:
        losses = _leaves(_compat.compiled_user_loss(compile_loss))
        found = any(_builtin_loss_name(loss) in SPARSE_ALTERNATIVES for loss in losses)
        _CHECKS_TARGET[compile_loss] = found
    return found


def builtin_loss_on_sparse(user_loss: Any, y_true: Any) -> str | None:
    """The advice for a Keras built-in loss compiled against a sparse target, else None."""
    for loss, target in _loss_target_pairs(user_loss, y_true):
        if not any(B.is_sparse(leaf) for leaf in _leaves(target)):
            continue
        name = _builtin_loss_name(loss)
        if name is not None:
            alternative = SPARSE_ALTERNATIVES.get(name, "a loss from keras_sparse.losses")
            return (
                f"The Keras loss {name!r} got a sparse target: Keras cannot score a sparse "
                "`y_true` without densifying it (rows x columns of memory), and would count "
                f"every unobserved entry as an observed 0. Use {alternative} (or its string "
                "name), which scores only the observed entries."
            )
    return None


def _checked_loss(original: Callable) -> Callable:
    def __call__(self: Any, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        advice = builtin_loss_on_sparse(_compat.compiled_user_loss(self), y_true)
        if advice:
            B.warn_once(self, "builtin_loss", advice, stacklevel=2)
        # Checked once it saw a real target (shape-only calls get dense stand-ins);
        # one that warned keeps the check for its error message.
        if not B.warned(self, "builtin_loss") and not _compat.in_symbolic_scope():
            _CHECKS_TARGET[self] = False
        try:
            return original(self, y_true, y_pred, sample_weight)
        except (TypeError, ValueError, NotImplementedError, RuntimeError) as err:
            if advice:  # Keras's own error says nothing about the cause
                raise ValueError(advice) from err
            raise

    return __call__


def _checked_inputs(original: Callable) -> Callable:
    def _convert_inputs_to_tensors(self: Any, flat_inputs: Any) -> Any:
        if not B.warned(self, "sparse_to_dense_input"):
            for x, declared in zip(flat_inputs, _compat.model_inputs(self)):
                if x is not None and not declared.sparse and B.is_sparse(x):
                    B.warn_once(
                        self,
                        "sparse_to_dense_input",
                        f"Model {self.name!r} got a sparse tensor for its input "
                        f"{declared.name!r}, declared without `sparse=True`, so Keras "
                        "densifies every batch (rows x columns of memory). Declare it as "
                        "`keras.Input(shape, sparse=True)` and feed it to "
                        "`keras_sparse.layers.SparseDenseInput` or a `Dense` layer.",
                        stacklevel=3,
                    )
                    break
        return original(self, flat_inputs)

    return _convert_inputs_to_tensors


def keras_batch_from_scipy(original: Callable) -> Callable:
    """Keras's own SciPy -> backend conversion of `fit(csr)` batches, made canonical.

    `fit` / `evaluate` / `predict` on SciPy data, and any `PyDataset` that
    yields SciPy batches, go through one Keras function per backend. On
    TensorFlow it keeps a COO matrix's entry order, and Keras's batch slicing
    then fails on unsorted or duplicate entries ("Arguments to
    from_value_rowids do not form a valid RowPartition"); on JAX it builds a
    `BCOO` with the batch's exact entry count, so every batch compiles a new
    step. The replacement converts row-major with duplicates summed, padded to
    the backend's entry-count buckets (`backend.sparse_from_coo`), on the host.
    """

    def scipy_to_backend(x: Any) -> Any:
        return scipy_to_host(x)

    return scipy_to_backend  # a function of its own: `_compat` marks what it installs


def scipy_to_host(x: Any) -> Any:
    """A SciPy batch as the backend's canonical sparse tensor, built on the host."""
    from keras_sparse.convert import coo_parts

    return B.host_sparse_from_coo(*coo_parts(x, "x"))


def _host_batch(value: Any) -> Any:
    """`value` (a batch: nested tuples, lists, dicts) with SciPy leaves as host sparse tensors."""
    if sp.issparse(value):  # before the dict test: dok_matrix is a dict subclass
        return scipy_to_host(value)
    if isinstance(value, (list, tuple)) and not B.is_sparse(value):
        return type(value)(_host_batch(v) for v in value)
    if isinstance(value, dict):
        return {key: _host_batch(v) for key, v in value.items()}
    return value


def _torch_convert_to_tensor(original: Callable) -> Callable:
    """Keras's torch `convert_to_tensor` keeping torch sparse tensors sparse.

    Keras raises on `sparse=True` (what a functional model passes for an
    `Input(sparse=True)`); here a sparse tensor passes through (moved to
    Keras's device and cast like a dense one), a SciPy matrix becomes one, a
    dense value is converted as usual, and `sparse=False` densifies a sparse
    tensor, as on the other backends.
    """

    def convert_to_tensor(x: Any, dtype: Any = None, sparse: Any = None, ragged: Any = None) -> Any:
        if sp.issparse(x):
            x = to_backend(x)
        if B.is_sparse(x) and sparse is False:
            x = x.to_dense()
        return original(x, dtype=dtype, sparse=None, ragged=ragged)

    return convert_to_tensor


def _torch_scipy_slice(original: Callable) -> Any:
    """The SciPy batch of Keras's torch array adapter, sparse (Keras calls `todense()`)."""

    def convert_to_torch_compatible(x: Any) -> Any:
        return scipy_to_host(x)

    return staticmethod(convert_to_torch_compatible)


def _torch_loader(original: Callable) -> Callable:
    """Keras's torch loader for `PyDataset`s and generators, SciPy batches made sparse."""

    def get_torch_dataloader(iterable: Any) -> Any:
        return original(_host_batch(batch) for batch in iterable)

    return get_torch_dataloader


_USES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def uses_keras_sparse(model: Any) -> bool:
    """Whether `model` holds a sparse `Input` or one of our layers, or has our loss or optimizer.

    Only such a functional model checks its inputs for the warning; any other
    runs Keras's own `_convert_inputs_to_tensors`.
    """
    if takes_scipy(model):
        return True
    loss, optimizer = getattr(model, "loss", None), getattr(model, "optimizer", None)
    key = (id(loss), id(optimizer))  # what `compile` sets; asked again after a recompile
    cached = _USES.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    compiled = [*map(_output_targets.resolve_loss, keras.tree.flatten(loss)), optimizer]
    found = any(
        (getattr(obj, "__module__", None) or type(obj).__module__).startswith("keras_sparse")
        for obj in compiled
        if obj is not None
    )
    _USES[model] = (key, found)
    return found


def _uses_sparse(model: Any) -> bool:
    if any(getattr(x, "sparse", False) for x in _compat.model_inputs(model)):
        return True
    return any(
        type(layer).__module__.startswith("keras_sparse") for layer in _compat.sublayers(model)
    )


def _torch_eager_with_sparse(original: Callable) -> Callable:
    """`jit_compile=True` on a sparse model runs eagerly, with one warning."""

    def _should_torch_compile(self: Any) -> bool:
        if self.jit_compile and _uses_sparse(self):
            B.warn_once(
                self,
                "jit_compile",
                f"Model {self.name!r} has sparse inputs or keras_sparse layers, which "
                "torch.compile cannot trace (sparse tensors are not supported), so "
                "jit_compile=True is ignored and the model runs eagerly. Compile with "
                "jit_compile=False to silence this.",
                stacklevel=2,
            )
            self.jit_compile = False
            return False
        return original(self)

    return _should_torch_compile


def _sparse_dataset_adapter(original: Callable) -> Callable:
    """`fit` / `evaluate` / `predict` on a `SparseDataset` through the backend's own feeding.

    Where the backend has one (`backend.pydataset_adapter`: TensorFlow, outside
    a `tf.distribute` strategy) and the data set runs in this thread (no
    `workers` / `use_multiprocessing`), the backend cuts its batches in its own
    pipeline; anything else is Keras's own adapter.
    """
    import inspect

    signature = inspect.signature(original)

    def get_data_adapter(*args: Any, **kwargs: Any) -> Any:
        from keras_sparse.data import SparseDataset

        bound = signature.bind(*args, **kwargs)
        x = bound.arguments.get("x")
        if isinstance(x, SparseDataset) and x.workers <= 1 and not x.use_multiprocessing:
            adapter = B.pydataset_adapter(
                x,
                x.feeding_structure(),
                x.epoch_rows,
                bool(bound.arguments.get("shuffle", False)),
                bound.arguments.get("class_weight"),
            )
            if adapter is not None:
                return adapter
        return original(*args, **kwargs)

    return get_data_adapter


def _torch_sparse_input(original: Callable) -> Callable:
    """`keras.Input(..., sparse=True)` on torch, which Keras refuses there.

    Keras's `InputLayer` checks the backend's `SUPPORTS_SPARSE_TENSORS`, False on
    torch. The flag is True only while a sparse `InputLayer` is built: Keras's
    other readers of it (its preprocessing layers, its tests) keep seeing False,
    so no Keras code path that was not built for torch sparse tensors opens.
    """
    import inspect

    signature = inspect.signature(original)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs).arguments
        given = bound.get("input_tensor")
        if not (bound.get("sparse") or getattr(given, "sparse", False)):
            return original(self, *args, **kwargs)
        with _compat.scoped_value("keras.src.backend.SUPPORTS_SPARSE_TENSORS", True):
            return original(self, *args, **kwargs)

    # Keras's `Operation.__new__` reads `getfullargspec(cls.__init__)` for the layer's
    # config; it sees Keras's own parameters, not `*args`.
    __init__.__signature__ = signature  # type: ignore[attr-defined]
    return __init__


def _install_torch() -> list[bool]:
    """The changes Keras's torch backend needs to carry sparse tensors (Keras 3.10-3.15)."""
    slicing = "keras.src.trainers.data_adapters"
    return [
        _compat.replace(
            "keras.src.layers.core.input_layer.InputLayer.__init__",
            _torch_sparse_input,
            feature="keras.Input(..., sparse=True) on the torch backend",
        ),
        _compat.replace(
            "keras.src.backend.torch.core.convert_to_tensor",
            _torch_convert_to_tensor,
            feature="torch sparse tensors through a functional model's sparse Input",
            check=_compat.takes("x", "dtype", "sparse", "ragged"),
        ),
        _compat.replace(
            f"{slicing}.array_slicing.ScipySparseSliceable.convert_to_torch_compatible",
            _torch_scipy_slice,
            feature="fit/evaluate/predict on SciPy matrices without densifying every batch (torch)",
            check=_compat.takes("x"),
        ),
        _compat.replace(
            f"{slicing}.data_adapter_utils.get_torch_dataloader",
            _torch_loader,
            feature="PyDatasets and generators that yield SciPy batches, kept sparse (torch)",
            check=_compat.takes("iterable"),
        ),
        _compat.replace(
            "keras.src.backend.torch.trainer.TorchTrainer._should_torch_compile",
            _torch_eager_with_sparse,
            feature="jit_compile=True on sparse models (runs eagerly, with a warning)",
            check=_compat.takes("self"),
        ),
    ]


#: Keras's function that turns a SciPy batch into the backend's tensor, per backend.
_SCIPY_CONVERTERS = {
    "tensorflow": "scipy_sparse_to_tf_sparse",
    "jax": "scipy_sparse_to_jax_sparse",
}


def install() -> bool:
    """Install the changes above through `_compat` (idempotent); False if any is missing."""
    done = [
        _compat.replace(
            "keras.Model.__call__",
            _scipy_call,
            feature="SciPy matrices in model(x) for models that use keras_sparse",
            # torch.compile reads a torch module's `__call__` only as a plain function.
            only_where=None if B.NAME == "torch" else takes_scipy,
        )
    ]
    for name in ("train_on_batch", "test_on_batch", "predict_on_batch"):
        done.append(
            _compat.replace(
                f"keras.Model.{name}", _scipy_batch, feature=f"SciPy matrices in Model.{name}"
            )
        )
    done.append(
        _compat.replace(
            "keras.src.trainers.compile_utils.CompileLoss.__call__",
            _checked_loss,
            feature="the warning that names a masked loss when a Keras loss gets a sparse target",
            only_where=checks_target,
        )
    )
    done.append(
        _compat.replace(
            "keras.src.models.functional.Functional._convert_inputs_to_tensors",
            _checked_inputs,
            feature="the warning when a sparse tensor reaches an Input without sparse=True",
            check=_compat.takes("self", "flat_inputs"),
            only_where=uses_keras_sparse,
        )
    )
    if B.NAME == "tensorflow":  # JAX wraps this function for several processes (distribute)
        done.append(
            _compat.replace(
                "keras.src.trainers.data_adapters.get_data_adapter",
                _sparse_dataset_adapter,
                feature="SparseDataset fed through tf.data from host arrays (TensorFlow)",
                check=_compat.takes(
                    "x",
                    "y",
                    "sample_weight",
                    "batch_size",
                    "steps_per_epoch",
                    "shuffle",
                    "class_weight",
                ),
            )
        )
    if B.NAME in _SCIPY_CONVERTERS:
        done.append(
            _compat.replace(
                "keras.src.trainers.data_adapters.data_adapter_utils." + _SCIPY_CONVERTERS[B.NAME],
                keras_batch_from_scipy,
                feature="fit/evaluate/predict on unsorted or duplicate COO matrices "
                "(TensorFlow) and without a recompile per batch (JAX)",
            )
        )
    else:  # torch: Keras has no converter of its own, it densifies
        done.extend(_install_torch())
    return all(done)
