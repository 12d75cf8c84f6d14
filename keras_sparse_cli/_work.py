"""The work behind the `keras-sparse` command line (arguments and checks: `keras_sparse_cli`).

Everything here speaks the command line (flags, exit messages); the library it
calls speaks Python arguments, and `_read` translates its messages.

`demo` and `train` fit the autoencoder recommender with early stopping on a
held-out split, print its ranking metrics beside popularity, and can save
the model with its user/item id mappings, the top-k items per user (`.npz`
with ids or `user,item,rank,score` CSV) and a plot of the curves. `topk` and
`evaluate` take such a model and raw interaction files, mapping ids through
the saved mapping. Every file is written atomically with the umask's mode.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import backend as B
from keras_sparse import interactions as io_
from keras_sparse.interactions import split_holdout, synthetic_interactions
from keras_sparse.layers import ExcludeSeen, SparseDenseInput, SparseDropout
from keras_sparse_cli import CLIError
from keras_sparse_cli._files import atomic_write, atomic_write_path, write_top_k_csv

# The library's argument names -> this command line's flags, for its error messages.
FLAGS = {"user_col": "--user-col", "item_col": "--item-col", "rating_col": "--rating-col"}

IDS_ENTRY = "keras_sparse_ids.npz"  # the id mappings, stored inside the .keras zip


def build_recommender(items: int, hidden: int = 128, dropout: float = 0.5, seed: int = 0) -> Any:
    """The demo's autoencoder recommender, made only of this package's parts."""
    inputs = keras.Input((items,), sparse=True, name="items")
    noisy = SparseDropout(dropout, seed=seed)(inputs)
    code = SparseDenseInput(hidden, activation="tanh", combiner="sqrtn")(noisy)
    scores = keras.layers.Dense(items, name="scores")(code)
    return keras.Model(inputs, ExcludeSeen()([scores, inputs]), name="recommender")


def _read(path: str, args: argparse.Namespace) -> io_.Interactions:
    try:
        return io_.load_interactions(
            path,
            user_col=args.user_col,
            item_col=args.item_col,
            rating_col=args.rating_col,
            min_rating=args.min_rating,
            header=args.header,
        )
    except ValueError as err:
        message = str(err)
        for argument, flag in FLAGS.items():
            message = message.replace(f"`{argument}`=", f"{flag} ")
            message = message.replace(f"{argument}=", f"{flag} ")
        raise CLIError(message) from None


def save_model(path: str | Path, model: Any, item_ids: np.ndarray) -> None:
    """Save `model` as .keras (atomically) with the item ids inside the same zip."""

    def write_to(tmp: Path) -> None:
        model.save(tmp)
        buffer = io.BytesIO()
        np.savez(buffer, item_ids=np.asarray(item_ids))
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(IDS_ENTRY, buffer.getvalue())

    atomic_write_path(path, write_to)


def load_model(path: str) -> tuple[Any, np.ndarray]:
    """A saved model and its item ids (column numbers for a model saved without them)."""
    try:
        model = keras.models.load_model(path)
    except Exception as err:
        raise CLIError(f"could not load model '{path}': {str(err).splitlines()[0]}") from None
    with zipfile.ZipFile(path) as archive:
        if IDS_ENTRY in archive.namelist():
            with np.load(io.BytesIO(archive.read(IDS_ENTRY)), allow_pickle=False) as stored:
                return model, stored["item_ids"]
    return model, np.arange(int(model.outputs[0].shape[-1]))


def _write_top_k(path: str, recs: Any, user_ids: Any, item_ids: Any) -> None:
    if Path(path).suffix.lower() == ".csv":
        write_top_k_csv(path, recs, user_ids, item_ids)
    else:
        io_.save_npz(path, recs, user_ids, item_ids)


def _table(columns: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(columns.values())))
    head = f"{'metric':<14}" + "".join(f"{c:>12}" for c in columns)
    lines = [head, "-" * len(head)]
    for name in names:
        lines.append(f"{name:<14}" + "".join(f"{col[name]:>12.4f}" for col in columns.values()))
    return "\n".join(lines)


def _popularity(train: sp.csr_matrix) -> Any:
    counts = keras.ops.convert_to_tensor(np.asarray(train.sum(axis=0), dtype=np.float32))

    def popular(batch: Any) -> Any:
        return keras.ops.ones((B.sparse_num_rows(batch), 1)) * counts

    return popular


class _RankingHistory(keras.callbacks.Callback):
    """NDCG@10 / recall@20 on the validation split after every epoch, for early stopping."""

    def __init__(self, train: sp.csr_matrix, held: sp.csr_matrix) -> None:
        super().__init__()
        self.train, self.held = train, held

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        result = ks.evaluate_top_k(
            self.model, self.train, self.held, k=(10, 20), exclude=self.train,
            metrics=("ndcg", "recall"), batch_size=1024, verbose=0,
        )  # fmt: skip
        if logs is not None:
            logs["val_ndcg@10"] = result["ndcg@10"]
            logs["val_recall@20"] = result["recall@20"]


def _plot(path: str, history: dict, baseline: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, history["loss"], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="multinomial NLL")
    for name, color in (("ndcg@10", "C0"), ("recall@20", "C1")):
        right.plot(epochs, history[f"val_{name}"], marker="o", color=color, label=name)
        right.axhline(baseline[name], color=color, linestyle="--", label=f"{name} popularity")
    right.set(title="validation ranking metrics", xlabel="epoch")
    right.legend()
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".")
    atomic_write(path, lambda fh: fig.savefig(fh, format=suffix))
    plt.close(fig)


def cmd_train(args: argparse.Namespace) -> None:
    """Fit the recommender with early stopping; print metrics; write what was asked for."""
    start = time.perf_counter()
    path = getattr(args, "data", None)
    if path:
        data = _read(path, args)
        source = path
    else:
        matrix = synthetic_interactions(seed=args.seed)
        data = io_.Interactions(matrix, np.arange(matrix.shape[0]), np.arange(matrix.shape[1]))
        source = "synthetic (planted taste groups, popularity skew)"
    users, items = data.matrix.shape
    if users < 2 or items < 2:
        raise CLIError(f"{source}: need at least 2 users and 2 items, got {users} x {items}")
    train, held = split_holdout(data.matrix, fraction=0.2, seed=args.seed)
    # Early stopping watches a validation split of the training items, never `held`,
    # so the metrics printed at the end are not chosen on the data they report.
    fit_part, val = split_holdout(train, fraction=0.1, seed=args.seed + 1)
    print(
        f"data: {source}: {users} users x {items} items, {data.matrix.nnz} interactions "
        f"({100 * data.matrix.nnz / (users * items):.2f} % dense); train {fit_part.nnz}, "
        f"validation {val.nnz}, held out {held.nnz}"
    )
    keras.utils.set_random_seed(args.seed)
    model = build_recommender(items, seed=args.seed)
    model.compile(
        optimizer=ks.optimizers.LazyAdam(args.learning_rate), loss=ks.losses.SparseMultinomialNLL()
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_ndcg@10", mode="max", patience=args.patience, restore_best_weights=True
    )
    fitted = model.fit(
        ks.data.SparseDataset(
            fit_part, fit_part, batch_size=args.batch_size, shuffle=True, seed=args.seed
        ),
        epochs=args.epochs,
        verbose=args.verbose,
        callbacks=[_RankingHistory(fit_part, val), stop],
    )
    epochs = len(fitted.history["loss"])
    kwargs = {"k": (10, 20), "exclude": train, "batch_size": 1024, "verbose": 0}
    ours = ks.evaluate_top_k(model, train, held, **kwargs)
    base = ks.evaluate_top_k(_popularity(train), train, held, **kwargs)
    plural = "s" if epochs != 1 else ""
    print(f"\ntrained {epochs} epoch{plural}, kept the best validation NDCG@10; held out:\n")
    print(_table({"autoencoder": ours, "popularity": base}))
    if args.plot:
        _plot(args.plot, fitted.history, base)
        print(f"\nwrote the training curves to {args.plot}")
    if args.save_model:
        save_model(args.save_model, model, data.item_ids)
        print(f"saved the model and its {items} item ids to {args.save_model}")
    if args.out:
        recs = ks.predict_top_k(model, data.matrix, k=args.k, exclude=data.matrix, verbose=0)
        _write_top_k(args.out, recs, data.user_ids, data.item_ids)
        print(
            f"wrote the top-{args.k} items of {users} users to {args.out} "
            f"({recs.nnz} recommendations, best first)"
        )
    print(f"done in {time.perf_counter() - start:.0f} s")


def _notes(notes: list[str]) -> None:
    for note in notes:
        print(f"keras-sparse: note: {note}", file=sys.stderr)


def cmd_topk(args: argparse.Namespace) -> None:
    """Each input user's top-k items from a saved model, with the original ids."""
    model, item_ids = load_model(args.model)
    data = _read(args.input, args)
    x, notes = io_.align(data, item_ids, "INPUT")
    exclude = x if args.exclude_input else None
    if args.exclude:
        excluded = _rows_of(_read(args.exclude, args), data.user_ids, item_ids, "--exclude", notes)
        exclude = excluded if exclude is None else (exclude + excluded).tocsr()
    _notes(notes)
    recs = ks.predict_top_k(model, x, k=args.k, exclude=exclude, verbose=0)
    _write_top_k(args.output, recs, data.user_ids, item_ids)
    print(f"wrote top-{args.k} of {recs.shape[0]} users ({recs.nnz} items) to {args.output}")


