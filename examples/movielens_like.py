"""Write MovieLens-style rating files to try the `keras-sparse` command line on.

    python examples/movielens_like.py --out-dir data   # ratings.csv and later.csv

`ratings.csv` (`userId,movieId,rating,timestamp`, as in MovieLens) holds 80 % of
each user's ratings of the package's synthetic interactions and `later.csv` the
other 20 %, so `keras-sparse train ratings.csv` and `keras-sparse evaluate
--target later.csv` can be tried without a download. Movie ids are spread out
(7, 17, 27, ...) so that they sort differently as numbers and as text.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_sparse.interactions import split_holdout, synthetic_interactions  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", help="folder for the two files (default: a new temporary one)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=800)
    args = parser.parse_args(argv)
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="keras_sparse_ratings_")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    x = synthetic_interactions(args.users, args.items, density=0.02, seed=0)
    train, later = split_holdout(x, fraction=0.2, seed=0)
    for name, part in (("ratings.csv", train), ("later.csv", later)):
        coo = part.tocoo()
        stars = rng.choice([3.0, 3.5, 4.0, 4.5, 5.0], size=coo.nnz)
        with open(os.path.join(out_dir, name), "w") as fh:
            fh.write("userId,movieId,rating,timestamp\n")
            for u, i, r in zip(coo.row, coo.col, stars):
                fh.write(f"{u + 1},{10 * i + 7},{r},964982703\n")
    print(f"wrote ratings.csv ({train.nnz} ratings) and later.csv ({later.nnz}) to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
