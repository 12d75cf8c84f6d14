"""A language-model head over a large vocabulary, trained without the tokens x vocabulary logits.

    python examples/lm_head.py                     # 100k-token vocabulary, a few seconds a step
    python examples/lm_head.py --vocab 20000 --steps 40

1. A synthetic corpus: each token is followed by one of 4 successors fixed
   per token (a Markov chain), so a model can learn it. Token 0 is padding.
2. `Embedding -> GRU -> SparseDenseOutput(vocab)` trained with Keras's own
   `SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)`: `fit`
   computes the exact cross-entropy by vocabulary blocks (`block_size`), so a
   step holds tokens x block scores, never tokens x vocab.
3. `predict` gives the usual (batch, steps, vocab) logits for a few
   sequences; `predict_top_k` gives each sequence's next-token top 4 from its
   last position, by blocks, and the script counts how many are true successors.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_sparse as ks  # noqa: E402


def corpus(vocab: int, sequences: int, length: int, seed: int = 0):
    """(inputs, next-token labels, successor table) of a 4-successor Markov chain."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(1, vocab, size=(vocab, 4))
    tokens = np.zeros((sequences, length + 1), np.int32)
    tokens[:, 0] = rng.integers(1, vocab, sequences)
    for t in range(length):
        tokens[:, t + 1] = successors[tokens[:, t], rng.integers(0, 4, sequences)]
    return tokens[:, :-1], tokens[:, 1:], successors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    x, y, successors = corpus(args.vocab, args.steps * args.batch_size, args.length)

    tokens = keras.Input((args.length,), dtype="int32")
    h = keras.layers.Embedding(args.vocab, args.dim)(tokens)
    h = keras.layers.GRU(args.dim, return_sequences=True)(h)
    logits = ks.layers.SparseDenseOutput(args.vocab, block_size=8192, name="lm_head")(h)
    model = keras.Model(tokens, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
    )
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    losses = [round(v, 3) for v in history.history["loss"]]
    print(f"vocabulary {args.vocab:,}: loss per epoch {losses} (uniform: {np.log(args.vocab):.3f})")
    print("predict:", model.predict(x[:2], verbose=0).shape, "(batch, steps, vocab) logits")
    top = ks.topk.predict_top_k(model, x[:200], k=4, verbose=0)
    true = sum(
        len(set(top[row].indices) & set(successors[x[row, -1]])) for row in range(top.shape[0])
    )
    share = true / (4 * top.shape[0])
    print(f"next-token top 4 from the last position: {share:.2f} are true successors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
