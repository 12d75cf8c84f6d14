"""The `keras-sparse` command line: arguments, early checks, then the work.

This module is deliberately light: it imports neither Keras nor a backend,
so `--help` and `--version` print at once and a bad path is refused in well
under a second, before anything is trained. The work itself lives in
`keras_sparse_cli._work`, imported only after every check has passed (and after
`--backend` has set `KERAS_BACKEND`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

EXIT_ERROR = 1
OUTPUT_SUFFIXES = {
    "out": (".npz", ".csv"),
    "output": (".npz", ".csv"),
    "save_model": (".keras",),
    "plot": (".png", ".pdf", ".svg"),
}


class CLIError(Exception):
    """An error to report as one line, without a traceback."""


def version() -> str:
    """The installed version of keras-sparse."""
    try:
        return metadata.version("keras-sparse")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _format_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "interaction files",
        "CSV, TSV, MovieLens ratings.csv / u.data (header detected) or SciPy .npz",
    )
    group.add_argument("--user-col", default="0", help="user id column: name or position from 0")
    group.add_argument("--item-col", default="1", help="item id column: name or position from 0")
    group.add_argument(
        "--rating-col",
        default="auto",
        help="rating column: name, position from 0, 'auto' (column 2 if present) or 'none'",
    )
    group.add_argument(
        "--min-rating",
        type=float,
        help="keep only interactions rated at least this, as positive feedback (1)",
    )
    group.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the first line is (or is not) a header; detected by default",
    )


def _training_options(parser: argparse.ArgumentParser, out_default: str | None) -> None:
    parser.add_argument(
        "--out",
        default=out_default,
        help="top-k items per user: .npz (CSR with user_ids/item_ids) or .csv "
        "(user,item,rank,score)" + (f"; default {out_default}" if out_default else ""),
    )
    parser.add_argument("-k", type=int, default=20, help="items per user in --out (default 20)")
    parser.add_argument("--save-model", help="save the trained model and its id mappings (.keras)")
    parser.add_argument(
        "--plot", help="loss and ranking metrics per epoch (.png; needs matplotlib)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20)")
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="stop after this many epochs without a better held-out NDCG@10 (default 3)",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        help="Keras progress output (default: a progress bar on a terminal, nothing otherwise)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-sparse`."""
    parser = argparse.ArgumentParser(
        prog="keras-sparse",
        description="Train, score and evaluate Keras recommenders on sparse interaction files.",
    )
    parser.add_argument("--version", action="version", version=f"keras-sparse {version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--backend",
        choices=["tensorflow", "jax", "torch"],
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train a recommender on built-in synthetic data (or --data) against popularity",
    )
    demo.add_argument("--data", help="interactions file instead of the synthetic data")
    _format_options(demo)
    _training_options(demo, "recs.npz")

    train = sub.add_parser("train", help="train a recommender on your interaction file")
    train.add_argument("data", help="interactions file")
    _format_options(train)
    _training_options(train, None)

    topk = sub.add_parser("topk", help="each user's top-k items from a saved model")
    topk.add_argument("model", help="a .keras model saved by train/demo --save-model")
    topk.add_argument("input", help="interactions of the users to score")
    topk.add_argument("-k", type=int, required=True)
    topk.add_argument("-o", "--output", required=True, help=".npz or .csv (user,item,rank,score)")
    topk.add_argument("--exclude", help="interactions never to recommend (same format)")
    topk.add_argument(
        "--exclude-input", action="store_true", help="never recommend a user's input items"
    )
    _format_options(topk)

    ev = sub.add_parser("evaluate", help="ranking metrics of a saved model")
    ev.add_argument("model", help="a .keras model file")
    ev.add_argument("--input", required=True, help="interactions the model sees")
    ev.add_argument("--target", required=True, help="held-out interactions to find")
    ev.add_argument("-k", type=int, nargs="+", default=[10, 20])
    ev.add_argument("--exclude", help="interactions to exclude from ranking (same format)")
    _format_options(ev)
    return parser


def check_output(path: str, option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    target = Path(path)
    if target.is_dir():
        example = target / f"out{suffixes[0]}"
        raise CLIError(f"{option} '{path}' is a folder; give a file name such as {example}")
    if target.suffix.lower() not in suffixes:
        raise CLIError(f"{option} '{path}' must end in {' or '.join(suffixes)}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(f"{option} '{path}': folder '{parent}' does not exist")
    writable = os.access(parent, os.W_OK | os.X_OK)
    if not writable or (target.exists() and not os.access(target, os.W_OK)):
        raise CLIError(f"{option} '{path}': no permission to write there")


def check_input(path: str | None, option: str) -> None:
    """Refuse a missing input file before any work is done."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise CLIError(f"{option} '{path}' is a folder, not a file")
    if not target.is_file():
        raise CLIError(f"{option} '{path}' does not exist")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """All checks that need no heavy import: numbers, paths, optional extras."""
    for name in ("k", "epochs", "batch_size", "patience"):
        value = getattr(args, name, None)
        values = value if isinstance(value, list) else [value]
        least = 0 if name == "patience" else 1
        if value is not None and any(v < least for v in values):
            flag = f"-{'-' if len(name) > 1 else ''}{name.replace('_', '-')}"
            parser.error(f"{flag} must be >= {least}")
    inputs = {
        "data": "DATA" if args.command == "train" else "--data",
        "model": "MODEL",
        "input": "INPUT" if args.command == "topk" else "--input",
        "target": "--target",
        "exclude": "--exclude",
    }
    for name, option in inputs.items():
        check_input(getattr(args, name, None), option)
    for name, suffixes in OUTPUT_SUFFIXES.items():
        path = getattr(args, name, None)
        if path:
            check_output(path, f"--{name.replace('_', '-')}", suffixes)
    if getattr(args, "plot", None) and importlib.util.find_spec("matplotlib") is None:
        raise CLIError('--plot needs matplotlib: pip install "keras-sparse[plot]"')


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """Send file descriptor 2 (backends log there from C++) to /dev/null while working.

    Python's `sys.stderr` keeps writing to the terminal: when it is the process's
    stderr it is moved to a duplicate of the original descriptor first, so our own
    messages and Python warnings still show.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured stream (tests)
        real = False
    python_stderr = sys.stderr
    if real:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        sys.stderr.flush()
        if real:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(parser, args)
    except CLIError as err:
        print(f"keras-sparse: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if hasattr(args, "verbose") and args.verbose is None:
        args.verbose = 1 if sys.stdout.isatty() else 0  # Keras's progress bar on a terminal
    try:
        with _native_stderr_silenced(not args.debug):
            from keras_sparse_cli import _work

            if not args.debug:  # TensorFlow's Python warnings (retracing notes, ...)
                logging.getLogger("tensorflow").setLevel(logging.ERROR)
            _work.run(args)
    except KeyboardInterrupt:
        print("keras-sparse: interrupted; no partly written file was left", file=sys.stderr)
        return 130
    except Exception as err:  # one line unless --debug
        if args.debug:
            traceback.print_exc()
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not isinstance(err, CLIError):
            message = f"{type(err).__name__}: {message} (run with --debug for the traceback)"
        print(f"keras-sparse: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0
