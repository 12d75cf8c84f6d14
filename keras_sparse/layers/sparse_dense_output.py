"""`SparseDenseOutput`: an output layer whose training cost follows the target's entries."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_sparse import _item_blocks, _negatives, _ops, _output_targets, _validation
from keras_sparse import backend as B
from keras_sparse._registry import register

SAMPLINGS = ("uniform", "counts")
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


@register
class SparseDenseOutput(keras.layers.Layer):
    """`Dense(units)` for huge outputs: in `fit`, only the sparse target's entries are scored.

    In `predict`, `evaluate` and `model(x)` it returns the same dense scores as
    `keras.layers.Dense(units, activation, use_bias)`, so a trained model works
    wherever a Dense-output model does. In `fit` with a sparse target and one
    of keras_sparse's masked losses, the model's output for the step is a
    sparse tensor that never holds the batch x units matrix:

    - pointwise losses (`sparse_mse`, `sparse_mae`, `sparse_huber`,
      `sparse_binary_crossentropy`, any `MaskedLoss`): the scores at the
      target's stored entries only. Loss and gradients equal the Dense model's.
    - `SparseMultinomialNLL` (`negatives=None`): the exact log-softmax at the
      target's entries. The log-partition is streamed over item blocks of
      `block_size` with a gradient that recomputes each block (memory
      O(batch x block)); the exact softmax touches every item, so the table's
      gradient is dense.
    - `negatives=n` with `SparseMultinomialNLL`: a sampled softmax. One sample
      of n items (with replacement, uniform or proportional to `item_counts`)
      is shared by the batch; the partition is estimated as
      `sum_{j in O(u)} exp(s_uj) + sum_{n in S, n not in O(u)} exp(s_un) / (n q(n))`
      (log-Q correction, accidental hits removed). The log of this unbiased
      estimate underestimates the log-partition for a small sample.
    - `negatives=n` with `SparseBinaryCrossentropy`: the observed entries plus
      the sampled items (label 0, accidental hits removed) are scored.

    With `LazyAdam` only the output rows a step touched (observed plus sampled
    items) are updated. The kernel has shape `(units, input_dim)`: one row per
    item, the transpose of Dense's, so that it can be read and updated (and
    sharded under `keras.distribution.ModelParallel`) by rows. Ranking metrics
    in `compile(metrics=...)` keep their full-catalogue values: in a training
    step that has them, the forward scores of the whole batch are computed
    for the metrics (their gradient stays sparse); in `evaluate` the scores
    are dense as in `predict`. See the "Large catalogues" guide.

    Args:
        units: Number of items (output width), a positive integer.
        activation: Elementwise activation name or callable, `None` for
            logits. The multinomial losses need `None`.
        use_bias: Whether to add a per-item bias.
        negatives: Sampled items per training step, or None (exact).
        item_counts: Optional `(units,)` non-negative item counts (e.g.
            popularity) to sample negatives from; default uniform.
        sampling: `"uniform"` or `"counts"`; default `"counts"` when
            `item_counts` is given. A loaded model restores the counts from
            its weights.
        seed: Seed of the negative sampler (the same items on every backend).
        block_size: Items per block of the exact log-partition and of
            `predict_top_k` / `evaluate_top_k` on this model.
        kernel_initializer: Initializer of the `(units, input_dim)` kernel.
        bias_initializer: Initializer of the bias.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, input_dim)` dense features.

    Output shape:
        `(batch, units)` (dense; sparse inside a training step, see above).

    Examples:
        >>> import keras
        >>> import keras_sparse as ks
        >>> inputs = keras.Input((50_000,), sparse=True)
        >>> hidden = ks.layers.SparseDenseInput(32, activation="tanh")(inputs)
        >>> outputs = ks.layers.SparseDenseOutput(50_000)(hidden)
        >>> model = keras.Model(inputs, outputs)
        >>> model.compile(optimizer=ks.optimizers.LazyAdam(), loss="sparse_mse")
        >>> model.output_shape
        (None, 50000)

    """

    _keras_sparse_output_layer = True  # found by the training-step plan (_output_targets)

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        negatives: int | None = None,
        item_counts: Any = None,
        sampling: str | None = None,
        seed: int | None = None,
        block_size: int = 16384,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _validation.check_int(units, "units")
        self.activation = keras.activations.get(activation)
        self.use_bias = _validation.check_bool(use_bias, "use_bias")
        self.negatives = _validation.check_int(negatives, "negatives", allow_none=True)
        self.block_size = _validation.check_int(block_size, "block_size")
        self.seed = _validation.check_int(seed, "seed", minimum=0, allow_none=True)
        self._item_counts = _counts(item_counts, self.units)
        if sampling is None:
            sampling = "uniform" if self._item_counts is None else "counts"
        self.sampling = _validation.check_choice(sampling, "sampling", SAMPLINGS)
        if self.sampling == "uniform" and self._item_counts is not None:
            raise ValueError(
                "`item_counts` was given with sampling='uniform'; pass sampling='counts' "
                "(or leave it None) to sample negatives from the counts."
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.supports_jit = B.SUPPORTS_JIT

    def build(self, input_shape: tuple) -> None:
        _validation.check_ndim(tuple(input_shape), "input shape of SparseDenseOutput", 2)
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                "The last dimension of the input to SparseDenseOutput must be known; got "
                f"input shape {tuple(input_shape)}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(self.units, features), initializer=self.kernel_initializer
        )
        B.mark_row_sparse(self.kernel)  # read by item rows: LazyAdam may update lazily
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer
            )
            B.mark_row_sparse(self.bias)
        self.cumulative_counts = None
        if self.sampling == "counts":
            counts = self._item_counts
            initializer = "zeros" if counts is None else keras.initializers.Constant(counts)
            self.cumulative_counts = self.add_weight(
                name="cumulative_counts",
                shape=(self.units,),
                initializer=initializer,
                trainable=False,
                dtype="float32",
            )

    # Dense scores (predict, evaluate, model(x), and any step without a plan).

    def _dense(self, inputs: Any) -> Any:
        B.note_dense_read(self.kernel)
        if self.bias is not None:
            B.note_dense_read(self.bias)
        kernel, bias = self._parts()
        inputs = ops.cast(inputs, self.compute_dtype)
        return self.activation(_item_blocks.table_scores(inputs, kernel, bias))

    def call(self, inputs: Any) -> Any:
        if B.is_sparse(inputs):
            raise TypeError(
                "SparseDenseOutput takes dense features (the output of a hidden layer); got a "
                "sparse tensor. Put SparseDenseInput before it for sparse inputs."
            )
        plan = _output_targets.plan_for(self)
        if plan is None:
            return self._dense(inputs)
        return self._training_output(ops.cast(inputs, self.compute_dtype), plan)

    # Training steps with a sparse target.

    def _training_output(self, h: Any, plan: _output_targets.Plan) -> Any:
        kind = plan.loss_kind
        if kind is None:
            _output_targets.warn_dense_once(
                self,
                f"SparseDenseOutput {self.name!r} computes every item's score in fit: the loss "
                f"{plan.loss_name!r} is not one of keras_sparse's masked losses. Use "
                "sparse_mse / sparse_binary_crossentropy / SparseMultinomialNLL (or a "
                "MaskedLoss) to score only the target's entries.",
            )
            return self._dense(h)
        self._check_combination(kind, plan.loss_name)
        target = plan.target
        shape = B.sparse_shape(target)
        if shape[-1] is not None and int(shape[-1]) != self.units:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has {self.units} units but the target has "
                f"{int(shape[-1])} columns (shape {tuple(shape)}). Give the layer "
                f"units={int(shape[-1])}."
            )
        if kind == "nll" and plan.needs_scores:
            _output_targets.warn_dense_once(
                self,
                f"SparseDenseOutput {self.name!r} computes every item's score and its gradient "
                "in fit (the exact softmax; `negatives` is not used): a metric compiled with "
                "SparseMultinomialNLL ranks every item, and the "
                "softmax's gradient cannot come from a dense score block here. Watch ranking "
                "metrics with validation_data / evaluate_top_k instead, or compile them with a "
                "pointwise loss.",
            )
            return self._dense(h)
        e = _ops.entries(target, self.compute_dtype)
        scores = _item_blocks.entry_scores(
            h, self.kernel, self.bias, e.rows, e.cols, self.compute_dtype
        )
        if kind == "nll":
            if self.negatives is None:
                values = scores - self._gather(self._exact_log_partition(h), e.rows)
            else:
                values = scores - self._gather(self._sampled_log_partition(h, e, scores), e.rows)
            return B.make_sparse(e.indices, values, self._shape_of(h))
        if plan.needs_scores:  # full forward scores for the metrics, sparse gradient
            return self._dense_with_entry_gradient(h, e, scores)
        values = self.activation(scores)
        if self.negatives is None:
            return B.make_sparse(e.indices, values, self._shape_of(h))
        items, _ = self._sample()
        neg = self._sampled_scores(h, items)  # (rows, negatives)
        neg = self.activation(neg)
        rows = ops.arange(ops.shape(h)[0])
        neg_rows = ops.reshape(ops.repeat(ops.expand_dims(rows, 1), self.negatives, axis=1), [-1])
        neg_cols = ops.reshape(ops.tile(ops.expand_dims(items, 0), [ops.shape(h)[0], 1]), [-1])
        neg_indices = ops.stack([neg_rows, neg_cols], axis=1)
        indices = ops.concatenate([ops.cast(e.indices, neg_indices.dtype), neg_indices], axis=0)
        values = ops.concatenate([values, ops.reshape(neg, [-1])], axis=0)
        return B.make_sparse(indices, values, self._shape_of(h))

    def _check_combination(self, kind: str, loss_name: str) -> None:
        name = getattr(self.activation, "__name__", "")
        if kind == "nll" and name != "linear":
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has activation={name!r}, but the loss "
                f"{loss_name!r} takes logits. Use activation=None."
            )
        if name in _NOT_ELEMENTWISE:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has activation={name!r}, which is not "
                "elementwise, so it cannot be applied to the target's entries alone. Use "
                "activation=None with SparseMultinomialNLL for a softmax output."
            )
        if self.negatives is not None and kind in ("pointwise", "bce_probabilities"):
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has negatives={self.negatives}, which works "
                "with SparseMultinomialNLL (sampled softmax) and "
                "SparseBinaryCrossentropy(from_logits=True) (negative-sampled BCE), but the "
                f"loss is {loss_name!r}. Use one of those losses, or negatives=None."
            )

    def _shape_of(self, h: Any) -> tuple:
        return (ops.shape(h)[0], self.units)

    def _gather(self, values: Any, rows: Any) -> Any:
        return B.gather_rows(values, rows)  # 0 at padding rows

    def _parts(self) -> tuple[Any, Any]:
        kernel = ops.cast(ops.convert_to_tensor(self.kernel), self.compute_dtype)
        bias = None
        if self.bias is not None:
            bias = ops.cast(ops.convert_to_tensor(self.bias), self.compute_dtype)
        return kernel, bias

    def _exact_log_partition(self, h: Any) -> Any:
        B.note_dense_read(self.kernel, expected=True)  # the exact softmax reads every item
        if self.bias is not None:
            B.note_dense_read(self.bias, expected=True)
        kernel, bias = self._parts()
        return _item_blocks.log_partition(h, kernel, bias, self.block_size)

    def _sample(self) -> tuple[Any, Any]:
        cumulative = None
        if self.cumulative_counts is not None:
            cumulative = ops.convert_to_tensor(self.cumulative_counts)
        return _negatives.sample(self.seed_generator.next(), self.negatives, self.units, cumulative)

    def _sampled_scores(self, h: Any, items: Any) -> Any:
        picked = ops.cast(B.gather_rows(self.kernel, items), self.compute_dtype)
        bias = None
        if self.bias is not None:
            bias = ops.cast(B.gather_rows(self.bias, items), self.compute_dtype)
        return _item_blocks.table_scores(h, picked, bias)

    def _sampled_log_partition(self, h: Any, e: _ops.Entries, scores: Any) -> Any:
        """Log of the sampled estimate of each row's partition (see the class docstring)."""
        items, log_expected = self._sample()
        neg = self._sampled_scores(h, items) - ops.cast(log_expected, h.dtype)[None, :]
        num_rows = ops.shape(h)[0]
        rows = ops.expand_dims(ops.arange(num_rows), 1)
        keys = _ops.linear_keys(e.rows, e.cols, self.units)
        hit, _ = _ops.lookup(_ops.linear_keys(rows, items[None, :], self.units), keys, e.valid)
        neg = ops.where(hit, ops.full_like(neg, _ops.MINUS_INF), neg)
        pos = scores if e.valid is None else ops.where(e.valid, scores, _ops.MINUS_INF)
        top = ops.stop_gradient(
            ops.maximum(ops.max(neg, axis=1), _ops.row_max(pos, e.rows, num_rows))
        )
        top = ops.where(ops.isfinite(top), top, ops.zeros_like(top))
        pos_sum = _ops.row_sum(ops.exp(pos - self._gather(top, e.rows)), e.rows, num_rows)
        total = pos_sum + ops.sum(ops.exp(neg - top[:, None]), axis=1)
        return top + ops.log(total)

    def _dense_with_entry_gradient(self, h: Any, e: _ops.Entries, scores: Any) -> Any:
        """Forward: the dense scores. Backward: only through the target's entries."""
        kernel, bias = self._parts()
        # Read without a gradient: no dense table gradient.
        full = ops.stop_gradient(_item_blocks.table_scores(h, kernel, bias))
        # Zero in value, it carries the entries' gradient into the dense output.
        delta = scores - ops.stop_gradient(scores)
        if e.valid is not None:
            delta = ops.where(e.valid, delta, ops.zeros_like(delta))
        return self.activation(full + ops.scatter(e.indices, delta, ops.shape(full)))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*tuple(input_shape)[:-1], self.units)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "negatives": self.negatives,
                "sampling": self.sampling,
                "seed": self.seed,
                "block_size": self.block_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def _counts(item_counts: Any, units: int) -> np.ndarray | None:
    """Cumulative float32 counts from the user's `item_counts`, validated."""
    if item_counts is None:
        return None
    counts = np.asarray(item_counts, dtype=np.float64)
    if counts.shape != (units,):
        raise ValueError(
            f"`item_counts` must have shape ({units},), one count per unit; got shape "
            f"{counts.shape}."
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(
            "`item_counts` must be finite, non-negative and not all zero (e.g. each item's "
            "number of interactions)."
        )
    return np.cumsum(counts).astype(np.float32)
