"""Train a sparse recommender on several devices with keras.distribution (JAX backend).

    python examples/distributed_jax.py                      # data parallel, 4 devices
    python examples/distributed_jax.py --layout model       # table sharded by rows
    python examples/distributed_jax.py --users 400 --epochs 2

Without accelerators it makes `--devices` CPU devices (XLA_FLAGS, set before JAX
starts), so it runs on any machine; on GPUs it uses the first `--devices` GPUs.

1. users x items interactions as SciPy CSR, each user's items split into
   train / held out,
2. `keras.distribution.DataParallel` (`--layout data`) or `ModelParallel` with
   the `SparseDenseInput` table sharded by rows over a "model" axis
   (`--layout model`), set before the model is built,
3. an autoencoder (SparseDenseInput + LazyAdam) trained with `fit` on a
   `SparseDataset`: each sparse batch is split by rows across the devices,
4. `evaluate_top_k` under the distribution, then the same training on one
   device: the metrics agree.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--devices", type=int, default=4, help="an even number, at least 2")
    parser.add_argument("--layout", choices=("data", "model"), default="data")
    args = parser.parse_args(argv)
    if args.devices < 2 or args.devices % 2:
        parser.error(f"--devices must be an even number >= 2, got {args.devices}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if "jax" not in sys.modules:  # configure JAX before it starts
        os.environ["KERAS_BACKEND"] = "jax"
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_force_host_platform_device_count={args.devices}"
            ).strip()
    import keras

    if keras.backend.backend() != "jax":
        print("This example needs the JAX backend: run it with KERAS_BACKEND=jax.")
        return 1

    import keras_sparse as ks
    from keras_sparse.interactions import split_holdout, synthetic_interactions

    devices = keras.distribution.list_devices()[: args.devices]
    if len(devices) < args.devices:
        print(f"Only {len(devices)} devices are visible; pass --devices {len(devices)}.")
        return 1
    interactions = synthetic_interactions(args.users, args.items, seed=0)
    train, held_out = split_holdout(interactions, fraction=0.2, seed=0)
    batch = 64 * args.devices  # the global batch: 64 rows per device
    rows = train.shape[0] // batch * batch  # every batch splits evenly across the devices
    train, held_out = train[:rows], held_out[:rows]

    def distribution() -> keras.distribution.Distribution:
        if args.layout == "data":
            return keras.distribution.DataParallel(devices=devices)
        mesh = keras.distribution.DeviceMesh((2, args.devices // 2), ["batch", "model"], devices)
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map[".*embed/kernel"] = ("model", None)  # table rows over "model"
        return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")

    def train_and_evaluate(dist: keras.distribution.Distribution | None) -> tuple:
        keras.utils.set_random_seed(0)
        keras.distribution.set_distribution(dist)  # before the model is built
        inputs = keras.Input((args.items,), sparse=True)
        code = ks.layers.SparseDenseInput(64, activation="tanh", name="embed")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(args.items)(code))
        model.compile(
            optimizer=ks.optimizers.LazyAdam(0.005), loss=ks.losses.SparseMultinomialNLL()
        )
        data = ks.data.SparseDataset(train, train, batch_size=batch, shuffle=True, seed=0)
        model.fit(data, epochs=args.epochs, verbose=0, shuffle=False)
        metrics = ks.evaluate_top_k(
            model, train, held_out, k=10, exclude=train, batch_size=batch, verbose=0
        )
        kernel = model.get_layer("embed").kernel.value
        keras.distribution.set_distribution(None)
        return metrics, kernel

    many, kernel = train_and_evaluate(distribution())
    rows_per_device = sorted({shard.data.shape[0] for shard in kernel.addressable_shards})
    print(
        f"{args.layout} parallel on {len(devices)} {devices[0].split(':')[0]} devices: "
        f"table {tuple(kernel.shape)}, {rows_per_device} rows on each device"
    )
    print("  " + "  ".join(f"{name} {value:.4f}" for name, value in many.items()))
    one, _ = train_and_evaluate(None)
    print("one device:")
    print("  " + "  ".join(f"{name} {value:.4f}" for name, value in one.items()))
    same = all(abs(many[name] - one[name]) < 1e-3 for name in one)
    print("same as one device" if same else "DIFFERENT from one device")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
