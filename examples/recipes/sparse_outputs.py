"""Recipe: the top-k items per user as a sparse matrix, without the items they have.

Instead of argsorting a users x items score matrix, `predict_top_k` scores one
batch at a time, drops the excluded (already seen) items and returns a CSR
matrix with k entries per row in rank order.
"""

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks

seen = sp.random(50, 20, density=0.1, format="csr", random_state=0, dtype=np.float32)
inputs = keras.Input((20,), sparse=True)
model = keras.Model(inputs, keras.layers.Dense(20)(ks.layers.SparseDenseInput(8)(inputs)))

top = ks.predict_top_k(model, seen, k=5, exclude=seen, batch_size=16, verbose=0)
assert top.shape == (50, 20) and np.all(np.diff(top.indptr) == 5)
assert top.multiply(seen).nnz == 0  # no seen item comes back
user = int(np.diff(seen.indptr).argmax())
print(f"top-5 CSR: {top.nnz} entries; user {user} gets items {top[user].indices.tolist()}")
