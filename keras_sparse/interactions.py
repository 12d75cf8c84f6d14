"""User x item interactions: read, write, split and synthesise them.

`split_holdout` holds out entries per user for evaluation and
`synthetic_interactions` draws implicit feedback with a low-rank structure.

`load_interactions` reads a user x item matrix together with the original user
and item identifiers (numbers stay numbers, sorted numerically; strings are
sorted as text), so results can be joined back to the user's own data.
`save_npz` / `load_npz` keep those identifiers beside a CSR in one `.npz`
that `scipy.sparse.load_npz` still reads. (The command line's CSV writer lives in
`keras_sparse_cli`.) Pure NumPy/SciPy: nothing here imports Keras.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from keras_sparse import _validation

__all__ = [
    "Interactions",
    "split_holdout",
    "synthetic_interactions",
    "align",
    "load_interactions",
    "load_npz",
    "save_npz",
]

# Column names recognised in a header line (compared lower-case).
HEADER_NAMES = {
    "user", "userid", "user_id", "uid", "users",
    "item", "itemid", "item_id", "iid", "items", "movieid", "movie_id", "movie",
    "rating", "ratings", "score", "value", "count", "weight", "timestamp", "time",
}  # fmt: skip
TAB_SUFFIXES = {".tsv", ".tab", ".data", ".txt"}


class Interactions(NamedTuple):
    """A user x item CSR and the identifiers of its rows and columns."""

    matrix: sp.csr_matrix  # float32, canonical
    user_ids: np.ndarray  # one per row: int64, float64 or str
    item_ids: np.ndarray  # one per column


def _ids(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids (as numbers when every one is a number) and each value's index."""
    raw = np.asarray(values)
    for dtype in (np.int64, np.float64):
        try:
            typed = raw.astype(dtype)
        except (ValueError, OverflowError):
            continue
        if dtype is np.float64 and not np.isfinite(typed).all():
            break
        return np.unique(typed, return_inverse=True)
    return np.unique(raw, return_inverse=True)


def _column(spec: Any, header: list[str] | None, path: Path, what: str) -> int | None:
    """A column given by 0-based position or by header name; None for `"none"`."""
    if spec is None:
        return None
    text = str(spec).strip()
    if text.lower() == "none":
        return None
    if text.lstrip("-").isdigit():
        index = int(text)
        if index < 0:
            raise ValueError(f"`{what}`={text}: positions count from 0; pass {what}=0 or more")
        return index
    if header is None:
        raise ValueError(
            f"`{what}`={text!r} names a column, but '{path}' has no header line; pass "
            f"its position instead ({what}=0 for the first column)"
        )
    lowered = [h.lower() for h in header]
    if text.lower() not in lowered:
        raise ValueError(
            f"`{what}`={text!r} is not a column of '{path}'; its columns are {header}: "
            f"pass one of them, e.g. {what}={header[0]!r}"
        )
    return lowered.index(text.lower())


def _delimiter(path: Path, first_line: str) -> str:
    if path.suffix.lower() in TAB_SUFFIXES or "\t" in first_line:
        return "\t"
    return ","


RATING_NAMES = ("rating", "ratings", "score", "value", "count", "weight")


def _auto_rating_column(header: list[str] | None, width: int) -> int | None:
    """The rating column when none is named: a rating-like header name, else column 2."""
    if header is not None:
        lowered = [h.lower() for h in header]
        return next((lowered.index(n) for n in RATING_NAMES if n in lowered), None)
    return 2 if width > 2 else None


def _is_header(fields: list[str], header: bool | None) -> bool:
    if header is not None:
        return header
    return any(f.strip().lower() in HEADER_NAMES for f in fields)


