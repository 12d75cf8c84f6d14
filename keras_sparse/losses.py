"""Masked losses that score only the observed (stored) entries of a sparse target.

Each loss is a plain function returning one value per row, plus a class with
Keras's `reduction`, `name` and `get_config`, as in Keras core. A sparse
`y_true` is never densified: `y_pred` is gathered at its stored entries. A
dense `y_true` means "the non-zero entries are observed".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from keras_sparse import _compat, _entries, _ops, _validation
from keras_sparse import backend as B
from keras_sparse._registry import register
from keras_sparse.convert import sparse_target

__all__ = [
    "MaskedLoss",
    "SparseBinaryCrossentropy",
    "SparseHuber",
    "SparseMeanAbsoluteError",
    "SparseMeanSquaredError",
    "SparseMultinomialNLL",
    "is_label_target",
    "label_nll",
    "masked_row_mean",
    "observed_entries",
    "scored_entries",
    "sparse_binary_crossentropy",
    "sparse_huber",
    "sparse_mae",
    "sparse_mse",
    "sparse_multinomial_nll",
]

NORMALIZE = ("row", "entries")

# Entry matching lives in keras_sparse._entries; these two are public here.
observed_entries = _entries.observed_entries
scored_entries = _entries.scored_entries


def _squared(t: Any, p: Any) -> Any:
    return ops.square(p - t)


def _absolute(t: Any, p: Any) -> Any:
    return ops.abs(p - t)


def _huber(t: Any, p: Any, delta: float = 1.0) -> Any:
    err = ops.abs(p - t)
    d = ops.cast(delta, err.dtype)
    return ops.where(err <= d, 0.5 * ops.square(err), d * err - 0.5 * d * d)


def _binary_crossentropy(t: Any, p: Any, from_logits: bool = False) -> Any:
    if from_logits:
        # max(p, 0) - p * t + log(1 + exp(-|p|)): stable for any logit.
        return ops.relu(p) - p * t + ops.log1p(ops.exp(-ops.abs(p)))
    eps = ops.cast(keras.backend.epsilon(), p.dtype)
    p = ops.clip(p, eps, 1 - eps)
    return -(t * ops.log(p) + (1 - t) * ops.log(1 - p))


def _predictions_at(indices: Any, y_pred: Any, weights: Any) -> Any:
    """Predictions at the observed entries; 0 at unobserved ones (a -inf score is fine there)."""
    if indices is None:
        return _entries.only_observed(y_pred, weights)
    return _ops.gather_entries(y_pred, indices)


def masked_row_mean(
    fn: Any, y_true: Any, y_pred: Any, normalize: str = "row", where: str = "keras_sparse loss"
) -> Any:
    """Mean of `fn(target, prediction)` over each row's observed entries.

    The building block of every pointwise loss here, for your own: `fn` gets
    the observed target values and the predictions at the same entries (1-D,
    or 2-D for a dense target) and returns the loss of each entry. Backend
    padding and unobserved entries never count.

    Args:
        fn: Elementwise loss `fn(t, p)` written with `keras.ops`.
        y_true: Sparse or dense `(rows, items)` target (see `sparse_mse`).
        y_pred: Dense `(rows, items)` predictions.
        normalize: `"row"` (mean per row) or `"entries"` (see the loss classes).
        where: What a shape error names (the loss).

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import keras, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse(sp.csr_matrix([[1.0, 0.0, 3.0]]), dtype="float32")
        >>> log_cosh = lambda t, p: keras.ops.log(keras.ops.cosh(p - t))
        >>> loss = ks.losses.masked_row_mean(log_cosh, y_true, [[1.0, 9.0, 3.0]])
        >>> [round(float(v), 4) for v in loss]
        [0.0]
    """
    _validation.check_choice(normalize, "normalize", NORMALIZE)
    if B.is_sparse(y_pred):
        e = scored_entries(y_true, y_pred, where)
        entry_loss = fn(e.targets, e.predictions)
        return _entries.per_row(entry_loss, e.indices, e.weights, None, normalize, True, e.num_rows)
    indices, values, weights, y_pred = observed_entries(y_true, y_pred, where)
    entry_loss = fn(values, _predictions_at(indices, y_pred, weights))
    return _entries.per_row(entry_loss, indices, weights, y_pred, normalize, mean=True)


def _multinomial(
    y_true: Any, y_pred: Any, normalize: str = "row", where: str = "sparse_multinomial_nll"
) -> Any:
    if B.is_sparse(y_pred):  # log-probabilities at the target's entries (SparseDenseOutput)
        e = scored_entries(y_true, y_pred, where)
        count = e.num_target
        weights = e.weights[:count]
        entry_loss = -e.targets[:count] * e.predictions[:count]
        return _entries.per_row(
            entry_loss, e.indices[:count], weights, None, normalize, False, e.num_rows
        )
    indices, values, weights, y_pred = observed_entries(y_true, y_pred, where)
    log_probs = ops.log_softmax(y_pred, axis=-1)
    entry_loss = -values * _predictions_at(indices, log_probs, weights)
    return _entries.per_row(entry_loss, indices, weights, y_pred, normalize, mean=False)


@register
def sparse_mse(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error over the observed entries of each row.

    Args:
        y_true: Sparse `(rows, items)` target (`tf.SparseTensor`; stored
            entries, explicit zeros included, are observed) or a dense tensor
            (non-zero entries are observed).
        y_pred: Dense `(rows, items)` predictions.

    Returns:
        A `(rows,)` tensor: mean of `(y_pred - y_true)**2` over each row's
        observed entries, exactly 0 (with zero gradient) for a row without any.

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse(sp.csr_matrix([[0.0, 4.0], [0.0, 0.0]]))
        >>> np.asarray(ks.losses.sparse_mse(y_true, np.array([[9.0, 2.0], [1.0, 1.0]]))).tolist()
        [4.0, 0.0]
    """
    return masked_row_mean(_squared, y_true, y_pred, where="sparse_mse")


