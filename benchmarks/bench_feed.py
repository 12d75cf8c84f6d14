"""Feeding benchmark: Keras's native SciPy path vs keras_sparse.data.SparseDataset.

One `fit` epoch of a `Dense(1)` model on a CSR matrix (default 100k x 1M with
5M stored entries, batch 256), unshuffled and shuffled, `--repeats` runs of
each path. Each run of each path is its own process (the native one never
imports keras_sparse). Memory: the peak RSS during the epoch (sampled every
5 ms) above the RSS before it, minus the same for a 2,000-row epoch, so that
one-off framework allocations are not counted; reported as a multiple of the
CSR's size. On TensorFlow it also times `to_sparse_tensor` against the widely
copied `np.repeat` recipe on the whole matrix. Runs on the backend
`KERAS_BACKEND` names.

Usage: python benchmarks/bench_feed.py [--rows 100000 --cols 1000000 --nnz 5000000 --repeats 3]
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
    x.sum_duplicates()  # canonical, as real data usually is (a few random columns repeat)
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


def _fit_epoch(model, path: str, x, y, batch: int, shuffle: bool) -> None:
    if path == "native":
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=shuffle)
    else:
        from keras_sparse.data import SparseDataset

        data = SparseDataset(x, y, batch_size=batch, shuffle=shuffle, seed=0)
        model.fit(data, epochs=1, verbose=0, shuffle=False)  # rows shuffled by the data set


def _measured(model, path: str, x, y, batch: int, shuffle: bool) -> tuple[float, float]:
    """(seconds, peak RSS above the RSS before) of one `fit` epoch."""
    import gc

    import psutil

    gc.collect()
    before = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        start = time.perf_counter()
        _fit_epoch(model, path, x, y, batch, shuffle)
        seconds = time.perf_counter() - start
    return seconds, (peak.peak - before) / 2**20


def worker(path: str, rows: int, cols: int, nnz: int, batch: int, shuffle: bool) -> dict:
    """One feeding path in this process: a tiny epoch (2,000 rows), then the full one.

    The memory figure is the issue's: the full epoch's peak RSS above the RSS
    before it, minus the same for the tiny epoch, so that what Keras and the
    backend allocate once (tracing, thread pools) is not counted.
    """
    import keras

    x, y = make_data(rows, cols, nnz)
    csr_bytes = x.data.nbytes + x.indices.nbytes + x.indptr.nbytes
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((cols,), sparse=True), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    # Warm-up on one batch so tracing is not charged to either path. The native worker
    # never imports keras_sparse, so Keras's own path is measured as is.
    _fit_epoch(model, path, x[:batch], y[:batch], batch, shuffle)
    tiny = min(2000, rows)
    _, tiny_mb = _measured(model, path, x[:tiny], y[:tiny], batch, shuffle)
    seconds, full_mb = _measured(model, path, x, y, batch, shuffle)
    assert path == "native" or "keras_sparse" in sys.modules
    assert path != "native" or "keras_sparse" not in sys.modules
    return {
        "path": path,
        "seconds": seconds,
        "extra_rss_mb": full_mb - tiny_mb,
        "full_rss_mb": full_mb,
        "tiny_rss_mb": tiny_mb,
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path, interleaved")
    parser.add_argument("--worker", choices=["native", "sparse_dataset"])
    parser.add_argument("--shuffle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-conversion", action="store_true", help="skip to_sparse_tensor")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    sizes = (args.rows, args.cols, args.nnz)
    if args.worker:
        print(json.dumps(worker(args.worker, *sizes, args.batch, args.shuffle)))
        return {}
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(
        f"fit, one epoch on {backend}: {args.rows} x {args.cols} CSR, {args.nnz} entries, "
        f"batch {args.batch}, Dense(1); {args.repeats} runs of each path, one process each"
    )
    summary: dict = {"backend": backend, "runs": {}}
    for shuffle in (False, True):
        label = "shuffled" if shuffle else "unshuffled"
        runs = []
        for _ in range(args.repeats):
            pair = {}
            for path in ("native", "sparse_dataset"):
                cmd = [sys.executable, __file__, "--worker", path, "--batch", str(args.batch)]
                cmd += ["--rows", str(args.rows), "--cols", str(args.cols), "--nnz", str(args.nnz)]
                cmd += ["--shuffle"] if shuffle else []
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                pair[path] = json.loads(done.stdout.strip().splitlines()[-1])
            native, ours = pair["native"], pair["sparse_dataset"]
            csr_mb = ours["csr_mb"]
            pair["time_ratio"] = ours["seconds"] / native["seconds"]
            pair["memory_x_csr"] = ours["extra_rss_mb"] / csr_mb
            pair["native_memory_x_csr"] = native["extra_rss_mb"] / csr_mb
            runs.append(pair)
            print(
                f"{label:>10}: native {native['seconds']:.2f} s, SparseDataset "
                f"{ours['seconds']:.2f} s: {pair['time_ratio']:.2f}x (target <= 1.0); "
                f"extra RSS {ours['extra_rss_mb']:.1f} MB = {pair['memory_x_csr']:.2f}x the CSR "
                f"({csr_mb:.1f} MB; target <= 1.5x), native {pair['native_memory_x_csr']:.2f}x; "
                f"without the tiny-run subtraction {ours['full_rss_mb'] / csr_mb:.2f}x, "
                f"native {native['full_rss_mb'] / csr_mb:.2f}x"
            )
        summary["runs"][label] = runs
    every = [r for runs in summary["runs"].values() for r in runs]
    summary["time_ratio"] = max(r["time_ratio"] for r in every)
    summary["extra_memory_x_csr"] = max(r["memory_x_csr"] for r in every)
    print(
        f"worst run: time {summary['time_ratio']:.2f}x, memory "
        f"{summary['extra_memory_x_csr']:.2f}x the CSR"
    )
    if not args.no_conversion and backend == "tensorflow":
        conv = conversion(*sizes)
        print("\nto_sparse_tensor throughput (M entries/s, best of 3)")
        for name, rate in conv.items():
            print(f"{name:<22}{rate:>10.1f}")
        speedup = conv["to_sparse_tensor"] / conv["np.repeat recipe"]
        print(f"ratio to_sparse_tensor / recipe: {speedup:.2f}")
        summary["conversion_m_entries_per_s"] = conv
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
