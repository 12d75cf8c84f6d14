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
from keras_sparse.layers._base import SparseLayer

SAMPLINGS = ("uniform", "counts", "in_batch", "mixed", "hard")
DEFAULT_SAMPLING = "hard"  # chosen by measurement: docs/large_catalogues.md
POOL_FACTOR = 8  # the hard sampler's default pool: POOL_FACTOR x negatives
POOL_BLOCK = 4096  # pool items scored at a time (fastest of 1024-65536 on a 2-core CPU)
_FROM_BATCH = ("in_batch", "mixed")
_REPEATS = 4  # places of a repeated draw marked as an accidental hit (`_hit_entries`)
_NOT_ELEMENTWISE = ("softmax", "log_softmax")


@register
class SparseDenseOutput(SparseLayer):
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
    - `negatives=n` with a softmax loss: a sampled softmax. Each row gets n
      negatives from the `sampling` scheme (below); the partition is
      estimated as `sum_{j in O(u)} exp(s_uj) + sum_{n in N(u)} exp(s_un) / (n q(n))`
      (log-Q correction, accidental hits removed; docs/definitions.md).
    - `negatives=n` with `SparseBinaryCrossentropy(from_logits=True)`: the
      observed entries plus each row's negatives (label 0, accidental hits
      removed) are scored; `gbce_t` calibrates it as gSASRec's gBCE.

    Samplers (`sampling`): `"hard"` (the default) draws a pool of
    `pool_size` uniform items shared by the batch and keeps, for each row, the
    best-scoring item of each of n groups of the pool: at 2 % of the catalogue
    it trained rankings within 0.95x of the exact softmax's where uniform
    sampling reached 0.3-0.6x (see the "Large catalogues" guide). `"uniform"`
    and `"counts"` (by `item_counts`) draw n items shared by the batch;
    `"in_batch"` draws the batch's own target items (by their in-batch
    frequency) and `"mixed"` half of those and half uniform ones.

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
        negatives: Negatives per row and training step, or None (exact).
        item_counts: Optional `(units,)` non-negative item counts (e.g.
            popularity) to sample negatives from (`sampling="counts"`).
        sampling: `"hard"`, `"uniform"`, `"counts"`, `"in_batch"` or
            `"mixed"`; default `"counts"` when `item_counts` is given, else
            `"hard"`. A loaded model restores the counts from its weights.
        seed: Seed of the negative sampler (the same items on every backend).
        pool_size: Items the `"hard"` sampler draws per step (rounded down
            to a multiple of `negatives`); default 8 x negatives, at most `units`.
            Its cost is O(batch x pool_size x features).
        gbce_t: gSASRec's calibration `t` in (0, 1] for negative-sampled
            `SparseBinaryCrossentropy(from_logits=True)`, or None (plain BCE).
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
        pool_size: int | None = None,
        gbce_t: float | None = None,
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
            sampling = DEFAULT_SAMPLING if self._item_counts is None else "counts"
        self.sampling = _validation.check_choice(sampling, "sampling", SAMPLINGS)
        if self.sampling != "counts" and self._item_counts is not None:
            raise ValueError(
                f"`item_counts` was given with sampling={self.sampling!r}; pass "
                "sampling='counts' (or leave it None) to sample negatives from the counts."
            )
        self.pool_size = _validation.check_int(pool_size, "pool_size", allow_none=True)
        if self.pool_size is not None and self.sampling != "hard":
            raise ValueError(
                f"`pool_size` ({self.pool_size}) is the candidate pool of sampling='hard'; got "
                f"sampling={self.sampling!r}. Pass sampling='hard', or leave pool_size None."
            )
        if self.pool_size is not None and self.negatives is None:
            raise ValueError(
                f"`pool_size` ({self.pool_size}) is the hard sampler's pool, but "
                "negatives=None (the exact softmax samples nothing). Pass negatives=n, or "
                "leave pool_size None."
            )
        if self.pool_size is not None:
            if self.pool_size < self.negatives:
                raise ValueError(
                    f"`pool_size` must be at least `negatives` ({self.negatives}); got "
                    f"pool_size={self.pool_size}. The hard sampler keeps each row's best item "
                    "of each of `negatives` groups of the pool: give a larger pool, or leave "
                    f"it None ({POOL_FACTOR} x negatives)."
                )
        self.gbce_t = _validation.check_float(
            gbce_t, "gbce_t", low=0.0, high=1.0, low_open=True, allow_none=True
        )
        if self.gbce_t is not None and self.negatives is None:
            raise ValueError(
                f"`gbce_t` ({self.gbce_t}) calibrates negative-sampled binary cross-entropy "
                "(gBCE); got negatives=None. Pass negatives=n, or leave gbce_t None."
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
        draws = None
        if self.negatives is not None:
            targets = _ops.and_valid(ops.logical_not(_ops.excluded_marks(e)), e.valid)
            draws = self._draws(entry, e.cols, targets)
        if kind == "nll":
            if draws is None:
                values = scores - self._gather(self._exact_log_partition(h), e.rows)
            else:
                log_z = self._sampled_log_partition(h, e, scores, draws)
                values = scores - self._gather(log_z, e.rows)
            return B.make_sparse(e.indices, values, self._shape_of(h))
        if self.gbce_t is not None:
            scores = self._gbce(scores)
        values = self.activation(scores)
        if draws is None:
            return B.make_sparse(e.indices, values, self._shape_of(h))
        neg, cols = self._sampled_negatives(h, e, draws)
        rows = ops.arange(ops.shape(h)[0])
        neg_rows = ops.reshape(ops.repeat(ops.expand_dims(rows, 1), self.negatives, axis=1), [-1])
        neg_indices = ops.stack([neg_rows, ops.reshape(cols, [-1])], axis=1)
        indices = ops.concatenate([ops.cast(e.indices, neg_indices.dtype), neg_indices], axis=0)
        values = ops.concatenate([values, ops.reshape(self.activation(neg), [-1])], axis=0)
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
            targets = in_range
            if loss.ignore_class is not None:
                targets = ops.logical_and(in_range, ops.not_equal(flat, loss.ignore_class))
            rest = self._sampled_rest(flat_h, safe, self._draws(entry, safe, targets))
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
        if self.gbce_t is not None:
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has gbce_t={self.gbce_t}, which calibrates a "
                "binary cross-entropy over a sparse target, but it is trained on integer labels "
                f"with {loss.name!r} (a softmax). Pass gbce_t=None, or give a sparse target "
                "with SparseBinaryCrossentropy(from_logits=True)."
            )
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
        if self.gbce_t is not None and kind != "bce":
            raise ValueError(
                f"SparseDenseOutput {self.name!r} has gbce_t={self.gbce_t}, which calibrates "
                "SparseBinaryCrossentropy(from_logits=True) with sampled negatives, but the "
                f"loss is {loss_name!r}. Use that loss, or gbce_t=None."
            )
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

    def _sample(self) -> Any:
        """The step's draws, or (in-batch samplers) the seed they are drawn from."""
        seed = self.seed_generator.next()
        if self.sampling in _FROM_BATCH:
            return seed  # drawn from the target's items in `_draws`
        cumulative = None
        if self.cumulative_counts is not None:
            cumulative = ops.convert_to_tensor(self.cumulative_counts)
        return _negatives.sample(seed, self._num_draws(), self.units, cumulative)

    def _num_draws(self) -> int:
        """Items drawn per step: the hard sampler's candidate pool, else `negatives`."""
        if self.sampling != "hard":
            return self.negatives
        return self._groups() * self.negatives

    def _groups(self) -> int:
        """Pool items per kept negative: each kept one is the best of its group of draws."""
        if self.pool_size is not None:
            return self.pool_size // self.negatives
        return max(1, min(POOL_FACTOR, self.units // self.negatives))

    def _draws(self, entry: _output_targets.Deferred, items: Any, targets: Any) -> tuple:
        """`(items, log_expected)` of the step: the target's `items` feed in-batch samplers."""
        if self.sampling not in _FROM_BATCH:
            return entry.sample
        uniform = self.negatives // 2 if self.sampling == "mixed" else 0
        return _negatives.from_batch(
            entry.sample, self.negatives, items, targets, self.units, uniform
        )

    def _table_rows(self, items: Any) -> tuple[Any, Any]:
        """The kernel rows and biases of `items`, read by rows (lazy updates see them)."""
        picked = ops.cast(B.gather_rows(self.kernel, items), self.compute_dtype)
        bias = None
        if self.bias is not None:
            bias = ops.cast(B.gather_rows(self.bias, items), self.compute_dtype)
        return picked, bias

    def _sampled_scores(self, h: Any, items: Any) -> Any:
        return _item_blocks.table_scores(h, *self._table_rows(items))

    def _sampled_terms(self, h: Any, sample: tuple, rows: Any, cols: Any, valid: Any) -> Any:
        """`s_n - log(n q(n))` of each row's negatives: -inf at accidental hits.

        `(rows, cols, valid)` are the target's entries, the items each row must
        not count as negatives. The hard sampler keeps, per group of its pool,
        each row's best item that is not a hit (`_item_blocks.group_max`), and
        counts the kept ones as `negatives` uniform draws: weighting them as a
        sample of that size (`units / negatives` each, not `units / pool`) gave
        the measured quality (docs/large_catalogues.md); it is biased high.
        """
        items, log_expected = sample
        if self.sampling == "hard":
            picked, bias = self._table_rows(items)
            masks = [self._hit_entries(rows, cols, valid, items)]
            best = _item_blocks.group_max(h, picked, bias, self._groups(), POOL_BLOCK, masks)
            return best - float(np.log(self.negatives / self.units))
        neg = self._sampled_scores(h, items) - ops.cast(log_expected, h.dtype)[None, :]
        hit = self._hits(ops.shape(h)[0], rows, cols, valid, items)
        return ops.where(hit, ops.full_like(neg, _ops.MINUS_INF), neg)

    def _grouped(self, scores: Any) -> Any:
        """`(rows, negatives, groups)`: the hard sampler's pool scores, one group per negative."""
        return ops.reshape(scores, (-1, self.negatives, self._groups()))

    def _sampled_negatives(self, h: Any, e: _ops.Entries, sample: tuple) -> tuple[Any, Any]:
        """Scores `(rows, negatives)` and items of each row's negatives (binary losses)."""
        items, log_expected = sample
        neg = self._sampled_scores(h, items)
        rows = ops.shape(h)[0]
        cols = ops.tile(ops.expand_dims(items, 0), [rows, 1])
        empty = ops.isinf(log_expected)[None, :]  # an in-batch draw from an empty batch
        neg = ops.where(empty, ops.full_like(neg, _ops.MINUS_INF), neg)
        if self.sampling == "hard":
            hit = self._hits(rows, e.rows, e.cols, e.valid, items)
            masked = ops.where(hit, ops.full_like(neg, _ops.MINUS_INF), neg)
            best = ops.expand_dims(ops.argmax(self._grouped(ops.stop_gradient(masked)), axis=2), 2)
            neg = ops.take_along_axis(self._grouped(masked), best, axis=2)[:, :, 0]
            cols = ops.take_along_axis(self._grouped(cols), best, axis=2)[:, :, 0]
        return neg, cols

    def _hit_entries(self, rows: Any, cols: Any, valid: Any, items: Any) -> tuple[Any, Any]:
        """`(indices, which)`: the `(row, draw)` places where a draw is one of the row's items.

        Each target entry `(row, col)` is looked up among the draws (sorted
        once): O(entries x log draws), never a search per (row, draw) pair. An
        item drawn more than `_REPEATS` times in one step (rare) is marked at
        its first `_REPEATS` places only.
        """
        num = ops.shape(items)[0]
        order = ops.argsort(items)
        ranked = ops.take(items, order)
        cols = ops.cast(cols, ranked.dtype)
        first = B.searchsorted(ranked, cols, side="left")
        last = B.searchsorted(ranked, cols, side="right")
        targets = _ops.and_valid(ops.ones_like(first, dtype="bool"), valid)
        rows = ops.cast(rows, "int32")
        indices, which = [], []
        for k in range(_REPEATS):
            place = first + k
            which.append(ops.logical_and(targets, ops.less(place, last)))
            column = ops.take(order, ops.minimum(place, num - 1))
            indices.append(ops.stack([rows, ops.cast(column, "int32")], axis=1))
        return ops.concatenate(indices, axis=0), ops.concatenate(which, axis=0)

    def _hits(self, num_rows: Any, rows: Any, cols: Any, valid: Any, items: Any) -> Any:
        """`(num_rows, len(items))`: whether each shared draw is one of the row's items."""
        indices, which = self._hit_entries(rows, cols, valid, items)
        marks = ops.scatter(indices, ops.cast(which, "int32"), (num_rows, ops.shape(items)[0]))
        return ops.greater(marks, 0)

    def _gbce(self, scores: Any) -> Any:
        """The calibrated positive logits of gSASRec's gBCE: `sigmoid(s') = sigmoid(s) ** beta`.

        `beta = alpha (t (1 - 1/alpha) + 1/alpha)` with `alpha` the share of the
        other items sampled, so the positive's binary cross-entropy is scaled by
        `beta` (docs/definitions.md).
        """
        alpha = self.negatives / (self.units - 1)
        beta = alpha * (self.gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
        # -log(sigmoid(s) ** -beta - 1), with the exponent floored so it stays finite.
        power = ops.maximum(beta * ops.softplus(-scores), 1e-10)
        return -ops.log(ops.expm1(power))

    def _sampled_rest(self, h: Any, labels: Any, sample: tuple) -> Any:
        """Log of the sampled estimate of `sum_{j != label} exp(s_j)`, one value per row."""
        rows = ops.arange(ops.shape(labels)[0], dtype="int32")
        neg = self._sampled_terms(h, sample, rows, labels, None)
        top = ops.stop_gradient(ops.max(neg, axis=1))
        top = ops.where(ops.isfinite(top), top, ops.zeros_like(top))
        return top + ops.log(ops.sum(ops.exp(neg - top[:, None]), axis=1))

    def _sampled_log_partition(self, h: Any, e: _ops.Entries, scores: Any, sample: tuple) -> Any:
        """Log of the sampled estimate of each row's partition (see the class docstring)."""
        num_rows = ops.shape(h)[0]
        neg = self._sampled_terms(h, sample, e.rows, e.cols, e.valid)
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
                "pool_size": self.pool_size,
                "gbce_t": self.gbce_t,
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
