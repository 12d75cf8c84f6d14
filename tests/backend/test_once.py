"""`warn_once`: once per (object, topic), once per process for None, pointing at the caller."""

import warnings

import keras
import pytest

from keras_sparse import backend as B


def _library_function(*args):
    """Where keras_sparse warns: the default stacklevel names the line that called it."""
    return B.warn_once(*args)


def test_each_owner_and_topic_warns_once_and_the_warning_points_at_the_caller():
    layer, other = keras.layers.Dense(2), keras.layers.Dense(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _library_function(layer, "t1", "first")
        assert not _library_function(layer, "t1", "again")
        assert _library_function(layer, "t2", "another topic")
        assert _library_function(other, "t1", "another layer", DeprecationWarning)
    assert [str(w.message) for w in caught] == ["first", "another topic", "another layer"]
    assert [w.category for w in caught] == [UserWarning, UserWarning, DeprecationWarning]
    assert {w.filename for w in caught} == {__file__}
    # The mark does not become a tracked attribute of the layer (no weight, no config).
    assert "_keras_sparse_warned_t1" not in layer.get_config()


def test_none_means_once_per_process():
    topic = f"process_{id(object())}"
    with pytest.warns(UserWarning, match="only once") as caught:
        assert B.warn_once(None, topic, "only once")
        assert not B.warn_once(None, topic, "only once")
    assert len(caught) == 1
