"""String identifiers: `compile(optimizer="lazy_adam", loss="sparse_mse", metrics=["ndcg"])`.

Keras resolves a loss or metric string through a module-level table of its
own only (`keras.losses.get` and `keras.metrics.get` never look at
registered custom objects), so `install()` adds our names to those two
tables through `_compat`. Up to Keras 3.15 an optimizer string goes through
deserialization, which reads Keras's public table of custom objects
(`keras.saving.get_custom_objects()`), so our optimizer names go there, with
no change to Keras; from 3.16 `keras.optimizers.get` reads its own table
only, and they join that table as the loss and metric names do. No name
Keras already uses is replaced, so Keras's own identifiers keep their
meaning. A metric class named by a string is built with its defaults
(`"ndcg"` is `NDCGAtK(k=10)`).
"""

from __future__ import annotations

import re
from typing import Any

import keras

from keras_sparse import _compat


def snake_case(name: str) -> str:
    """`"NDCGAtK"` -> `"ndcg_at_k"`, as Keras spells its own identifiers."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _names(objects: dict[str, Any], aliases: dict[str, Any]) -> dict[str, Any]:
    """`objects` under their own name and snake_case name, then `aliases`."""
    table: dict[str, Any] = {}
    for name, obj in objects.items():
        table.setdefault(name, obj)
        table.setdefault(snake_case(name), obj)
    for name, obj in aliases.items():
        table.setdefault(name, obj)
    return table


def tables() -> dict[str, dict[str, Any]]:
    """Our identifiers per kind: `{"losses": {...}, "metrics": {...}, "optimizers": {...}}`."""
    from keras_sparse import losses, metrics, optimizers

    loss_functions = {
        name: getattr(losses, name)
        for name in (
            "sparse_mse",
            "sparse_mae",
            "sparse_huber",
            "sparse_binary_crossentropy",
            "sparse_multinomial_nll",
        )
    }
    loss_classes = {
        name: getattr(losses, name)
        for name in losses.__all__
        if isinstance(getattr(losses, name), type) and name != "MaskedLoss"
    }
    # A loss string builds the class (same values as the function), so that
    # `compile(loss="sparse_mse")` gets the class's checks of `sample_weight`.
    loss_strings = {
        "sparse_mse": losses.SparseMeanSquaredError,
        "sparse_mae": losses.SparseMeanAbsoluteError,
        "sparse_huber": losses.SparseHuber,
        "sparse_binary_crossentropy": losses.SparseBinaryCrossentropy,
        "sparse_multinomial_nll": losses.SparseMultinomialNLL,
    }
    metric_classes = {name: getattr(metrics, name) for name in metrics.__all__}
    # No "precision" or "recall": those are Keras's own metrics.
    short_metrics = {
        "ndcg": metrics.NDCGAtK,
        "map": metrics.MAPAtK,
        "hit_rate": metrics.HitRateAtK,
        "mrr": metrics.MRRAtK,
        "sparse_rmse": metrics.SparseRootMeanSquaredError,
    }
    return {
        "losses": _names({**loss_strings, **loss_classes}, {}),
        "metrics": _names({**metric_classes, **loss_functions}, short_metrics),
        "optimizers": _names({"LazyAdam": optimizers.LazyAdam}, {"lazyadam": optimizers.LazyAdam}),
    }


def install() -> bool:
    """Add our identifiers to Keras's lookup tables; idempotent.

    Returns False if this Keras keeps its loss or metric table elsewhere; then
    one warning says that only objects, not strings, can be passed to `compile`.
    """
    done = []
    ours_by_kind = tables()
    if _compat.keras_version() <= (3, 15):
        # Up to Keras 3.15, `keras.optimizers.get` deserializes a string, which reads the
        # public table of custom objects; from 3.16 it reads its own table only, as for
        # losses and metrics (seen in keras-nightly 3.16.0.dev2026102704).
        optimizers = ours_by_kind.pop("optimizers")
        keras_optimizers = {name.lower() for name in dir(keras.optimizers)}
        custom = keras.saving.get_custom_objects()
        for name, cls in optimizers.items():
            if name.lower() not in keras_optimizers:  # Keras lower-cases optimizer names
                custom.setdefault(name, cls)
    for kind, ours in ours_by_kind.items():
        done.append(
            _compat.add_entries(
                f"keras.src.{kind}.ALL_OBJECTS_DICT",
                ours,
                feature=f"our {kind} by string name in compile (pass the objects instead)",
            )
        )
    return all(done)
