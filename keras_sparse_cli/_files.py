"""The command line's output files: top-k CSVs and plots, written atomically.

Each file appears whole or not at all (a temporary file beside it, then a rename), with the
mode a plain `open` would give; `keras_sparse.interactions.save_npz` writes `.npz` the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from keras_sparse.interactions import _atomic_write as atomic_write
from keras_sparse.interactions import _atomic_write_path as atomic_write_path

__all__ = ["atomic_write", "atomic_write_path", "write_top_k_csv"]


def write_top_k_csv(path: str | Path, top_k: Any, user_ids: Any, item_ids: Any) -> None:
    """Write a top-k CSR (items in rank order) as `user,item,rank,score` rows, atomically."""
    csr = sp.csr_matrix(top_k)
    user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)

    def write(fh: Any) -> None:
        out = csv.writer(fh)
        out.writerow(["user", "item", "rank", "score"])
        for u in range(csr.shape[0]):
            start, stop = csr.indptr[u], csr.indptr[u + 1]
            for rank, (item, score) in enumerate(
                zip(csr.indices[start:stop], csr.data[start:stop]), start=1
            ):
                out.writerow([user_ids[u].item(), item_ids[item].item(), rank, f"{score:.6g}"])

    atomic_write(path, write, binary=False)
