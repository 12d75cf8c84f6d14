"""The TensorFlow backend file itself: canonical sparse tensors, graph-safe helpers, row updates."""

import numpy as np
import pytest
import scipy.sparse as sp

from keras_sparse import backend as B

pytestmark = pytest.mark.tensorflow_only

if B.NAME == "tensorflow":
    import tensorflow as tf

    from keras_sparse.backend import tensorflow as tf_backend


def test_sparse_from_coo_round_trips_canonical_entries():
    x = sp.random(7, 5, density=0.4, format="coo", random_state=0, dtype=np.float32)
    indices = np.stack([x.row, x.col], axis=1).astype(np.int64)
    order = np.lexsort((indices[:, 1], indices[:, 0]))
    st = tf_backend.sparse_from_coo(indices[order], x.data[order], x.shape)
    assert isinstance(st, tf.SparseTensor)
    np.testing.assert_array_equal(tf.sparse.to_dense(st).numpy(), x.toarray())
    back_indices, back_values, shape = tf_backend.sparse_to_coo(st)
    assert shape == (7, 5)
    np.testing.assert_array_equal(back_indices, indices[order])
    np.testing.assert_array_equal(back_values, x.data[order])


def test_canonicalize_sorts_and_sums_duplicates():
    st = tf.SparseTensor([[2, 1], [0, 3], [2, 1]], [1.0, 2.0, 4.0], [3, 4])
    canonical = tf_backend.canonicalize(st)
    np.testing.assert_array_equal(canonical.indices.numpy(), [[0, 3], [2, 1]])
    np.testing.assert_array_equal(canonical.values.numpy(), [2.0, 5.0])


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_works_on_a_tensor_of_unknown_length_in_a_graph(side):
    """`keras.ops.searchsorted` calls len() there on Keras 3.10; ours must not."""
    table = np.array([1, 3, 3, 7, 9], np.int32)
    values = np.array([0, 3, 8, 10], np.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)] * 2)
    def find(sorted_sequence, needles):
        return tf_backend.searchsorted(sorted_sequence, needles, side=side)

    np.testing.assert_array_equal(find(table, values).numpy(), np.searchsorted(table, values, side))


def test_top_k_ties_go_to_the_lower_index():
    scores = tf.constant([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    values, indices = tf_backend.best_k(scores, 3)
    np.testing.assert_array_equal(indices.numpy(), [[1, 2, 3], [0, 1, 2]])
    np.testing.assert_array_equal(values.numpy(), [[3.0, 3.0, 2.0], [0.0, 0.0, 0.0]])


def test_gather_rows_of_a_variable_gives_an_indexed_slices_gradient():
    table = tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2))
    with tf.GradientTape() as tape:
        picked = tf_backend.gather_rows(table, tf.constant([4, 1, 4]))
        loss = tf.reduce_sum(picked * tf.constant([[1.0, 2.0]]))
    gradient = tape.gradient(loss, table)
    assert tf_backend.is_sparse_gradient(gradient)
    np.testing.assert_array_equal(picked.numpy(), table.numpy()[[4, 1, 4]])
    dense = np.zeros((6, 2), np.float32)
    np.add.at(dense, [4, 1, 4], [1.0, 2.0])
    np.testing.assert_array_equal(tf_backend.dense_gradient(gradient).numpy(), dense)


def test_host_sparse_from_coo_is_the_canonical_batch_keras_gets():
    st = tf_backend.host_sparse_from_coo(
        np.array([[0, 1], [1, 0]]), np.array([2.0, 3.0], np.float32), (2, 2)
    )
    np.testing.assert_array_equal(tf.sparse.to_dense(st).numpy(), [[0.0, 2.0], [3.0, 0.0]])


@pytest.mark.parametrize(
    "array",
    [
        np.arange(23, dtype=np.int64),
        np.arange(40, dtype=np.float32).reshape(10, 4) / 3,
        np.ones((9, 2), bool),
        np.zeros((0, 3), np.float32),
    ],
    ids=["int64", "float32-2d", "bool", "empty"],
)
def test_a_feeding_variable_equals_its_array_when_filled_in_chunks(monkeypatch, array):
    from keras_sparse.backend import _tf_data

    monkeypatch.setattr(_tf_data, "_FILL_CHUNK", 7)  # several chunks and a ragged last one
    variable = _tf_data._tensor(array)
    assert variable.dtype == array.dtype and tuple(variable.shape) == array.shape
    np.testing.assert_array_equal(variable.numpy(), array)


def test_loop_rows_writes_every_block_into_a_fresh_output_on_every_call():
    """The pieces are written in place (`InplaceUpdate`): each call gets its own buffer.

    Blocks of 4 over 10 rows (the last one starts at row 6 and rewrites rows 6-7
    with the same values), a carry, and a zeros tensor of the output's shape in
    the same graph that no write may reach.
    """
    num_rows, block = 10, 4

    @tf.function
    def run(table, scale):
        def body(i, carry):
            start = tf.minimum(i * block, num_rows - block)
            piece = tf.slice(table, [start, 0], [block, 3]) * scale
            return carry + 1.0, start, (piece, piece[:, 0])

        carry, (rows, first) = tf_backend.loop_rows(3, body, tf.zeros(()), num_rows)
        return carry, rows, first, tf.zeros((num_rows, 3))

    table = np.arange(30, dtype=np.float32).reshape(num_rows, 3)
    results = [run(tf.constant(table), tf.constant(s)) for s in (2.0, -1.0)]
    for scale, (carry, rows, first, zeros) in zip((2.0, -1.0), results):
        assert float(carry) == 3.0
        np.testing.assert_array_equal(rows.numpy(), table * scale)
        np.testing.assert_array_equal(first.numpy(), table[:, 0] * scale)
        np.testing.assert_array_equal(zeros.numpy(), np.zeros((num_rows, 3), np.float32))
