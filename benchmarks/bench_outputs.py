"""Outputs over large catalogues: SparseDenseOutput against Dense(items) and a hand step.

Model: `SparseDenseInput(64, tanh)` on 20k sparse features (30 per row), then the
output over `items`; batch 256, 50 target entries per row, `LazyAdam`, fed by
`SparseDataset`. Each configuration runs in its own process; after a warm-up
epoch (compilation) three epochs are timed while a thread samples the
resident set. Reported per configuration:

- `ms_per_step`: the fastest timed epoch's wall time / steps (the speed of this
  shared 2-core machine swings by up to 2x from one second to the next);
- `extra_mb`: peak RSS during the timed epochs minus the RSS just before them
  (memory the steps need beyond the weights and slots that already exist);
- `peak_above_weights_mb`: peak RSS over the warm-up and timed epochs minus the
  RSS once the weights and optimizer slots exist (built before any step).
  TensorFlow's allocator keeps what the warm-up epoch allocated, so on
  TensorFlow `extra_mb` is near zero for every path and this is the figure
  that compares them.

Cases (one run measures every baseline it divides by):

1. Pointwise loss (`SparseMeanSquaredError`) at `--small` and `--large` items:
   ours, the `Dense(items)` model, and a hand-written step of the active
   backend (JAX: one jitted function with donated buffers; TensorFlow: one
   `tf.function` on `tf.Variable`s) that gathers only the batch's input rows and
   the target entries' output rows and applies lazy Adam to the touched rows.
2. Exact `SparseMultinomialNLL`: ours against `Dense(items)` at `--nll-small`
   (time and memory) and `--large` (memory).

3. `--sequences`: integer labels with `SparseCategoricalCrossentropy(from_logits=True)`
   and Adam: an LM head (`Embedding(262144, 128)`, 8 x 128 tokens) against its
   Dense twin, and a sequential recommender over 1M items (128 x 50 positions,
   d 64, exact, `block_size=4096`); extra memory of the first `fit` and time
   per step (`run_sequence`).

Usage: python benchmarks/bench_outputs.py --backend jax [--quick] [--sequences] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

BATCH, HIDDEN, FEATURES, PER_ROW_X, PER_ROW_Y = 256, 64, 20_000, 30, 50
# Timed epochs per configuration; the fastest counts (this shared CPU's speed swings up to 2x).
REPEATS = 3


def make_data(rows: int, items: int, seed: int = 0):
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)

    def matrix(width: int, per_row: int, values: bool) -> sp.csr_matrix:
        cols = rng.integers(0, width, rows * per_row)
        data = rng.integers(1, 6, rows * per_row).astype(np.float32) if values else None
        data = np.ones(rows * per_row, np.float32) if data is None else data
        m = sp.csr_matrix((data, (np.repeat(np.arange(rows), per_row), cols)), (rows, width))
        m.sum_duplicates()
        return m

    return matrix(FEATURES, PER_ROW_X, False), matrix(items, PER_ROW_Y, True)


class PeakRSS:
    """Peak resident set of this process while the `with` block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self._process = psutil.Process()
        self.before = self._process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.before) / 2**20


def keras_model(items: int, kind: str, loss_name: str):
    import keras

    import keras_sparse as ks

    keras.utils.set_random_seed(0)
    inputs = keras.Input((FEATURES,), sparse=True)
    hidden = ks.layers.SparseDenseInput(HIDDEN, activation="tanh")(inputs)
    if kind == "ours":
        out = ks.layers.SparseDenseOutput(items)(hidden)
    else:
        out = keras.layers.Dense(items)(hidden)
    model = keras.Model(inputs, out)
    loss = {"mse": ks.losses.SparseMeanSquaredError, "nll": ks.losses.SparseMultinomialNLL}
    model.compile(optimizer=ks.optimizers.LazyAdam(1e-3), loss=loss[loss_name]())
    return model


def run_keras(items: int, rows: int, kind: str, loss_name: str) -> dict:
    import keras_sparse as ks

    x, y = make_data(rows, items)
    model = keras_model(items, kind, loss_name)
    model.optimizer.build(model.trainable_variables)  # weights and slots exist from here
    data = ks.data.SparseDataset(x, y, batch_size=BATCH)
    with PeakRSS() as whole:
        model.fit(data, epochs=1, verbose=0, shuffle=False)  # warm-up: compile
        with PeakRSS() as rss:
            seconds = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                model.fit(data, epochs=1, verbose=0, shuffle=False)
                seconds.append(time.perf_counter() - start)
    return {
        "ms_per_step": 1000 * min(seconds) / len(data),
        "extra_mb": rss.extra_mb,
        "peak_above_weights_mb": whole.extra_mb,
    }


