"""Recipe: keep only the confident predictions, as a sparse matrix.

The usual `csr_matrix(np.where(p > t, p, 0))` builds the dense copy first;
`threshold_to_csr` writes only the kept entries.
"""

import numpy as np

import keras_sparse as ks

scores = np.random.default_rng(0).random((4, 6)).astype(np.float32)
kept = ks.outputs.threshold_to_csr(scores, threshold=0.8)

assert np.array_equal(kept.toarray(), np.where(scores > 0.8, scores, 0))
print(f"kept {kept.nnz} of {scores.size} scores")
