"""Run every benchmark, write benchmarks/results.json and the plots, print one ratio table.

Each benchmark runs in its own process (so one's memory does not count in the
next one's) at the sizes below, chosen to finish together in well under 15
minutes on 2 cores / 24 GiB. Ratios compare keras_sparse with the baseline
measured in the same run.

With `--backend jax` the Keras-level benchmarks run on JAX (in processes with
KERAS_BACKEND=jax), together with `bench_jax_fit.py` (keras_sparse against
Keras's own JAX `fit(csr)`) and `bench_jax_scale.py` (top-k and LazyAdam steps
against hand-written JAX, on a GPU when JAX has one); results go to
`results_jax.json` and the plots to a `jax/` subfolder. `bench_feed.py`
measures Keras's TensorFlow SciPy path and runs on TensorFlow only.

With `--backend torch` it runs `bench_torch.py` (keras_sparse against Keras's own torch path,
the step from 1M to 4M features, and `predict_top_k` against a plain `torch.topk`); results go
to `results_torch.json`.

Usage: python benchmarks/run_all.py [--backend tensorflow|jax|torch] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (script, arguments at full size, arguments with --quick)
BENCHMARKS = {
    "feed": (
        "bench_feed.py",
        [],  # 100k x 1M CSR, 5M entries
        ["--rows", "20000", "--cols", "200000", "--nnz", "1000000"],
    ),
    "sparse_input": (
        "bench_sparse_input.py",
        [],  # 1M features, 40 steps x 2 epochs
        ["--features", "200000", "--steps", "10", "--epochs", "1"],
    ),
    "topk": (
        "bench_topk.py",
        [],  # 50k users x 20k items
        ["--users", "5000", "--items", "4000"],
    ),
    "jax_fit": (
        "bench_jax_fit.py",
        [],  # 8192 rows x 1M features (step also at 4M), 3 epochs
        ["--rows", "2048", "--features", "200000", "--scale-features", "400000", "--epochs", "1"],
    ),
    "outputs": (
        "bench_outputs.py",
        [],  # pointwise at 100k and 1M items, exact NLL at 200k and 1M
        ["--quick"],  # 10x smaller catalogues
    ),
    "jax_scale": (
        "bench_jax_scale.py",
        [],  # GPU: 50k users, 1M and 10M features; CPU: 10k users, the same features
        ["--users", "2000", "--features", "100000,1000000", "--steps", "10"],
    ),
    "torch": (
        "bench_torch.py",
        [],  # 8192 rows x 1M features (step also at 4M); top-k 20k users x 20k items
        ["--rows", "2048", "--features", "200000", "--scale-features", "800000"]
        + ["--users", "4000", "--items", "4000"],
    ),
}
BACKENDS = {
    "tensorflow": ["feed", "sparse_input", "topk", "outputs"],
    "jax": ["sparse_input", "topk", "jax_fit", "jax_scale", "outputs"],
    "torch": ["torch"],
}


def run(name: str, quick: bool, backend: str) -> tuple[dict, float]:
    script, full, small = BENCHMARKS[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(HERE / script), *(small if quick else full), "--json", str(out)]
        print(f"\n=== {name} ({backend}): {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        env = {**os.environ, "KERAS_BACKEND": backend}
        subprocess.run(cmd, check=True, cwd=HERE, env=env)
        seconds = time.perf_counter() - start
        return json.loads(out.read_text()), seconds


def ratios(results: dict) -> list[tuple[str, float, str]]:
    """(what, ratio, target) rows; a ratio below 1 means keras_sparse takes less."""
    rows = []
    feed = results.get("feed")
    if feed:
        rows.append(
            ("SparseDataset / Keras native: s/epoch, worst run", feed["time_ratio"], "<= 1.0")
        )
        rows.append(
            ("SparseDataset extra RSS / CSR size, worst run", feed["extra_memory_x_csr"], "<= 1.5")
        )
        conv = feed["conversion_m_entries_per_s"]
        rows.append(
            (
                "to_sparse_tensor / np.repeat recipe: time",
                conv["np.repeat recipe"] / conv["to_sparse_tensor"],
                "< 1",
            )
        )
    dense = results.get("sparse_input")
    if dense:
        rows.append(
            (
                "SDI+LazyAdam / Dense+Adam: ms per step",
                1 / dense["speedup_lazyadam_vs_dense_adam"],
                "<= 0.125",
            )
        )
        rows.append(
            ("SDI+SGD / Dense+SGD: ms per step", 1 / dense["speedup_sgd_vs_dense_sgd"], "<= 0.5")
        )
    jax_fit = results.get("jax_fit")
    if jax_fit:
        fit = jax_fit["fit"]
        rows.append(("JAX fit, compile incl.: ours / Keras fit(csr)", 1 / fit["speedup"], "<= 0.2"))
        step = 1 / jax_fit["step_speedup"]
        rows.append(("JAX train step: ours / Keras Dense+Adam", step, "<= 0.2"))
        rows.append(("JAX our step: 4x features / 1x features", jax_fit["step_growth"], "< 1.3"))
    outputs = results.get("outputs")
    if outputs:  # each name carries its target, e.g. "... (time, <= 2)"
        for name, value in outputs["ratios"].items():
            what, _, target = name.rpartition(" (")
            rows.append((f"outputs: {what}", value, target.rstrip(")").split(", ")[-1]))
    scale = results.get("jax_scale")
    if scale:
        device = scale["device"]
        if "topk" in scale:
            rows.append(
                (f"predict_top_k / jit lax.top_k [{device}]", scale["topk"]["ratio"], "<= 2")
            )
        for features, t in scale["fit"].items():
            rows.append(
                (
                    f"fit step / hand-written, {features} [{device}]",
                    t["ours_ms"] / t["hand_written_ms"],
                    "<= 2",
                )
            )
            if t["keras_dense_adam_ms"]:
                rows.append(
                    (
                        f"fit step / Keras Dense+Adam, {features} [{device}]",
                        t["ours_ms"] / t["keras_dense_adam_ms"],
                        "<= 0.25",
                    )
                )
    topk = results.get("topk")
    if topk:
        for k in (10, 100):
            t, e = topk[f"topk_{k}"], topk[f"evaluate_{k}"]
            rows.append(
                (
                    f"predict_top_k / numpy argpartition, K={k}",
                    t["predict_top_k_s"] / t["numpy_s"],
                    "-",
                )
            )
            if "implicit_s" in t:
                rows.append(
                    (
                        f"predict_top_k / implicit topk, K={k}",
                        t["predict_top_k_s"] / t["implicit_s"],
                        "<= 1.0",
                    )
                )
            if "implicit_s" in e:
                rows.append(
                    (
                        f"evaluate_top_k / implicit ranking_metrics, K={k}",
                        e["evaluate_top_k_s"] / e["implicit_s"],
                        "<= 1.0",
                    )
                )
    torch_run = results.get("torch")
    if torch_run:
        r = torch_run["ratios"]
        rows.append(("torch SDI+LazyAdam / Keras Dense+Adam: step", 1 / r["speedup"], "<= 0.05"))
        rows.append(("torch SDI+LazyAdam step: 4M / 1M features", r["scale_growth"], "<= 1.3"))
        rows.append(("torch predict_top_k / plain torch.topk", r["topk_ratio"], "<= 1.5"))
    return rows


def plot(results: dict, plots_dir: Path) -> list[Path]:
    """One bar chart per benchmark, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def bars(filename: str, title: str, ylabel: str, values: dict[str, float]) -> None:
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        names = list(values)
        colours = ["#3b7dd8" if "keras_sparse" in n else "#9a9a9a" for n in names]
        ax.barh(names, [values[n] for n in names], color=colours)
        ax.set_xlabel(ylabel)
        ax.set_title(title)
        ax.invert_yaxis()
        fig.tight_layout()
        path = plots_dir / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    feed = results.get("feed")
    if feed:
        bars(
            "feed.png",
            "fit, one epoch of a sparse input",
            "seconds per epoch",
            {
                "Keras native SciPy": feed["runs"]["unshuffled"][0]["native"]["seconds"],
                "keras_sparse SparseDataset": feed["runs"]["unshuffled"][0]["sparse_dataset"][
                    "seconds"
                ],
            },
        )
    dense = results.get("sparse_input")
    if dense:
        configs = dense["configs"]
        bars(
            "sparse_input.png",
            "one training step, 1M-feature sparse input",
            "ms per step",
            {
                (f"keras_sparse {name}" if "SparseDenseInput" in name else name): value[
                    "ms_per_step"
                ]
                for name, value in configs.items()
            },
        )
    jax_fit = results.get("jax_fit")
    topk = results.get("topk")
    if topk:
        values = {}
        for k in (10, 100):
            t, e = topk[f"topk_{k}"], topk[f"evaluate_{k}"]
            values[f"keras_sparse predict_top_k K={k}"] = t["predict_top_k_s"]
            if "implicit_s" in t:
                values[f"implicit topk K={k}"] = t["implicit_s"]
            values[f"numpy argpartition K={k}"] = t["numpy_s"]
            values[f"keras_sparse evaluate_top_k K={k}"] = e["evaluate_top_k_s"]
            if "implicit_s" in e:
                values[f"implicit ranking_metrics K={k}"] = e["implicit_s"]
        bars("topk.png", "top-k for every user, seen items excluded", "seconds", values)
    if jax_fit:
        fit = jax_fit["fit"]
        bars(
            "jax_fit.png",
            f"JAX fit, 3 epochs incl. compilation ({jax_fit['device']})",
            "seconds",
            {
                "Keras fit(csr), Dense + Adam": fit["keras_seconds"],
                "keras_sparse SparseDenseInput + LazyAdam": fit["ours_seconds"],
            },
        )
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--backend", choices=list(BACKENDS), default="tensorflow")
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plots-dir", type=Path)
    args = parser.parse_args()
    suffix = "" if args.backend == "tensorflow" else f"_{args.backend}"
    out = args.out or HERE / f"results{suffix}.json"
    plots_dir = args.plots_dir or ROOT / "docs" / "assets" / "benchmarks" / suffix.lstrip("_")
    names = args.only or BACKENDS[args.backend]
    start = time.perf_counter()
    results, seconds = {}, {}
    for name in names:
        results[name], seconds[name] = run(name, args.quick, args.backend)
    table = ratios(results)
    payload = {
        "quick": args.quick,
        "backend": args.backend,
        "python": sys.version.split()[0],
        "seconds": seconds,
        "results": results,
        "ratios": [{"what": w, "ratio": r, "target": t} for w, r, t in table],
    }
    out.write_text(json.dumps(payload, indent=2))
    plots = plot(results, plots_dir)
    header = "keras_sparse / baseline (below 1: keras_sparse is cheaper)"
    print(f"\n{header:<52}{'ratio':>8}{'target':>10}")
    for what, ratio, target in table:
        print(f"{what:<52}{ratio:>8.3f}{target:>10}")
    print(f"\nwrote {out} and {len(plots)} plots in {plots_dir}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
