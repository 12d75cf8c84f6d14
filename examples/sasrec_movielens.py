"""A SASRec-style next-item model on MovieLens-100K, trained exact and sampled.

    python examples/sasrec_movielens.py                       # exact softmax, then sampled
    python examples/sasrec_movielens.py --epochs 5 --only exact
    python examples/sasrec_movielens.py --data path/to/ml-100k.inter

1. Ratings (`ml-100k.inter`: user, item, rating, timestamp; found with
   `../shared/tools/fetch_movielens_100k.sh`, never committed) become one
   sequence per user, ordered by timestamp. Each user's last item is held out.
2. Training sequences: the last `--length` items before the held-out one,
   left-padded with 0 (item ids start at 1); the label of each position is
   the next item, 0 at padding (`ignore_class=0`).
3. Model (Kang & McAuley 2018, SASRec, one block): item + position embeddings,
   causal self-attention, a feed-forward block, then
   `SparseDenseOutput(items)` trained with Keras's own
   `SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)`: the exact
   cross-entropy by item blocks, or a sampled softmax (`--negatives`, 2 % of
   the catalogue by default).
4. `evaluate_top_k` scores the full catalogue from the last position of each
   user's whole training sequence, with the user's seen items excluded, and
   reports NDCG@10 / HR@10 against popularity.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import keras_sparse as ks  # noqa: E402

FETCH = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "fetch_movielens_100k.sh"


def find_data(path: str | None) -> Path | None:
    """The `ml-100k.inter` file: `--data`, `$KERAS_SPARSE_ML100K`, or the fetch script's."""
    for candidate in (path, os.environ.get("KERAS_SPARSE_ML100K")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if FETCH.is_file():
        done = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True)
        if done.returncode == 0 and Path(done.stdout.strip()).is_file():
            return Path(done.stdout.strip())
    return None


def sequences(path: Path) -> tuple[list[np.ndarray], int]:
    """Each user's items ordered by time (ids 1..items; 0 is padding) and the item count."""
    table = np.loadtxt(path, skiprows=1, delimiter="\t", dtype=np.float64)
    users, items, stamps = table[:, 0].astype(int), table[:, 1].astype(int), table[:, 3]
    _, item_ids = np.unique(items, return_inverse=True)
    item_ids = item_ids + 1
    order = np.lexsort((stamps, users))
    users, item_ids = users[order], item_ids[order]
    cuts = np.flatnonzero(np.diff(users)) + 1
    return np.split(item_ids, cuts), int(item_ids.max()) + 1


def windows(seqs: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item labels: the last `length + 1` training items, left-padded."""
    x = np.zeros((len(seqs), length), np.int32)
    y = np.zeros((len(seqs), length), np.int32)
    for row, seq in enumerate(seqs):
        seq = seq[-(length + 1) :]
        x[row, length - len(seq) + 1 :] = seq[:-1]
        y[row, length - len(seq) + 1 :] = seq[1:]
    return x, y


@keras.saving.register_keras_serializable(package="examples")
class AddPositions(keras.layers.Layer):
    """Adds a learned embedding of each position to a (batch, steps, dim) sequence."""

    def build(self, input_shape: tuple) -> None:
        self.table = self.add_weight(
            name="positions", shape=tuple(input_shape[1:]), initializer="glorot_uniform"
        )

    def call(self, x):
        return x + self.table[None]


def build(
    items: int, length: int, dim: int, negatives: int | None, seed: int, lr: float = 1e-3
) -> keras.Model:
    tokens = keras.Input((length,), dtype="int32", name="items")
    h = keras.layers.Embedding(items, dim, name="item_embedding")(tokens)
    h = keras.layers.Dropout(0.2)(AddPositions()(h))
    attended = keras.layers.MultiHeadAttention(2, dim // 2, dropout=0.2)(h, h, use_causal_mask=True)
    h = keras.layers.LayerNormalization()(h + attended)
    ffn = keras.layers.Dense(dim, activation="relu")(h)
    h = keras.layers.LayerNormalization()(
        h + keras.layers.Dropout(0.2)(keras.layers.Dense(dim)(ffn))
    )
    out = ks.layers.SparseDenseOutput(items, negatives=negatives, seed=seed, name="next_item")(h)
    model = keras.Model(tokens, out)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
    )
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ml-100k.inter (default: the shared fetch script's)")
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--negatives", type=int, default=None, help="default: 2 %% of the items")
    parser.add_argument("--only", choices=["exact", "sampled"])
    args = parser.parse_args(argv)
    path = find_data(args.data)
    if path is None:
        print(
            "MovieLens-100K not found: pass --data or run ../shared/tools/fetch_movielens_100k.sh"
        )
        return 1
    seqs, items = sequences(path)
    train = [s[:-1] for s in seqs]
    held_out = np.array([s[-1] for s in seqs])
    x, y = windows(train, args.length)
    history = windows([np.append(s, 0) for s in train], args.length)[0]  # ends at the last item
    users = len(seqs)
    seen = sp.csr_matrix(
        (
            np.ones(sum(map(len, train)), np.float32),
            (np.repeat(np.arange(users), [len(s) for s in train]), np.concatenate(train)),
        ),
        shape=(users, items),
    )
    seen.sum_duplicates()
    seen.data[:] = 1.0
    truth = sp.csr_matrix(
        (np.ones(users, np.float32), (np.arange(users), held_out)), (users, items)
    )
    counts = np.asarray(seen.sum(axis=0)).ravel()
    counts[0] = -1.0  # padding is never an item
    popularity = np.tile(counts, (users, 1)).astype(np.float32)
    evaluate = {"k": 10, "metrics": ("ndcg", "hit_rate"), "exclude": seen}
    base = ks.topk.evaluate_top_k(lambda batch: batch, popularity, truth, verbose=0, **evaluate)
    negatives = args.negatives or max(1, int(0.02 * items))
    print(f"MovieLens-100K: {users} users, {items - 1} items, sequences of {args.length}")
    print(f"popularity: NDCG@10 {base['ndcg@10']:.4f}  HR@10 {base['hit_rate@10']:.4f}")
    for name, n in (("exact", None), ("sampled", negatives)):
        if args.only and args.only != name:
            continue
        keras.utils.set_random_seed(0)
        model = build(items, args.length, args.dim, n, seed=0, lr=args.lr)
        start = time.perf_counter()
        model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        got = ks.topk.evaluate_top_k(model, history, truth, verbose=0, **evaluate)
        label = name if n is None else f"sampled ({n} negatives)"
        print(
            f"{label:24s} NDCG@10 {got['ndcg@10']:.4f}  HR@10 {got['hit_rate@10']:.4f}  "
            f"({args.epochs} epochs, {seconds:.1f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
