"""Masked losses that score only the observed (stored) entries of a sparse target.

Each loss is a plain function returning one value per row, plus a class with
Keras's `reduction`, `name` and `get_config`, as in Keras core. A sparse
`y_true` is never densified: `y_pred` is gathered at its stored entries. A
dense `y_true` means "the non-zero entries are observed".
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_sparse import _tf, _validation
from keras_sparse._registry import register

__all__ = [
    "SparseBinaryCrossentropy",
    "SparseHuber",
    "SparseMeanAbsoluteError",
    "SparseMeanSquaredError",
    "SparseMultinomialNLL",
    "sparse_binary_crossentropy",
    "sparse_huber",
    "sparse_mae",
    "sparse_mse",
    "sparse_multinomial_nll",
]

NORMALIZE = ("row", "entries")


def observed_entries(y_true: Any, y_pred: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Indices (nnz, 2), target values and the 2-D `y_pred` of the observed entries.

    A sparse `y_true` is canonicalised (duplicates summed, explicit zeros
    kept); for a dense `y_true` the non-zero entries are the observed ones.
    """
    y_pred = tf.convert_to_tensor(y_pred)
    if _tf.is_sparse(y_true):
        if y_true.shape.rank is not None and y_true.shape.rank != 2:
            raise ValueError(f"`y_true` must be 2-D (rows, items), got shape {y_true.shape}.")
        st = _tf.canonicalize(y_true)
        return st.indices, tf.cast(st.values, y_pred.dtype), y_pred
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank is not None and y_true.shape.rank != 2:
        raise ValueError(f"`y_true` must be 2-D (rows, items), got shape {y_true.shape}.")
    indices = tf.where(tf.not_equal(y_true, 0))
    return indices, tf.cast(tf.gather_nd(y_true, indices), y_pred.dtype), y_pred