def _batches(x, y) -> list:
    import numpy as np

    out = []
    for start in range(0, x.shape[0], BATCH):
        xb, yb = x[start : start + BATCH].tocoo(), y[start : start + BATCH].tocoo()
        out.append(tuple(np.asarray(a) for a in (xb.row, xb.col, xb.data, yb.row, yb.col, yb.data)))
    return out


def run_handwritten(items: int, rows: int) -> dict:
    """The step a user would write by hand: gathers and lazy Adam on touched rows only."""
    import keras

    x, y = make_data(rows, items)
    step = _jax_step(items) if keras.backend.backend() == "jax" else _tf_step(items)
    batches = [step.prepare(*batch) for batch in _batches(x, y)]  # on the device, untimed
    with PeakRSS() as whole:
        for batch in batches:  # warm-up (compiles once per padded shape)
            step(*batch)
        step.block()
        with PeakRSS() as rss:
            seconds = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                for batch in batches:
                    step(*batch)
                step.block()
                seconds.append(time.perf_counter() - start)
    return {
        "ms_per_step": 1000 * min(seconds) / len(batches),
        "extra_mb": rss.extra_mb,
        "peak_above_weights_mb": whole.extra_mb,
    }


def _pad(size: int, *arrays, fill: int = 0) -> list:
    import numpy as np

    out = []
    for a in arrays:
        padded = np.full(size, fill, a.dtype)
        padded[: len(a)] = a
        out.append(padded)
    return out


def _jax_step(items: int):
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    params = {
        "E": rng.normal(0, 0.01, (FEATURES, HIDDEN)).astype(np.float32),
        "eb": np.zeros(HIDDEN, np.float32),
        "W": rng.normal(0, 0.01, (items, HIDDEN)).astype(np.float32),
        "wb": np.zeros(items, np.float32),
    }
    state = {k: jnp.asarray(v) for k, v in params.items()}
    state.update({f"m{k}": jnp.zeros_like(v) for k, v in params.items()})
    state.update({f"v{k}": jnp.zeros_like(v) for k, v in params.items()})
    state["t"] = jnp.zeros((), jnp.float32)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

    def loss_fn(eg, eb, wg, wbg, xr, xv, yr, yv, ymask):
        h = jnp.tanh(jax.ops.segment_sum(eg * xv[:, None], xr, BATCH) + eb)
        s = jnp.sum(h[yr] * wg, axis=1) + wbg
        err = jnp.where(ymask, (s - yv) ** 2, 0.0)
        counts = jax.ops.segment_sum(ymask.astype(jnp.float32), yr, BATCH)
        per_row = jnp.where(counts > 0, jax.ops.segment_sum(err, yr, BATCH) / counts, 0.0)
        return jnp.mean(per_row)

    def lazy(st, names, rows, grads, alpha):
        num = st[names[0]].shape[0]
        uniq, inv = jnp.unique(rows, size=rows.shape[0], fill_value=num, return_inverse=True)
        hints = {"indices_are_sorted": True, "unique_indices": True}
        for name, grad in zip(names, grads):
            g = jax.ops.segment_sum(grad, inv.reshape(-1), rows.shape[0])
            m = b1 * st[f"m{name}"].at[uniq].get(mode="fill", fill_value=0, **hints)
            v = b2 * st[f"v{name}"].at[uniq].get(mode="fill", fill_value=0, **hints)
            m, v = m + (1 - b1) * g, v + (1 - b2) * g * g
            st[f"m{name}"] = st[f"m{name}"].at[uniq].set(m, mode="drop", **hints)
            st[f"v{name}"] = st[f"v{name}"].at[uniq].set(v, mode="drop", **hints)
            update = -alpha * m / (jnp.sqrt(v) + eps)
            st[name] = st[name].at[uniq].add(update, mode="drop", **hints)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step(st, xr, xc, xv, yr, yc, yv, ymask):
        st = dict(st)
        eg = st["E"].at[xc].get(mode="fill", fill_value=0)
        wg = st["W"].at[yc].get(mode="fill", fill_value=0)
        wbg = st["wb"].at[yc].get(mode="fill", fill_value=0)
        grads = jax.grad(loss_fn, argnums=(0, 1, 2, 3))(
            eg, st["eb"], wg, wbg, xr, xv, yr, yv, ymask
        )
        t = st["t"] + 1
        alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        lazy(st, ["E"], xc, [grads[0]], alpha)
        lazy(st, ["W", "wb"], yc, [grads[2], grads[3]], alpha)  # one unique for both
        st["meb"] = b1 * st["meb"] + (1 - b1) * grads[1]
        st["veb"] = b2 * st["veb"] + (1 - b2) * grads[1] ** 2
        st["eb"] = st["eb"] - alpha * st["meb"] / (jnp.sqrt(st["veb"]) + eps)
        st["t"] = t
        return st

    holder = {"state": state}

    def prepare(xr, xc, xv, yr, yc, yv):
        nx = 1 << max(4, (len(xr) - 1).bit_length())
        ny = 1 << max(4, (len(yr) - 1).bit_length())
        xr_, xc_, xv_ = _pad(nx, xr.astype(np.int32), xc.astype(np.int32), xv)
        xr_[len(xr) :] = BATCH  # padding rows drop out of every segment
        xc_[len(xr) :] = FEATURES
        yr_, yc_, yv_ = _pad(ny, yr.astype(np.int32), yc.astype(np.int32), yv)
        ymask = np.arange(ny) < len(yr)
        yr_[len(yr) :] = BATCH - 1
        yc_[len(yr) :] = items
        return jax.device_put((xr_, xc_, xv_, yr_, yc_, yv_, ymask))

    def run(*batch):
        holder["state"] = step(holder["state"], *batch)

    run.prepare = prepare
    run.block = lambda: jax.block_until_ready(holder["state"])
    return run


