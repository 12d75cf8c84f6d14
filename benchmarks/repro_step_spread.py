"""Minimal reproduction: the feeding benchmark's step alone varies more between processes.

`bench_feed.py` compares one epoch of two processes. Both run the same Keras step
(`Dense(1)` on a 256 x 1,000,000 `tf.SparseTensor`, Adam over the 1M x 1 kernel), which
is most of the epoch. Here no feeding happens at all: each process fits 391 steps on one
batch already in memory (`Dataset.from_tensors(...).repeat`), imports no keras_sparse, and
prints its epoch time. The spread between identical processes bounds how close to 1.0x any
feeding can be guaranteed "in every run".

Usage: python benchmarks/repro_step_spread.py [--processes 6]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_epoch() -> float:
    """Seconds for 391 steps of `bench_feed.py`'s model on one fixed batch."""
    import keras
    import numpy as np
    import tensorflow as tf
    from bench_feed import make_data

    x, y = make_data(256, 1_000_000, 50 * 256)
    coo = x.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    batch = tf.sparse.reorder(tf.SparseTensor(indices, coo.data, (256, 1_000_000)))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1_000_000,), sparse=True), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    data = tf.data.Dataset.from_tensors((batch, y)).repeat(391)
    model.fit(data.take(2), verbose=0)  # tracing is not timed
    start = time.perf_counter()
    model.fit(data, verbose=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"{one_epoch():.4f}")
        return
    times = []
    for _ in range(args.processes):
        done = subprocess.run(
            [sys.executable, __file__, "--child"], capture_output=True, text=True, check=True
        )
        times.append(float(done.stdout.strip().splitlines()[-1]))
        print(f"feed-free epoch: {times[-1]:.2f} s", flush=True)
    print(
        f"{len(times)} identical processes: {min(times):.2f}-{max(times):.2f} s; "
        f"the slowest is {max(times) / min(times):.2f}x the fastest"
    )


if __name__ == "__main__":
    main()
