"""Streaming top-k: run a model batch by batch and keep only k items per row.

Scoring every user against every item does not fit in memory at scale;
`predict_top_k` and `evaluate_top_k` score one batch at a time, mask excluded
items, take the top k in a compiled step of the active backend and keep only
k numbers per row (or the metric sums).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp
from keras import ops

from keras_sparse import _compat, _item_blocks, _ops, _output_targets, _validation, ranking
from keras_sparse import backend as B
from keras_sparse.convert import canonical_csr
from keras_sparse.data import SparseDataset
from keras_sparse.topk._csr import VALUES, CSRBuilder, exclude_csr, rows_sparse

__all__ = ["evaluate_top_k", "predict_top_k"]


# Above this many excluded items in one row, masking the scores beats a wider top-k.
MAX_EXTRA = 512


def _extra_for(excl: Any, rows: slice, small_blocks: bool = False) -> int | None:
    """Bound on the excluded items per row (rounded up to 8), or None to mask instead.

    With `small_blocks` (the backend scores in blocks that stay in cache, see
    `backend.dense_score_rows`), masking in place is the cheaper of the two.
    """
    if excl is None or small_blocks:
        return None
    most = int(np.diff(excl.indptr)[rows].max(initial=0))
    if most > MAX_EXTRA:
        return None
    return -(-most // 8) * 8  # few distinct values, so few retraces


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cached_step(model: Callable, key: tuple, build: Callable) -> Callable:
    """One compiled step per (model, key), dropped when the model is.

    The step holds only a weak reference to the model, so the cache never
    keeps a model alive.
    """
    try:
        steps = _STEPS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: compile for this call only
        steps = {}
    if key not in steps:
        steps[key] = build()
    return steps[key]


def _model_state(model: Callable) -> Any:
    """Current variable values of a Keras model (passed to the step), or None."""
    if not isinstance(model, keras.Layer):
        return None
    B.check_distribution(model)
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )


def _scorer(model: Callable) -> Callable:
    """`score(state, batch_x)`: the model's dense scores, reading weights from `state`.

    A Keras model is called statelessly so that a compiled step reads the
    weights it is given, never copies baked in when it was compiled.
    """
    if not isinstance(model, keras.Layer):
        return lambda state, batch_x: _check_scores(model(batch_x))
    ref = weakref.ref(model)
    kwargs = {"training": False} if _compat.call_takes_training(model) else {}

    def score(state: Any, batch_x: Any) -> Any:
        out, _ = ref().stateless_call(state[0], state[1], batch_x, **kwargs)
        return _check_scores(out)

    return score


def _check_scores(out: Any) -> Any:
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(
            "The model must return one dense (rows, items) score tensor; got "
            f"{type(out).__name__}. For a model ending in TopK, call it yourself and pass "
            "its (scores, indices) output to TopKToCSR."
        )
    return last_position(ops.convert_to_tensor(out))


def last_position(x: Any) -> Any:
    """A sequence model's `(rows, steps, width)` output at its last step; 2-D as it is.

    The next-item scores of a sequential recommender or language model come
    from the last position (left-pad shorter sequences).
    """
    return x[:, -1, :] if len(x.shape) == 3 else x


class _Blocks:
    """A model that ends in `SparseDenseOutput`: its features, then the output by blocks.

    The step gets the features sub-model's variables and the output layer's
    kernel and bias as its state, and never forms the rows x items scores.
    """

    def __init__(self, model: Any, layer: Any) -> None:
        self.model = weakref.ref(model)
        self.features = keras.Model(model.inputs, layer.input)
        self.layer = layer
        name = getattr(layer.activation, "__name__", "")
        self.activation = None if name == "linear" else layer.activation

    def state(self) -> tuple:
        B.check_distribution(self.model())
        bias = None if self.layer.bias is None else self.layer.bias.value
        return (
            [v.value for v in self.features.trainable_variables],
            [v.value for v in self.features.non_trainable_variables],
            self.layer.kernel.value,
            bias,
        )

    def features_of(self, state: tuple, batch_x: Any) -> Any:
        h, _ = self.features.stateless_call(state[0], state[1], batch_x)
        return ops.cast(last_position(h), self.layer.compute_dtype)


_BLOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _blocks_of(model: Callable) -> _Blocks | None:
    """The block scorer of a Keras model whose output is a `SparseDenseOutput`, else None."""
    if not isinstance(model, keras.Model):
        return None
    if model not in _BLOCKS:
        layer = _output_targets.output_layer(model)
        elementwise = getattr(getattr(layer, "activation", None), "__name__", "") not in (
            "softmax",
            "log_softmax",
        )
        if _output_targets.is_output_layer(layer) and elementwise:
            _BLOCKS[model] = _Blocks(model, layer)
        else:
            _BLOCKS[model] = None
    return _BLOCKS[model]


def _built(model: Callable, ds: SparseDataset) -> None:
    """Build a Keras model that was never called on its first batch, as Keras's `predict` does."""
    if isinstance(model, keras.Model) and not model.built and len(ds):
        model(_inputs_of(ds[0]))