def _tf_step(items: int):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def var(value):
        return tf.Variable(value.astype(np.float32))

    E = var(rng.normal(0, 0.01, (FEATURES, HIDDEN)))
    eb = var(np.zeros(HIDDEN))
    W = var(rng.normal(0, 0.01, (items, HIDDEN)))
    wb = var(np.zeros(items))
    slots = {id(v): (var(np.zeros(v.shape)), var(np.zeros(v.shape))) for v in (E, eb, W, wb)}
    t = tf.Variable(0.0)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

    def lazy(variable, grad, alpha):
        m, v = slots[id(variable)]
        rows, pos = tf.unique(grad.indices)
        g = tf.math.unsorted_segment_sum(grad.values, pos, tf.shape(rows)[0])
        m_rows = b1 * tf.gather(m, rows) + (1 - b1) * g
        v_rows = b2 * tf.gather(v, rows) + (1 - b2) * g * g
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + eps), rows))

    @tf.function(reduce_retracing=True)
    def step(xr, xc, xv, yr, yc, yv):
        with tf.GradientTape() as tape:
            h = tf.tanh(
                tf.math.unsorted_segment_sum(tf.gather(E, xc) * xv[:, None], xr, BATCH) + eb
            )
            s = tf.reduce_sum(tf.gather(h, yr) * tf.gather(W, yc), 1) + tf.gather(wb, yc)
            counts = tf.math.unsorted_segment_sum(tf.ones_like(yv), yr, BATCH)
            sums = tf.math.unsorted_segment_sum((s - yv) ** 2, yr, BATCH)
            loss = tf.reduce_mean(tf.math.divide_no_nan(sums, counts))
        g_e, g_eb, g_w, g_wb = tape.gradient(loss, [E, eb, W, wb])
        t.assign_add(1.0)
        alpha = lr * tf.sqrt(1 - b2**t) / (1 - b1**t)
        lazy(E, g_e, alpha)
        lazy(W, g_w, alpha)
        lazy(wb, g_wb, alpha)
        m, v = slots[id(eb)]
        m.assign(b1 * m + (1 - b1) * g_eb)
        v.assign(b2 * v + (1 - b2) * g_eb**2)
        eb.assign_sub(alpha * m / (tf.sqrt(v) + eps))

    def prepare(xr, xc, xv, yr, yc, yv):
        ints = [tf.constant(a, tf.int32) for a in (xr, xc, yr, yc)]
        return ints[0], ints[1], tf.constant(xv), ints[2], ints[3], tf.constant(yv)

    run = step
    run.prepare = prepare
    run.block = lambda: float(t.numpy())
    return run


