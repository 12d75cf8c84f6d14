"""Train-step benchmark: Keras `Dense` vs `SparseDenseInput`, Adam vs LazyAdam vs SGD.

Model `sparse input (features) -> 64 -> 1`, batch 256, ~50 stored entries per
row, targets from a planted sparse linear model. Each configuration starts from
the same seed, runs one warm-up epoch (tracing), then a timed fit; ms per step
is the timed wall time over the number of steps. The training loss after all
steps is printed so the Adam / LazyAdam trade-off is visible.

Usage: python benchmarks/bench_sparse_input.py [--features 1000000 --steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from keras_sparse.data import SparseDataset  # noqa: E402
from keras_sparse.layers import SparseDenseInput  # noqa: E402
from keras_sparse.optimizers import LazyAdam  # noqa: E402


def make_data(rows: int, features: int, per_row: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    indptr = np.arange(rows + 1) * per_row
    # Zipf-like feature popularity, as in text and interaction data.
    cols = np.minimum(rng.zipf(1.3, size=rows * per_row) - 1, features - 1).astype(np.int32)
    x = sp.csr_matrix((np.ones(rows * per_row, np.float32), cols, indptr), shape=(rows, features))
    x.sum_duplicates()
    w_true = rng.normal(size=features).astype(np.float32) * (rng.random(features) < 0.01)
    y = (x @ w_true)[:, None] + 0.1 * rng.normal(size=(rows, 1)).astype(np.float32)
    return x, y


CONFIGS = [
    ("Dense + Adam", "dense", "adam"),
    ("Dense + SGD", "dense", "sgd"),
    ("SparseDenseInput + Adam", "sparse", "adam"),
    ("SparseDenseInput + LazyAdam", "sparse", "lazyadam"),
    ("SparseDenseInput + SGD", "sparse", "sgd"),
]


def build(kind: str, optimizer: str, features: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,), sparse=True)
    first = (
        keras.layers.Dense(64, activation="relu")
        if kind == "dense"
        else SparseDenseInput(64, activation="relu")
    )
    model = keras.Model(inputs, keras.layers.Dense(1)(first(inputs)))
    opt = {
        "adam": lambda: keras.optimizers.Adam(1e-3),
        "lazyadam": lambda: LazyAdam(1e-3),
        "sgd": lambda: keras.optimizers.SGD(1e-2),
    }[optimizer]()
    model.compile(optimizer=opt, loss="mse")
    return model


def run(features: int, steps: int, batch: int, per_row: int, epochs: int) -> dict:
    x, y = make_data(steps * batch, features, per_row)
    data = SparseDataset(x, y, batch_size=batch)
    results = {}
    for label, kind, optimizer in CONFIGS:
        model = build(kind, optimizer, features)
        model.fit(data, epochs=1, verbose=0)  # warm-up: tracing and first allocation
        start = time.perf_counter()
        model.fit(data, epochs=epochs, verbose=0)
        seconds = time.perf_counter() - start
        loss = model.evaluate(data, verbose=0)
        results[label] = {"ms_per_step": 1000 * seconds / (epochs * steps), "loss": loss}
        print(f"  {label:<30}{results[label]['ms_per_step']:>9.1f} ms/step", flush=True)
        del model
        keras.backend.clear_session()
    return results


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=40, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--per-row", type=int, default=50)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    print(
        f"{args.features} features, batch {args.batch}, ~{args.per_row} entries/row, "
        f"-> 64 -> 1; {args.epochs} x {args.steps} timed steps after 1 warm-up epoch"
    )
    res = run(args.features, args.steps, args.batch, args.per_row, args.epochs)
    steps_total = (args.epochs + 1) * args.steps
    print(f"\n{'configuration':<30}{'ms/step':>9}{'loss after ' + str(steps_total):>18}")
    for label, r in res.items():
        print(f"{label:<30}{r['ms_per_step']:>9.1f}{r['loss']:>18.4f}")
    lazy = res["Dense + Adam"]["ms_per_step"] / res["SparseDenseInput + LazyAdam"]["ms_per_step"]
    sgd = res["Dense + SGD"]["ms_per_step"] / res["SparseDenseInput + SGD"]["ms_per_step"]
    print(f"\nspeed-up SparseDenseInput+LazyAdam vs Dense+Adam: {lazy:.1f}x (target >= 8x)")
    print(f"speed-up SparseDenseInput+SGD vs Dense+SGD:       {sgd:.1f}x (target >= 2x)")
    summary = {
        "configs": res,
        "speedup_lazyadam_vs_dense_adam": lazy,
        "speedup_sgd_vs_dense_sgd": sgd,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