def load_interactions(
    path: str | Path,
    *,
    user_col: Any = 0,
    item_col: Any = 1,
    rating_col: Any = "auto",
    min_rating: float | None = None,
    header: bool | None = None,
) -> Interactions:
    """Read an interaction file with the identifiers of its users and items.

    Formats, by content and suffix: a SciPy sparse `.npz` (row and column
    numbers are the ids, or the `user_ids` / `item_ids` stored by
    `save_npz`); a CSV (`,`); a TSV, MovieLens `u.data` or any `.tsv`,
    `.tab`, `.data`, `.txt` file (tab). A first line naming known columns
    (`user`, `userId`, `item`, `movieId`, `rating`, `timestamp`, ...) is a
    header unless `header=False`; MovieLens `ratings.csv` and `u.data` are read
    with the defaults.

    Args:
        path: The file.
        user_col: Column of the user ids: a 0-based position or a header name.
        item_col: Column of the item ids, likewise.
        rating_col: Column of the ratings; `"auto"` (default) uses the column
            named `rating` (or `score`, `value`, `count`, `weight`) of a header,
            or column 2 of a file without one, else every interaction counts 1;
            `"none"` ignores ratings.
        min_rating: Keep only interactions rated at least this, stored as 1
            (positive feedback). Users and items whose every rating is lower
            keep their (empty) row or column, so every id of the file stays.
        header: Force (True) or forbid (False) a header line; None detects it.

    Returns:
        `Interactions(matrix, user_ids, item_ids)`: a float32 CSR with
        repeated (user, item) pairs summed, and the ids of its rows and
        columns, numeric where every id in the file is a number.

    Raises:
        ValueError: the file is missing or unreadable, a line is malformed
            (the message gives its number), a column does not exist, or no
            interaction is left.

    Examples:
        >>> import os, tempfile
        >>> from keras_sparse.interactions import load_interactions
        >>> path = os.path.join(tempfile.mkdtemp(), "ratings.csv")
        >>> lines = ["userId,movieId,rating,timestamp", "7,31,2.5,0", "3,1029,5,0"]
        >>> _ = open(path, "w").write(chr(10).join(lines))
        >>> data = load_interactions(path, min_rating=3)
        >>> data.user_ids.tolist(), data.item_ids.tolist(), data.matrix.nnz
        ([3, 7], [31, 1029], 1)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"'{path}' is a folder, not a file"
            if path.is_dir()
            else f"file '{path}' does not exist"
        )
    if path.suffix.lower() == ".npz":
        data = load_npz(path)
    else:
        data = _read_delimited(path, user_col, item_col, rating_col, header)
    if min_rating is not None:
        matrix = data.matrix.copy()
        matrix.data = np.where(matrix.data >= float(min_rating), 1.0, 0.0).astype(np.float32)
        matrix.eliminate_zeros()
        if matrix.nnz == 0:
            raise ValueError(f"'{path}': no interaction is rated {min_rating} or more")
        data = Interactions(matrix, data.user_ids, data.item_ids)
    return data


def _read_delimited(
    path: Path, user_col: Any, item_col: Any, rating_col: Any, header: bool | None
) -> Interactions:
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise ValueError(f"could not read '{path}': {err.strerror}") from err
    with fh:
        first = fh.readline()
        fh.seek(0)
        reader = csv.reader(fh, delimiter=_delimiter(path, first))
        users, items, ratings = [], [], []
        names = None
        columns = None
        try:
            for number, fields in enumerate(reader, start=1):
                if not fields or all(not f.strip() for f in fields):
                    continue
                fields = [f.strip() for f in fields]
                if columns is None:
                    names = fields if _is_header(fields, header) else None
                    if str(rating_col).lower() == "auto":
                        rating = _auto_rating_column(names, len(fields))
                    else:
                        rating = _column(rating_col, names, path, "rating_col")
                    columns = (
                        _column(user_col, names, path, "user_col"),
                        _column(item_col, names, path, "item_col"),
                        rating,
                    )
                    if names is not None:
                        continue
                u, i, r = columns
                needed = max(c for c in columns if c is not None) + 1
                if len(fields) < needed:
                    raise ValueError(
                        f"'{path}' line {number}: expected at least {needed} fields, got "
                        f"{len(fields)}: {','.join(fields)!r}"
                    )
                if not fields[u] or not fields[i]:
                    raise ValueError(f"'{path}' line {number}: empty user or item id")
                rating = 1.0
                if r is not None:
                    try:
                        rating = float(fields[r])
                    except ValueError:
                        raise ValueError(
                            f"'{path}' line {number}: rating {fields[r]!r} is not a number"
                        ) from None
                users.append(fields[u])
                items.append(fields[i])
                ratings.append(rating)
        except UnicodeDecodeError as err:
            raise ValueError(f"'{path}' is not UTF-8 text: {err.reason}") from None
        except csv.Error as err:
            raise ValueError(f"'{path}' line {reader.line_num}: {err}") from None
    if not users:
        raise ValueError(f"'{path}' holds no interactions (only a header or blank lines)")
    user_ids, rows = _ids(users)
    item_ids, cols = _ids(items)
    matrix = sp.csr_matrix(
        (np.asarray(ratings, np.float32), (rows, cols)), shape=(len(user_ids), len(item_ids))
    )
    matrix.sum_duplicates()
    return Interactions(matrix, user_ids, item_ids)


def load_npz(path: str | Path) -> Interactions:
    """A SciPy `.npz` with the ids that `save_npz` stores (row / column numbers otherwise)."""
    path = Path(path)
    try:
        matrix = sp.load_npz(path)
        with np.load(path, allow_pickle=False) as stored:
            user_ids = stored["user_ids"] if "user_ids" in stored.files else None
            item_ids = stored["item_ids"] if "item_ids" in stored.files else None
    except Exception as err:  # a corrupt zip, missing arrays, ...
        raise ValueError(f"could not read '{path}' as a SciPy sparse .npz: {err}") from err
    if matrix.ndim != 2:
        raise ValueError(f"'{path}' holds a {matrix.ndim}-D matrix; a 2-D one is needed")
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    csr.sum_duplicates()
    users = np.arange(csr.shape[0]) if user_ids is None else user_ids
    items = np.arange(csr.shape[1]) if item_ids is None else item_ids
    if len(users) != csr.shape[0] or len(items) != csr.shape[1]:
        raise ValueError(f"'{path}': its user_ids / item_ids do not match the matrix shape")
    return Interactions(csr, users, items)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_path(path: str | Path, write_to: Any) -> None:
    """Have `write_to(tmp_path)` write a temporary file beside `path`, then rename it.

    The file gets the mode a plain `open` would (0o666 minus the umask), and
    nothing is left behind when writing fails or is interrupted. The
    temporary name keeps the suffix of `path` (Keras wants `.keras`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write_to(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write(path: str | Path, write: Any, binary: bool = True) -> None:
    """`_atomic_write_path` for a `write(file)` that writes to an open file object."""

    def write_to(tmp: Path) -> None:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            write(fh)

    _atomic_write_path(path, write_to)


def save_npz(path: str | Path, matrix: Any, user_ids: Any = None, item_ids: Any = None) -> None:
    """Save a CSR (atomically) with optional `user_ids` / `item_ids` arrays beside it.

    `scipy.sparse.load_npz` reads the file as usual; `load_npz` here also
    returns the ids.
    """
    csr = sp.csr_matrix(matrix)
    arrays = {
        "format": np.array(b"csr"),
        "shape": np.asarray(csr.shape),
        "data": csr.data,
        "indices": csr.indices,
        "indptr": csr.indptr,
    }
    if user_ids is not None:
        arrays["user_ids"] = np.asarray(user_ids)
    if item_ids is not None:
        arrays["item_ids"] = np.asarray(item_ids)
    _atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def align(data: Interactions, item_ids: np.ndarray, what: str) -> tuple[sp.csr_matrix, list[str]]:
    """`data.matrix` re-indexed onto the columns `item_ids` (a model's items).

    Items the model does not know are dropped; returns the matrix and a list
    of warnings that say how many interactions that removed.
    """
    item_ids = np.asarray(item_ids)
    position = {value.item(): i for i, value in enumerate(item_ids)}
    own = [position.get(v.item(), -1) for v in np.asarray(data.item_ids)]
    own = np.asarray(own, dtype=np.int64)
    coo = data.matrix.tocoo()
    target = own[coo.col] if coo.nnz else np.zeros(0, np.int64)
    known = target >= 0
    notes = []
    unknown_items = int((own < 0).sum())
    if unknown_items:
        notes.append(
            f"{what}: {unknown_items} of {len(own)} items are unknown to the model; "
            f"their {int((~known).sum())} interactions are ignored"
        )
    matrix = sp.csr_matrix(
        (coo.data[known], (coo.row[known], target[known])),
        shape=(data.matrix.shape[0], len(item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return matrix, notes


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
        >>> from keras_sparse.interactions import synthetic_interactions
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
        >>> from keras_sparse.interactions import split_holdout, synthetic_interactions
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