def run_sequence(spec: dict) -> dict:
    """A sequence output (LM head or sequential recommender) with integer labels and Adam.

    `Embedding(items, dim)` over `length` token ids, then `SparseDenseOutput`
    (ours) or `Dense(items)` (dense), `SparseCategoricalCrossentropy(from_logits=True)`,
    `keras.optimizers.Adam`. The first `fit` (2 steps, compilation included) gives
    `first_fit_extra_mb`: its peak RSS above the RSS once the weights and slots
    exist and are resident (`make_resident`; on a GPU, JAX's device peak above
    the bytes in use before it).
    `ms_per_step` is the fastest of two later 2-step fits (each one's in
    `ms_per_step_each_fit`: on TensorFlow a fit now and then runs at half speed).
    """
    import keras
    import numpy as np

    import keras_sparse as ks

    keras.utils.set_random_seed(0)
    items, length, dim, batch = spec["items"], spec["length"], spec["dim"], spec["batch"]
    inputs = keras.Input((length,), dtype="int32")
    hidden = keras.layers.Embedding(items, dim)(inputs)
    if spec["kind"] == "ours":
        out = ks.layers.SparseDenseOutput(items, block_size=spec["block"])(hidden)
    else:
        out = keras.layers.Dense(items)(hidden)
    model = keras.Model(inputs, out)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.optimizer.build(model.trainable_variables)
    make_resident(model)
    rng = np.random.default_rng(0)
    steps = 2
    x = rng.integers(0, items, (steps * batch, length)).astype(np.int32)
    y = rng.integers(0, items, (steps * batch, length)).astype(np.int32)
    device = _device_memory()
    with PeakRSS() as first:
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    device_peak = _device_memory(since=device)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        seconds.append(time.perf_counter() - start)
    return {
        "ms_per_step": 1000 * min(seconds) / steps,
        "ms_per_step_each_fit": [1000 * s / steps for s in seconds],
        "first_fit_extra_mb": first.extra_mb if device is None else device_peak,
        "memory": "host RSS" if device is None else "device peak",
    }


def make_resident(model) -> None:
    """Write every weight and optimizer slot once, so that all their pages count in RSS.

    A zero-filled buffer (Adam's slots) may be mapped lazily: the OS counts
    fresh pages in the resident set only once they are written. The first
    `fit`'s first writes to the slots then counted as its extra memory (about
    500 MB of the 1M-item recommender's 1 GB of slots on JAX), though the
    measurement means to start above the weights and slots. Dense gets the
    same treatment.
    """
    import keras

    for variable in [*model.trainable_variables, *model.optimizer.variables]:
        variable.assign(keras.ops.add(variable.value, keras.ops.zeros((), variable.dtype)))


