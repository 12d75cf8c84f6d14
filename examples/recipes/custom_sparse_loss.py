"""Recipe: a custom loss on a sparse target inside `fit`.

A Keras loss gets `y_true` as the backend's sparse tensor when the target is
sparse (`tf.SparseTensor`, or a padded `BCOO` on JAX).
`keras_sparse.losses.masked_row_mean` applies an elementwise loss to the
observed entries only, so the loss never densifies the target and works on
every backend.
"""

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks


def log_cosh_observed(y_true, y_pred):
    """Mean log-cosh error over each row's observed entries (0 for an empty row)."""
    return ks.losses.masked_row_mean(
        lambda t, p: keras.ops.log(keras.ops.cosh(p - t)), y_true, y_pred
    )


ratings = sp.random(64, 30, density=0.1, format="csr", random_state=0, dtype=np.float32)
inputs = keras.Input((30,), sparse=True)
model = keras.Model(inputs, keras.layers.Dense(30)(ks.layers.SparseDenseInput(8)(inputs)))
model.compile(optimizer=keras.optimizers.Adam(0.05), loss=log_cosh_observed)
history = model.fit(ks.data.SparseDataset(ratings, ratings, batch_size=16), epochs=5, verbose=0)
losses = history.history["loss"]
assert losses[-1] < losses[0]
print(f"custom sparse loss: {losses[0]:.4f} -> {losses[-1]:.4f}")
