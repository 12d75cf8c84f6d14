"""TF-IDF text classification: scikit-learn's sparse TF-IDF straight into Keras.

    pip install scikit-learn  # or: pip install "keras-sparse[test]"
    python examples/tfidf_text.py

`TfidfVectorizer` returns a SciPy CSR matrix with one column per word. It goes
into `SparseDenseInput` as it is: each step reads only the words a document
uses, however large the vocabulary. The corpus is generated here (short
documents about four topics with shared filler words), so the example needs no
download.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

try:
    from sklearn.feature_extraction.text import TfidfVectorizer
except ImportError:  # the one extra this example needs
    sys.exit("examples/tfidf_text.py needs scikit-learn: pip install scikit-learn")

import keras_sparse as ks  # noqa: E402

TOPICS = {
    "sport": "match goal team player coach league score season win referee stadium",
    "cooking": "recipe oven flour sugar butter bake salt pan garlic onion sauce",
    "space": "orbit rocket planet star galaxy telescope launch moon astronaut comet",
    "finance": "market stock bond price bank interest inflation fund trade profit",
}
FILLER = "the a of and to in is it that was for on with as this very today new".split()
# plus a long tail of rare words (names, typos, ...), as real vocabularies have
FILLER += [f"word{i}" for i in range(2000)]


def make_corpus(docs_per_topic: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Documents of 1-3 topic words, 0-2 words of another topic and 6-12 filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in enumerate(TOPICS.values()):
        vocabulary = words.split()
        for _ in range(docs_per_topic):
            words_in_doc = list(rng.choice(vocabulary, rng.integers(1, 4)))
            words_in_doc += list(rng.choice(FILLER, rng.integers(6, 13)))
            # words of another topic, so the task is not trivial
            other = TOPICS[rng.choice([t for t in TOPICS if t != list(TOPICS)[label]])].split()
            words_in_doc += list(rng.choice(other, rng.integers(0, 3)))
            rng.shuffle(words_in_doc)
            texts.append(" ".join(words_in_doc))
            labels.append(label)
    return texts, np.asarray(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs-per-topic", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    texts, labels = make_corpus(args.docs_per_topic)
    order = np.random.default_rng(1).permutation(len(texts))
    cut, val_cut = int(0.7 * len(texts)), int(0.8 * len(texts))
    train, val, test = order[:cut], order[cut:val_cut], order[val_cut:]
    vectorizer = TfidfVectorizer()
    x_train = vectorizer.fit_transform([texts[i] for i in train])  # SciPy CSR
    x_val = vectorizer.transform([texts[i] for i in val])
    x_test = vectorizer.transform([texts[i] for i in test])
    print(
        f"{x_train.shape[0]} training documents, {x_train.shape[1]} words, "
        f"{x_train.nnz / x_train.shape[0]:.1f} words per document"
    )

    inputs = keras.Input((x_train.shape[1],), sparse=True, name="tfidf")
    hidden = ks.layers.SparseDenseInput(32, activation="relu")(inputs)
    outputs = keras.layers.Dense(len(TOPICS), activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(
        ks.data.SparseDataset(x_train, labels[train], batch_size=32, shuffle=True, seed=0),
        validation_data=ks.data.SparseDataset(x_val, labels[val]),
        epochs=args.epochs,
        callbacks=[stop],
        verbose=0,
    )
    print(f"trained {len(history.history['loss'])} epochs (early stopping on validation loss)")
    _, accuracy = model.evaluate(ks.data.SparseDataset(x_test, labels[test]), verbose=0)
    print(f"test accuracy: {accuracy:.3f} ({len(TOPICS)} topics, chance {1 / len(TOPICS):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
