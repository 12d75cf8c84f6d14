"""JAX at scale: top-k and LazyAdam `fit` against hand-written JAX, on whatever device JAX has.

Runs on a GPU when JAX has one (JAX with CUDA; TensorFlow is not needed) and
on the CPU otherwise, and prints the device with every figure. Every ratio is
against a baseline measured in the same run.

1. Top-k: `users` x `items` scores from a `factors`-wide factor model
   (a Keras model: user factors in, scores against the item factors out),
   K=10, `exclude` excluded items per user. `predict_top_k` (batches of
   `--topk-batch` users, results gathered into a CSR on the host) against a
   plain jitted `scores = u @ V.T; jax.lax.top_k(scores, K)` over all users
   at once (no exclusion), with the result brought to the host.
2. `fit` per step: `SparseDenseInput(64, relu)` + `Dense(1)` with `LazyAdam`,
   fed a SciPy CSR through `SparseDataset` (batch 256, 50 entries per row),
   data feeding included, at each of `--features`. Baselines in the same run:
   a hand-written JAX lazy-Adam step (gather, `segment_sum`, row scatters,
   donated buffers) on batches already on the device, and Keras `Dense` +
   `Adam` in `fit` on batches already on the device (dense `BCOO` input),
   skipped above `--keras-max-features`.

Usage: KERAS_BACKEND=jax python benchmarks/bench_jax_scale.py [--features 1000000,10000000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from jax.experimental import sparse as jsparse  # noqa: E402

import keras_sparse as ks  # noqa: E402

BATCH = 256
PER_ROW = 50
WIDTH = 64


def device_name() -> str:
    device = jax.devices()[0]
    return f"{device.platform.upper()} {device.device_kind} (x{jax.device_count()})"


def best_of(fn, repeats: int = 3) -> float:
    """Seconds of the fastest of `repeats` calls of `fn` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------- top-k


