"""Data sets: synthetic implicit feedback, interaction readers and splits, Planetoid graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from keras_sparse import _planetoid, _validation
from keras_sparse._planetoid import Planetoid

__all__ = [
    "Planetoid",
    "load_planetoid",
    "read_interactions",
    "split_holdout",
    "synthetic_interactions",
]


def synthetic_interactions(
    users: int = 4000,
    items: int = 1500,
    density: float = 0.01,
    groups: int = 12,
    seed: int = 0,
) -> sp.csr_matrix:
    """A deterministic users x items 0/1 matrix with planted taste groups and popularity skew.

    Every user belongs to one of `groups` taste groups and every item to one;
    a user picks items of their own group about 20 times as often as others,
    scaled by a log-normal item popularity. About `density` of the entries
    are stored.

    Args:
        users: Number of rows.
        items: Number of columns.
        density: Target fraction of stored entries, in (0, 1).
        groups: Number of planted taste groups.
        seed: Seed; the same arguments always give the same matrix.

    Returns:
        A canonical `scipy.sparse.csr_matrix` of float32 ones.

    Examples:
        >>> from keras_sparse.datasets import synthetic_interactions
        >>> x = synthetic_interactions(users=100, items=50, density=0.05)
        >>> x.shape
        (100, 50)
    """
    users = _validation.check_int(users, "users")
    items = _validation.check_int(items, "items")
    groups = _validation.check_int(groups, "groups")
    density = _validation.check_float(density, "density", low=1e-9, high=1.0, high_open=True)
    rng = np.random.default_rng(seed)
    group_of_user = rng.integers(0, groups, users)
    group_of_item = rng.integers(0, groups, items)
    popularity = np.exp(rng.normal(size=items))
    affinity = np.where(group_of_user[:, None] == group_of_item[None, :], 20.0, 1.0)
    prob = affinity * popularity[None, :]
    prob *= density / prob.mean()
    mask = rng.random((users, items)) < np.clip(prob, 0.0, 0.95)
    return sp.csr_matrix(mask.astype(np.float32))


def split_holdout(
    x: sp.spmatrix, fraction: float = 0.2, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each row's stored entries into train and held-out parts.

    Each row with at least two entries gives `fraction` of them (at least
    one) to the held-out matrix; rows with fewer keep everything in train.

    Args:
        x: Interactions, any SciPy sparse format.
        fraction: Share of each row's entries held out, in (0, 1).
        seed: Seed of the random choice.

    Returns:
        `(train, held_out)`, two canonical CSR matrices of the shape of `x`.

    Examples:
        >>> from keras_sparse.datasets import split_holdout, synthetic_interactions
        >>> train, held = split_holdout(synthetic_interactions(200, 80, 0.05))
        >>> train.multiply(held).nnz
        0
    """
    fraction = _validation.check_float(fraction, "fraction", low=0.0, high=1.0, high_open=True)
    csr = sp.csr_matrix(x, copy=True)
    csr.sum_duplicates()
    rng = np.random.default_rng(seed)
    counts = np.diff(csr.indptr)
    keys = rng.random(csr.nnz)
    rows = np.repeat(np.arange(csr.shape[0]), counts)
    # Rank of each entry within its row by a random key: hold out the lowest ranks.
    order = np.lexsort((keys, rows))
    rank = np.empty(csr.nnz, dtype=np.int64)
    rank[order] = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
    n_held = np.where(counts >= 2, np.maximum(1, np.round(counts * fraction)), 0).astype(int)
    held_mask = rank < np.repeat(n_held, counts)

    def part(mask: np.ndarray) -> sp.csr_matrix:
        # Own copies of indices/indptr: eliminate_zeros works in place.
        out = sp.csr_matrix(
            (csr.data * mask, csr.indices.copy(), csr.indptr.copy()), shape=csr.shape
        )
        out.eliminate_zeros()
        return out

    return part(~held_mask), part(held_mask)


def read_interactions(path: str | Path) -> sp.csr_matrix:
    """Read a SciPy `.npz` matrix or a CSV / TSV of `user,item[,rating]` lines.

    The matrix of `keras_sparse.interactions.load_interactions(path)`, which
    also returns the user and item ids (and takes column choices): ids are
    mapped to rows and columns in sorted order (numerically when they are
    numbers), a header line is detected, missing ratings count as 1 and
    repeated pairs are summed.

    Args:
        path: A `.npz`, `.csv`, `.tsv` or MovieLens `u.data` file.

    Returns:
        A canonical `scipy.sparse.csr_matrix` of float32 values.

    Raises:
        ValueError: the file is missing, unreadable or malformed (the message
            says which and why, with the line number).

    Examples:
        >>> import scipy.sparse as sp, tempfile, os
        >>> from keras_sparse.datasets import read_interactions
        >>> path = os.path.join(tempfile.mkdtemp(), "x.npz")
        >>> sp.save_npz(path, sp.eye(3, format="csr"))
        >>> read_interactions(path).shape
        (3, 3)
    """
    from keras_sparse.interactions import load_interactions

    return load_interactions(path).matrix


PLANETOID_NAMES = ("cora", "citeseer", "pubmed")


def load_planetoid(name: str, data_dir: str | Path) -> Planetoid:
    """Load a Planetoid citation graph (Cora, Citeseer, Pubmed) with its fixed split.

    Reads the standard files `ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`
    (Yang et al. 2016, as used by Kipf & Welling's GCN) with a restricted
    unpickler that admits only NumPy arrays, SciPy sparse matrices and builtin
    containers: a file that asks for anything else is refused with a
    `pickle.UnpicklingError` naming the file and the type, and nothing in it
    runs. Test nodes are put back in node-id order, and Citeseer's isolated
    test-range nodes (absent from its test files) get zero features and label -1.

    Args:
        name: `"cora"`, `"citeseer"` or `"pubmed"`.
        data_dir: Directory holding the files.

    Returns:
        A `Planetoid` with `features` (CSR), `labels` (int class ids),
        `adjacency` (symmetric 0/1 CSR), `train_mask`, `val_mask`, `test_mask`
        and `num_classes`.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is corrupt or does not match the others.
        pickle.UnpicklingError: a file names a type outside the allowed set.

    Examples:
        >>> from keras_sparse.datasets import load_planetoid
        >>> cora = load_planetoid("cora", "../shared/data/planetoid")  # doctest: +SKIP
        >>> cora.features.shape, int(cora.train_mask.sum()), cora.num_classes  # doctest: +SKIP
        ((2708, 1433), 140, 7)
    """
    name = _validation.check_choice(name, "name", PLANETOID_NAMES)
    if not isinstance(data_dir, (str, Path)):
        raise TypeError(f"`data_dir` must be a directory path, got {type(data_dir).__name__}.")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"`data_dir` '{data_dir}' is not a directory; pass the folder holding ind.{name}.*."
        )
    return _planetoid.load(name, data_dir)
