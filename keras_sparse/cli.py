"""The `keras-sparse` command line: demo (the main job), topk and evaluate.

Every output file is written atomically (temporary file, then rename). Missing,
corrupt or mismatched inputs print one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_ERROR = 1


class CLIError(Exception):
    """An error to report as one line, without a traceback."""


def _fail(message: str) -> None:
    raise CLIError(message)


def atomic_save_npz(path: str | Path, matrix: Any) -> None:
    """Write `matrix` to `path` as a SciPy .npz via a temporary file and a rename."""
    import scipy.sparse as sp

    path = Path(path)
    if path.parent and not path.parent.exists():
        _fail(f"output folder '{path.parent}' does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            sp.save_npz(fh, matrix)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_matrix(path: str, what: str) -> Any:
    from keras_sparse.datasets import read_interactions

    try:
        return read_interactions(path)
    except ValueError as err:
        _fail(f"{what}: {err}")


def _load_model(path: str) -> Any:
    import keras

    import keras_sparse  # noqa: F401  (registers the custom objects)

    if not Path(path).is_file():
        _fail(f"model file '{path}' does not exist")
    try:
        return keras.models.load_model(path)
    except Exception as err:
        _fail(f"could not load model '{path}': {str(err).splitlines()[0]}")


def _check_rows(name_a: str, a: Any, name_b: str, b: Any) -> None:
    if a.shape != b.shape:
        _fail(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")


def _table(columns: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(columns.values())))
    head = f"{'metric':<14}" + "".join(f"{c:>12}" for c in columns)
    lines = [head, "-" * len(head)]
    for name in names:
        lines.append(f"{name:<14}" + "".join(f"{col[name]:>12.4f}" for col in columns.values()))
    return "\n".join(lines)


def build_recommender(items: int, hidden: int = 128, dropout: float = 0.5, seed: int = 0) -> Any:
    """The demo's autoencoder recommender, made only of this package's parts."""
    import keras

    from keras_sparse.layers import ExcludeSeen, SparseDenseInput, SparseDropout

    inputs = keras.Input((items,), sparse=True, name="items")
    noisy = SparseDropout(dropout, seed=seed)(inputs)
    code = SparseDenseInput(hidden, activation="tanh", combiner="sqrtn")(noisy)
    scores = keras.layers.Dense(items, name="scores")(code)
    return keras.Model(inputs, ExcludeSeen()([scores, inputs]), name="recommender")


def cmd_demo(args: argparse.Namespace) -> None:
    """Train the demo recommender, print its metrics beside popularity, write top-k."""
    import keras
    import numpy as np

    import keras_sparse as ks
    from keras_sparse import backend as B
    from keras_sparse.datasets import split_holdout, synthetic_interactions

    start = time.perf_counter()
    if args.data:
        data = _read_matrix(args.data, "--data")
        source = args.data
    else:
        data = synthetic_interactions(seed=args.seed)
        source = "synthetic (planted taste groups, popularity skew)"
    users, items = data.shape
    if users < 2 or items < 2:
        _fail(f"--data: need at least 2 users and 2 items, got shape {data.shape}")
    train, held = split_holdout(data, fraction=0.2, seed=args.seed)
    print(
        f"data: {source}: {users} users x {items} items, {data.nnz} interactions "
        f"({100 * data.nnz / (users * items):.2f} % dense); train {train.nnz}, held out "
        f"{held.nnz}"
    )
    keras.utils.set_random_seed(args.seed)
    model = build_recommender(items, seed=args.seed)
    model.compile(
        optimizer=ks.optimizers.LazyAdam(args.learning_rate), loss=ks.losses.SparseMultinomialNLL()
    )
    model.fit(
        ks.data.SparseDataset(
            train, train, batch_size=args.batch_size, shuffle=True, seed=args.seed
        ),
        epochs=args.epochs,
        verbose=args.verbose,
    )
    ks_ = (10, 20)
    kwargs = {"k": ks_, "exclude": train, "batch_size": 1024, "verbose": 0}
    ours = ks.evaluate_top_k(model, train, held, **kwargs)
    popularity = keras.ops.convert_to_tensor(np.asarray(train.sum(axis=0), dtype=np.float32))

    def popular(batch: Any) -> Any:
        return keras.ops.ones((B.sparse_num_rows(batch), 1)) * popularity

    base = ks.evaluate_top_k(popular, train, held, **kwargs)
    print()
    print(_table({"autoencoder": ours, "popularity": base}))
    recs = ks.predict_top_k(model, train, k=args.k, exclude=train, verbose=0)
    atomic_save_npz(args.out, recs)
    print(
        f"\nwrote the top-{args.k} items of {users} users to {args.out} "
        f"(CSR, {recs.nnz} entries, items in rank order); {time.perf_counter() - start:.0f} s"
    )


def cmd_topk(args: argparse.Namespace) -> None:
    """Write the top-k items of a saved model for each input row."""
    import keras_sparse as ks

    model = _load_model(args.model)
    x = _read_matrix(args.input, "INPUT")
    exclude = _read_matrix(args.exclude, "--exclude") if args.exclude else None
    if exclude is not None and exclude.shape[0] != x.shape[0]:
        _fail(f"--exclude has {exclude.shape[0]} rows but INPUT has {x.shape[0]}")
    try:
        recs = ks.predict_top_k(model, x, k=args.k, exclude=exclude, verbose=0)
    except (ValueError, TypeError) as err:
        _fail(f"scoring failed: {str(err).splitlines()[0]}")
    atomic_save_npz(args.output, recs)
    print(f"wrote top-{args.k} of {recs.shape[0]} rows ({recs.nnz} entries) to {args.output}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Print the ranking metrics of a saved model."""
    import keras_sparse as ks

    model = _load_model(args.model)
    x = _read_matrix(args.input, "--input")
    y = _read_matrix(args.target, "--target")
    if x.shape[0] != y.shape[0]:
        _fail(f"--input has {x.shape[0]} rows but --target has {y.shape[0]}")
    exclude = _read_matrix(args.exclude, "--exclude") if args.exclude else None
    if exclude is not None:
        _check_rows("--exclude", exclude, "--target", y)
    try:
        result = ks.evaluate_top_k(model, x, y, k=tuple(args.k), exclude=exclude, verbose=0)
    except (ValueError, TypeError) as err:
        _fail(f"evaluation failed: {str(err).splitlines()[0]}")
    print(_table({"model": result}))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-sparse`."""
    parser = argparse.ArgumentParser(
        prog="keras-sparse",
        description="Train, score and evaluate Keras models on sparse data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train an autoencoder recommender and compare it with popularity (the main job)",
    )
    demo.add_argument(
        "--data",
        help="interactions: SciPy .npz or CSV user,item[,rating]; "
        "default: a deterministic synthetic data set",
    )
    demo.add_argument("--out", default="recs.npz", help="where to write the top-k CSR")
    demo.add_argument("-k", type=int, default=20, help="items per user in --out (default 20)")
    demo.add_argument("--epochs", type=int, default=20)
    demo.add_argument("--batch-size", type=int, default=256)
    demo.add_argument("--learning-rate", type=float, default=0.005)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2])
    demo.set_defaults(func=cmd_demo)

    topk = sub.add_parser("topk", help="write each row's top-k items of a saved model as CSR")
    topk.add_argument("model", help="a .keras model file")
    topk.add_argument("input", help="model input rows, SciPy .npz (or CSV)")
    topk.add_argument("-k", type=int, required=True)
    topk.add_argument("--exclude", help="items never to return, .npz with the rows of INPUT")
    topk.add_argument("-o", "--output", required=True, help="output .npz")
    topk.set_defaults(func=cmd_topk)

    ev = sub.add_parser("evaluate", help="ranking metrics of a saved model")
    ev.add_argument("model", help="a .keras model file")
    ev.add_argument("--input", required=True, help="model input rows, .npz")
    ev.add_argument("--target", required=True, help="relevant items per row, .npz")
    ev.add_argument("-k", type=int, nargs="+", default=[10, 20])
    ev.add_argument("--exclude", help="items to exclude per row, .npz")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("k", "epochs", "batch_size"):
        value = getattr(args, name, None)
        values = value if isinstance(value, list) else [value]
        if value is not None and any(v < 1 for v in values):
            parser.error(f"-{'-' if len(name) > 1 else ''}{name.replace('_', '-')} must be >= 1")
    try:
        args.func(args)
    except CLIError as err:
        print(f"keras-sparse: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("keras-sparse: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