def topk(users: int, items: int, factors: int, exclude: int, k: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    user_f = rng.normal(size=(users, factors)).astype(np.float32)
    item_f = rng.normal(size=(items, factors)).astype(np.float32)
    cols = rng.integers(0, items, size=(users, exclude))
    excl = sp.csr_matrix(
        (
            np.ones(users * exclude, np.float32),
            (np.repeat(np.arange(users), exclude), cols.ravel()),
        ),
        shape=(users, items),
    )
    excl.data[:] = 1.0

    inputs = keras.Input((factors,))
    dense = keras.layers.Dense(items, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    dense.kernel.assign(item_f.T)

    u_dev, v_dev = jnp.asarray(user_f), jnp.asarray(item_f)

    @jax.jit
    def plain(u, v):
        return jax.lax.top_k(u @ v.T, k)

    def baseline():
        values, indices = plain(u_dev, v_dev)
        return np.asarray(values), np.asarray(indices)

    def ours():
        return ks.predict_top_k(model, user_f, k=k, exclude=excl, batch_size=batch, verbose=0)

    base_s = best_of(baseline)
    ours_s = best_of(ours)
    # Correctness on the first users: ours equals the plain top-k once excluded items are masked.
    result = ours()
    scores = user_f[:50] @ item_f.T
    scores[excl[:50].nonzero()] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    same = np.mean([set(result[i].indices) == set(expected[i]) for i in range(50)])
    return {"baseline_ms": 1000 * base_s, "ours_ms": 1000 * ours_s, "agreement": float(same)}


# ---------------------------------------------------------------- fit


def make_data(rows: int, features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, features, size=(rows, PER_ROW)).astype(np.int32)
    indptr = np.arange(0, rows * PER_ROW + 1, PER_ROW)
    x = sp.csr_matrix((np.ones(rows * PER_ROW, np.float32), cols.ravel(), indptr), (rows, features))
    x.sum_duplicates()
    y = rng.normal(size=(rows, 1)).astype(np.float32)
    return x, y


def model_of(
    features: int, first: keras.layers.Layer, optimizer, steps_per_execution: int = 1
) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((features,), sparse=True)
    model = keras.Model(inputs, keras.layers.Dense(1)(first(inputs)))
    model.compile(optimizer=optimizer, loss="mse", steps_per_execution=steps_per_execution)
    return model


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last = time.perf_counter() - self.start


def ours_fit(x, y, steps_per_execution: int) -> float:
    """ms per step of `fit` from SciPy (SparseDataset), the second epoch (compiled)."""
    model = model_of(
        x.shape[1],
        ks.layers.SparseDenseInput(WIDTH, "relu"),
        ks.optimizers.LazyAdam(),
        steps_per_execution,
    )
    timer = EpochTimer()
    data = ks.data.SparseDataset(x, y, batch_size=BATCH)
    model.fit(data, epochs=2, verbose=0, callbacks=[timer])
    ms = 1000 * timer.last / len(data)
    del model
    keras.backend.clear_session()
    return ms


def device_batches(x, y):
    """Every batch as a device `BCOO` of one entry count (each row holds <= PER_ROW entries)."""
    out = []
    for start in range(0, x.shape[0] - BATCH + 1, BATCH):
        block = x[start : start + BATCH].tocoo()
        size = BATCH * PER_ROW
        idx = np.full((size, 2), [BATCH, x.shape[1]], np.int32)
        idx[: block.nnz, 0], idx[: block.nnz, 1] = block.row, block.col
        val = np.zeros(size, np.float32)
        val[: block.nnz] = block.data
        out.append(
            (
                jsparse.BCOO((jnp.asarray(val), jnp.asarray(idx)), shape=(BATCH, x.shape[1])),
                jnp.asarray(y[start : start + BATCH]),
            )
        )
    return out


def keras_dense_fit(x, y) -> float:
    """ms per step of Keras `Dense` + `Adam` in `fit` on batches already on the device."""
    batches = device_batches(x, y)
    model = model_of(x.shape[1], keras.layers.Dense(WIDTH, "relu"), keras.optimizers.Adam())

    def generator():
        while True:
            yield from batches

    timer = EpochTimer()
    model.fit(
        generator(),
        steps_per_epoch=len(batches),
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[timer],
    )
    ms = 1000 * timer.last / len(batches)
    del model
    keras.backend.clear_session()
    return ms


def hand_written(x, y) -> float:
    """ms per step of a hand-written JAX lazy-Adam step with donated buffers."""
    features = x.shape[1]
    key = jax.random.PRNGKey(0)
    table = jax.random.normal(key, (features, WIDTH)) * 0.01
    state = {
        "table": table,
        "m": jnp.zeros_like(table),
        "v": jnp.zeros_like(table),
        "w": jnp.zeros((WIDTH, 1)),
        "b": jnp.zeros((1,)),
        "bias": jnp.zeros((WIDTH,)),
        "t": jnp.zeros((), jnp.float32),
    }
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

    def step(state, idx, val, target):
        rows, cols = idx[:, 0], idx[:, 1]
        picked = state["table"].at[cols].get(mode="fill", fill_value=0)

        def loss_fn(picked, w, b, bias):
            hidden = jax.ops.segment_sum(picked * val[:, None], rows, BATCH) + bias
            out = jax.nn.relu(hidden) @ w + b
            return jnp.mean((out - target) ** 2)

        grads = jax.grad(loss_fn, argnums=(0, 1, 2, 3))(
            picked, state["w"], state["b"], state["bias"]
        )
        g_rows = grads[0]
        t = state["t"] + 1
        unique, inverse = jnp.unique(
            cols, size=cols.shape[0], fill_value=features, return_inverse=True
        )
        g = jax.ops.segment_sum(g_rows, inverse.reshape(-1), cols.shape[0])
        m = b1 * state["m"].at[unique].get(mode="fill", fill_value=0) + (1 - b1) * g
        v = b2 * state["v"].at[unique].get(mode="fill", fill_value=0) + (1 - b2) * g * g
        alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        new = dict(state)
        new["m"] = state["m"].at[unique].set(m, mode="drop")
        new["v"] = state["v"].at[unique].set(v, mode="drop")
        new["table"] = state["table"].at[unique].add(-alpha * m / (jnp.sqrt(v) + eps), mode="drop")
        for name, grad in zip(("w", "b", "bias"), grads[1:]):
            new[name] = state[name] - lr * grad  # the small dense part: plain SGD is enough here
        new["t"] = t
        return new

    jitted = jax.jit(step, donate_argnums=0)
    batches = [(b.indices, b.data, t) for b, t in device_batches(x, y)]
    state = jitted(state, *batches[0])
    jax.block_until_ready(state)
    start = time.perf_counter()
    for batch in batches:
        state = jitted(state, *batch)
    jax.block_until_ready(state)
    return 1000 * (time.perf_counter() - start) / len(batches)


def main() -> dict:
    on_gpu = jax.default_backend() == "gpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000 if on_gpu else 10_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--exclude", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--topk-batch", type=int, default=10_000 if on_gpu else 1_000)
    parser.add_argument("--features", default="1000000,10000000")
    parser.add_argument("--steps", type=int, default=400 if on_gpu else 40, help="steps per epoch")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument(
        "--keras-max-features", type=int, default=10_000_000 if on_gpu else 1_000_000
    )
    parser.add_argument("--skip-topk", action="store_true")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    device = device_name()
    summary: dict = {"device": device}
    print(f"JAX {jax.__version__}, Keras {keras.version()}, on {device}")

    if not args.skip_topk:
        t = topk(args.users, args.items, args.factors, args.exclude, args.k, args.topk_batch)
        ratio = t["ours_ms"] / t["baseline_ms"]
        print(
            f"\ntop-{args.k} of {args.users} users x {args.items} items ({args.factors} factors, "
            f"{args.exclude} excluded per user) [{device}]"
        )
        print(f"  plain jit(lax.top_k(u @ V.T)), no exclusion: {t['baseline_ms']:9.1f} ms")
        print(f"  predict_top_k with exclusion:               {t['ours_ms']:9.1f} ms")
        print(f"  ratio ours / plain: {ratio:.2f} (target <= 2); agreement {t['agreement']:.2f}")
        summary["topk"] = {**t, "ratio": ratio, "users": args.users, "items": args.items}

    rows = args.steps * BATCH
    fit: dict = {}
    print(
        f"\nfit: SparseDenseInput({WIDTH}) + LazyAdam, batch {BATCH}, {PER_ROW} entries per row, "
        f"{args.steps} steps per epoch, ms per step [{device}]"
    )
    print(
        f"  {'features':>10} {'hand-written':>13} {'keras_sparse':>13} {'ratio':>6} "
        f"{'Keras Dense+Adam':>17}"
    )
    for features in (int(f) for f in args.features.split(",")):
        x, y = make_data(rows, features)
        hand = hand_written(x, y)
        ours = ours_fit(x, y, args.steps_per_execution)
        dense = keras_dense_fit(x, y) if features <= args.keras_max_features else None
        fit[str(features)] = {
            "hand_written_ms": hand,
            "ours_ms": ours,
            "keras_dense_adam_ms": dense,
        }
        dense_text = f"{dense:17.2f}" if dense is not None else f"{'(skipped)':>17}"
        print(f"  {features:>10} {hand:13.2f} {ours:13.2f} {ours / hand:6.2f} {dense_text}")
    sizes = list(fit)
    if len(sizes) > 1:
        growth = fit[sizes[-1]]["ours_ms"] / fit[sizes[0]]["ours_ms"]
        print(f"  our step at {sizes[-1]} / at {sizes[0]}: {growth:.2f}x (target about 1x)")
        summary["fit_growth"] = growth
    summary["fit"] = fit
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
