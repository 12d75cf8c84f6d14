"""Kipf & Welling's two-layer GCN (ICLR 2017) on Cora and Citeseer, from keras_sparse layers.

    python examples/gcn_planetoid.py                   # Cora and Citeseer, 10 seeds each
    python examples/gcn_planetoid.py --dataset cora --seeds 3
    python examples/gcn_planetoid.py --no-input-dropout

The model is softmax(A relu(A dropout(X) W0) W1) with A = D^-1/2 (adj + I) D^-1/2:
`SparseDropout` on the sparse bag-of-words features, `SparseDenseInput` for X W0
(reads only the non-zero features), `SparseMatMul` for the propagation with the
fixed sparse A. The loss is `SparseMultinomialNLL(normalize="entries")` on a
sparse target that holds only the labelled nodes, i.e. the cross-entropy
masked to them. Hyper-parameters are the paper's: 16 hidden units, dropout 0.5,
Adam 0.01, weight decay 5e-4 on the first layer (the paper's term is
5e-4 * sum(w^2) / 2, Keras's L2(l) is l * sum(w^2), so l = 2.5e-4), 200 epochs
with the paper's early stopping (stop once the validation loss exceeds the mean
of the 10 epochs before). The graph is one batch of all nodes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import keras_sparse as ks  # noqa: E402
from keras_sparse.datasets import Planetoid, load_planetoid  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "planetoid"
PAPER = {"cora": 81.5, "citeseer": 70.3}  # test accuracy, %, Table 2 of the paper


def normalized_adjacency(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """D^-1/2 (A + I) D^-1/2 with the self loops the GCN adds (kept sparse)."""
    with_loops = sp.csr_matrix(adjacency, dtype=np.float32)
    with_loops.setdiag(1.0)
    degree = np.asarray(with_loops.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(degree))
    return sp.csr_matrix(scale @ with_loops @ scale, dtype=np.float32)


def row_normalized(features: sp.spmatrix) -> sp.csr_matrix:
    """Each row divided by its sum (rows of zeros stay zero), as in the paper's code."""
    sums = np.asarray(features.sum(axis=1)).ravel()
    inverse = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
    return sp.csr_matrix(sp.diags(inverse) @ features, dtype=np.float32)


def labelled_target(data: Planetoid, mask: np.ndarray) -> sp.csr_matrix:
    """A sparse (nodes, classes) target with a 1 for each node in `mask` only."""
    nodes = np.flatnonzero(mask)
    ones = np.ones(len(nodes), np.float32)
    shape = (len(data.labels), data.num_classes)
    return sp.csr_matrix((ones, (nodes, data.labels[nodes])), shape=shape)


class PaperEarlyStopping(keras.callbacks.Callback):
    """Stop once the validation loss exceeds the mean of the `window` epochs before."""

    def __init__(self, window: int = 10) -> None:
        super().__init__()
        self.window = window
        self.history: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.history.append(float(logs["val_loss"]))
        if epoch > self.window and self.history[-1] > np.mean(
            self.history[-(self.window + 1) : -1]
        ):
            self.model.stop_training = True


def build_gcn(
    features: int, classes: int, adjacency: sp.csr_matrix, input_dropout: bool = True
) -> keras.Model:
    """The two-layer GCN, compiled with the paper's optimizer and loss."""
    inputs = keras.Input((features,), sparse=True, name="features")
    hidden = ks.layers.SparseDropout(0.5 if input_dropout else 0.0)(inputs)
    hidden = ks.layers.SparseDenseInput(
        16, use_bias=False, kernel_regularizer=keras.regularizers.L2(2.5e-4)
    )(hidden)
    hidden = ks.layers.SparseMatMul(adjacency)(hidden)
    hidden = keras.layers.ReLU()(hidden)
    hidden = keras.layers.Dropout(0.5)(hidden)
    hidden = keras.layers.Dense(classes, use_bias=False)(hidden)
    logits = ks.layers.SparseMatMul(adjacency)(hidden)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=ks.losses.SparseMultinomialNLL(normalize="entries"),
    )
    return model


def run(data: Planetoid, seed: int, input_dropout: bool = True, epochs: int = 200) -> float:
    """Train one GCN with `seed`; return its test accuracy in [0, 1]."""
    keras.utils.set_random_seed(seed)
    nodes = data.features.shape[0]
    x = row_normalized(data.features)
    model = build_gcn(
        x.shape[1], data.num_classes, normalized_adjacency(data.adjacency), input_dropout
    )
    train = ks.data.SparseDataset(x, labelled_target(data, data.train_mask), batch_size=nodes)
    val = ks.data.SparseDataset(x, labelled_target(data, data.val_mask), batch_size=nodes)
    model.fit(
        train, validation_data=val, epochs=epochs, callbacks=[PaperEarlyStopping()], verbose=0
    )
    logits = model.predict(ks.data.SparseDataset(x, batch_size=nodes), verbose=0)
    predicted = logits.argmax(axis=1)
    return float(np.mean(predicted[data.test_mask] == data.labels[data.test_mask]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["cora", "citeseer", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=10, help="runs per data set (seeds 0..n-1)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-input-dropout", action="store_true", help="the ~79.8%% variant")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"no Planetoid data in {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 1
    names = ["cora", "citeseer"] if args.dataset == "both" else [args.dataset]
    print(f"{'data set':<10}{'test accuracy (%)':>24}{'paper':>8}")
    for name in names:
        data = load_planetoid(name, args.data_dir)
        scores = [
            100 * run(data, seed, input_dropout=not args.no_input_dropout)
            for seed in range(args.seeds)
        ]
        summary = f"{np.mean(scores):.1f} +/- {np.std(scores):.1f} (n={args.seeds})"
        print(f"{name:<10}{summary:>24}{PAPER[name]:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