def _device_memory(since: float | None = None) -> float | None:
    """JAX on a GPU: MB in use (or the peak above `since`); None on a CPU or another backend."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None
    stats = device.memory_stats()
    if since is None:
        return stats["bytes_in_use"] / 2**20
    return stats["peak_bytes_in_use"] / 2**20 - since


def child(spec: dict) -> dict:
    if "length" in spec:
        return run_sequence(spec)
    if spec["kind"] == "handwritten":
        return run_handwritten(spec["items"], spec["rows"])
    return run_keras(spec["items"], spec["rows"], spec["kind"], spec["loss"])


def measure(spec: dict, backend: str, script: str = __file__) -> dict:
    """Run `script --child spec` in a fresh process on `backend`; its last line's JSON."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, script, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--nll-small", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=4096, help="rows of the fast paths")
    parser.add_argument("--dense-rows", type=int, default=1024, help="rows of Dense at scale")
    parser.add_argument("--quick", action="store_true", help="10x smaller catalogues")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--sequences",
        action="store_true",
        help="only the sequence cases: an LM head over --vocab and a sequential recommender "
        "over --large items (integer labels, SparseCategoricalCrossentropy)",
    )
    parser.add_argument("--vocab", type=int, default=262_144)
    parser.add_argument("--seqrec-dense", action="store_true", help="also Dense at --large")
    parser.add_argument(
        "--lm-only", action="store_true", help="with --sequences: the LM head only (ours and Dense)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.sequences:
        return sequences(args)
    if args.quick:
        args.small, args.large, args.nll_small = 10_000, 100_000, 20_000
        args.rows, args.dense_rows = 1024, 512
    runs = {}
    plan = [
        ("mse", "ours", args.small, args.rows),
        ("mse", "ours", args.large, args.rows),
        ("mse", "handwritten", args.small, args.rows),
        ("mse", "handwritten", args.large, args.rows),
        ("mse", "dense", args.small, args.dense_rows),
        ("mse", "dense", args.large, args.dense_rows),
        ("nll", "ours", args.nll_small, args.dense_rows),
        ("nll", "dense", args.nll_small, args.dense_rows),
        ("nll", "ours", args.large, args.dense_rows),
        ("nll", "dense", args.large, args.dense_rows),
    ]
    for loss, kind, items, rows in plan:
        spec = {"loss": loss, "kind": kind, "items": items, "rows": rows}
        result = measure(spec, args.backend)
        runs[f"{loss}/{kind}/{items}"] = result
        print(
            f"{args.backend:10s} {loss:4s} {kind:12s} {items:>9,d} items: "
            f"{result['ms_per_step']:9.1f} ms/step, {result['extra_mb']:8.1f} MB above the "
            f"resident set, peak {result['peak_above_weights_mb']:8.1f} MB above weights+slots",
            flush=True,
        )
    s, L, n = args.small, args.large, args.nll_small

    def get(key: str, field: str) -> float:
        return runs[key][field]

    ratios = {
        f"pointwise {L:,}: Dense / ours (time, >= 50)": get(f"mse/dense/{L}", "ms_per_step")
        / get(f"mse/ours/{L}", "ms_per_step"),
        f"pointwise {L:,}: ours / hand-written (time, <= 2)": get(f"mse/ours/{L}", "ms_per_step")
        / get(f"mse/handwritten/{L}", "ms_per_step"),
        f"pointwise: ours {L:,} / ours {s:,} (time, <= 1.5)": get(f"mse/ours/{L}", "ms_per_step")
        / get(f"mse/ours/{s}", "ms_per_step"),
        f"pointwise {L:,}: ours MB above the resident set (<= 256)": get(
            f"mse/ours/{L}", "extra_mb"
        ),
        f"exact NLL {L:,}: ours / Dense (memory above the resident set, <= 0.10)": get(
            f"nll/ours/{L}", "extra_mb"
        )
        / max(get(f"nll/dense/{L}", "extra_mb"), 1.0),
        f"exact NLL {L:,}: ours / Dense (peak above weights and slots)": get(
            f"nll/ours/{L}", "peak_above_weights_mb"
        )
        / get(f"nll/dense/{L}", "peak_above_weights_mb"),
        f"exact NLL {n:,}: ours / Dense (time, <= 1.2)": get(f"nll/ours/{n}", "ms_per_step")
        / get(f"nll/dense/{n}", "ms_per_step"),
    }
    return report(args, runs, ratios)


def sequences(args: argparse.Namespace) -> int:
    """The LM head (8 x 128 tokens, d 128) and the sequential recommender (128 x 50, d 64)."""
    vocab, large = (args.vocab // 10, args.large // 10) if args.quick else (args.vocab, args.large)
    lm = {"items": vocab, "length": 128, "dim": 128, "batch": 8, "block": 16384}
    seq = {"items": large, "length": 50, "dim": 64, "batch": 128, "block": 4096}
    plan = [("lm", "ours", lm), ("lm", "dense", lm)]
    if not args.lm_only:
        plan.append(("seqrec", "ours", seq))
    if args.seqrec_dense and not args.lm_only:
        plan.append(("seqrec", "dense", seq))
    runs = {}
    for case, kind, spec in plan:
        result = measure({**spec, "kind": kind}, args.backend)
        runs[f"{case}/{kind}"] = result
        print(
            f"{args.backend:10s} {case:7s} {kind:6s} {spec['items']:>9,d} items: "
            f"{result['ms_per_step']:9.1f} ms/step, first fit {result['first_fit_extra_mb']:8.1f} "
            f"MB extra ({result['memory']})",
            flush=True,
        )
    ratios = {
        f"LM head {vocab:,}: ours / Dense (first-fit extra memory, <= 0.25)": runs["lm/ours"][
            "first_fit_extra_mb"
        ]
        / max(runs["lm/dense"]["first_fit_extra_mb"], 1.0),
        f"LM head {vocab:,}: ours / Dense (time per step, <= 1.3)": runs["lm/ours"]["ms_per_step"]
        / runs["lm/dense"]["ms_per_step"],
    }
    if "seqrec/ours" in runs:
        ratios[f"sequential recommender {large:,}: ours first-fit extra MB (<= 2048)"] = runs[
            "seqrec/ours"
        ]["first_fit_extra_mb"]
    if "seqrec/dense" in runs:
        ratios[f"sequential recommender {large:,}: ours / Dense (time per step)"] = (
            runs["seqrec/ours"]["ms_per_step"] / runs["seqrec/dense"]["ms_per_step"]
        )
    return report(args, runs, ratios)


def report(args: argparse.Namespace, runs: dict, ratios: dict) -> int:
    """Print the ratios of one run and write everything to `--json`."""
    width = max(len(name) for name in ratios)
    print(f"\nratios ({args.backend}, one run):")
    for name, value in ratios.items():
        print(f"  {name:{width}s} {value:9.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "runs": runs, "ratios": ratios}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
