"""Minimal reproduction: destroying a `tf.data` iterator can wait seconds for autotuning.

No Keras and no keras_sparse: a `range().map()` pipeline read by a `tf.function` step for
391 batches (about 3 s, like one `bench_feed.py` epoch), then `del iterator`. With
`tf.data`'s autotuning on (the default), the iterator owns a model thread, and the
destructor waits for it; with `options.autotune.enabled = False` it returns at once.
Keras destroys its epoch iterator when `fit` returns, so the wait lands on the epoch's
wall time: on this 2-core machine it is the 2.2-2.6 s of the slow native epochs in
`bench_feed.py` (caught there with `py-spy dump --native` inside
`RootDataset::Iterator::~Iterator`, waiting for a `tf.data` logical thread).

Usage: python benchmarks/repro_tf_data_teardown.py [--trials 8]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def pipeline(autotune: bool) -> tf.data.Dataset:
    """391 batches of 256 x 512 random floats, made in the `map`."""
    dataset = tf.data.Dataset.range(391).map(lambda i: tf.random.uniform((256, 512)))
    options = tf.data.Options()
    options.autotune.enabled = autotune
    return dataset.with_options(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    weights = tf.Variable(tf.zeros((512, 2048)))

    @tf.function
    def step(iterator: tf.data.Iterator) -> None:
        x = next(iterator)
        weights.assign_add(tf.matmul(x, tf.matmul(x, weights), transpose_a=True) * 1e-9)

    print("autotune  epoch s  teardown s (del iterator)")
    for autotune in (True, False):
        for _ in range(args.trials):
            iterator = iter(pipeline(autotune))
            start = time.perf_counter()
            for _ in range(391):
                step(iterator)
            epoch = time.perf_counter() - start
            start = time.perf_counter()
            del iterator
            print(f"{str(autotune):<10}{epoch:>7.2f}{time.perf_counter() - start:>12.3f}")


if __name__ == "__main__":
    main()