def _rows_of(indices: tf.Tensor, y_pred: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return indices[:, 0], tf.shape(y_pred, out_type=tf.int64)[0]


def _per_row(
    entry_loss: tf.Tensor, indices: tf.Tensor, y_pred: tf.Tensor, normalize: str, mean: bool
) -> tf.Tensor:
    """Reduce per-entry losses to per-row values.

    `normalize="row"`: each row's sum (`mean=False`) or mean over its observed
    entries (`mean=True`); a row with no entry gives exactly 0.
    `normalize="entries"`: values whose batch mean is the total loss over the
    total number of observed entries of the batch.
    """
    rows, num_rows = _rows_of(indices, y_pred)
    totals = _tf.row_sum(entry_loss, rows, num_rows)
    if normalize == "entries":
        # Under a tf.distribute strategy the counts are those of the global batch,
        # so the replicas together give total loss / total entries, as on one device.
        count, rows_in_batch = _tf.replica_sum(
            tf.cast(tf.shape(entry_loss)[0], totals.dtype), tf.cast(num_rows, totals.dtype)
        )
        return tf.math.divide_no_nan(totals * rows_in_batch, count)
    if not mean:
        return totals
    counts = _tf.row_sum(tf.ones_like(entry_loss), rows, num_rows)
    return tf.math.divide_no_nan(totals, counts)


def _squared(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.square(p - t)


def _absolute(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.abs(p - t)


def _huber(delta: float):
    def fn(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        err = tf.abs(p - t)
        d = tf.cast(delta, err.dtype)
        return tf.where(err <= d, 0.5 * tf.square(err), d * err - 0.5 * d * d)

    return fn


def _binary_crossentropy(from_logits: bool):
    def fn(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        if from_logits:
            return tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=p)
        eps = tf.cast(keras.backend.epsilon(), p.dtype)
        p = tf.clip_by_value(p, eps, 1 - eps)
        return -(t * tf.math.log(p) + (1 - t) * tf.math.log(1 - p))

    return fn


def _pointwise(y_true: Any, y_pred: Any, fn, normalize: str) -> tf.Tensor:
    indices, values, y_pred = observed_entries(y_true, y_pred)
    entry_loss = fn(values, tf.gather_nd(y_pred, indices))
    return _per_row(entry_loss, indices, y_pred, normalize, mean=True)


def _multinomial(y_true: Any, y_pred: Any, normalize: str) -> tf.Tensor:
    indices, values, y_pred = observed_entries(y_true, y_pred)
    log_probs = tf.nn.log_softmax(y_pred, axis=-1)
    entry_loss = -values * tf.gather_nd(log_probs, indices)
    return _per_row(entry_loss, indices, y_pred, normalize, mean=False)


@register
def sparse_mse(y_true: Any, y_pred: Any) -> tf.Tensor:
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
        >>> y_true = ks.to_sparse_tensor(sp.csr_matrix([[0.0, 4.0], [0.0, 0.0]]))
        >>> ks.losses.sparse_mse(y_true, np.array([[9.0, 2.0], [1.0, 1.0]])).numpy().tolist()
        [4.0, 0.0]
    """
    return _pointwise(y_true, y_pred, _squared, "row")


@register
def sparse_mae(y_true: Any, y_pred: Any) -> tf.Tensor:
    """Mean absolute error over the observed entries of each row.

    Args:
        y_true: Sparse or dense `(rows, items)` target (see `sparse_mse`).
        y_pred: Dense `(rows, items)` predictions.

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse_tensor(sp.csr_matrix([[1.0, 0.0, 3.0]]))
        >>> ks.losses.sparse_mae(y_true, [[0.0, 5.0, 0.0]]).numpy().tolist()
        [2.0]
    """
    return _pointwise(y_true, y_pred, _absolute, "row")


@register
def sparse_huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> tf.Tensor:
    """Huber loss over the observed entries of each row.

    Args:
        y_true: Sparse or dense `(rows, items)` target (see `sparse_mse`).
        y_pred: Dense `(rows, items)` predictions.
        delta: Where the loss turns from quadratic to linear.

    Returns:
        A `(rows,)` tensor, 0 for rows without observed entries.

    Examples:
        >>> import scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> y_true = ks.to_sparse_tensor(sp.csr_matrix([[1.0, 0.0, 3.0]]))
        >>> ks.losses.sparse_huber(y_true, [[1.5, 9.0, 0.0]]).numpy().tolist()
        [1.3125]
    """
    delta = _validation.check_float(delta, "delta", low=0.0)
    return _pointwise(y_true, y_pred, _huber(delta), "row")


@register
def sparse_binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> tf.Tensor:
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
        >>> y_true = ks.to_sparse_tensor(sp.csr_matrix(([1.0, 0.0], ([0, 0], [0, 2])), (1, 3)))
        >>> float(ks.losses.sparse_binary_crossentropy(y_true, [[0.5, 0.9, 0.5]])[0])
        0.6931...
    """
    from_logits = _validation.check_bool(from_logits, "from_logits")
    return _pointwise(y_true, y_pred, _binary_crossentropy(from_logits), "row")


@register
def sparse_multinomial_nll(y_true: Any, y_pred: Any) -> tf.Tensor:
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
        >>> y_true = ks.to_sparse_tensor(sp.csr_matrix([[1.0, 0.0]]))
        >>> round(float(ks.losses.sparse_multinomial_nll(y_true, [[0.0, 0.0]])[0]), 4)
        0.6931
    """
    return _multinomial(y_true, y_pred, "row")


class _MaskedLoss(keras.losses.Loss):
    """Shared machinery of the loss classes: `normalize`, reduction, config."""

    def __init__(
        self,
        normalize: str = "row",
        reduction: str = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.normalize = _validation.check_choice(normalize, "normalize", NORMALIZE)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tf.Tensor:
        # Keras's base __call__ converts y_true with ops.convert_to_tensor, which
        # keeps a SparseTensor but casts it; do only that, then reduce as Keras does.
        if _tf.is_sparse(y_true) and self.dtype is not None:
            y_true = tf.cast(y_true, self.dtype)
        return super().__call__(y_true, y_pred, sample_weight)

    def get_config(self) -> dict:
        config = super().get_config()
        config["normalize"] = self.normalize
        return config


@register
class SparseMeanSquaredError(_MaskedLoss):
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
        reduction: str = "sum_over_batch_size",
        name: str = "sparse_mean_squared_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return _pointwise(y_true, y_pred, _squared, self.normalize)


@register
class SparseMeanAbsoluteError(_MaskedLoss):
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
        reduction: str = "sum_over_batch_size",
        name: str = "sparse_mean_absolute_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return _pointwise(y_true, y_pred, _absolute, self.normalize)


@register
class SparseHuber(_MaskedLoss):
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
        reduction: str = "sum_over_batch_size",
        name: str = "sparse_huber",
        dtype: Any = None,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, name=name, dtype=dtype)
        self.delta = _validation.check_float(delta, "delta", low=0.0)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return _pointwise(y_true, y_pred, _huber(self.delta), self.normalize)

    def get_config(self) -> dict:
        return {**super().get_config(), "delta": self.delta}


@register
class SparseBinaryCrossentropy(_MaskedLoss):
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
        reduction: str = "sum_over_batch_size",
        name: str = "sparse_binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _validation.check_bool(from_logits, "from_logits")

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        fn = _binary_crossentropy(self.from_logits)
        return _pointwise(y_true, y_pred, fn, self.normalize)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits}


@register
class SparseMultinomialNLL(_MaskedLoss):
    """Multinomial negative log-likelihood (Mult-VAE) over the observed entries.

    With `normalize="row"` each row contributes its summed NLL (the Mult-VAE
    objective); with `"entries"` the batch value is the total NLL divided by
    the number of observed entries.

    Args:
        normalize: `"row"` or `"entries"`.
        reduction: Keras reduction.
        name: Name of the loss.
        dtype: Dtype of the computation.

    Examples:
        >>> import keras_sparse as ks
        >>> loss = ks.losses.SparseMultinomialNLL()
    """

    def __init__(
        self,
        normalize: str = "row",
        reduction: str = "sum_over_batch_size",
        name: str = "sparse_multinomial_nll",
        dtype: Any = None,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true: Any, y_pred: Any) -> tf.Tensor:
        return _multinomial(y_true, y_pred, self.normalize)
