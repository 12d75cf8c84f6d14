"""Recipe: a SciPy sparse matrix into the backend's sparse tensor and back, in any format.

The hand-written version (`coo = x.tocoo(); tf.SparseTensor(np.c_[coo.row, coo.col], ...)`)
breaks on unsorted or duplicate COO entries (TensorFlow wants row-major order)
and silently changes the dtype. `to_sparse` handles every SciPy format and returns
a `tf.SparseTensor` on TensorFlow or a `BCOO` on JAX (`to_sparse_tensor` is the
TensorFlow-only spelling).
"""

import numpy as np
import scipy.sparse as sp

import keras_sparse as ks

# A COO matrix with unsorted and duplicate entries: (1, 2) is listed twice.
x = sp.coo_matrix(
    (np.array([5.0, 1.0, 2.0, 3.0]), (np.array([1, 0, 1, 1]), np.array([2, 0, 2, 0]))),
    shape=(2, 3),
)
st = ks.to_sparse(x, dtype="float32")  # canonical: ordered, duplicates summed
print(type(st).__name__, tuple(st.shape))

back = ks.to_scipy(st)  # a CSR matrix again
assert (back != x.tocsr()).nnz == 0
print("round trip OK:", back.shape, back.nnz, "entries")
