"""Recipe: a custom loss on a sparse target inside `fit`.

A Keras loss gets `y_true` as the backend's sparse tensor when the target is
sparse (`tf.SparseTensor`, or a padded `BCOO` on JAX).
`keras_sparse.losses.MaskedLoss` turns an elementwise loss into a Keras loss
class that scores the observed entries only, so it never densifies the target
and works on every backend. Training stops early on a held-out split.
"""

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse.interactions import split_holdout


@keras.saving.register_keras_serializable(package="recipes")
def log_cosh(t, p):
    """Elementwise log-cosh error; MaskedLoss averages it over each row's observed entries."""
    return keras.ops.log(keras.ops.cosh(p - t))


ratings = sp.random(64, 30, density=0.1, format="csr", random_state=0, dtype=np.float32)
train, held_out = split_holdout(ratings, fraction=0.2, seed=0)
inputs = keras.Input((30,), sparse=True)
model = keras.Model(inputs, keras.layers.Dense(30)(ks.layers.SparseDenseInput(8)(inputs)))
model.compile(optimizer=keras.optimizers.Adam(0.05), loss=ks.losses.MaskedLoss(log_cosh))
history = model.fit(
    ks.data.SparseDataset(train, train, batch_size=16),
    validation_data=ks.data.SparseDataset(train, held_out),
    epochs=5,
    callbacks=[keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)],
    verbose=0,
)
losses = history.history["loss"]
assert losses[-1] < losses[0]
print(f"custom sparse loss: {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} epochs")
