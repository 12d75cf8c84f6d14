"""The `keras-sparse` command line, run as a user runs it: the installed entry point."""

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
import keras_sparse_cli
from keras_sparse.interactions import align, load_interactions
from keras_sparse_cli import _work as cli

ENTRY = (
    [shutil.which("keras-sparse")]
    if shutil.which("keras-sparse")
    else [
        sys.executable,
        "-m",
        "keras_sparse_cli",
    ]
)
ENV = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}
# The end-to-end tests start their own processes (TensorFlow by default, JAX via --backend),
# so they run once per test command: from the TensorFlow session.
once = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="starts its own processes; runs once, from the TensorFlow run",
)


def _run(*args, umask=None, cwd=None):
    return subprocess.run(
        [*ENTRY, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        cwd=cwd,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def _write_ratings(path, users=120, items=50, seed=0, header=True, sep=","):
    """A MovieLens-style file: numeric ids that sort differently as text, taste groups."""
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp".replace(",", sep)] if header else []
    for u in range(users):
        group = u % 3
        liked = [i for i in range(items) if i % 3 == group]
        for i in rng.choice(items, size=12, replace=False):
            rating = 5.0 if i in liked else float(rng.choice([1.0, 2.0]))
            lines.append(sep.join([str(u * 5 + 2), str(i * 10 + 1), str(rating), "881250949"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_help_and_version_print_without_importing_a_backend():
    code = (
        "import sys, keras_sparse_cli as c\n"
        "for argv in (['--version'], ['--help'], ['train', '--help']):\n"
        "    try:\n"
        "        c.main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0\n"
        "print('heavy:', [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    assert f"keras-sparse {keras_sparse_cli.version()}" in done.stdout
    assert "--min-rating" in done.stdout and "heavy: []" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "{r}", "--out", "{d}"], "is a folder"),
        (["train", "{r}", "--out", "{d}/missing/recs.csv"], "does not exist"),
        (["train", "{r}", "--out", "{d}/recs.txt"], "must end in .npz or .csv"),
        (["train", "{r}", "--save-model", "{d}/m.h5"], "must end in .keras"),
        (["train", "{d}/none.csv"], "DATA '{d}/none.csv' does not exist"),
        (["train", "{d}"], "is a folder, not a file"),
        (["topk", "{d}/m.keras", "{r}", "-k", "3", "-o", "{d}/o.csv"], "MODEL"),
        (["evaluate", "{r}", "--input", "{r}", "--target", "{d}/t.csv"], "--target"),
    ],
)
def test_bad_paths_are_refused_before_any_work(tmp_path, args, message):
    ratings = _write_ratings(tmp_path / "ratings.csv")
    done = _run(*[a.format(r=ratings, d=tmp_path) for a in args])  # the installed entry point
    err = done.stderr.strip()
    assert done.returncode == 1 and done.stdout == ""
    assert err.startswith("keras-sparse: error:") and len(err.splitlines()) == 1
    assert message.format(d=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv"]


def test_a_refused_path_never_imports_keras(tmp_path):
    code = (
        "import sys, keras_sparse_cli as c\n"
        f"status = c.main(['train', {str(tmp_path)!r}, '--out', {str(tmp_path)!r}])\n"
        "print(status, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert done.stdout.split() == ["1", "False"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_refused(tmp_path, capsys):
    ratings = _write_ratings(tmp_path / "ratings.csv")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert keras_sparse_cli.main(["train", str(ratings), "--out", str(locked / "r.csv")]) == 1
    assert "no permission" in capsys.readouterr().err


def test_malformed_line_and_debug_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating\n1,2,5\n3,4,lots\n")
    assert keras_sparse_cli.main(["train", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"keras-sparse: error: '{bad}' line 3: rating 'lots' is not a number"
    corrupt = tmp_path / "m.keras"
    corrupt.write_bytes(b"not a zip")
    argv = ["topk", str(corrupt), str(bad), "-k", "2", "-o", str(tmp_path / "o.csv")]
    assert keras_sparse_cli.main(argv) == 1
    assert "could not load model" in capsys.readouterr().err
    assert keras_sparse_cli.main(["--debug", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@once
def test_train_save_topk_evaluate_round_trip_matches_the_python_api(tmp_path):
    train_file = _write_ratings(tmp_path / "ratings.csv", seed=0)
    held_file = _write_ratings(tmp_path / "held.csv", seed=1)
    model_file, recs = tmp_path / "model.keras", tmp_path / "recs.csv"
    done = _run(
        "train", train_file, "--min-rating", "4", "--save-model", model_file, "--out", recs,
        "--epochs", "3", "-k", "4", "--plot", tmp_path / "curves.png", umask=0o022,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "popularity" in done.stdout and "ndcg@10" in done.stdout
    assert done.stderr == ""  # no backend log lines
    assert "Epoch" not in done.stdout  # no progress bar when stdout is not a terminal
    for name in ("model.keras", "recs.csv", "curves.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    rows = _csv_rows(recs)
    assert {int(r["user"]) for r in rows} == {u * 5 + 2 for u in range(120)}
    assert {int(r["item"]) % 10 for r in rows} == {1}  # original movie ids, numbers

    top = tmp_path / "top.csv"
    done = _run(
        "topk", model_file, train_file, "-k", "3", "-o", top, "--exclude-input", "--min-rating", "4"
    )
    assert done.returncode == 0, done.stderr
    model, item_ids = cli.load_model(str(model_file))
    data = load_interactions(train_file, min_rating=4)
    x, _ = align(data, item_ids, "input")
    expected = ks.predict_top_k(model, x, k=3, exclude=x, verbose=0)
    got = {(int(r["user"]), int(r["item"]), int(r["rank"])) for r in _csv_rows(top)}
    want = {
        (int(data.user_ids[u]), int(item_ids[i]), rank)
        for u in range(expected.shape[0])
        for rank, i in enumerate(expected.indices[expected.indptr[u] : expected.indptr[u + 1]], 1)
    }
    assert got == want

    done = _run(
        "evaluate", model_file, "--input", train_file, "--target", held_file, "--min-rating", "4",
        "-k", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    held = load_interactions(held_file, min_rating=4)
    y, _ = align(held, item_ids, "target")  # same users in the same order in both files
    assert held.user_ids.tolist() == data.user_ids.tolist()
    result = ks.evaluate_top_k(model, x, y, k=5, verbose=0)
    assert f"{result['ndcg@5']:.4f}" in done.stdout and f"{result['recall@5']:.4f}" in done.stdout


@pytest.mark.slow
@once
def test_demo_the_jax_and_torch_backends_and_unknown_items(tmp_path):
    ratings = _write_ratings(tmp_path / "u.data", header=False, sep="\t")
    out = tmp_path / "recs.npz"
    done = _run("demo", "--data", ratings, "--out", out, "--epochs", "2", "-k", "5",
                "--save-model", tmp_path / "m.keras")  # fmt: skip
    assert done.returncode == 0, done.stderr
    recs = ks.interactions.load_npz(out)
    assert recs.matrix.shape[0] == 120 and np.all(np.diff(recs.matrix.indptr) <= 5)
    assert recs.item_ids.dtype.kind == "i"
    other = tmp_path / "other.csv"
    other.write_text("user,item\n2,1\n2,999999\n7,11\n")  # item 999999: unknown to the model
    done = _run("--backend", "jax", "topk", tmp_path / "m.keras", other, "-k", "2",
                "-o", tmp_path / "o.csv")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 of 3 items are unknown to the model" in done.stderr
    assert len(_csv_rows(tmp_path / "o.csv")) == 4
    target = tmp_path / "target.csv"
    target.write_text("user,item\n2,21\n999,11\n")  # user 999 is not in the input
    done = _run("evaluate", tmp_path / "m.keras", "--input", other, "--target", target, "-k", "2")
    assert done.returncode == 0, done.stderr
    assert "1 users are not in the input" in done.stderr and "ndcg@2" in done.stdout
    done = _run("--backend", "torch", "topk", tmp_path / "m.keras", other, "-k", "2",
                "-o", tmp_path / "t.csv")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _csv_rows(tmp_path / "t.csv") == _csv_rows(tmp_path / "o.csv")  # same as on JAX


def test_plot_without_matplotlib_says_which_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    ratings = _write_ratings(tmp_path / "ratings.csv")
    assert keras_sparse_cli.main(["train", str(ratings), "--plot", str(tmp_path / "c.png")]) == 1
    assert 'needs matplotlib: pip install "keras-sparse[plot]"' in capsys.readouterr().err


FORMAT_FILES = {
    "with_header.tsv": ("user\titem\trating\n{rows}", "\t", lambda u: u, lambda i: i),
    "no_header_strings.csv": ("{rows}", ",", lambda u: f"user {u}", lambda i: f"item-{i}"),
}


@pytest.mark.slow
@once
@pytest.mark.parametrize("name", [*FORMAT_FILES, "ids.npz"])
def test_train_reads_each_format_and_keeps_its_ids(tmp_path, name):
    rng = np.random.default_rng(3)
    pairs = sorted({(int(u), int(i)) for u, i in rng.integers(0, [40, 25], size=(300, 2))})
    if name == "ids.npz":
        from keras_sparse.interactions import save_npz

        rows, cols = np.array(pairs).T
        matrix = sp.csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(40, 25))
        user_ids, item_ids = np.arange(40) * 3 + 1, np.array([f"m{i}" for i in range(25)])
        save_npz(tmp_path / name, matrix, user_ids, item_ids)
        want_users, want_items = set(user_ids.tolist()), set(item_ids.tolist())
    else:
        head, sep, user, item = FORMAT_FILES[name]
        lines = "\n".join(sep.join([str(user(u)), str(item(i)), "4"]) for u, i in pairs)
        (tmp_path / name).write_text(head.format(rows=lines) + "\n")
        want_users = {str(user(u)) for u, _ in pairs}
        want_items = {str(item(i)) for _, i in pairs}
    done = _run("train", tmp_path / name, "--epochs", "1", "-k", "3", "--out", tmp_path / "r.csv")
    assert done.returncode == 0, done.stderr
    rows = _csv_rows(tmp_path / "r.csv")
    assert {r["user"] for r in rows} == {str(u) for u in want_users}
    assert {r["item"] for r in rows} <= {str(i) for i in want_items}


def test_top_k_csv_rows_keep_ids_and_rank_order(tmp_path):
    top = sp.csr_matrix(
        (np.array([0.9, 0.5, 0.7]), np.array([2, 0, 1]), np.array([0, 2, 3])), shape=(2, 3)
    )
    from keras_sparse_cli._files import write_top_k_csv

    write_top_k_csv(tmp_path / "r.csv", top, np.array([10, 2]), np.array(["x", "y", "z"]))
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["user", "item", "rank", "score"],
        ["10", "z", "1", "0.9"],
        ["10", "x", "2", "0.5"],
        ["2", "y", "1", "0.7"],
    ]
