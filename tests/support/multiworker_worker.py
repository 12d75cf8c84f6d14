"""One worker of the MultiWorkerMirroredStrategy test (run by test_distribute.py).

The parent sets `TF_CONFIG` (two workers on 127.0.0.1) and passes an output
directory. Each worker trains the same model on its shard of a SparseDataset
and writes its final weights and losses there, for the test to compare.
"""

from __future__ import annotations

import os
import sys


def data_and_model():
    """The data (the same on both workers) and the compiled model, from fixed seeds."""
    import keras
    import numpy as np
    import scipy.sparse as sp

    import keras_sparse as ks

    x = sp.random(90, 40, density=0.15, format="csr", random_state=0, dtype=np.float32)
    y = sp.random(90, 40, density=0.1, format="csr", random_state=1, dtype=np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((40,), sparse=True)
    hidden = ks.layers.SparseDenseInput(8, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(40)(hidden))
    model.compile(
        optimizer=ks.optimizers.LazyAdam(0.01),
        loss=ks.losses.SparseMeanSquaredError(normalize="entries"),
        metrics=[ks.metrics.NDCGAtK(5)],
    )
    return x, y, model


def main(out_dir: str) -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_sparse as ks

    keras.config.disable_traceback_filtering()

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    with strategy.scope():
        x, y, model = data_and_model()
    ks.distribute.enable_sparse(model)
    data = ks.data.SparseDataset(x, y, batch_size=16, shuffle=True, seed=3)
    history = model.fit(ks.distribute.distribute_dataset(data, strategy), epochs=3, verbose=0)
    np.savez(
        os.path.join(out_dir, f"worker{index}.npz"),
        loss=np.asarray(history.history["loss"]),
        **{f"w{i}": w for i, w in enumerate(model.get_weights())},
    )


if __name__ == "__main__":
    main(sys.argv[1])
