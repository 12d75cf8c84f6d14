"""An autoencoder recommender on a SciPy CSR matrix, end to end with keras_sparse.

    python examples/recommender.py                       # 4000 users x 1500 items
    python examples/recommender.py --users 300 --epochs 2 --out recs.npz

1. users x items interactions as SciPy CSR (synthetic here; any CSR works),
2. each user's items split into train / held out,
3. a denoising autoencoder: SparseDropout -> SparseDenseInput -> Dense, trained
   with the masked SparseMultinomialNLL on the sparse rows (never densified),
4. ranking metrics in `compile`, with ExcludeSeen removing each user's training
   items from the scores at validation time,
5. evaluate_top_k for precision/recall/NDCG/MAP at 10 and 20 (seen items excluded),
6. predict_top_k for the top-k items per user as a CSR matrix, saved as .npz.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import keras_sparse as ks  # noqa: E402
from keras_sparse.interactions import split_holdout, synthetic_interactions  # noqa: E402


def build(items: int, hidden: int = 128) -> keras.Model:
    """Autoencoder whose scores exclude the input (seen) items at inference."""
    seen = keras.Input((items,), sparse=True, name="items")
    noisy = ks.layers.SparseDropout(0.5)(seen)
    code = ks.layers.SparseDenseInput(hidden, activation="tanh", combiner="sqrtn")(noisy)
    scores = keras.layers.Dense(items)(code)
    model = keras.Model(seen, ks.layers.ExcludeSeen()([scores, seen]))
    model.compile(
        optimizer=ks.optimizers.LazyAdam(0.005),
        loss=ks.losses.SparseMultinomialNLL(),
        metrics=[ks.metrics.NDCGAtK(10), ks.metrics.RecallAtK(20)],
    )
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=20, help="items per user in the output")
    parser.add_argument(
        "--out", help="where to write the top-k CSR (default: a new temporary folder)"
    )
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    interactions = synthetic_interactions(args.users, args.items, seed=0)
    train, held_out = split_holdout(interactions, fraction=0.2, seed=0)
    print(
        f"{interactions.shape[0]} users x {interactions.shape[1]} items, {train.nnz} train "
        f"and {held_out.nnz} held-out interactions"
    )

    model = build(args.items)
    # Early stopping on the held-out ranking metric: the best epoch's weights are kept.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_ndcg_at_10", mode="max", patience=3, restore_best_weights=True
    )
    model.fit(
        ks.data.SparseDataset(train, train, batch_size=128, shuffle=True, seed=0),
        validation_data=ks.data.SparseDataset(train, held_out, batch_size=512),
        epochs=args.epochs,
        callbacks=[stop],
        verbose=2,
    )
    scores = ks.evaluate_top_k(model, train, held_out, k=(10, 20), exclude=train, verbose=0)
    for name, value in sorted(scores.items()):
        print(f"{name:>15}: {value:.4f}")

    top = ks.predict_top_k(model, train, k=args.k, exclude=train, verbose=0)
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="keras_sparse_"), "recs.npz")
    sp.save_npz(out, top)
    print(f"wrote the top {args.k} items of {top.shape[0]} users to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