def _state_of(model: Callable) -> Any:
    blocks = _blocks_of(model)
    return _model_state(model) if blocks is None else blocks.state()


def _predict_step(model: Callable, k: int, extra: int | None) -> Callable:
    blocks = _blocks_of(model)
    if blocks is not None:
        return _cached_step(model, ("predict_blocks", k), lambda: _predict_blocks(blocks, k))

    def build() -> Callable:
        score = _scorer(model)

        def step(state: Any, batch_x: Any, exclude: Any) -> tuple[Any, ...]:
            scores = score(state, batch_x)
            n = ops.convert_to_tensor(ops.shape(scores)[1])
            if exclude is not None and extra is not None:
                return (*_ops.top_k_excluding(scores, exclude, k, extra), n)
            return (*_ops.top_k(_ops.mask_scores(scores, exclude), k), n)

        return B.compile_fn(step)

    return _cached_step(model, ("predict", k, extra), build)


def _predict_blocks(blocks: _Blocks, k: int) -> Callable:
    layer = blocks.layer

    def step(state: Any, batch_x: Any, exclude: Any) -> tuple[Any, ...]:
        h = blocks.features_of(state, batch_x)
        masks = None if exclude is None else [_item_blocks.exclusion_mask(exclude)]
        top = _item_blocks.top_k(
            h, state[2], state[3], k, layer.block_size, blocks.activation, masks
        )
        return (*top, ops.convert_to_tensor(layer.units))

    return B.compile_fn(step)


def _batches(x: Any, batch_size: int | None) -> tuple[SparseDataset, int]:
    if isinstance(x, SparseDataset):
        if x.shuffle:
            raise ValueError(
                "`x` is a SparseDataset with shuffle=True; rows must stay in order to "
                "line up with `exclude` and the result. Pass shuffle=False."
            )
        return x, x.num_samples
    ds = SparseDataset(x, batch_size=1024 if batch_size is None else batch_size)
    return ds, ds.num_samples


def _positions(ds: SparseDataset, index: int) -> slice:
    """Where batch `index` lands in the result (and in `y_true` / `exclude`): its rows in order."""
    start = index * ds.batch_size
    return slice(start, start + len(ds.batch_rows(index)))


def _inputs_of(batch: tuple) -> Any:
    """The model inputs of a `SparseDataset` batch (targets, if any, are ignored)."""
    return batch[0]


def _num_items_hint(model: Callable) -> int | None:
    """The item count of a model whose output width is known before it runs, else None."""
    try:
        width = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return width if isinstance(width, int) else None


def _max_rows(model: Callable, num_items: int | None) -> int | None:
    """Rows per compiled call (None: the whole batch), from `backend.dense_score_rows`.

    Only for models whose dense scores the step forms; a `SparseDenseOutput`
    model is scored by item blocks already.
    """
    if num_items is None or _blocks_of(model) is not None:
        return None
    return B.dense_score_rows(num_items)


