"""Negative samplers of `SparseDenseOutput`: quality and step time against the exact softmax.

Quality (`--part quality`): a Mult-DAE (`SparseDenseInput(64, tanh, sqrtn) ->
SparseDenseOutput`, `SparseMultinomialNLL`, `LazyAdam(3e-3)`, batch 128,
12 epochs) on the planted set `synthetic_interactions(3000, 4000, seed=3)` and
on MovieLens-100K (every rating an interaction; skipped when
`../shared/tools/fetch_movielens_100k.sh` has not fetched it), 20 % of each
user's items held out (`split_holdout`), NDCG@10 over the full catalogue with
the training items excluded. Each sampler uses `negatives` = 2 % of the
catalogue and the layer's other defaults, for the same epochs as the exact
model; NDCG@10 is the mean over `--seeds` seeds, and each ratio divides by the
exact model's mean from the same run.

Speed (`--part speed`): the setup of `bench_outputs.py` (20k sparse features,
30 per row, d 64, batch 256, 50 target entries per row, `LazyAdam`) with
`SparseMultinomialNLL`, at `--small` and `--large` items with negatives at 2 %
of the catalogue, and at `--large` with 0.2 %: milliseconds per step
(fastest of three timed epochs after a warm-up one) and MB above the resident
set during the timed epochs, each configuration in its own process, against
the exact softmax measured in the same run.

Usage: python benchmarks/bench_samplers.py --backend jax [--part quality|speed] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SAMPLERS = ("uniform", "counts", "in_batch", "mixed", "hard")
SHARE = 0.02  # negatives as a share of the catalogue
MOVIELENS = Path("~/.cache/keras_sparse/ml-100k/ml-100k.inter").expanduser()


def quality_data(name: str):
    import numpy as np
    import scipy.sparse as sp

    import keras_sparse as ks

    if name == "planted":
        x = ks.interactions.synthetic_interactions(3000, 4000, seed=3)
    else:
        x = ks.interactions.load_interactions(MOVIELENS, header=True).matrix
        x = sp.csr_matrix((np.ones(x.nnz, np.float32), x.indices, x.indptr), shape=x.shape)
    return ks.interactions.split_holdout(x, 0.2, seed=0)


def layer_kwargs(sampler: str | None, items: int, train=None, share: float = SHARE) -> dict:
    """The output layer's arguments for `sampler` (None: exact) at `share` negatives."""
    if sampler is None:
        return {}
    kwargs = {"negatives": max(1, round(share * items)), "sampling": sampler}
    if sampler == "counts":
        import numpy as np

        counts = np.ones(items) if train is None else np.asarray(train.sum(axis=0)).ravel() + 1
        kwargs["item_counts"] = counts
    return kwargs


def quality_run(name: str, sampler: str | None, seed: int) -> tuple[float, float]:
    """NDCG@10 and fit seconds of one Mult-DAE on data set `name`."""
    import keras

    import keras_sparse as ks

    train, held = quality_data(name)
    items = train.shape[1]
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((items,), sparse=True)
    hidden = ks.layers.SparseDenseInput(64, activation="tanh", combiner="sqrtn")(inputs)
    output = ks.layers.SparseDenseOutput(items, seed=seed, **layer_kwargs(sampler, items, train))
    model = keras.Model(inputs, output(hidden))
    model.compile(optimizer=ks.optimizers.LazyAdam(3e-3), loss=ks.losses.SparseMultinomialNLL())
    data = ks.data.SparseDataset(train, train, batch_size=128, shuffle=True, seed=seed)
    start = time.perf_counter()
    model.fit(data, epochs=12, verbose=0)
    seconds = time.perf_counter() - start
    result = ks.evaluate_top_k(
        model, train, held, k=10, exclude=train, metrics=("ndcg",), verbose=0
    )
    return result["ndcg@10"], seconds


def quality(args: argparse.Namespace) -> dict:
    sets = ["planted"] + (["movielens-100k"] if MOVIELENS.exists() else [])
    if len(sets) == 1:
        print("MovieLens-100K not fetched (../shared/tools/fetch_movielens_100k.sh): skipped")
    runs = {}
    for name in sets:
        for sampler in (None, *SAMPLERS):
            scores = [quality_run(name, sampler, seed) for seed in range(args.seeds)]
            ndcg = sum(s for s, _ in scores) / len(scores)
            seconds = sum(t for _, t in scores) / len(scores)
            label = sampler or "exact"
            runs[f"{name}/{label}"] = {"ndcg@10": ndcg, "fit_s": seconds, "seeds": scores}
            exact = runs[f"{name}/exact"]["ndcg@10"]
            print(
                f"{name:15s} {label:9s} NDCG@10 {ndcg:.4f} ({ndcg / exact:.3f}x exact), "
                f"fit {seconds:5.1f} s",
                flush=True,
            )
    return runs


def speed_child(spec: dict) -> dict:
    import keras
    from bench_outputs import BATCH, FEATURES, HIDDEN, REPEATS, PeakRSS, make_data

    import keras_sparse as ks

    items = spec["items"]
    x, y = make_data(spec["rows"], items)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FEATURES,), sparse=True)
    hidden = ks.layers.SparseDenseInput(HIDDEN, activation="tanh")(inputs)
    kwargs = layer_kwargs(spec["sampler"], items, share=spec["share"])
    output = ks.layers.SparseDenseOutput(items, **kwargs)
    model = keras.Model(inputs, output(hidden))
    model.compile(optimizer=ks.optimizers.LazyAdam(1e-3), loss=ks.losses.SparseMultinomialNLL())
    model.optimizer.build(model.trainable_variables)
    data = ks.data.SparseDataset(x, y, batch_size=BATCH)
    model.fit(data, epochs=1, verbose=0, shuffle=False)  # warm-up: compile
    with PeakRSS() as rss:
        seconds = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0, shuffle=False)
            seconds.append(time.perf_counter() - start)
    return {"ms_per_step": 1000 * min(seconds) / len(data), "extra_mb": rss.extra_mb}


def speed(args: argparse.Namespace) -> dict:
    from bench_outputs import measure

    runs = {}
    plan = [(args.small, SHARE), (args.large, SHARE), (args.large, SHARE / 10)]
    for items, share in plan:
        for sampler in (None, *SAMPLERS):
            if sampler is None and f"{items}/exact" in runs:
                continue
            spec = {"items": items, "sampler": sampler, "rows": args.rows, "share": share}
            result = measure(spec, args.backend, __file__)
            label = "exact" if sampler is None else f"{sampler} {share:.1%}"
            runs[f"{items}/{label}"] = result
            exact = runs[f"{items}/exact"]["ms_per_step"]
            print(
                f"{args.backend:10s} {items:>9,d} items {label:14s} {result['ms_per_step']:9.1f} "
                f"ms/step ({exact / result['ms_per_step']:5.1f}x faster than exact), "
                f"{result['extra_mb']:7.1f} MB above the resident set",
                flush=True,
            )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument("--part", choices=("quality", "speed", "all"), default="all")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per quality cell")
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=1024, help="rows of the speed runs")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(speed_child(json.loads(args.child))))
        return 0
    os.environ["KERAS_BACKEND"] = args.backend
    results = {"backend": args.backend}
    if args.part in ("quality", "all"):
        results["quality"] = quality(args)
    if args.part in ("speed", "all"):
        results["speed"] = speed(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
