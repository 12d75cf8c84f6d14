"""Reader of the Planetoid citation graphs (Cora, Citeseer, Pubmed) behind a safe unpickler.

The files are Python 2 pickles. `pickle.load` would run whatever a crafted file
names, so `_SafeUnpickler` admits only the NumPy, SciPy sparse and builtin
container types these files are made of, and refuses everything else.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import dataclasses
import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

_PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")
_SPARSE_MODULE = re.compile(r"scipy\.sparse(\._?[a-z]+)?$")
_SPARSE_CLASS = re.compile(r"(csr|csc|coo|lil|dok|bsr|dia)_(matrix|array)$")
_BUILTINS = ("list", "dict", "set", "frozenset", "tuple", "int", "float", "str", "bytes", "bool")


def _multiarray() -> Any:
    try:
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - NumPy < 2
        from numpy.core import multiarray
    return multiarray


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray = _multiarray()
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "defaultdict"): collections.defaultdict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # protocol-2 pickles written by Python 3 spell bytes as codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    for name in _BUILTINS:
        for module in ("builtins", "__builtin__"):  # Python 3 and Python 2 pickles
            table[(module, name)] = getattr(builtins, name)
    return table


class RefusedPickleError(pickle.UnpicklingError):
    """A pickle named a type outside the allowed set; nothing in it was run."""


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that only builds NumPy arrays, SciPy sparse matrices and containers."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="latin1", fix_imports=True)
        self._source = source
        self._table = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._table:
            return self._table[(module, name)]
        if _SPARSE_MODULE.match(module) and _SPARSE_CLASS.match(name):
            return getattr(sp, name)
        raise RefusedPickleError(
            f"'{self._source}' asks to load '{module}.{name}', which a Planetoid file never "
            "holds; refusing to unpickle it (only NumPy arrays, SciPy sparse matrices and "
            "builtin containers are allowed). Use the original files of the Planetoid data set."
        )


def safe_load(path: Path) -> Any:
    """Unpickle `path` with `_SafeUnpickler`."""
    with open(path, "rb") as fh:
        return _SafeUnpickler(io.BufferedReader(fh), str(path)).load()


@dataclasses.dataclass(frozen=True)
class Planetoid:
    """A Planetoid graph with its fixed split.

    Attributes:
        features: `(nodes, features)` CSR float32 bag-of-words (0/1), as stored.
        labels: `(nodes,)` int64 class ids; -1 for nodes without a label
            (Citeseer's isolated test-range nodes).
        adjacency: `(nodes, nodes)` symmetric CSR float32 0/1 matrix of the
            citation links (no weights, no added self loops).
        train_mask: `(nodes,)` bool, the labelled training nodes (20 per class).
        val_mask: `(nodes,)` bool, the 500 validation nodes.
        test_mask: `(nodes,)` bool, the 1000 test nodes.
        num_classes: Number of classes.
    """

    features: sp.csr_matrix
    labels: np.ndarray
    adjacency: sp.csr_matrix
    train_mask: np.ndarray
    val_mask: np.ndarray
    test_mask: np.ndarray
    num_classes: int


def _read(data_dir: Path, name: str) -> tuple[dict[str, Any], np.ndarray]:
    parts = {}
    for part in _PARTS:
        path = data_dir / f"ind.{name}.{part}"
        if not path.is_file():
            raise FileNotFoundError(
                f"'{path}' is missing; `data_dir` must hold the Planetoid files "
                f"ind.{name}.{{{','.join(_PARTS)},test.index}}."
            )
        try:
            parts[part] = safe_load(path)
        except RefusedPickleError:
            raise
        except Exception as err:  # truncated or not a pickle at all
            raise ValueError(f"could not read '{path}' as a Planetoid pickle: {err}") from err
    index_path = data_dir / f"ind.{name}.test.index"
    if not index_path.is_file():
        raise FileNotFoundError(f"'{index_path}' is missing; it lists the test node ids.")
    try:
        test_index = np.loadtxt(index_path, dtype=np.int64, ndmin=1)
    except ValueError as err:
        raise ValueError(f"'{index_path}' must hold one integer node id per line: {err}") from err
    for part in ("x", "tx", "allx"):
        if not sp.issparse(parts[part]):
            raise ValueError(
                f"'ind.{name}.{part}' holds {type(parts[part]).__name__}, not a matrix"
            )
    for part in ("y", "ty", "ally"):
        parts[part] = np.asarray(parts[part])
        if parts[part].ndim != 2:
            raise ValueError(f"'ind.{name}.{part}' must hold a 2-D one-hot label array")
    if not isinstance(parts["graph"], dict):
        raise ValueError(f"'ind.{name}.graph' must hold a dict node -> neighbours")
    return parts, test_index


def _adjacency(graph: dict, nodes: int) -> sp.csr_matrix:
    rows, cols = [], []
    for node, neighbours in graph.items():
        rows.extend([int(node)] * len(neighbours))
        cols.extend(int(n) for n in neighbours)
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    if len(rows) and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= nodes):
        raise ValueError(f"the graph names nodes outside [0, {nodes}); the files do not match")
    links = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(nodes, nodes))
    both = (links + links.T).tocsr()
    both.data[:] = 1.0  # an undirected, unweighted link however often it is listed
    return both


def load(name: str, data_dir: Path) -> Planetoid:
    """Load one data set (see `keras_sparse.datasets.load_planetoid`)."""
    parts, test_index = _read(data_dir, name)
    test_sorted = np.sort(test_index)
    tx, ty = parts["tx"], parts["ty"]
    span = int(test_sorted[-1] - test_sorted[0] + 1)
    if span != tx.shape[0]:
        # Citeseer: some test-range nodes are isolated and absent from tx/ty; give
        # them zero features and no label, in their place in the id range.
        offsets = test_sorted - test_sorted[0]
        tx_full = sp.lil_matrix((span, tx.shape[1]), dtype=np.float32)
        tx_full[offsets, :] = tx
        ty_full = np.zeros((span, ty.shape[1]), dtype=ty.dtype)
        ty_full[offsets, :] = ty
        tx, ty = tx_full, ty_full
    features = sp.vstack([parts["allx"], tx]).tolil()
    features[test_index, :] = features[test_sorted, :]
    one_hot = np.vstack([parts["ally"], ty])
    one_hot[test_index, :] = one_hot[test_sorted, :]
    labels = np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), -1).astype(np.int64)
    nodes = features.shape[0]
    masks = []
    train = len(parts["y"])
    for chosen in (np.arange(train), np.arange(train, min(train + 500, nodes)), test_sorted):
        mask = np.zeros(nodes, dtype=bool)
        mask[chosen] = True
        masks.append(mask)
    features = sp.csr_matrix(features, dtype=np.float32)
    features.sum_duplicates()
    return Planetoid(
        features=features,
        labels=labels,
        adjacency=_adjacency(parts["graph"], nodes),
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
        num_classes=one_hot.shape[1],
    )
