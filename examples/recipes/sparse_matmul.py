"""Recipe: multiply a fixed sparse matrix by dense activations inside a model.

Instead of a Lambda around a backend's sparse matmul (which `model.save`
cannot serialise), `SparseMatMul` stores the sparse matrix in the model.
"""

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks

adjacency = sp.random(6, 6, density=0.3, format="csr", random_state=0, dtype=np.float32)
nodes = keras.Input((4,))  # one row per node: the batch is the node set
propagated = ks.layers.SparseMatMul(adjacency)(nodes)  # adjacency @ nodes
model = keras.Model(nodes, propagated)

h = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
out = model.predict(h, batch_size=6, verbose=0)
assert np.allclose(out, adjacency @ h, atol=1e-5)
print("A @ H:", out.shape)
