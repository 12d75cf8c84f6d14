import numpy as np
import pytest

from keras_sparse import _validation as v


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("8", TypeError)],
)
def test_check_int_rejects(value, error):
    with pytest.raises(error, match="`batch_size`"):
        v.check_int(value, "batch_size")


def test_check_int_accepts_numpy_integers():
    assert v.check_int(np.int64(4), "k") == 4
    assert v.check_int(None, "seed", allow_none=True) is None


def test_check_float_range_message_names_argument():
    with pytest.raises(ValueError, match=r"`rate` must lie in \[0.0, 1.0\), got 1.0"):
        v.check_float(1.0, "rate", low=0.0, high=1.0, high_open=True)
    with pytest.raises(ValueError, match="NaN"):
        v.check_float(float("nan"), "rate")


def test_check_choice_and_dtype():
    with pytest.raises(ValueError, match="`combiner` must be one of"):
        v.check_choice("max", "combiner", ["sum", "mean"])
    with pytest.raises(TypeError, match="complex"):
        v.check_dtype(np.complex64, "x")
    with pytest.raises(TypeError, match="needs numbers"):
        v.check_dtype(np.dtype("U3"), "x")


def test_check_same_rows_names_both_parts():
    with pytest.raises(ValueError, match="`y` has 3 rows but `x` has 4"):
        v.check_same_rows({"x": 4, "y": 3})
