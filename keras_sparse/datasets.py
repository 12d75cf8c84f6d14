"""Public data sets: the Planetoid citation graphs.

Reading, splitting and synthesising user x item interaction data lives in
`keras_sparse.interactions`.
"""

from __future__ import annotations

from pathlib import Path

from keras_sparse import _planetoid, _validation
from keras_sparse._planetoid import Planetoid

__all__ = ["Planetoid", "load_planetoid"]

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