def _parts(ds: SparseDataset, index: int, max_rows: int | None) -> Iterator[tuple[slice, Any]]:
    """Batch `index` as `(positions, inputs)` parts of at most `max_rows` rows (None: one part).

    The parts are consecutive rows of equal size (the last may be smaller), so
    the results are those of the whole batch: rows are scored independently.
    """
    where = _positions(ds, index)
    count = where.stop - where.start
    if max_rows is None or count <= max_rows:
        yield where, _inputs_of(ds[index])
        return
    rows = ds.batch_rows(index)
    size = -(-count // -(-count // max_rows))
    for start in range(0, count, size):
        part = rows[start : start + size]
        yield (
            slice(where.start + start, where.start + start + len(part)),
            _inputs_of(ds.batch_of_rows(part)),
        )


def _progbar(total: int, verbose: Any) -> keras.utils.Progbar | None:
    verbose = 1 if verbose == "auto" else verbose
    if verbose not in (0, 1, 2, True, False):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2, got {verbose!r}.")
    return keras.utils.Progbar(total, verbose=int(verbose)) if verbose else None


def predict_top_k(
    model: Callable,
    x: Any,
    k: int,
    exclude: Any = None,
    batch_size: int | None = None,
    verbose: Any = "auto",
    values: str = "scores",
    min_score: float | None = None,
) -> sp.csr_matrix:
    """Run `model` batch by batch and return each row's top-k items as a CSR.

    Never holds more than one batch of dense scores: each batch is scored,
    masked with `exclude`, reduced to its top k in a compiled step and appended to
    the result, so memory is O(batch x items + rows x k).

    Args:
        model: A Keras model (or any callable) mapping a batch of `x` to dense
            `(rows, items)` scores. A sequence model's `(rows, steps, items)`
            scores give the next-item top k from the last step (left-pad the
            sequences); one ending in `SparseDenseOutput` is scored by item
            blocks from its last hidden state.
        x: Model inputs: anything `SparseDataset` accepts (SciPy, NumPy,
            tuples/dicts of those), or an unshuffled `SparseDataset`.
        k: Items per row.
        exclude: Optional sparse `(rows, items)` matrix of items never to
            return (e.g. each user's training items).
        batch_size: Rows per batch (default 1024; ignored for a SparseDataset). On
            JAX's CPU backend a batch is scored in parts of consecutive rows whose
            float32 scores fit in 16 MB (`backend.dense_score_rows`): same results,
            less time, since XLA maps large temporary buffers afresh on every call.
        verbose: `"auto"`/1 shows a Keras progress bar, 0 is silent.
        values: `"scores"` or `"ranks"` (see `TopKToCSR`).
        min_score: Optional; entries below it are dropped.

    Returns:
        A `scipy.sparse.csr_matrix` (rows, items) with column indices in rank order.

    Examples:
        >>> import keras, numpy as np
        >>> import keras_sparse as ks
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
        >>> recs = ks.predict_top_k(model, np.eye(3, dtype="float32"), k=2, verbose=0)
        >>> recs.shape, recs.nnz
        ((3, 5), 6)
    """
    builder = CSRBuilder(
        _validation.check_int(k, "k"),
        _validation.check_choice(values, "values", VALUES),
        _validation.check_float(min_score, "min_score", allow_none=True),
    )
    ds, rows = _batches(x, batch_size)
    bar = _progbar(len(ds), verbose)
    excl = None if exclude is None else exclude_csr(exclude, (rows, None))
    _built(model, ds)
    state = _state_of(model)

    def call(where: Any, inputs: Any, max_rows: int | None) -> tuple[Any, Any]:
        step = _predict_step(model, k, _extra_for(excl, where, max_rows is not None))
        batch_x, batch_excl = B.place_batch((inputs, rows_sparse(excl, where)))
        *top, n = step(state, batch_x, batch_excl)
        return top, n

    def check(num_items: int) -> None:
        if excl is not None:
            exclude_csr(excl, (rows, num_items))

    num_items = _drive(
        model, ds, bar, call, check, lambda top: builder.add(*(np.asarray(p) for p in top))
    )
    return builder.build((rows, num_items))


def _drive(
    model: Callable,
    ds: SparseDataset,
    bar: Any,
    call: Callable[[Any, Any, int | None], tuple[Any, Any]],
    check: Callable[[int], None],
    consume: Callable[[Any], None],
) -> int:
    """The loop of `predict_top_k` and `evaluate_top_k`; returns the number of items.

    Each batch of `ds` is scored in parts of rows whose dense scores fit
    (`_parts`): `call(where, inputs, max_rows)` returns a part's results and
    the number of items the model scores, which `check` sees once, on the
    first part. `consume` gets each part's results one call late, so the host
    reads a result while the backend computes the next.
    """
    num_items, checked = _num_items_hint(model), False
    pending = None
    for i in range(len(ds)):
        max_rows = _max_rows(model, num_items)
        for where, inputs in _parts(ds, i, max_rows):
            result, n = call(where, inputs, max_rows)
            if not checked:
                num_items, checked = int(n), True
                check(num_items)
            if pending is not None:
                consume(pending)
            pending = result
        if bar is not None:
            bar.update(i + 1)
    if pending is not None:
        consume(pending)
    return num_items


def _evaluate_step(
    model: Callable, ks: tuple, metrics: tuple, options: tuple, extra: int | None
) -> Callable:
    blocks = _blocks_of(model)

    def build() -> Callable:
        opts = dict(options)
        score = _scorer(model) if blocks is None else None

        def ranked_and_items(state: Any, batch_x: Any, y_true: Any, exclude: Any) -> tuple:
            if blocks is not None:
                h = blocks.features_of(state, batch_x)
                layer = blocks.layer
                ranked = ranking.rank_blocks(
                    y_true,
                    h,
                    state[2],
                    state[3],
                    max(ks),
                    layer.block_size,
                    blocks.activation,
                    opts["relevance_threshold"],
                    exclude,
                )
                return ranked, layer.units
            scores = score(state, batch_x)
            ranked = ranking.rank(
                y_true,
                scores,
                max(ks),
                opts["relevance_threshold"],
                exclude,
                extra,
                where="evaluate_top_k",
            )
            return ranked, ops.shape(scores)[1]

        def step(state: Any, batch_x: Any, y_true: Any, exclude: Any) -> tuple[Any, Any]:
            ranked, num_items = ranked_and_items(state, batch_x, y_true, exclude)
            weights = ranking.row_weights(ranked, opts["empty_rows"])
            sums = []
            for metric in metrics:
                for k in ks:
                    values = ranking.row_values(
                        ranked, metric, k, denominator=opts["denominator"], gains=opts["gains"]
                    )
                    sums.append(ops.sum(values * weights))
            return ops.stack(sums + [ops.sum(weights)]), ops.convert_to_tensor(num_items)

        return B.compile_fn(step)

    return _cached_step(model, ("evaluate", ks, metrics, options, extra), build)


def _add(totals: np.ndarray | None, sums: Any) -> np.ndarray:
    """`totals + sums` in float64 (sums read from the device)."""
    sums = np.asarray(sums).astype(np.float64)
    return sums if totals is None else totals + sums


def evaluate_top_k(
    model: Callable,
    x: Any,
    y_true: Any,
    k: int | Iterable[int] = (10, 20),
    exclude: Any = None,
    metrics: Iterable[str] = ("precision", "recall", "ndcg", "map"),
    batch_size: int | None = None,
    verbose: Any = "auto",
    relevance_threshold: float = 0.0,
    denominator: str = "k",
    gains: str = "binary",
    empty_rows: str = "skip",
) -> dict[str, float]:
    """Stream `model` over `x` and return every ranking metric at every k.

    Same definitions and code as the metric classes of `keras_sparse.metrics`
    (see DEFINITIONS): items in `exclude` are never ranked and are removed
    from the relevant set; rows without relevant items are skipped by default.

    Args:
        model: A Keras model (or any callable) mapping a batch of `x` to dense
            `(rows, items)` scores. A sequence model's `(rows, steps, items)`
            scores give the next-item top k from the last step (left-pad the
            sequences); one ending in `SparseDenseOutput` is scored by item
            blocks from its last hidden state.
        x: Model inputs (anything `SparseDataset` accepts, or an unshuffled
            `SparseDataset`).
        y_true: Sparse `(rows, items)` relevance (SciPy matrix of any format).
        k: One cut-off or several, e.g. `(10, 20)`.
        exclude: Optional sparse `(rows, items)` items to exclude.
        metrics: Names among `precision`, `recall`, `ndcg`, `map`,
            `hit_rate`, `mrr`.
        batch_size: Rows per batch (default 1024); split as in `predict_top_k`.
        verbose: `"auto"`/1 shows a progress bar, 0 is silent.
        relevance_threshold: See the metric classes.
        denominator: `"k"` or `"min"` for precision and recall.
        gains: `"binary"`, `"linear"` or `"exponential"` for NDCG.
        empty_rows: `"skip"` or `"zero"`.

    Returns:
        A dict such as `{"precision@10": 0.12, "ndcg@20": 0.3, ...}`.

    Examples:
        >>> import keras, numpy as np, scipy.sparse as sp
        >>> import keras_sparse as ks
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        >>> result = ks.evaluate_top_k(model, np.eye(4, dtype="float32"), sp.eye(4), k=2,
        ...                            metrics=["recall"], verbose=0)
        >>> sorted(result)
        ['recall@2']
    """
    ks_ = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks_:
        raise ValueError("`k` is empty; pass a cut-off such as k=10 or k=(10, 20).")
    ks_ = tuple(_validation.check_int(v, "k") for v in ks_)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in metrics:
        _validation.check_choice(name, "metrics", ranking.METRICS)
    options = (
        (
            "relevance_threshold",
            _validation.check_float(relevance_threshold, "relevance_threshold"),
        ),
        ("denominator", _validation.check_choice(denominator, "denominator", ranking.DENOMINATORS)),
        ("gains", _validation.check_choice(gains, "gains", ranking.GAINS)),
        ("empty_rows", _validation.check_choice(empty_rows, "empty_rows", ranking.EMPTY_ROWS)),
    )
    ds, rows = _batches(x, batch_size)
    if not sp.issparse(y_true) and not isinstance(y_true, np.ndarray):
        raise TypeError(f"`y_true` must be a SciPy sparse matrix, got {type(y_true).__name__}.")
    y_csr = canonical_csr(sp.csr_matrix(y_true) if not sp.issparse(y_true) else y_true, "y_true")
    _validation.check_same_rows({"x": rows, "y_true": y_csr.shape[0]})
    excl = exclude_csr(exclude, y_csr.shape)
    bar = _progbar(len(ds), verbose)
    _built(model, ds)
    state = _state_of(model)

    def call(where: Any, inputs: Any, max_rows: int | None) -> tuple[Any, Any]:
        extra = _extra_for(excl, where, max_rows is not None)
        step = _evaluate_step(model, ks_, metrics, options, extra)
        batch = (inputs, rows_sparse(y_csr, where), rows_sparse(excl, where))
        return step(state, *B.place_batch(batch))

    def check(num_items: int) -> None:
        if num_items != y_csr.shape[1]:
            raise ValueError(
                f"The model scores {num_items} items but `y_true` has {y_csr.shape[1]} columns."
            )

    totals: list = [None]

    def consume(sums: Any) -> None:
        totals[0] = _add(totals[0], sums)

    _drive(model, ds, bar, call, check, consume)
    count = totals[0][-1]
    names = [f"{m}@{kk}" for m in metrics for kk in ks_]
    return {name: float(total / count) if count else 0.0 for name, total in zip(names, totals[0])}