def _rows_of(
    other: io_.Interactions, user_ids: np.ndarray, item_ids: np.ndarray, what: str, notes: list
) -> sp.csr_matrix:
    """`other` on the model's items and on the rows of `user_ids` (unknown users dropped)."""
    matrix, item_notes = io_.align(other, item_ids, what)
    notes.extend(item_notes)
    row_of = {u.item(): r for r, u in enumerate(np.asarray(user_ids))}
    rows = np.asarray([row_of.get(u.item(), -1) for u in np.asarray(other.user_ids)], np.int64)
    if (rows < 0).any():
        notes.append(f"{what}: {int((rows < 0).sum())} users are not in the input; ignored")
    coo = matrix.tocoo()
    keep = rows[coo.row] >= 0
    out = sp.csr_matrix(
        (coo.data[keep], (rows[coo.row][keep], coo.col[keep])),
        shape=(len(user_ids), matrix.shape[1]),
        dtype=np.float32,
    )
    out.sum_duplicates()
    return out


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Ranking metrics of a saved model on held-out interactions, users matched by id."""
    model, item_ids = load_model(args.model)
    data = _read(args.input, args)
    x, notes = io_.align(data, item_ids, "--input")
    y = _rows_of(_read(args.target, args), data.user_ids, item_ids, "--target", notes)
    exclude = None
    if args.exclude:
        exclude = _rows_of(_read(args.exclude, args), data.user_ids, item_ids, "--exclude", notes)
    _notes(notes)
    if y.nnz == 0:
        raise CLIError("--target: no interaction left after matching users and items")
    result = ks.evaluate_top_k(model, x, y, k=tuple(args.k), exclude=exclude, verbose=0)
    print(_table({"model": result}))


COMMANDS = {"demo": cmd_train, "train": cmd_train, "topk": cmd_topk, "evaluate": cmd_evaluate}


def run(args: argparse.Namespace) -> None:
    """Run the parsed, checked command (see `keras_sparse_cli.main`)."""
    COMMANDS[args.command](args)
