"""Every argument check of keras_sparse, in one place.

Each check raises `ValueError` or `TypeError` with a message that names the
argument, shows the value received and says what is accepted, so that a user
can fix the call without reading the source.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp


def _short(value: Any) -> str:
    """Return a short printable form of `value` for an error message."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if sp.issparse(value):
        return f"{type(value).__name__} of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Check that `value` is an integer >= `minimum` and return it as `int`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer >= {minimum}, got {_short(value)} "
            f"of type {type(value).__name__}. Pass e.g. {name}={max(minimum, 1)}."
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}, got {value}. "
            f"Pass e.g. {name}={max(minimum, 1)}."
        )
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    high_open: bool = False,
    low_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Check that `value` is a real number in [low, high] (either end open on request)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {_short(value)}.")
    value = float(value)
    if np.isnan(value):
        raise ValueError(f"`{name}` must be a number, got NaN.")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lower = "(" if low_open else "["
        upper = ")" if high_open else "]"
        raise ValueError(f"`{name}` must lie in {lower}{low}, {high}{upper}, got {value}.")
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Check that `value` is one of `choices`."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {_short(value)}.")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Check that `value` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False, got {_short(value)}.")
    return bool(value)


def check_dtype(dtype: Any, name: str) -> None:
    """Reject complex, string and object dtypes, which no sparse op supports."""
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise TypeError(
            f"`{name}` has complex dtype {np.dtype(dtype)}; keras_sparse supports real "
            f"values only. Split real and imaginary parts into two inputs."
        )
    if kind not in "biuf":
        raise TypeError(
            f"`{name}` has dtype {np.dtype(dtype)}; keras_sparse needs numbers "
            f"(bool, int or float)."
        )


def check_ndim(shape: tuple, name: str, ndim: int | tuple[int, ...]) -> None:
    """Check the rank of a shape."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if len(shape) not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"`{name}` must be {want}, got shape {tuple(shape)} ({len(shape)}-D).")


def check_same_rows(parts: Mapping[str, int]) -> int:
    """Check that every named part has the same number of rows; return it."""
    items = list(parts.items())
    first_name, first_rows = items[0]
    for part_name, rows in items[1:]:
        if rows != first_rows:
            raise ValueError(
                f"`{part_name}` has {rows} rows but `{first_name}` has {first_rows}; "
                f"every input, target and sample weight needs one row per sample."
            )
    return first_rows


def check_sparse_or_array(value: Any, name: str) -> None:
    """Check that `value` is a SciPy sparse matrix/array or array-like of numbers."""
    from keras_sparse import backend as B

    if sp.issparse(value) or isinstance(value, np.ndarray) or B.is_sparse(value):
        return
    if B.is_dense_tensor(value) or isinstance(value, (list, tuple)):
        return
    raise TypeError(
        f"`{name}` must be a SciPy sparse matrix or array, a NumPy array or a "
        f"sparse tensor of the Keras backend ({B.NAME}), got {type(value).__name__}."
    )


def _static(shape: Any) -> tuple:
    """A shape as a tuple of ints and Nones (None where only known at run time)."""
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(d if isinstance(d, (int, np.integer)) else None for d in dims)


def check_target_shape(true_shape: Any, pred_shape: Any, where: str) -> None:
    """Check that a `(rows, items)` target and the predictions it scores have one shape.

    Dimensions known only at run time (None) are not compared. Without this,
    a target wider than the predictions fails deep inside a gather kernel and
    a narrower one silently scores the wrong entries.
    """
    true_shape, pred_shape = _static(true_shape), _static(pred_shape)
    if len(true_shape) != len(pred_shape):
        raise ValueError(
            f"{where}: `y_true` has shape {true_shape} but `y_pred` has shape {pred_shape}; "
            "both must be (rows, items)."
        )
    mismatch = [
        axis
        for axis, (t, p) in enumerate(zip(true_shape, pred_shape))
        if t is not None and p is not None and t != p
    ]
    if not mismatch:
        return
    if mismatch[0] == len(true_shape) - 1:
        fix = (
            f"the model's output needs one unit per item: {true_shape[-1]} (for example "
            f"`Dense({true_shape[-1]})`), or the target has the wrong number of columns"
        )
    else:
        fix = "pass as many target rows as input rows (one per sample)"
    raise ValueError(
        f"{where}: `y_true` has shape {true_shape} but `y_pred` has shape {pred_shape}; {fix}."
    )


def check_row_weights(sample_weight: Any, pred_shape: Any, where: str) -> None:
    """Check that `sample_weight` holds one weight per row of the predictions.

    keras_sparse losses and metrics weigh rows (users, documents), not single
    entries; a `(rows, 1)` column is accepted as Keras does.
    """
    if sample_weight is None:
        return
    shape = getattr(sample_weight, "shape", None)
    if shape is None:
        shape = np.shape(sample_weight)
    if getattr(shape, "rank", 0) is None:  # a graph tensor of unknown rank
        return
    shape, pred = _static(shape), _static(pred_shape)
    rows = pred[0] if pred else None
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            f"{where}: `sample_weight` has shape {shape}, but keras_sparse losses and metrics "
            f"take one weight per row, shape ({rows},). To weigh single entries, put the "
            "weights in the target's values or write a `MaskedLoss`."
        )
    if shape[0] is not None and rows is not None and shape[0] != rows:
        raise ValueError(
            f"{where}: `sample_weight` has {shape[0]} rows but the batch has {rows}; pass one "
            "weight per row (per sample), in the same order as `x` and `y`."
        )


def check_batch_rows(parts: Mapping[str, Any]) -> None:
    """Check that the named arrays/tensors of one batch agree on their number of rows.

    Parts whose rows are unknown (None values, scalars, shapes known only at
    run time) are skipped.
    """
    rows = {}
    for name, value in parts.items():
        shape = getattr(value, "shape", None)
        if value is None or shape is None or getattr(shape, "rank", 1) is None:
            continue
        dims = _static(shape)
        if dims and dims[0] is not None:
            rows[name] = int(dims[0])
    if len(rows) > 1:
        check_same_rows(rows)
