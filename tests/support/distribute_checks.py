"""Run in a subprocess by test_distribute.py: one device vs MirroredStrategy on 2 CPUs.

The two logical CPU devices must be configured before TensorFlow starts, which
is why this runs in its own process. It prints one JSON object: for every case,
the values computed on one device and under the strategy, from identical
initial weights. The test compares them.
"""

from __future__ import annotations

import json
import os
import sys


def _setup():
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    return tf


def main() -> None:
    tf = _setup()
    import keras
    import numpy as np
    import scipy.sparse as sp

    import keras_sparse as ks

    x = sp.random(70, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
    y = sp.random(70, 30, density=0.1, format="csr", random_state=1, dtype=np.float32)
    y.data = np.ceil(y.data * 3)  # ratings 1..3, so the ranking metrics have gains
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    metrics = [
        ks.metrics.PrecisionAtK,
        ks.metrics.RecallAtK,
        ks.metrics.NDCGAtK,
        ks.metrics.MAPAtK,
        ks.metrics.HitRateAtK,
        ks.metrics.MRRAtK,
    ]

    losses = {
        "mse/row": ks.losses.SparseMeanSquaredError(),
        "mse/entries": ks.losses.SparseMeanSquaredError(normalize="entries"),
        "mae/entries": ks.losses.SparseMeanAbsoluteError(normalize="entries"),
        "huber/row": ks.losses.SparseHuber(),
        "bce/row": ks.losses.SparseBinaryCrossentropy(from_logits=True),
        "bce/entries": ks.losses.SparseBinaryCrossentropy(from_logits=True, normalize="entries"),
        "nll/row": ks.losses.SparseMultinomialNLL(),
        "nll/entries": ks.losses.SparseMultinomialNLL(normalize="entries"),
    }

    def build(loss_names):
        # One output per loss (the same scores under another name): one compile and
        # one trace cover every loss; the metrics watch the first output.
        keras.utils.set_random_seed(0)
        inputs = keras.Input((30,), sparse=True)
        hidden = ks.layers.SparseDenseInput(8, activation="tanh")(inputs)
        scores = keras.layers.Dense(30)(hidden)
        outputs = [
            keras.layers.Activation("linear", name=f"o{i}")(scores) for i in range(len(loss_names))
        ]
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=[losses[name] for name in loss_names],
            metrics=[[m(5) for m in metrics] + [ks.metrics.SparseRootMeanSquaredError()]]
            + [None] * (len(loss_names) - 1),
        )
        return model

    def pair(loss_names):
        single = build(loss_names)
        with strategy.scope():
            dist = ks.distribute.enable_sparse(build(loss_names))
        dist.set_weights(single.get_weights())
        return single, dist

    def weights(model):
        return [w.tolist() for w in model.get_weights()]

    out: dict[str, dict] = {}
    every = list(losses)
    single, dist = pair(every)
    ys = [y] * len(every)
    out["evaluate/losses"] = {
        "single": single.evaluate(x, ys, batch_size=20, verbose=0, return_dict=True),
        "dist": dist.evaluate(x, ys, batch_size=20, verbose=0, return_dict=True),
        "names": every,
    }
    for name in ("mse/entries", "nll/row", "bce/entries"):
        single, dist = pair([name])
        single.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
        dist.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
        out[f"fit/{name}"] = {"single": weights(single), "dist": weights(dist)}

    feeds = {
        "scipy": lambda: {"x": x, "y": y, "batch_size": 20},
        "SparseDataset": lambda: {"x": ks.data.SparseDataset(x, y, batch_size=20)},
        "tf.data": lambda: {
            "x": tf.data.Dataset.from_tensor_slices(
                (ks.to_sparse_tensor(x), ks.to_sparse_tensor(y))
            ).batch(20)
        },
        "distribute_dataset": lambda: {
            "x": ks.distribute.distribute_dataset(
                ks.data.SparseDataset(x, y, batch_size=20), strategy
            )
        },
    }
    predict_feeds = {
        "scipy": lambda: {"x": x, "batch_size": 20},
        "SparseDataset": lambda: {"x": ks.data.SparseDataset(x, batch_size=20)},
        "tf.data": lambda: {
            "x": tf.data.Dataset.from_tensor_slices(ks.to_sparse_tensor(x)).batch(20)
        },
        "distribute_dataset": lambda: {
            "x": ks.distribute.distribute_dataset(ks.data.SparseDataset(x, batch_size=20), strategy)
        },
    }
    single = build(["mse/row"])
    initial = single.get_weights()
    single.fit(x, y, batch_size=20, epochs=2, shuffle=False, verbose=0)
    reference = {
        "fit": weights(single),
        "evaluate": single.evaluate(x, y, batch_size=20, verbose=0, return_dict=True),
        "predict": single.predict(x, batch_size=20, verbose=0).tolist(),
    }
    for feed_name, feed in feeds.items():
        with strategy.scope():
            dist = ks.distribute.enable_sparse(build(["mse/row"]))
        dist.set_weights(initial)
        dist.fit(**feed(), epochs=2, shuffle=False, verbose=0)
        out[f"fit/{feed_name}"] = {"single": reference["fit"], "dist": weights(dist)}
        out[f"evaluate/{feed_name}"] = {
            "single": reference["evaluate"],
            "dist": dist.evaluate(**feed(), verbose=0, return_dict=True),
        }
        out[f"predict/{feed_name}"] = {
            "single": reference["predict"],
            "dist": dist.predict(**predict_feeds[feed_name](), verbose=0).tolist(),
        }

    def build_output(loss, **kwargs):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((30,), sparse=True)
        hidden = ks.layers.SparseDenseInput(8, activation="tanh")(inputs)
        model = keras.Model(inputs, ks.layers.SparseDenseOutput(30, **kwargs)(hidden))
        model.compile(optimizer=ks.optimizers.LazyAdam(0.05), loss=loss)
        return model

    output_cases = {
        "mse/entries": (lambda: ks.losses.SparseMeanSquaredError(normalize="entries"), {}),
        "nll/exact": (ks.losses.SparseMultinomialNLL, {"block_size": 8}),
        "nll/sampled": (ks.losses.SparseMultinomialNLL, {"negatives": 7, "seed": 4}),
    }
    for name, (loss, kwargs) in output_cases.items():
        single = build_output(loss(), **kwargs)
        with strategy.scope():
            dist = ks.distribute.enable_sparse(build_output(loss(), **kwargs))
        dist.set_weights(single.get_weights())
        single.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
        dist.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
        out[f"output/{name}"] = {"single": weights(single), "dist": weights(dist)}

    with strategy.scope():
        plain = build(["mse/row"])  # no enable_sparse: Keras's own build step
    try:
        plain.fit(x, y, batch_size=20, epochs=1, verbose=0)
        out["without_enable_sparse"] = {"error": None}
    except Exception as error:  # noqa: BLE001 - recorded for the test to inspect
        out["without_enable_sparse"] = {"error": f"{type(error).__name__}: {error}"}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
