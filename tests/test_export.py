"""export_saved_model: sparse signatures, identical outputs after tf.saved_model.load."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

import keras_sparse as ks

pytestmark = pytest.mark.tensorflow_only


@pytest.fixture
def two_input_model():
    items = keras.Input((30,), sparse=True, name="items")
    side = keras.Input((3,), name="side")
    hidden = ks.layers.SparseDenseInput(8, activation="tanh")(items)
    scores = keras.layers.Dense(30)(keras.layers.Concatenate()([hidden, side]))
    return keras.Model([items, side], scores)


@pytest.fixture
def batch():
    x = sp.random(5, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
    x = sp.csr_matrix(sp.diags([1.0, 1.0, 1.0, 0.0, 1.0]) @ x, dtype=np.float32)  # row 3 empty
    x.eliminate_zeros()
    side = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    return x, side


def _flat(st, name):
    return {
        f"{name}_indices": st.indices,
        f"{name}_values": st.values,
        f"{name}_dense_shape": st.dense_shape,
    }


def test_round_trip_gives_identical_scores(two_input_model, batch, tmp_path):
    x, side = batch
    expected = two_input_model.predict([x, side], verbose=0)
    ks.export_saved_model(two_input_model, tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    st = ks.to_sparse_tensor(x)
    served = loaded.serve({"items": st, "side": tf.constant(side)})
    # same graph ops; only float rounding of the fused CPU kernels may differ
    np.testing.assert_allclose(served["scores"].numpy(), expected, rtol=1e-6, atol=1e-7)
    signature = loaded.signatures["serving_default"]
    flat = signature(**_flat(st, "items"), side=tf.constant(side))
    np.testing.assert_array_equal(flat["scores"].numpy(), served["scores"].numpy())


def test_sparse_inputs_keep_a_sparse_spec(two_input_model, tmp_path):
    ks.export_saved_model(two_input_model, tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    (spec,), _ = loaded.serve.concrete_functions[0].structured_input_signature
    assert isinstance(spec["items"], tf.SparseTensorSpec)
    assert spec["items"].shape.as_list() == [None, 30]
    assert isinstance(spec["side"], tf.TensorSpec)
    _, flat = loaded.signatures["serving_default"].structured_input_signature
    assert set(flat) == {"items_indices", "items_values", "items_dense_shape", "side"}


def test_top_k_serves_the_best_items(two_input_model, batch, tmp_path):
    x, side = batch
    scores = two_input_model.predict([x, side], verbose=0)
    ks.export_saved_model(two_input_model, tmp_path / "sm", top_k=4)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    served = loaded.serve({"items": ks.to_sparse_tensor(x), "side": tf.constant(side)})
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :4]  # ties: lower index first
    np.testing.assert_array_equal(served["top_indices"].numpy(), expected)
    np.testing.assert_allclose(
        served["top_scores"].numpy(), np.take_along_axis(scores, expected, axis=1), rtol=1e-6
    )


def test_excluded_items_come_last_when_served(tmp_path):
    items = keras.Input((6,), sparse=True, name="items")
    scores = keras.layers.Dense(6, kernel_initializer="ones", bias_initializer="zeros")(
        ks.layers.SparseDenseInput(2, kernel_initializer="ones")(items)
    )
    scores = keras.layers.Add()([scores, keras.ops.arange(6, dtype="float32")[None, :]])
    model = keras.Model(items, ks.layers.ExcludeSeen()([scores, items]))
    ks.export_saved_model(model, tmp_path / "sm", top_k=3)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    seen = sp.csr_matrix(np.array([[0, 0, 0, 0, 1, 1]], dtype=np.float32))
    served = loaded.serve({"items": ks.to_sparse_tensor(seen)})
    # at inference ExcludeSeen masks items 4 and 5; the best left are 3, 2, 1
    assert served["top_indices"].numpy().tolist() == [[3, 2, 1]]


def test_dict_input_sequential_and_dense_only_models(tmp_path):
    a = keras.Input((5,), sparse=True, name="a")
    b = keras.Input((2,), name="b")
    out = keras.layers.Concatenate()([ks.layers.SparseDenseInput(3)(a), b])
    dict_model = keras.Model({"a": a, "b": b}, out)
    x = sp.random(4, 5, density=0.4, format="csr", random_state=1, dtype=np.float32)
    dense = np.ones((4, 2), np.float32)
    ks.export_saved_model(dict_model, tmp_path / "d")
    loaded = tf.saved_model.load(str(tmp_path / "d"))  # keep it: it owns the variables
    served = loaded.serve({"a": ks.to_sparse_tensor(x), "b": tf.constant(dense)})
    np.testing.assert_allclose(
        served["scores"].numpy(), dict_model.predict({"a": x, "b": dense}, verbose=0), rtol=1e-6
    )
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    ks.export_saved_model(sequential, tmp_path / "s")
    loaded = tf.saved_model.load(str(tmp_path / "s"))
    served = loaded.serve({sequential.inputs[0].name: tf.ones((3, 4))})
    np.testing.assert_allclose(
        served["scores"].numpy(), sequential.predict(np.ones((3, 4)), verbose=0)
    )


def test_invalid_arguments_are_explained(two_input_model, tmp_path):
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        ks.export_saved_model(keras.layers.Dense(2), tmp_path)
    with pytest.raises(TypeError, match="`path`"):
        ks.export_saved_model(two_input_model, 3)
    with pytest.raises(ValueError, match="`top_k`"):
        ks.export_saved_model(two_input_model, tmp_path, top_k=0)
    inputs = keras.Input((4,))
    two_outputs = keras.Model(
        inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)]
    )
    with pytest.raises(ValueError, match="one output"):
        ks.export_saved_model(two_outputs, tmp_path, top_k=2)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="no symbolic inputs"):
        ks.export_saved_model(Subclassed(), tmp_path)
