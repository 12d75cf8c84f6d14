"""Sparse outputs from dense scores: `threshold_to_csr`.

Top-k outputs have their own home, `keras_sparse.topk` (`TopKToCSR`,
`predict_top_k`, `evaluate_top_k`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from keras_sparse import _validation

__all__ = ["threshold_to_csr"]


def threshold_to_csr(scores: Any, threshold: float) -> sp.csr_matrix:
    """Keep the entries with score > `threshold` as a canonical CSR.

    NaN scores are never kept. Works row block by row block, so the temporary
    boolean mask stays small.

    Args:
        scores: Dense `(rows, items)` scores (NumPy array or tensor).
        threshold: Entries strictly above it are kept.

    Returns:
        A canonical `scipy.sparse.csr_matrix` with float32 data.

    Examples:
        >>> import numpy as np
        >>> from keras_sparse.outputs import threshold_to_csr
        >>> threshold_to_csr(np.array([[0.2, 0.7], [0.9, 0.1]]), 0.5).toarray().tolist()
        [[0.0, 0.699999988079071], [0.8999999761581421, 0.0]]
    """
    threshold = _validation.check_float(threshold, "threshold")
    scores = np.asarray(scores)
    _validation.check_ndim(scores.shape, "scores", 2)
    _validation.check_dtype(scores.dtype, "scores")
    blocks = []
    for start in range(0, max(scores.shape[0], 1), 4096):
        block = scores[start : start + 4096]
        rows, cols = np.nonzero(block > threshold)
        blocks.append(
            sp.csr_matrix(
                (block[rows, cols].astype(np.float32), (rows, cols)),
                shape=(block.shape[0], scores.shape[1]),
            )
        )
    return sp.csr_matrix(sp.vstack(blocks, format="csr"))
