"""Pieces two backend files share: `keras.ops` segment reductions and the unrolled block loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def segment_sum(values: Any, segments: Any, num_segments: Any) -> Any:
    """Sum `values` into `num_segments` rows by `segments`; out-of-range segments drop."""
    return keras.ops.segment_sum(values, segments, num_segments=num_segments)


def segment_max(values: Any, segments: Any, num_segments: Any) -> Any:
    """Maximum of `values` per segment (as `keras.ops.segment_max`)."""
    return keras.ops.segment_max(values, segments, num_segments=num_segments)


def unrolled_loop_rows(
    count: int, body: Callable, carry: Any, num_rows: int, concat: Callable
) -> tuple[Any, tuple]:
    """`loop_rows` as a Python loop; each piece joined with `concat(list)` (torch, TF graphs).

    Blocks start at `min(i * block, num_rows - block)`; the output keeps the
    first `count - 1` blocks and the new rows of the last one.
    """
    parts: list = []
    for i in range(count):
        carry, _, pieces = body(i, carry)
        parts.append(pieces)
    if not parts or not parts[0]:
        return carry, ()
    outputs = []
    for k in range(len(parts[0])):
        block = int(parts[0][k].shape[0])
        last = parts[-1][k][block - (num_rows - (count - 1) * block) :]
        outputs.append(concat([p[k] for p in parts[:-1]] + [last]))
    return carry, tuple(outputs)


def stateless_step_state(variables: list) -> list | None:
    """`[(variable, value)]` inside a Keras `StatelessScope`, else None (TensorFlow, torch).

    See `step_state` in the JAX backend, where the step is always stateless.
    """
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    return [(v, v.value) for v in variables] if in_stateless_scope() else None


def has_lazy_optimizer(model: Any) -> bool:
    """Whether `model`'s optimizer, or the one a `LossScaleOptimizer` wraps, is row-sparse.

    `LazyAdam` says so with `row_sparse_updates`; the JAX and torch
    `train_step` act on such models only.
    """
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", None)
    return any(getattr(o, "row_sparse_updates", False) for o in (optimizer, inner))
