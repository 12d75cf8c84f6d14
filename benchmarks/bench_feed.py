"""Feeding benchmark: Keras's native SciPy path vs keras_sparse.data.SparseDataset.

One `fit` epoch of a `Dense(1)` model on a CSR matrix (default 100k x 1M with
5M stored entries, batch 256). Each feeding path runs in its own subprocess so
that its peak RSS during `fit` (sampled every 5 ms, minus the RSS just before
`fit`) is not polluted by the other. Also times `to_sparse_tensor` against the
widely copied `np.repeat` recipe on the whole matrix.

Usage: python benchmarks/bench_feed.py [--rows 100000 --cols 1000000 --nnz 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_data(rows: int, cols: int, nnz: int, seed: int = 0):
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    per_row = nnz // rows
    indptr = np.arange(rows + 1, dtype=np.int64) * per_row
    indices = rng.integers(0, cols, size=rows * per_row, dtype=np.int32)
    data = rng.random(rows * per_row, dtype=np.float32)
    x = sp.csr_matrix((data, indices, indptr.astype(np.int32)), shape=(rows, cols))
    x.sort_indices()
    y = rng.random((rows, 1), dtype=np.float32)
    return x, y


class PeakRSS:
    """Samples this process's RSS in a thread; `peak` is the maximum seen."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def worker(path: str, rows: int, cols: int, nnz: int, batch: int) -> dict:
    import gc

    import keras
    import psutil

    x, y = make_data(rows, cols, nnz)
    csr_bytes = x.data.nbytes + x.indices.nbytes + x.indptr.nbytes
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((cols,), sparse=True), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    # Warm-up on a few rows so tracing is not charged to either path's epoch. The
    # native worker never imports keras_sparse, so Keras's own path is measured as is.
    if path == "native":
        model.fit(x[:batch], y[:batch], batch_size=batch, verbose=0)
    else:
        from keras_sparse.data import SparseDataset

        model.fit(SparseDataset(x[:batch], y[:batch], batch_size=batch), verbose=0)
    gc.collect()
    before = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        start = time.perf_counter()
        if path == "native":
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        else:
            model.fit(SparseDataset(x, y, batch_size=batch), epochs=1, verbose=0)
        seconds = time.perf_counter() - start
    return {
        "path": path,
        "seconds": seconds,
        "extra_rss_mb": (peak.peak - before) / 2**20,
        "csr_mb": csr_bytes / 2**20,
    }


def conversion(rows: int, cols: int, nnz: int, repeats: int = 3) -> dict:
    import numpy as np
    import tensorflow as tf

    from keras_sparse import to_sparse_tensor

    x, _ = make_data(rows, cols, nnz)

    def recipe():
        row = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
        idx = np.vstack([row, x.indices]).T
        return tf.SparseTensor(idx, x.data, x.shape)

    def ours():
        return to_sparse_tensor(x)

    out = {}
    for name, fn in (("np.repeat recipe", recipe), ("to_sparse_tensor", ours)):
        fn()
        best = min(_timed(fn) for _ in range(repeats))
        out[name] = x.nnz / best / 1e6
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=1_000_000)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--worker", choices=["native", "sparse_dataset"])
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    sizes = (args.rows, args.cols, args.nnz)
    if args.worker:
        print(json.dumps(worker(args.worker, *sizes, args.batch)))
        return {}
    results = {}
    for path in ("native", "sparse_dataset"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            path,
            "--rows",
            str(args.rows),
            "--cols",
            str(args.cols),
            "--nnz",
            str(args.nnz),
            "--batch",
            str(args.batch),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[path] = json.loads(done.stdout.strip().splitlines()[-1])
    native, ours = results["native"], results["sparse_dataset"]
    conv = conversion(*sizes)
    csr_mb = ours["csr_mb"]
    print(
        f"\nfit, one epoch: {args.rows} x {args.cols} CSR, {args.nnz} entries "
        f"({csr_mb:.1f} MB), batch {args.batch}, Dense(1)"
    )
    print(f"{'feeding':<22}{'s/epoch':>10}{'extra RSS MB':>14}{'x CSR':>8}")
    for name, r in (("Keras native SciPy", native), ("SparseDataset", ours)):
        print(
            f"{name:<22}{r['seconds']:>10.2f}{r['extra_rss_mb']:>14.1f}"
            f"{r['extra_rss_mb'] / csr_mb:>8.2f}"
        )
    time_ratio = ours["seconds"] / native["seconds"]
    mem_ratio = ours["extra_rss_mb"] / max(native["extra_rss_mb"], 1e-9)
    print(
        f"ratio SparseDataset / native: time {time_ratio:.2f} (target <= 0.7), "
        f"extra memory {mem_ratio:.2f}"
    )
    print("\nto_sparse_tensor throughput (M entries/s, best of 3)")
    for name, rate in conv.items():
        print(f"{name:<22}{rate:>10.1f}")
    speedup = conv["to_sparse_tensor"] / conv["np.repeat recipe"]
    print(f"ratio to_sparse_tensor / recipe: {speedup:.2f}")
    summary = {
        "native": native,
        "sparse_dataset": ours,
        "time_ratio": time_ratio,
        "extra_memory_x_csr": ours["extra_rss_mb"] / csr_mb,
        "conversion_m_entries_per_s": conv,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
