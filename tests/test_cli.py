import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import cli
from keras_sparse.outputs import TopKToCSR


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    x = ks.datasets.synthetic_interactions(60, 30, density=0.1, seed=0)
    train, held = ks.datasets.split_holdout(x)
    model = cli.build_recommender(30, hidden=8)
    model.compile(optimizer="adam", loss=ks.losses.sparse_multinomial_nll)
    model.fit(ks.data.SparseDataset(train, train, batch_size=16), epochs=1, verbose=0)
    model.save(root / "m.keras")
    sp.save_npz(root / "train.npz", train)
    sp.save_npz(root / "held.npz", held)
    sp.save_npz(root / "short.npz", train[:10])
    (root / "corrupt.npz").write_bytes(b"garbage")
    return root, model, train, held


def test_topk_end_to_end(files, capsys):
    root, model, train, _ = files
    out = root / "recs.npz"
    code = cli.main(
        [
            "topk",
            str(root / "m.keras"),
            str(root / "train.npz"),
            "-k",
            "5",
            "--exclude",
            str(root / "train.npz"),
            "-o",
            str(out),
        ]
    )
    assert code == 0
    recs = sp.load_npz(out)
    scores = model.predict(ks.data.SparseDataset(train), verbose=0)
    expected = TopKToCSR(5)(scores, exclude=train)
    np.testing.assert_array_equal(recs.indices, expected.indices)
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]


def test_evaluate_end_to_end(files, capsys):
    root, model, train, held = files
    code = cli.main(
        [
            "evaluate",
            str(root / "m.keras"),
            "--input",
            str(root / "train.npz"),
            "--target",
            str(root / "held.npz"),
            "-k",
            "5",
            "10",
            "--exclude",
            str(root / "train.npz"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    expected = ks.evaluate_top_k(model, train, held, k=(5, 10), exclude=train, verbose=0)
    assert f"{expected['ndcg@10']:.4f}" in printed and "recall@5" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["topk", "{root}/nope.keras", "{root}/train.npz", "-k", "3", "-o", "{root}/o.npz"],
            "model file",
        ),
        (
            ["topk", "{root}/m.keras", "{root}/nope.npz", "-k", "3", "-o", "{root}/o.npz"],
            "does not exist",
        ),
        (
            ["topk", "{root}/m.keras", "{root}/corrupt.npz", "-k", "3", "-o", "{root}/o.npz"],
            "could not read",
        ),
        (
            ["topk", "{root}/corrupt.npz", "{root}/train.npz", "-k", "3", "-o", "{root}/o.npz"],
            "could not load model",
        ),
        (
            [
                "topk",
                "{root}/m.keras",
                "{root}/train.npz",
                "-k",
                "3",
                "--exclude",
                "{root}/short.npz",
                "-o",
                "{root}/o.npz",
            ],
            "rows",
        ),
        (
            ["topk", "{root}/m.keras", "{root}/train.npz", "-k", "3", "-o", "{root}/no/o.npz"],
            "output folder",
        ),
        (
            [
                "evaluate",
                "{root}/m.keras",
                "--input",
                "{root}/train.npz",
                "--target",
                "{root}/short.npz",
            ],
            "rows",
        ),
    ],
)
def test_failures_print_one_line_and_exit_non_zero(files, capsys, args, message):
    root = files[0]
    code = cli.main([a.format(root=root) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("keras-sparse: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (root / "o.npz").exists()


def test_bad_k_is_a_usage_error(files):
    root = files[0]
    with pytest.raises(SystemExit) as exc:
        cli.main(["topk", str(root / "m.keras"), str(root / "train.npz"), "-k", "0", "-o", "x"])
    assert exc.value.code == 2


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "out.npz"
    sp.save_npz(target, sp.eye(2, format="csr"))
    before = target.read_bytes()

    def explode(fh, matrix):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(sp, "save_npz", explode)
    with pytest.raises(KeyboardInterrupt):
        cli.atomic_save_npz(target, sp.eye(3, format="csr"))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.npz"]


@pytest.mark.slow
def test_demo_console_script_end_to_end(tmp_path):
    csv = tmp_path / "inter.csv"
    rng = np.random.default_rng(0)
    lines = ["user,item"] + [f"u{u},i{rng.integers(0, 40)}" for u in range(80) for _ in range(6)]
    csv.write_text("\n".join(lines))
    out = tmp_path / "recs.npz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_sparse.cli",
            "demo",
            "--data",
            str(csv),
            "--out",
            str(out),
            "--epochs",
            "2",
            "-k",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "popularity" in done.stdout and "ndcg@10" in done.stdout
    recs = sp.load_npz(out)
    assert recs.shape[0] == 80 and np.all(np.diff(recs.indptr) <= 5)
    bad = subprocess.run(
        [sys.executable, "-m", "keras_sparse.cli", "demo", "--data", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "does not exist" in bad.stderr
