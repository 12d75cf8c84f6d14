"""A Mult-DAE recommender over a 1,000,000-item catalogue on a laptop CPU.

    python examples/large_catalogue.py                    # 1M items, 20k users, ~1-2 minutes
    python examples/large_catalogue.py --exact            # exact softmax (slower per step)
    python examples/large_catalogue.py --items 50000 --users 2000 --epochs 1

1. Interactions drawn without any users x items matrix: each user has one of
   200 taste groups and picks ~30 items, 80 % from the Zipf head of the group's
   own items, the rest uniformly (sparse CSR).
2. Each user's items split into train / held out.
3. A denoising autoencoder (Liang et al., Mult-VAE paper's Mult-DAE):
   SparseDropout -> SparseDenseInput(64, tanh) -> SparseDenseOutput(items),
   trained with SparseMultinomialNLL. By default a sampled softmax with 2048
   negatives per row, the layer's default hard sampler (the best-scoring item
   of each group of a shared 16384-item pool); a step costs what the batch's
   entries and the pool cost, not what 1M items cost.
   `--exact` streams the exact softmax over item blocks instead.
4. evaluate_top_k scores the whole catalogue block by block (never
   users x 1M at once) against the held-out items, seen items excluded,
   next to a popularity baseline; predict_top_k prints a few users' top 10.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import keras_sparse as ks  # noqa: E402
from keras_sparse.interactions import split_holdout  # noqa: E402


def interactions(users: int, items: int, per_user: int = 30, groups: int = 200, seed: int = 0):
    """users x items 0/1 CSR: each taste group has its own Zipf head over its items."""
    rng = np.random.default_rng(seed)
    members = np.array_split(rng.permutation(items), groups)
    # Within a group, item r (in a random order) is picked with weight 1 / (r + 1).
    cumulative = [np.cumsum(1.0 / np.arange(1, len(m) + 1)) for m in members]
    rows, cols = [], []
    for user, group in enumerate(rng.integers(0, groups, users)):
        own = rng.binomial(per_user, 0.8)
        where = rng.random(own) * cumulative[group][-1]
        picks = members[group][np.searchsorted(cumulative[group], where)]
        noise = rng.integers(0, items, per_user - own)  # off-taste picks, uniform
        chosen = np.unique(np.concatenate([picks, noise]))
        rows.append(np.full(len(chosen), user))
        cols.append(chosen)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))


def build(items: int, exact: bool) -> keras.Model:
    seen = keras.Input((items,), sparse=True, name="items")
    noisy = ks.layers.SparseDropout(0.5, seed=1)(seen)
    code = ks.layers.SparseDenseInput(64, activation="tanh", combiner="sqrtn")(noisy)
    sampling = {} if exact else {"negatives": 2048, "seed": 2}  # the default hard sampler
    scores = ks.layers.SparseDenseOutput(items, **sampling)(code)
    model = keras.Model(seen, scores)
    model.compile(optimizer=ks.optimizers.LazyAdam(0.02), loss=ks.losses.SparseMultinomialNLL())
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--eval-users", type=int, default=2000)
    parser.add_argument("--exact", action="store_true", help="exact softmax over item blocks")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    data = interactions(args.users, args.items)
    train, held_out = split_holdout(data, 0.2, seed=0)
    counts = np.asarray(train.sum(axis=0)).ravel()
    print(
        f"{args.users:,} users x {args.items:,} items, {data.nnz:,} interactions "
        f"({data.nnz / args.users / args.items:.2e} dense), made in "
        f"{time.perf_counter() - start:.1f} s"
    )
    model = build(args.items, args.exact)
    feed = ks.data.SparseDataset(train, train, batch_size=256, shuffle=True, seed=0)
    start = time.perf_counter()
    model.fit(feed, epochs=args.epochs, verbose=0)
    mode = "exact softmax" if args.exact else "sampled softmax, 2048 hard negatives"
    print(f"trained {args.epochs} epochs ({mode}) in {time.perf_counter() - start:.1f} s")

    users = slice(0, min(args.eval_users, args.users))
    start = time.perf_counter()
    ours = ks.evaluate_top_k(
        model, train[users], held_out[users], k=(10, 20), exclude=train[users],
        metrics=("recall", "ndcg"), batch_size=500, verbose=0,
    )  # fmt: skip
    popular = np.argsort(-counts, kind="stable")[:2000].astype(np.int32)
    scores = np.zeros(args.items, np.float32)
    scores[popular] = np.linspace(1.0, 0.5, len(popular))
    baseline = _popularity_metrics(scores, train[users], held_out[users])
    print(f"evaluated {users.stop:,} users over all items in {time.perf_counter() - start:.1f} s")
    print(f"{'metric':10s} {'Mult-DAE':>9s} {'popularity':>11s}")
    for name, value in ours.items():
        print(f"{name:10s} {value:9.4f} {baseline[name]:11.4f}")

    recs = ks.predict_top_k(model, train[:3], k=10, exclude=train[:3], verbose=0)
    for user in range(3):
        items = recs.indices[recs.indptr[user] : recs.indptr[user + 1]]
        print(f"user {user}: top 10 = {items.tolist()}")
    return 0


def _popularity_metrics(scores: np.ndarray, train: sp.csr_matrix, held_out: sp.csr_matrix):
    """The same metrics for a model that gives every user the popularity scores."""
    inputs = keras.Input((train.shape[1],), sparse=True)
    ones = ks.layers.SparseDenseInput(1, kernel_initializer="zeros", bias_initializer="ones")
    output = ks.layers.SparseDenseOutput(train.shape[1], kernel_initializer="zeros")
    model = keras.Model(inputs, output(ones(inputs)))
    output.bias.assign(scores)  # score = 0 * hidden + popularity
    return ks.evaluate_top_k(
        model, train, held_out, k=(10, 20), exclude=train, metrics=("recall", "ndcg"),
        batch_size=500, verbose=0,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
