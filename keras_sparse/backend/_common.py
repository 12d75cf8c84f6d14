"""Pieces two backend files share: `keras.ops` segment reductions, the step helpers."""

from __future__ import annotations

from typing import Any

import keras


def segment_sum(values: Any, segments: Any, num_segments: Any) -> Any:
    """Sum `values` into `num_segments` rows by `segments`; out-of-range segments drop."""
    return keras.ops.segment_sum(values, segments, num_segments=num_segments)


def segment_max(values: Any, segments: Any, num_segments: Any) -> Any:
    """Maximum of `values` per segment (as `keras.ops.segment_max`)."""
    return keras.ops.segment_max(values, segments, num_segments=num_segments)


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
