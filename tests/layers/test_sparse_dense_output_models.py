"""SparseDenseOutput in every model: sequences with integer labels, subclassed, multi-output.

Each training check runs one SGD step on the same weights twice, with
`SparseDenseOutput` and with its `Dense` twin (kernel transposed), and
compares the loss (1e-5 relative) and every weight after the step (1e-4).
Reference values come from Keras's own `Dense` model or from NumPy.
"""

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from keras_sparse import losses
from keras_sparse.data import SparseDataset
from keras_sparse.layers import SparseDenseInput, SparseDenseOutput
from tests.conftest import assert_round_trips

V, D, T, N = 29, 6, 5, 4  # vocabulary, width, steps, sequences
RNG = np.random.default_rng(0)
TOKENS = RNG.integers(1, V, size=(N, T)).astype("int32")
LABELS = RNG.integers(0, V, size=(N, T)).astype("int32")
LABELS[0, :2] = 0  # padding positions when ignore_class=0


def _sequence_models(block_size=7, mask_zero=False, **kwargs):
    """(ours, Dense twin) over Embedding(V, D), same weights."""
    models = []
    for out in (SparseDenseOutput(V, block_size=block_size, **kwargs), keras.layers.Dense(V)):
        inp = keras.Input((T,), dtype="int32")
        h = keras.layers.Embedding(V, D, mask_zero=mask_zero)(inp)
        models.append(keras.Model(inp, out(h)))
    ours, twin = models
    layer = ours.layers[-1]
    twin.set_weights([ours.get_weights()[0], np.asarray(layer.kernel).T, np.asarray(layer.bias)])
    return ours, twin


def _output_weights(model):
    """Every weight, output kernels as Dense holds them (items last)."""
    out = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, SparseDenseOutput):
            out += [np.asarray(layer.kernel).T, np.asarray(layer.bias)]
        elif isinstance(layer, keras.layers.Layer) and not layer._layers:
            out += [np.asarray(w) for w in layer.weights]
    return out


