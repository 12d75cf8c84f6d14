"""Recipe: a SciPy sparse matrix into a tf.SparseTensor and back, in any format.

The hand-written version (`coo = x.tocoo(); tf.SparseTensor(np.c_[coo.row, coo.col], ...)`)
breaks on unsorted or duplicate COO entries (TensorFlow wants row-major order)
and silently changes the dtype. `to_sparse_tensor` handles every SciPy format.
"""

import numpy as np
import scipy.sparse as sp

import keras_sparse as ks

# A COO matrix with unsorted and duplicate entries: (1, 2) is listed twice.
x = sp.coo_matrix(
    (np.array([5.0, 1.0, 2.0, 3.0]), (np.array([1, 0, 1, 1]), np.array([2, 0, 2, 0]))),
    shape=(2, 3),
)
st = ks.to_sparse_tensor(x, dtype="float32")  # canonical: ordered, duplicates summed
print(st.indices.numpy().tolist(), st.values.numpy().tolist())

back = ks.to_scipy(st)  # a CSR matrix again
assert (back != x.tocsr()).nnz == 0
print("round trip OK:", back.shape, back.nnz, "entries")
