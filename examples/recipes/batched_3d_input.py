"""Recipe: a batch of sparse matrices (one per sample) as a 3-D sparse input.

`stack` turns a list of 2-D SciPy matrices into one (batch, rows, cols)
backend sparse tensor (`tf.SparseTensor`, or `BCOO` on JAX); `SparseMatMul()`
with two inputs multiplies each sample's sparse matrix by that sample's dense
features.
"""

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks

graphs = [sp.random(5, 5, density=0.4, format="csr", random_state=i) for i in range(3)]
batch = ks.stack(graphs, dtype="float32")  # shape (3, 5, 5), still sparse
features = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)

matrix_in = keras.Input((5, 5), sparse=True)
features_in = keras.Input((5, 2))
model = keras.Model([matrix_in, features_in], ks.layers.SparseMatMul()([matrix_in, features_in]))

out = keras.ops.convert_to_numpy(model([batch, keras.ops.convert_to_tensor(features)]))
expected = np.stack([g.toarray() @ f for g, f in zip(graphs, features)])
assert np.allclose(out, expected, atol=1e-5)
print("batched sparse @ dense:", out.shape)
