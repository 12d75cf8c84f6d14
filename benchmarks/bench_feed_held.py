"""What one `fit(SparseDataset(X, y))` holds, during and after, as a multiple of X's CSR.

For X canonical and X with unsorted column indices (which `SparseDataset`
must canonicalise), each in its own process: after a 2,000-row warm-up fit
(so tracing is not counted), the RSS is read before the `SparseDataset` is
built; then the peak RSS during `fit` (sampled every 5 ms), the RSS when
`fit` has returned, and the RSS after `del` of the data set and
`gc.collect()`. Each is reported above the first reading, over the CSR's
size (data + indices + indptr). Data and model as in `bench_feed.py`.

Usage: python benchmarks/bench_feed_held.py [--rows 100000 --cols 1000000 --nnz 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_feed import PeakRSS, make_data  # noqa: E402


def worker(canonical: bool, rows: int, cols: int, nnz: int, batch: int) -> dict:
    import gc

    import keras
    import numpy as np
    import psutil

    from keras_sparse.data import SparseDataset

    x, y = make_data(rows, cols, nnz)
    csr_mb = (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / 2**20
    if not canonical:  # the same entries, each row's columns in reverse order
        for i in range(rows):
            lo, hi = x.indptr[i], x.indptr[i + 1]
            x.indices[lo:hi] = x.indices[lo:hi][::-1].copy()
            x.data[lo:hi] = x.data[lo:hi][::-1].copy()
        x.has_sorted_indices = False
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((cols,), sparse=True), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    warm = SparseDataset(x[:2000], y[:2000], batch_size=batch)
    model.fit(warm, epochs=1, verbose=0)
    del warm
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    with PeakRSS() as peak:
        data = SparseDataset(x, y, batch_size=batch)
        model.fit(data, epochs=1, verbose=0)
    after = process.memory_info().rss
    del data
    gc.collect()
    released = process.memory_info().rss
    mb = lambda value: (value - before) / 2**20 / csr_mb  # noqa: E731
    assert np.isfinite(model.get_weights()[0]).all()
    return {
        "canonical": canonical,
        "csr_mb": csr_mb,
        "peak_x_csr": mb(peak.peak),
        "after_fit_x_csr": mb(after),
        "after_del_x_csr": mb(released),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=1_000_000)
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", choices=["canonical", "unsorted"])
    args = parser.parse_args()
    sizes = [str(args.rows), str(args.cols), str(args.nnz)]
    if args.worker:
        out = worker(args.worker == "canonical", args.rows, args.cols, args.nnz, args.batch)
        print(json.dumps(out))
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"fit(SparseDataset(X, y)) on {backend}: {' x '.join(sizes[:2])}, {sizes[2]} entries")
    for _ in range(args.repeats):
        for kind in ("canonical", "unsorted"):
            cmd = [sys.executable, __file__, "--worker", kind, "--batch", str(args.batch)]
            cmd += ["--rows", sizes[0], "--cols", sizes[1], "--nnz", sizes[2]]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"{kind:>9} X ({r['csr_mb']:.1f} MB): peak {r['peak_x_csr']:.2f}x, after fit "
                f"{r['after_fit_x_csr']:.2f}x, after del + gc {r['after_del_x_csr']:.2f}x "
                "(target <= 1.5x during and after)"
            )


if __name__ == "__main__":
    main()
