"""Keras's own tests as keras_sparse's guard (`.ci/keras_suite`, run by `.ci/run`).

For each backend it runs a chosen set of Keras's test files from the installed Keras wheel
(`keras/src/**/*_test.py`) with `import keras_sparse` done first (the pytest plugin
`_import_keras_sparse.py`). Every test that fails or errors there is run again in the same job
without keras_sparse, and the test ids are collected without it too. The step fails if a test
that passes or is skipped without keras_sparse fails, errors or disappears with it (apart from
`EXPECTED`, each with its reason), and prints the tallies. Nothing is stored between runs.

Running the failures alone again, not the whole selection twice, halves the step's time; a test
that passes alone without keras_sparse but failed in the full run with it still counts as
broken.

The files (`FILES`) are those that exercise each change keras_sparse makes to Keras
(`keras_sparse.keras_patches()`); docs/compatibility.md ("Keras's own tests") says which file
covers which change and what `SELECT` leaves out. JAX's `multi_device` tests run again with
4 CPU devices, as Keras's own CI runs them.

Usage: python .ci/keras_suite.py [--backends tensorflow jax torch] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Keras test files (relative to `keras/src`) and the keras_sparse changes each one covers.
FILES = {
    "trainers/trainer_test.py": "Model.train_step, *_on_batch, jit_compile on torch, sparse fit",
    "trainers/compile_utils_test.py": "CompileLoss.__call__, loss and metric names",
    "trainers/epoch_iterator_test.py": "the data adapters under Keras's epoch loop",
    "trainers/data_adapters/array_data_adapter_test.py": "the SciPy converters and slicing",
    "trainers/data_adapters/data_adapter_utils_test.py": "the SciPy converters",
    "trainers/data_adapters/generator_data_adapter_test.py": "the torch data loader",
    "trainers/data_adapters/py_dataset_adapter_test.py": "get_data_adapter, the torch loader",
    "trainers/data_adapters/tf_dataset_adapter_test.py": "get_data_adapter",
    "trainers/data_adapters/torch_data_loader_adapter_test.py": "the torch data loader",
    "models/functional_test.py": "Functional._convert_inputs_to_tensors, Model.__call__",
    "models/model_test.py": "Model.train_step and compute_loss on multi-output models",
    "layers/layer_test.py": "Model.__call__ and our layers beside Keras's",
    "layers/core/input_layer_test.py": "InputLayer.__init__ (sparse Input on torch)",
    "layers/core/dense_test.py": "sparse inputs to Dense (its sparse tests only)",
    "layers/core/embedding_test.py": "sparse inputs to Embedding (its sparse tests only)",
    "losses/losses_test.py": "Keras's losses beside ours (configs, SparseCategoricalCrossentropy)",
    "optimizers/optimizer_test.py": "the optimizer name table",
    "optimizers/adam_test.py": "Keras's Adam beside LazyAdam",
    "saving/saving_lib_test.py": "saving and loading with our objects registered",
    "callbacks/backup_and_restore_test.py": "fit resumed from a backup",
}

#: Run again with 4 CPU devices on JAX (`@pytest.mark.multi_device`): keras.distribution and
#: the JAX trainer's make_*_function / _distribute_data, which keras_sparse wraps.
MULTI_DEVICE = ["distribution/distribution_lib_test.py", "backend/jax/distribution_lib_test.py"]

#: Left out to keep the step short, all tests of what keras_sparse does not change:
#: quantization, weight sharding, speed tests, `steps_per_execution` / `steps_per_epoch` loops
#: and early stops (the same step the other fit tests run), deep nesting, three of five
#: `compile_preserved` savings, loss scaling, gradient accumulation, multiprocessing and
#: infinite data sets, and the dense `basic_flow` adapter cases; of Dense and Embedding only
#: their sparse tests run, of Keras's losses their configs and SparseCategoricalCrossentropy.
SELECT = (
    "not (quantize or int4 or int8 or float8 or lora or sharding or speedup "
    "or steps_per_execution or steps_per_epoch or stop_loop or deeply_nested "
    "or compile_preserved_custom or compile_preserved_subclassed or loss_scaling "
    "or gradient_accumulation or for_functional_in_sequential or multiprocessing or infinite "
    "or variable_tracking_correct or (basic_flow and not sparse)) "
    "and (not (dense_test or embedding_test) or sparse) "
    "and (not losses_test or config or SparseCategorical)"
)
#: On torch, `jit_compile=True` runs `torch.compile` (slow on CPU): one such fit is kept.
BACKEND_SELECT = {"torch": "not (jit and not fit_flow and not non_jit)"}

#: Tests whose change of outcome is the feature keras_sparse adds: (backend, test id end).
EXPECTED = {
    ("torch", "input_layer_test.py::InputLayerTest::test_input_basic_sparse"): (
        "asserts that keras.Input(sparse=True) is refused on torch; keras_sparse accepts it"
    ),
}

BAD = {"failed", "error"}


def keras_src() -> Path:
    """The installed Keras's `keras/src`, found without importing Keras (no backend chosen)."""
    import importlib.util

    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("keras_suite: Keras is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "src"


def pytest_run(
    backend: str, args: list[str], out: Path, with_import: bool, devices: int = 1
) -> dict[str, str]:
    """Run pytest on Keras's files; returns test id -> passed / skipped / failed / error."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["KERAS_SUITE_OUT"] = str(out)
    if devices > 1:
        env["JAX_NUM_CPU_DEVICES"] = str(devices)
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_outcomes"]
    # Test ids relative to site-packages (keras/src/...::Class::test), from there.
    site = keras_src().parent.parent
    command += ["-c", str(HERE / "keras_suite.ini"), "--rootdir", str(site)]
    command += ["--continue-on-collection-errors"]
    if with_import:
        command += ["-p", "_import_keras_sparse"]
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command + args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=site)
    return json.loads(out.read_text()) if out.exists() else {}


def guard(backend: str, paths: list[str], work: Path, devices: int = 1) -> tuple[str, list[str]]:
    """One backend's check: its summary line and the tests keras_sparse broke."""
    label = backend if devices == 1 else f"{backend}-{devices}dev"
    start = time.perf_counter()
    select = (
        []
        if devices > 1
        else ["-k", " and ".join(f"({s})" for s in (SELECT, BACKEND_SELECT.get(backend)) if s)]
    )
    ours = pytest_run(backend, select + paths, work / f"{label}-with.json", True, devices)
    # The ids Keras's tests have without keras_sparse, and the failures run again without it.
    ids = pytest_run(
        backend, select + ["--collect-only"] + paths, work / f"{label}-ids.json", False, devices
    )
    failing = sorted(name for name, outcome in ours.items() if outcome in BAD)
    plain = {}
    if failing:
        plain = pytest_run(backend, failing, work / f"{label}-without.json", False, devices)
    broken, expected = [], []
    for name in sorted(set(ids) | set(failing)):
        was = plain.get(name, "passed" if name in ids else "missing")
        now = ours.get(name, "missing")
        if was in BAD or was == "missing" or now not in BAD | {"missing"}:
            continue
        reason = next(
            (r for (b, end), r in EXPECTED.items() if b == backend and name.endswith(end)), None
        )
        line = f"{label}: {name}: {was} without keras_sparse, {now} with it"
        (expected if reason else broken).append(line + (f" (expected: {reason})" if reason else ""))
    counts = {
        k: sum(v == k for v in ours.values()) for k in ("passed", "skipped", "failed", "error")
    }
    passing_alone = sum(v not in BAD for v in plain.values())
    summary = (
        f"keras_suite {label:11s} with keras_sparse: "
        + " ".join(f"{v} {k}" for k, v in counts.items())
        + f"; its {len(failing)} failures run again without it: {passing_alone} pass there"
        + f" ({time.perf_counter() - start:.0f} s)"
    )
    if not ours or not ids:
        broken.append(f"{label}: Keras's tests did not run (see {work}/{label}-*.log)")
    return "\n".join([summary] + [f"keras_suite expected {e}" for e in expected]), broken


def main() -> int:
    """Run the guard on each backend (two at a time); 1 if keras_sparse broke a Keras test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--keep", help="a folder to keep the reports and logs in")
    args = parser.parse_args()
    src = keras_src()
    missing = [p for p in list(FILES) + MULTI_DEVICE if not (src / p).exists()]
    if missing:
        print(f"keras_suite: not in this Keras wheel, left out: {', '.join(missing)}")
    work = Path(args.keep or tempfile.mkdtemp(prefix="keras_suite_"))
    work.mkdir(parents=True, exist_ok=True)
    files = [str(src / p) for p in FILES if (src / p).exists()]
    jobs = [(backend, files, 1) for backend in args.backends]
    if "jax" in args.backends:
        jobs.append(("jax", [str(src / p) for p in MULTI_DEVICE if (src / p).exists()], 4))
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # one pytest per core
        results = list(pool.map(lambda job: guard(job[0], job[1], work, job[2]), jobs))
    broken = [line for _, lines in results for line in lines]
    for summary, _ in results:
        print(summary)
    print(f"keras_suite: {time.perf_counter() - start:.0f} s in all; reports in {work}")
    for line in broken:
        print("keras_suite BROKEN", line)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