@register
def sparse_mae(y_true: Any, y_pred: Any) -> Any:
    """Mean absolute error over the observed entries of each row.

    Args:
        y_true: Sparse or dense `(rows, items)` target (see `sparse_mse`).
        y_pred: Dense `(rows, items)` predictions.

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse(sp.csr_matrix([[1.0, 0.0, 3.0]]))
        >>> np.asarray(ks.losses.sparse_mae(y_true, [[0.0, 5.0, 0.0]])).tolist()
        [2.0]
    """
    return masked_row_mean(_absolute, y_true, y_pred, where="sparse_mae")


@register
def sparse_huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> Any:
    """Huber loss over the observed entries of each row.

    Args:
        y_true: Sparse or dense `(rows, items)` target (see `sparse_mse`).
        y_pred: Dense `(rows, items)` predictions.
        delta: Where the loss turns from quadratic to linear.

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse(sp.csr_matrix([[1.0, 0.0, 3.0]]))
        >>> np.asarray(ks.losses.sparse_huber(y_true, [[1.5, 9.0, 0.0]])).tolist()
        [1.3125]
    """
    delta = _validation.check_float(delta, "delta", low=0.0)
    fn = functools.partial(_huber, delta=delta)
    return masked_row_mean(fn, y_true, y_pred, where="sparse_huber")


@register
def sparse_binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> Any:
    """Binary cross-entropy over the observed entries of each row.

    Args:
        y_true: Sparse or dense `(rows, items)` target with values in [0, 1]
            (a stored 0 is an observed negative).
        y_pred: Dense `(rows, items)` probabilities, or logits with
            `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse(sp.csr_matrix(([1.0, 0.0], ([0, 0], [0, 2])), (1, 3)))
        >>> float(ks.losses.sparse_binary_crossentropy(y_true, [[0.5, 0.9, 0.5]])[0])
        0.6931...
    """
    from_logits = _validation.check_bool(from_logits, "from_logits")
    fn = functools.partial(_binary_crossentropy, from_logits=from_logits)
    return masked_row_mean(fn, y_true, y_pred, where="sparse_binary_crossentropy")


