"""`SparseDenseOutput`: an output layer whose training cost follows the target's entries."""

from __future__ import annotations

import contextlib
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_sparse import _compat, _item_blocks, _negatives, _ops, _output_targets, _validation
from keras_sparse import backend as B
from keras_sparse._registry import register

SAMPLINGS = ("uniform", "counts")
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


@register
class SparseDenseOutput(keras.layers.Layer):
    """`Dense(units)` for huge outputs: in `fit`, only what the loss reads is scored.

    In `predict`, `evaluate` and `model(x)` it returns the same dense scores as
    `keras.layers.Dense(units, activation, use_bias)`, for hidden states of any
    rank `(batch, ..., d)`, so a trained model works wherever a Dense-output
    model does. In `fit` (any model: functional, Sequential, subclassed, with
    several outputs or `add_loss`) the layer defers, and the model's
    `compute_loss` scores what the compiled loss of this output reads, given
    its target (see the "Large catalogues" guide), never the batch x units
    matrix:

    - a sparse `(batch, units)` target with a pointwise loss (`sparse_mse`,
      `sparse_mae`, `sparse_huber`, `sparse_binary_crossentropy`, any
      `MaskedLoss`): the scores at the target's stored entries only. Loss and
      gradients equal the Dense model's.
    - a sparse target with `SparseMultinomialNLL` (`negatives=None`): the exact
      log-softmax at the target's entries. The log-partition is streamed over
      item blocks of `block_size` with a gradient that recomputes each block
      (memory O(batch x block)); the exact softmax touches every item, so the
      table's gradient is dense.
    - integer labels of shape `(batch, ...)` (one per position; `ignore_class`
      for padding) with `keras.losses.SparseCategoricalCrossentropy(
      from_logits=True)` or `SparseMultinomialNLL`: the exact cross-entropy by
      item blocks (the language-model head and sequential-recommender case),
      handed to Keras's own loss as two logits per position whose
      cross-entropy is the full softmax's, so `ignore_class`, masks and sample
      weights act as for `Dense`.
    - `negatives=n` with a softmax loss: a sampled softmax. One sample of n
      items (with replacement, uniform or proportional to `item_counts`) is
      shared by the batch; the partition is estimated as
      `sum_{j in O(u)} exp(s_uj) + sum_{n in S, n not in O(u)} exp(s_un) / (n q(n))`
      (log-Q correction, accidental hits removed). The log of this unbiased
      estimate underestimates the log-partition for a small sample.
    - `negatives=n` with `SparseBinaryCrossentropy(from_logits=True)`: the
      observed entries plus the sampled items (label 0, accidental hits
      removed) are scored.

    With `LazyAdam` only the output rows a step touched (observed plus sampled
    items) are updated. The kernel has shape `(units, input_dim)`: one row per
    item, the transpose of Dense's, so that it can be read and updated (and
    sharded under `keras.distribution.ModelParallel`) by rows. Compiled
    metrics keep their full-catalogue values: in a `fit` step the forward
    scores of the batch are computed for them (no gradient through them).

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
        `(batch, ..., input_dim)` dense features.

    Output shape:
        `(batch, ..., units)` dense scores (inside a `fit` step, a stand-in that
        the model's `compute_loss` resolves; return it unchanged from the model).

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
        >>> tokens = keras.Input((128,), dtype="int32")  # a language-model head
        >>> h = keras.layers.Embedding(50_000, 64)(tokens)
        >>> lm = keras.Model(tokens, ks.layers.SparseDenseOutput(50_000)(h))
        >>> lm.compile(
        ...     optimizer="adam",
        ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        ... )
        >>> lm.output_shape
        (None, 128, 50000)

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
        if self.negatives is not None and self.negatives >= self.units:
            raise ValueError(
                f"`negatives` must be smaller than `units` ({self.units}); got "
                f"negatives={self.negatives}. Sample fewer items, or pass negatives=None for "
                "the exact softmax over all of them."
            )
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
        self.supports_masking = True  # as Dense: a sequence mask passes to the scores

    def build(self, input_shape: tuple) -> None:
        if len(tuple(input_shape)) < 2:
            raise ValueError(
                "The input of SparseDenseOutput must have shape (batch, ..., features), at "
                f"least 2-D; got input shape {tuple(input_shape)}. Give it the output of a "
                "hidden layer."
            )
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

    # Dense scores (predict, evaluate, model(x), and steps that need them).

    def _dense(self, inputs: Any) -> Any:
        B.note_dense_read(self.kernel)
        if self.bias is not None:
            B.note_dense_read(self.bias)
        kernel, bias = self._parts()
        inputs = ops.cast(inputs, self.compute_dtype)
        return self.activation(_item_blocks.table_scores(inputs, kernel, bias))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if B.is_sparse(inputs):
            raise TypeError(
                "SparseDenseOutput takes dense features (the output of a hidden layer); got a "
                "sparse tensor. Put SparseDenseInput before it for sparse inputs."
            )
        step = _output_targets.current()
        # In a training step `training` is None where the model's call does not pass it on.
        if step is None or training is False:
            return self._dense(inputs)
        # A training step: stand in for the scores; `compute_loss` scores what the loss reads.
        h = ops.cast(inputs, self.compute_dtype)
        if step.needs_scores:  # compiled metrics read the scores; no gradient through them
            kernel, bias = self._parts()
            stand_in = ops.stop_gradient(
                self.activation(_item_blocks.table_scores(h, kernel, bias))
            )
        else:
            stand_in = ops.multiply(h, ops.ones((), h.dtype))  # a tensor of its own
        sample = None if self.negatives is None else self._sample()
        state = B.step_state([v for v in (self.kernel, self.bias) if v is not None])
        return step.defer(_output_targets.Deferred(self, stand_in, h, state, sample))

    def _loss_inputs(self, entry: _output_targets.Deferred, target: Any, loss: Any) -> tuple:
        """`(target, y_pred)` for the compiled `loss` of this output, from the step's record."""
        scope = contextlib.nullcontext()
        if entry.state is not None:
            scope = keras.StatelessScope(state_mapping=entry.state)
        with scope:
            if target is not None and B.is_sparse(target):
                return target, self._sparse_target_output(entry, target, loss)
            labels = _output_targets.label_loss(loss)
            if target is not None and labels is not None:
                return self._label_output(entry, target, labels)
            _output_targets.warn_dense_once(
                self,
                f"SparseDenseOutput {self.name!r} computes every item's score in fit: its "
                f"target is not sparse and its loss {_output_targets.loss_name(loss)!r} does not "
                "read integer labels. Give it a sparse target with one of keras_sparse's masked "
                "losses, or integer labels with keras.losses.SparseCategoricalCrossentropy("
                "from_logits=True), to score only what the loss reads.",
            )
            return target, self._dense(entry.h)

    def _sparse_target_output(self, entry: _output_targets.Deferred, target: Any, loss: Any):
        """The training output for a sparse `(batch, units)` target (see the class docstring)."""
        h = entry.h
        kind = _output_targets.loss_kind(loss)
        name = _output_targets.loss_name(loss)
        if kind is None:
            _output_targets.warn_dense_once(
                self,
                f"SparseDenseOutput {self.name!r} computes every item's score in fit: the loss "
                f"{name!r} is not one of keras_sparse's masked losses. Use "
                "sparse_mse / sparse_binary_crossentropy / SparseMultinomialNLL (or a "
                "MaskedLoss) to score only the target's entries.",
            )
            return self._dense(h)
        self._check_combination(kind, name)
        shape = B.sparse_shape(target)
        if len(shape) != 2 or len(h.shape) != 2:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} got a sparse target of shape {tuple(shape)} "
                f"for features of shape {tuple(h.shape)}: a sparse target must be 2-D "
                "(batch, units) with 2-D features. For sequences, give integer labels of shape "
                "(batch, steps) with SparseCategoricalCrossentropy(from_logits=True)."
            )
        if shape[-1] is not None and int(shape[-1]) != self.units:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has {self.units} units but the target has "
                f"{int(shape[-1])} columns (shape {tuple(shape)}). Give the layer "
                f"units={int(shape[-1])}."
            )
        e = _ops.entries(target, self.compute_dtype)
        scores = _item_blocks.entry_scores(
            h, self.kernel, self.bias, e.rows, e.cols, self.compute_dtype
        )
        if kind == "nll":
            if self.negatives is None:
                values = scores - self._gather(self._exact_log_partition(h), e.rows)
            else:
                log_z = self._sampled_log_partition(h, e, scores, entry.sample)
                values = scores - self._gather(log_z, e.rows)
            return B.make_sparse(e.indices, values, self._shape_of(h))
        values = self.activation(scores)
        if self.negatives is None:
            return B.make_sparse(e.indices, values, self._shape_of(h))
        items, _ = entry.sample
        neg = self.activation(self._sampled_scores(h, items))  # (rows, negatives)
        rows = ops.arange(ops.shape(h)[0])
        neg_rows = ops.reshape(ops.repeat(ops.expand_dims(rows, 1), self.negatives, axis=1), [-1])
        neg_cols = ops.reshape(ops.tile(ops.expand_dims(items, 0), [ops.shape(h)[0], 1]), [-1])
        neg_indices = ops.stack([neg_rows, neg_cols], axis=1)
        indices = ops.concatenate([ops.cast(e.indices, neg_indices.dtype), neg_indices], axis=0)
        values = ops.concatenate([values, ops.reshape(neg, [-1])], axis=0)
        return B.make_sparse(indices, values, self._shape_of(h))

    def _label_output(
        self, entry: _output_targets.Deferred, labels: Any, loss: _output_targets.LabelLoss
    ) -> tuple[Any, Any]:
        """Integer labels: two logits per position whose cross-entropy is the full one.

        With `s` the label's score and `r = log sum_{j != label} exp(s_j)` (the
        exact, streamed log-partition of every other item, or its sampled
        estimate), the cross-entropy of the logits `(s, r)` at class 0 is
        `logaddexp(s, r) - s`: the loss of the full softmax, with the same
        gradient. The labels become that class (the other one where 0 is
        `ignore_class`), so the compiled loss (Keras's own) applies its
        `ignore_class`, masks, sample weights and reduction as for the Dense model.
        """
        h = entry.h
        self._check_labels(loss, labels, h)
        labels = ops.convert_to_tensor(labels)
        features = h.shape[-1]
        flat_h = ops.reshape(h, (-1, features))
        flat = ops.reshape(ops.cast(labels, "int32"), (-1,))
        in_range = ops.logical_and(ops.greater_equal(flat, 0), ops.less(flat, self.units))
        safe = ops.where(in_range, flat, ops.zeros_like(flat))
        rows = ops.arange(ops.shape(flat)[0])
        scores = _item_blocks.entry_scores(
            flat_h, self.kernel, self.bias, rows, safe, self.compute_dtype
        )
        if self.negatives is None:
            others = ops.where(in_range, flat, ops.full_like(flat, -1))
            rest = self._exact_log_partition(flat_h, exclude=others)
        else:
            rest = self._sampled_rest(flat_h, safe, entry.sample)
        valid = in_range
        if loss.ignore_class is not None:
            valid = ops.logical_or(in_range, ops.equal(flat, loss.ignore_class))
        # A label outside [0, units) that is not ignore_class: NaN loss, never a wrong row.
        scores = ops.where(valid, scores, ops.full_like(scores, float("nan")))
        label_class = 1 if loss.ignore_class == 0 else 0
        pair = [scores, rest] if label_class == 0 else [rest, scores]
        logits = ops.reshape(ops.stack(pair, axis=-1), (*ops.shape(h)[:-1], 2))
        mask = _compat.keras_mask(entry.stand_in)
        if mask is not None:
            _compat.set_keras_mask(logits, mask)
        new = ops.full_like(labels, label_class, dtype="int32")
        if loss.ignore_class is not None:
            ignored = ops.equal(ops.cast(labels, "int32"), loss.ignore_class)
            new = ops.where(ignored, ops.full_like(new, loss.ignore_class), new)
        return new, logits

    def _check_labels(self, loss: _output_targets.LabelLoss, labels: Any, h: Any) -> None:
        if not loss.from_logits:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} is trained with {loss.name!r} on "
                "probabilities (from_logits=False), which needs every item's softmax. Use "
                "keras.losses.SparseCategoricalCrossentropy(from_logits=True) and "
                "activation=None: the layer then computes the exact cross-entropy by item "
                "blocks."
            )
        name = getattr(self.activation, "__name__", "")
        if name != "linear":
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has activation={name!r}, but the loss "
                f"{loss.name!r} takes logits. Use activation=None (the loss applies the softmax)."
            )
        if self.units < 2:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has units={self.units}; a cross-entropy over "
                "integer labels needs at least 2 units."
            )
        want = tuple(h.shape[:-1])
        got = tuple(labels.shape)
        if len(got) == len(want) + 1 and got[-1] == 1:
            got = got[:-1]
        same = len(got) == len(want) and all(
            a is None or b is None or int(a) == int(b) for a, b in zip(got, want)
        )
        if not same:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} got integer labels of shape "
                f"{tuple(labels.shape)} for features of shape {tuple(h.shape)}: the labels "
                f"must have shape {want} (one label per position; {(*want, 1)} also works)."
            )

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

    def _exact_log_partition(self, h: Any, exclude: Any = None) -> Any:
        B.note_dense_read(self.kernel, expected=True)  # the exact softmax reads every item
        if self.bias is not None:
            B.note_dense_read(self.bias, expected=True)
        kernel, bias = self._parts()
        return _item_blocks.log_partition(h, kernel, bias, self.block_size, exclude)

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

    def _sampled_terms(self, h: Any, sample: tuple, hit: Any) -> Any:
        """`s_n - log(n q(n))` of each row's sampled items: -inf at accidental hits."""
        items, log_expected = sample
        neg = self._sampled_scores(h, items) - ops.cast(log_expected, h.dtype)[None, :]
        return ops.where(hit, ops.full_like(neg, _ops.MINUS_INF), neg)

    def _sampled_rest(self, h: Any, labels: Any, sample: tuple) -> Any:
        """Log of the sampled estimate of `sum_{j != label} exp(s_j)`, one value per row."""
        neg = self._sampled_terms(h, sample, ops.equal(sample[0][None, :], labels[:, None]))
        top = ops.stop_gradient(ops.max(neg, axis=1))
        top = ops.where(ops.isfinite(top), top, ops.zeros_like(top))
        return top + ops.log(ops.sum(ops.exp(neg - top[:, None]), axis=1))

    def _sampled_log_partition(self, h: Any, e: _ops.Entries, scores: Any, sample: tuple) -> Any:
        """Log of the sampled estimate of each row's partition (see the class docstring)."""
        num_rows = ops.shape(h)[0]
        rows = ops.expand_dims(ops.arange(num_rows), 1)
        keys = _ops.linear_keys(e.rows, e.cols, self.units)
        sampled_keys = _ops.linear_keys(rows, sample[0][None, :], self.units)
        hit, _ = _ops.lookup(sampled_keys, keys, e.valid)
        neg = self._sampled_terms(h, sample, hit)
        pos = scores if e.valid is None else ops.where(e.valid, scores, _ops.MINUS_INF)
        top = ops.stop_gradient(
            ops.maximum(ops.max(neg, axis=1), _ops.row_max(pos, e.rows, num_rows))
        )
        top = ops.where(ops.isfinite(top), top, ops.zeros_like(top))
        pos_sum = _ops.row_sum(ops.exp(pos - self._gather(top, e.rows)), e.rows, num_rows)
        total = pos_sum + ops.sum(ops.exp(neg - top[:, None]), axis=1)
        return top + ops.log(total)

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