def _same_step(ours, twin, loss, x, y, **compile_kwargs):
    logs = []
    for model in (ours, twin):
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, **compile_kwargs)
        logs.append(model.train_on_batch(x, y, return_dict=True))
    for name, value in logs[1].items():
        np.testing.assert_allclose(logs[0][name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    for got, want in zip(_output_weights(ours), _output_weights(twin)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    return logs[0]


def _scce(ignore_class=None):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class)


@pytest.mark.parametrize("ignore_class", [None, 0, -1])
@pytest.mark.parametrize("block_size", [7, 1000])
def test_keras_sparse_categorical_crossentropy_equals_the_dense_model(ignore_class, block_size):
    ours, twin = _sequence_models(block_size)
    labels = np.where(LABELS == 0, -1, LABELS) if ignore_class == -1 else LABELS
    logs = _same_step(ours, twin, _scce(ignore_class), TOKENS, labels)
    assert np.isfinite(logs["loss"])


def test_an_embedding_mask_weighs_the_loss_as_for_the_dense_model():
    ours, twin = _sequence_models(mask_zero=True)
    tokens = TOKENS.copy()
    tokens[:, :2] = 0  # left padding: masked positions
    _same_step(ours, twin, _scce(), tokens, LABELS)


def test_the_loss_equals_a_numpy_reference_and_labels_may_have_a_last_axis_of_1():
    ours, _ = _sequence_models()
    emb = ours.get_weights()[0]
    layer = ours.layers[-1]
    scores = emb[TOKENS] @ np.asarray(layer.kernel).T + np.asarray(layer.bias)
    top = scores.max(-1, keepdims=True)
    log_probs = scores - top - np.log(np.exp(scores - top).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, LABELS[..., None], -1)[..., 0]
    valid = LABELS != 0
    ours.compile(optimizer=keras.optimizers.SGD(0.0), loss=_scce(ignore_class=0))
    got = ours.train_on_batch(TOKENS, LABELS[..., None], return_dict=True)["loss"]
    assert got == pytest.approx(-picked[valid].sum() / valid.sum(), rel=1e-5)


def test_predict_and_call_give_the_dense_scores_at_every_position():
    ours, twin = _sequence_models()
    assert ours.predict(TOKENS, verbose=0).shape == (N, T, V)
    np.testing.assert_allclose(
        ours.predict(TOKENS, verbose=0), twin.predict(TOKENS, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(TOKENS)), twin.predict(TOKENS, verbose=0), atol=1e-6
    )
    assert ours.output_shape == (None, T, V)


@pytest.mark.parametrize("ignore_class", [None, 0])
def test_our_multinomial_nll_takes_integer_labels_like_keras(ignore_class):
    ours, twin = _sequence_models()
    ours.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=losses.SparseMultinomialNLL(ignore_class=ignore_class),
    )
    twin.compile(optimizer=keras.optimizers.SGD(0.5), loss=_scce(ignore_class))
    a = ours.train_on_batch(TOKENS, LABELS)
    b = twin.train_on_batch(TOKENS, LABELS)
    assert a == pytest.approx(b, rel=1e-5)
    for got, want in zip(_output_weights(ours), _output_weights(twin)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_label_nll_matches_numpy_directly():
    logits = RNG.normal(size=(3, 4, 7)).astype("float32")
    labels = RNG.integers(0, 7, size=(3, 4))
    want = -(logits - np.log(np.exp(logits).sum(-1, keepdims=True)))
    want = np.take_along_axis(want, labels[..., None], -1)[..., 0]
    got = keras.ops.convert_to_numpy(losses.label_nll(labels, logits))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    masked = keras.ops.convert_to_numpy(
        losses.label_nll(labels, logits, ignore_class=int(labels[0, 0]))
    )
    assert masked[0, 0] == 0.0


def test_sampled_softmax_over_labels_matches_its_numpy_definition():
    from keras_sparse import _negatives

    ours, _ = _sequence_models(negatives=6, sampling="uniform", seed=11)
    emb = ours.get_weights()[0]
    layer = ours.layers[-1]
    scores = (emb[TOKENS] @ np.asarray(layer.kernel).T + np.asarray(layer.bias)).reshape(-1, V)
    items, log_expected = (np.asarray(a) for a in _negatives.sample(np.array([11, 0]), 6, V))
    flat = LABELS.reshape(-1)
    per = []
    for row, label in enumerate(flat):
        keep = items != label
        rest = np.exp(scores[row, items[keep]] - log_expected[keep]).sum()
        per.append(np.log(np.exp(scores[row, label]) + rest) - scores[row, label])
    ours.compile(optimizer=keras.optimizers.SGD(0.0), loss=_scce())
    assert ours.train_on_batch(TOKENS, LABELS) == pytest.approx(np.mean(per), rel=1e-5)


def test_a_label_outside_the_vocabulary_gives_a_nan_loss_not_a_wrong_row():
    ours, _ = _sequence_models()
    ours.compile(optimizer=keras.optimizers.SGD(0.0), loss=_scce())
    bad = LABELS.copy()
    bad[1, 1] = V + 3
    assert np.isnan(ours.train_on_batch(TOKENS, bad))


@pytest.mark.parametrize(
    ("loss", "kwargs", "labels", "match"),
    [
        (keras.losses.SparseCategoricalCrossentropy(), {}, LABELS, "from_logits=True"),
        ("sparse_categorical_crossentropy", {}, LABELS, "from_logits=True"),
        (_scce(), {"activation": "softmax"}, LABELS, "activation=None"),
        # Keras's own symbolic build of the loss, or ours, names both shapes.
        (_scce(), {}, LABELS[:, :3], r"target.shape=\S*4, 3\S*, output|labels of shape \(4, 3\)"),
    ],
)
def test_label_losses_that_cannot_work_name_the_fix(loss, kwargs, labels, match):
    ours, _ = _sequence_models(**kwargs)
    ours.compile(optimizer="sgd", loss=loss)
    with pytest.raises(ValueError, match=match):
        ours.train_on_batch(TOKENS, labels)


def test_a_sparse_target_for_sequence_features_names_the_fix():
    ours, _ = _sequence_models()
    ours.compile(optimizer="sgd", loss="sparse_mse")
    target = sp.random(N, V, density=0.2, format="csr", random_state=0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"both must be \(rows, items\)|must be 2-D"):
        ours.train_on_batch(TOKENS, target)


def test_negatives_must_be_fewer_than_units():
    with pytest.raises(ValueError, match=r"smaller than `units` \(29\); got negatives=29"):
        SparseDenseOutput(V, negatives=V)


def test_an_output_used_by_another_op_in_fit_raises():
    class PostProcessed(keras.Model):
        def __init__(self):
            super().__init__()
            self.emb = keras.layers.Embedding(V, D)
            self.out = SparseDenseOutput(V)

        def call(self, x):
            return self.out(self.emb(x)) * 2.0

    model = PostProcessed()
    model.compile(optimizer="sgd", loss=_scce())
    with pytest.raises(ValueError, match="return it\\s+unchanged"):
        model.train_on_batch(TOKENS, LABELS)


def test_save_and_load_a_sequence_model(tmp_path):
    ours, _ = _sequence_models()
    ours.compile(optimizer="adam", loss=_scce(0))
    ours.fit(TOKENS, LABELS, epochs=1, verbose=0)
    assert_round_trips(ours, TOKENS, tmp_path)


def test_predict_top_k_ranks_the_last_position_by_blocks():
    ours, _ = _sequence_models(block_size=4)
    scores = ours.predict(TOKENS, verbose=0)[:, -1, :]
    exclude = sp.csr_matrix(
        (np.ones(N), (np.arange(N), TOKENS[:, -1])), shape=(N, V), dtype=np.float32
    )
    got = ks.topk.predict_top_k(ours, TOKENS, k=3, exclude=exclude, batch_size=3).toarray()
    masked = np.where(exclude.toarray() > 0, -np.inf, scores)
    want = np.argsort(-masked, axis=1, kind="stable")[:, :3]
    for row in range(N):
        assert np.flatnonzero(got[row]).tolist() == sorted(want[row].tolist())


# Subclassed, multi-output and add_loss models with a sparse target.

ROWS, FEATURES, HIDDEN, ITEMS = 8, 11, 5, 23
X = sp.random(ROWS, FEATURES, density=0.4, format="csr", random_state=0, dtype=np.float32)
Y = sp.random(ROWS, ITEMS, density=0.15, format="csr", random_state=1, dtype=np.float32)
RATING = RNG.normal(size=(ROWS, 1)).astype("float32")


class Recommender(keras.Model):
    """Layers as attributes; `call` returns the output layer's output (keras-rs style)."""

    def __init__(self, output_layer, rating=False, kl=0.0, **kwargs):
        super().__init__(**kwargs)
        self.enc = SparseDenseInput(HIDDEN, activation="tanh")
        self.items = output_layer
        self.rating = keras.layers.Dense(1) if rating else None
        self.kl = kl

    def call(self, x):
        h = self.enc(x)
        if self.kl:
            self.add_loss(self.kl * keras.ops.mean(keras.ops.square(h)))
        if self.rating is None:
            return self.items(h)
        return {"items": self.items(h), "rating": self.rating(h)}


def _never_dense_in_fit(layer, monkeypatch):
    """Make `layer` raise if a training step asks it for every item's score."""
    from keras_sparse import _output_targets

    dense = layer._dense

    def guarded(inputs):
        assert _output_targets.current() is None, "fit scored every item"
        return dense(inputs)

    monkeypatch.setattr(layer, "_dense", guarded)


def _subclassed_pair(**kwargs):
    ours = Recommender(SparseDenseOutput(ITEMS), **kwargs)
    twin = Recommender(keras.layers.Dense(ITEMS), **kwargs)
    ours(X[:2])  # build
    twin(X[:2])
    twin.enc.set_weights(ours.enc.get_weights())
    twin.items.set_weights([np.asarray(ours.items.kernel).T, np.asarray(ours.items.bias)])
    if ours.rating is not None:
        twin.rating.set_weights(ours.rating.get_weights())
    return ours, twin


@pytest.mark.parametrize("kl", [0.0, 0.3])
def test_a_subclassed_model_trains_sparsely_and_equals_the_dense_model(kl, monkeypatch):
    ours, twin = _subclassed_pair(kl=kl)
    kernel = np.asarray(ours.items.kernel).copy()
    _never_dense_in_fit(ours.items, monkeypatch)
    _same_step(ours, twin, "sparse_mse", X, Y)
    untouched = sorted(set(range(ITEMS)) - set(Y.indices.tolist()))
    np.testing.assert_array_equal(np.asarray(ours.items.kernel)[untouched], kernel[untouched])


def test_a_multi_output_model_scores_its_sparse_output_and_trains_the_other_as_usual(monkeypatch):
    ours, twin = _subclassed_pair(rating=True)
    _never_dense_in_fit(ours.items, monkeypatch)
    loss = {"items": "sparse_mse", "rating": "mse"}
    kernel = np.asarray(ours.items.kernel).copy()
    _same_step(
        ours,
        twin,
        loss,
        X,
        {"items": Y, "rating": RATING},
        loss_weights={"items": 1.0, "rating": 0.5},
    )
    untouched = sorted(set(range(ITEMS)) - set(Y.indices.tolist()))
    np.testing.assert_array_equal(np.asarray(ours.items.kernel)[untouched], kernel[untouched])


def test_a_functional_model_with_list_outputs_pairs_targets_by_position():
    models = []
    for out in (SparseDenseOutput(ITEMS, name="items"), keras.layers.Dense(ITEMS, name="items")):
        inp = keras.Input((FEATURES,), sparse=True)
        h = SparseDenseInput(HIDDEN, activation="tanh", name="enc")(inp)
        models.append(keras.Model(inp, [keras.layers.Dense(1, name="rating")(h), out(h)]))
    ours, twin = models
    twin.set_weights(
        ours.get_weights()[:4]
        + [np.asarray(ours.layers[-1].kernel).T, np.asarray(ours.layers[-1].bias)]
    )
    _same_step(ours, twin, ["mse", losses.SparseMultinomialNLL()], X, [RATING, Y])


def test_lazy_adam_leaves_rows_only_an_earlier_fit_touched_in_a_subclassed_model():
    ours, _ = _subclassed_pair()
    ours.compile(optimizer=ks.optimizers.LazyAdam(0.1), loss="sparse_mse")
    first = sp.csr_matrix(([1.0], ([0], [3])), shape=(ROWS, ITEMS), dtype=np.float32)
    second = sp.csr_matrix(([1.0], ([1], [7])), shape=(ROWS, ITEMS), dtype=np.float32)
    # Through SparseDataset: Keras 3.10's own SciPy slicing on TensorFlow fails on these
    # one-entry targets (RaggedGather: indices out of range), a Keras data-adapter bug.
    ours.fit(SparseDataset(X, first, batch_size=ROWS), epochs=1, verbose=0)
    row3 = np.asarray(ours.items.kernel)[3].copy()
    ours.fit(SparseDataset(X, second, batch_size=ROWS), epochs=1, verbose=0)
    np.testing.assert_array_equal(np.asarray(ours.items.kernel)[3], row3)


def _keras_train_step(model):
    """Keras's own `train_step` function for `model` (its backend trainer's, not ours)."""
    return next(
        vars(cls)["train_step"]
        for cls in type(model).__mro__
        if cls is not keras.Model and "train_step" in vars(cls)
    )


def test_only_models_that_use_keras_sparse_step_through_our_train_step():
    from keras_sparse import _compat
    from keras_sparse import backend as B

    def frames_of_a_step(model):
        seen = []

        def loss(y_true, y_pred):
            import inspect

            seen.extend(frame.filename for frame in inspect.stack())
            return keras.ops.mean(keras.ops.square(y_true - y_pred))

        model.compile(optimizer=model.optimizer, loss=loss, run_eagerly=True)
        model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), verbose=0)
        return seen

    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.compile(optimizer="sgd", loss="mse")
    assert plain.train_step.__func__ is _keras_train_step(plain)
    assert not any(name.endswith("_output_targets.py") for name in frames_of_a_step(plain))
    # (tests/test_compat.py checks that no frame of keras_sparse is in such a step at all)

    lazy = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    lazy.compile(optimizer=ks.optimizers.LazyAdam(), loss="mse")
    ours = _compat.replaces(lazy.train_step.__func__) == "keras.Model.train_step"
    assert ours is (B.NAME != "tensorflow")  # LazyAdam's row updates need our step there only
    assert any(name.endswith("_output_targets.py") for name in frames_of_a_step(lazy)) is ours

    inp = keras.Input((3,))
    with_output = keras.Model(inp, SparseDenseOutput(2)(inp))
    with_output.compile(optimizer="sgd", loss="mse")
    assert _compat.replaces(with_output.train_step.__func__) == "keras.Model.train_step"
