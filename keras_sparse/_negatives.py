"""Negative items for sampled output losses, the same on every backend for a seed.

One sample of `num` items is shared by the whole batch. Items come from an
integer hash (MurmurHash3's 32-bit finaliser) of the layer's seed state and
the sample position, computed in uint32 with `keras.ops`, so TensorFlow,
JAX and torch draw exactly the same items for the same seed (their own random number
generators differ). Sampling is with replacement: uniform over the items, or
proportional to item counts through the cumulative counts.
"""

from __future__ import annotations

import math
from typing import Any

from keras import ops

from keras_sparse import backend as B


def _u32(h: Any) -> Any:
    """`h` modulo 2**32: a no-op for uint32, and the same value where the backend widens it.

    Keras's torch backend holds "uint32" as int64, where products and sums
    outgrow 32 bits; their low 32 bits are still the uint32 result.
    """
    return ops.bitwise_and(h, ops.cast(0xFFFFFFFF, "uint32"))


def _fmix(h: Any) -> Any:
    h = ops.bitwise_xor(h, ops.right_shift(h, 16))
    h = _u32(ops.multiply(h, ops.cast(0x85EBCA6B, "uint32")))
    h = ops.bitwise_xor(h, ops.right_shift(h, 13))
    h = _u32(ops.multiply(h, ops.cast(0xC2B2AE35, "uint32")))
    return ops.bitwise_xor(h, ops.right_shift(h, 16))


def hashes(seed: Any, num: int) -> Any:
    """`num` well-mixed uint32 values from a 2-element integer seed state."""
    seed = ops.cast(seed, "uint32")
    golden = ops.cast(0x9E3779B9, "uint32")
    base = _fmix(_u32(ops.add(seed[0], _fmix(_u32(ops.add(seed[1], golden))))))
    position = ops.cast(ops.arange(num), "uint32")
    return _fmix(_u32(ops.add(_u32(ops.multiply(position, golden)), base)))


def sample(seed: Any, num: int, num_items: int, cumulative: Any = None) -> tuple[Any, Any]:
    """Draw `num` items (with replacement) and the log of each one's expected count.

    Args:
        seed: 2-element integer seed state (e.g. `SeedGenerator.next()`).
        num: Number of items to draw.
        num_items: Size of the catalogue.
        cumulative: Optional `(num_items,)` cumulative item counts; items are
            then drawn with probability count / total (zero counts never).

    Returns:
        `(items, log_expected)`: int32 item ids `(num,)` and `log(num * q(item))`
        `(num,)`, the log-Q correction of a sampled softmax.
    """
    h = hashes(seed, num)
    if cumulative is None:
        items = ops.cast(ops.mod(h, ops.cast(num_items, "uint32")), "int32")
        return items, ops.full((num,), math.log(num / num_items), dtype="float32")
    total = cumulative[-1]
    # 24 random bits give a uniform float in [0, 1) exactly in float32.
    u = ops.cast(ops.right_shift(h, 8), "float32") / float(1 << 24)
    target = u * ops.cast(total, "float32")
    items = B.searchsorted(ops.cast(cumulative, "float32"), target, side="right")
    items = ops.cast(ops.minimum(items, num_items - 1), "int32")
    upper = ops.take(cumulative, items)
    lower = ops.where(items > 0, ops.take(cumulative, ops.maximum(items - 1, 0)), 0.0)
    q = ops.cast(upper - lower, "float32") / ops.cast(total, "float32")
    return items, ops.log(q * float(num))


def from_batch(
    seed: Any, num: int, items: Any, valid: Any, num_items: int, uniform: int = 0
) -> tuple[Any, Any]:
    """Draw `num - uniform` of the batch's target items and `uniform` items uniformly.

    In-batch draws pick stored target entries uniformly (so an item is drawn
    in proportion to its in-batch frequency); the rest are uniform over the
    catalogue. Every draw's log-Q correction is the log of its expected
    count under the mixture, `log((num - uniform) c(j) / V + uniform / num_items)`,
    with `c(j)` the item's count among the `V` valid entries.

    Args:
        seed: 2-element integer seed state.
        num: Number of items to draw.
        items: `(P,)` int item ids of the batch's target entries.
        valid: `(P,)` bool, False at entries that are not targets (padding,
            ignored labels), or None.
        num_items: Size of the catalogue.
        uniform: How many of the `num` draws are uniform.

    Returns:
        `(items, log_expected)` as `sample`. Draws from an empty batch get
        `log_expected = +inf`, which removes them from a sampled softmax.
    """
    items = ops.cast(items, "int32")
    size = ops.shape(items)[0]
    if valid is None:
        valid = ops.ones_like(items, dtype="bool")
    h = hashes(seed, num)
    in_batch = num - uniform
    count = ops.sum(ops.cast(valid, "int32"))
    # The valid entries first, in their stored order (the keys are distinct).
    position = ops.arange(size, dtype="int32")
    order = ops.argsort(ops.where(valid, position, position + size))
    slot = ops.mod(h[:in_batch], ops.cast(ops.maximum(count, 1), "uint32"))
    picked = ops.take(items, ops.take(order, ops.cast(slot, "int32")))
    picked = ops.where(count > 0, picked, ops.zeros_like(picked))
    spread = ops.cast(ops.mod(h[in_batch:], ops.cast(num_items, "uint32")), "int32")
    drawn = ops.concatenate([picked, spread], axis=0)
    ranked = ops.sort(ops.where(valid, items, ops.full_like(items, num_items)))
    frequency = B.searchsorted(ranked, drawn, side="right") - B.searchsorted(
        ranked, drawn, side="left"
    )
    share = ops.cast(frequency, "float32") / ops.cast(ops.maximum(count, 1), "float32")
    expected = float(in_batch) * share + float(uniform) / float(num_items)
    # Only an in-batch draw from an empty batch has no expected count (every other one is > 0).
    empty = ops.logical_and(ops.equal(count, 0), ops.arange(num) < in_batch)
    safe = ops.where(empty, ops.ones_like(expected), expected)
    return drawn, ops.where(empty, ops.full_like(safe, float("inf")), ops.log(safe))