@register
def sparse_multinomial_nll(y_true: Any, y_pred: Any) -> Any:
    """Multinomial negative log-likelihood (Mult-VAE) of the observed entries.

    `-sum_{j observed} y_true[u, j] * log_softmax(y_pred[u])[j]`: the softmax
    runs over all items, the sum only over the row's observed entries.

    Args:
        y_true: Sparse or dense `(rows, items)` target (counts or 0/1).
        y_pred: Dense `(rows, items)` logits (unnormalised scores).

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse(sp.csr_matrix([[1.0, 0.0]]))
        >>> round(float(ks.losses.sparse_multinomial_nll(y_true, [[0.0, 0.0]])[0]), 4)
        0.6931
    """
    return _multinomial(y_true, y_pred)


@register
class MaskedLoss(keras.losses.Loss):
    """A Keras loss class from an elementwise loss, scored only on observed entries.

    `fn(t, p, **kwargs)` gets the observed target values and the predictions
    at the same entries and returns one loss per entry; each row's loss is
    the mean over its observed entries (see `masked_row_mean`), and Keras's
    `reduction` and per-row `sample_weight` apply as for any Keras loss.
    Every built-in loss class here is a `MaskedLoss`.

    Args:
        fn: Elementwise loss `fn(t, p, **kwargs)` written with `keras.ops`. To
            save a model that uses it, register it with
            `keras.saving.register_keras_serializable()`.
        normalize: `"row"` (default) weighs every row equally (the mean of the
            per-row means); `"entries"` weighs every observed entry of the
            batch equally (total loss / number of observed entries).
        reduction: Keras reduction (`"sum_over_batch_size"`, `"sum"`, `None`, ...).
        name: Name of the loss; default the name of `fn`.
        dtype: Dtype of the computation.
        **kwargs: Keyword arguments passed to `fn` (saved in the config).

    Examples:
        >>> import keras, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> def log_cosh(t, p):
        ...     return keras.ops.log(keras.ops.cosh(p - t))
        >>> loss = ks.losses.MaskedLoss(log_cosh)
        >>> y_true = ks.to_sparse(sp.csr_matrix([[1.0, 0.0, 3.0]]), dtype="float32")
        >>> round(float(loss(y_true, [[1.0, 9.0, 3.0]])), 4)
        0.0
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        normalize: str = "row",
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"`fn` must be a function fn(t, p) returning one loss per entry, got "
                f"{type(fn).__name__}: {fn!r}."
            )
        if name is None:
            name = getattr(fn, "__name__", "")
            name = name if name.isidentifier() else "masked_loss"
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self.normalize = _validation.check_choice(normalize, "normalize", NORMALIZE)
        self._fn_kwargs = kwargs

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        # Keras's base __call__ converts y_true with ops.convert_to_tensor, which
        # keeps a sparse tensor but casts it; do only that, then reduce as Keras does.
        y_true = sparse_target(y_true, self.dtype or keras.backend.floatx())
        if B.is_sparse(y_true) and self.dtype is not None:
            y_true = ops.cast(y_true, self.dtype)
        pred_shape = y_pred.shape if hasattr(y_pred, "shape") else np.shape(y_pred)
        _validation.check_row_weights(sample_weight, pred_shape, f"loss {self.name!r}")
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        fn = functools.partial(self.fn, **self._fn_kwargs) if self._fn_kwargs else self.fn
        return masked_row_mean(fn, y_true, y_pred, self.normalize, where=f"loss {self.name!r}")

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            fn=keras.saving.serialize_keras_object(self.fn),
            normalize=self.normalize,
            **self._fn_kwargs,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> MaskedLoss:
        if "fn" in config:
            config = {**config, "fn": keras.saving.deserialize_keras_object(config["fn"])}
        return cls(**config)


class _BuiltinMaskedLoss(MaskedLoss):
    """A built-in masked loss: its class fixes `fn`, so the config leaves it out."""

    def get_config(self) -> dict:
        config = super().get_config()
        del config["fn"]
        return config


@register
class SparseMeanSquaredError(_BuiltinMaskedLoss):
    """Masked mean squared error: only the observed entries of `y_true` count.

    Args:
        normalize: `"row"` (default) weighs every row equally (the mean of the
            per-row means); `"entries"` weighs every observed entry of the
            batch equally (total squared error / number of observed entries).
        reduction: Keras reduction (`"sum_over_batch_size"`, `"sum"`, `None`, ...).
        name: Name of the loss.
        dtype: Dtype of the computation.

    Examples:
        >>> import keras
        >>> import keras_sparse as ks
        >>> model = keras.Sequential([keras.Input((50,), sparse=True), keras.layers.Dense(50)])
        >>> model.compile(optimizer="adam", loss=ks.losses.SparseMeanSquaredError())
    """

    def __init__(
        self,
        normalize: str = "row",
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_mean_squared_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(_squared, normalize, reduction, name, dtype)


@register
class SparseMeanAbsoluteError(_BuiltinMaskedLoss):
    """Masked mean absolute error: only the observed entries of `y_true` count.

    Args:
        normalize: `"row"` or `"entries"` (see `SparseMeanSquaredError`).
        reduction: Keras reduction.
        name: Name of the loss.
        dtype: Dtype of the computation.

    Examples:
        >>> import keras_sparse as ks
        >>> loss = ks.losses.SparseMeanAbsoluteError(normalize="entries")
    """

    def __init__(
        self,
        normalize: str = "row",
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_mean_absolute_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(_absolute, normalize, reduction, name, dtype)


@register
class SparseHuber(_BuiltinMaskedLoss):
    """Masked Huber loss: only the observed entries of `y_true` count.

    Args:
        delta: Where the loss turns from quadratic to linear (default 1.0).
        normalize: `"row"` or `"entries"` (see `SparseMeanSquaredError`).
        reduction: Keras reduction.
        name: Name of the loss.
        dtype: Dtype of the computation.

    Examples:
        >>> import keras_sparse as ks
        >>> loss = ks.losses.SparseHuber(delta=2.0)
    """

    def __init__(
        self,
        delta: float = 1.0,
        normalize: str = "row",
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_huber",
        dtype: Any = None,
    ) -> None:
        delta = _validation.check_float(delta, "delta", low=0.0)
        super().__init__(_huber, normalize, reduction, name, dtype, delta=delta)
        self.delta = delta


@register
class SparseBinaryCrossentropy(_BuiltinMaskedLoss):
    """Masked binary cross-entropy: only the observed entries of `y_true` count.

    Args:
        from_logits: Whether `y_pred` holds logits rather than probabilities.
        normalize: `"row"` or `"entries"` (see `SparseMeanSquaredError`).
        reduction: Keras reduction.
        name: Name of the loss.
        dtype: Dtype of the computation.

    Examples:
        >>> import keras_sparse as ks
        >>> loss = ks.losses.SparseBinaryCrossentropy(from_logits=True)
    """

    def __init__(
        self,
        from_logits: bool = False,
        normalize: str = "row",
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        from_logits = _validation.check_bool(from_logits, "from_logits")
        super().__init__(
            _binary_crossentropy, normalize, reduction, name, dtype, from_logits=from_logits
        )
        self.from_logits = from_logits


def is_label_target(y_true: Any, y_pred: Any) -> bool:
    """Whether a dense `y_true` holds one integer label per row (or position) of `y_pred`.

    Labels have `y_pred`'s shape without its last axis (or with a last axis
    of 1 where `y_pred`'s is wider); a sparse target never does.

    Args:
        y_true: The target.
        y_pred: The predictions, `(..., units)`.

    Returns:
        True for integer labels, False for a target of `y_pred`'s own shape.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse as ks
        >>> ks.losses.is_label_target(np.array([[3, 1]]), np.zeros((1, 2, 5)))
        True
        >>> ks.losses.is_label_target(np.zeros((1, 5)), np.zeros((1, 5)))
        False
    """
    if y_true is None or B.is_sparse(y_true) or sp.issparse(y_true):
        return False
    true_shape, pred_shape = tuple(np.shape(y_true)), tuple(np.shape(y_pred))
    if len(true_shape) == len(pred_shape) - 1:
        return True
    return len(true_shape) == len(pred_shape) >= 2 and true_shape[-1] == 1 != pred_shape[-1]


def label_nll(y_true: Any, y_pred: Any, ignore_class: int | None = None) -> Any:
    """`-log_softmax(y_pred)[label]` per position; 0 (and masked) where the label is ignored.

    Args:
        y_true: Integer labels of shape `y_pred.shape[:-1]` (or with a last axis of 1).
        y_pred: Logits `(..., units)`.
        ignore_class: A label that is not scored (padding), or None.

    Returns:
        A tensor of shape `y_pred.shape[:-1]`, carrying Keras's mask of the
        scored positions when `ignore_class` is set.

    Examples:
        >>> import numpy as np
        >>> import keras_sparse as ks
        >>> nll = ks.losses.label_nll(np.array([1, 0]), np.zeros((2, 4), "float32"), 0)
        >>> [round(float(v), 4) for v in nll]
        [1.3863, 0.0]
    """
    y_pred = ops.convert_to_tensor(y_pred)
    labels = ops.cast(ops.convert_to_tensor(y_true), "int32")
    if len(labels.shape) == len(y_pred.shape):
        labels = ops.squeeze(labels, axis=-1)
    valid = None
    if ignore_class is not None:
        valid = ops.not_equal(labels, ignore_class)
        labels = ops.where(valid, labels, ops.zeros_like(labels))
    log_probs = ops.log_softmax(y_pred, axis=-1)
    nll = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], axis=-1), axis=-1)
    if valid is not None:
        nll = ops.where(valid, nll, ops.zeros_like(nll))
        _compat.set_keras_mask(nll, valid)
    return nll


@register
class SparseMultinomialNLL(_BuiltinMaskedLoss):
    """Multinomial negative log-likelihood (Mult-VAE) over the observed entries.

    With `normalize="row"` each row contributes its summed NLL (the Mult-VAE
    objective); with `"entries"` the batch value is the total NLL divided by
    the number of observed entries.

    It also takes integer labels, one per row or sequence position (shape
    `y_pred.shape[:-1]`): then it is the softmax cross-entropy from logits,
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`, with the
    same `ignore_class`.

    Args:
        normalize: `"row"` or `"entries"` (sparse or multi-hot targets).
        ignore_class: With integer labels, a label that is not scored
            (e.g. the padding id), or None.
        reduction: Keras reduction.
        name: Name of the loss.
        dtype: Dtype of the computation.

    Examples:
        >>> import keras_sparse as ks
        >>> loss = ks.losses.SparseMultinomialNLL()
        >>> sequences = ks.losses.SparseMultinomialNLL(ignore_class=0)
    """

    def __init__(
        self,
        normalize: str = "row",
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_multinomial_nll",
        dtype: Any = None,
    ) -> None:
        super().__init__(_multinomial, normalize, reduction, name, dtype)
        self.ignore_class = _validation.check_int(
            ignore_class, "ignore_class", minimum=-(2**31), allow_none=True
        )

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if is_label_target(y_true, y_pred):  # Keras's own checks and reduction, as its SCCE
            return keras.losses.Loss.__call__(self, y_true, y_pred, sample_weight)
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if is_label_target(y_true, y_pred):
            return label_nll(y_true, y_pred, self.ignore_class)
        return _multinomial(y_true, y_pred, self.normalize, where=f"loss {self.name!r}")

    def get_config(self) -> dict:
        return {**super().get_config(), "ignore_class": self.ignore_class}
