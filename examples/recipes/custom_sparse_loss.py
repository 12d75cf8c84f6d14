"""Recipe: a custom loss on a sparse target inside `fit`.

A Keras loss gets `y_true` as a tf.SparseTensor when the target is sparse.
`keras_sparse.losses.observed_entries` gives the observed entries and the
matching predictions, so the loss never densifies the target.
"""

import keras
import numpy as np
import scipy.sparse as sp
import tensorflow as tf

import keras_sparse as ks


def log_cosh_observed(y_true, y_pred):
    """Mean log-cosh error over each row's observed entries (0 for an empty row)."""
    indices, values, y_pred = ks.losses.observed_entries(y_true, y_pred)
    errors = tf.math.log(tf.cosh(tf.gather_nd(y_pred, indices) - values))
    rows = tf.shape(y_pred, out_type=tf.int64)[0]
    totals = tf.math.unsorted_segment_sum(errors, indices[:, 0], rows)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(errors), indices[:, 0], rows)
    return tf.math.divide_no_nan(totals, counts)


ratings = sp.random(64, 30, density=0.1, format="csr", random_state=0, dtype=np.float32)
inputs = keras.Input((30,), sparse=True)
model = keras.Model(inputs, keras.layers.Dense(30)(ks.layers.SparseDenseInput(8)(inputs)))
model.compile(optimizer=keras.optimizers.Adam(0.05), loss=log_cosh_observed)
history = model.fit(ks.data.SparseDataset(ratings, ratings, batch_size=16), epochs=5, verbose=0)
losses = history.history["loss"]
assert losses[-1] < losses[0]
print(f"custom sparse loss: {losses[0]:.4f} -> {losses[-1]:.4f}")
