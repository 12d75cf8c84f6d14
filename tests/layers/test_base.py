"""Our layers take SciPy matrices in their own `__call__`; Keras's layers are left alone."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp

import keras_sparse as ks
from conftest import MATRIX_CLASSES, dense_of
from keras_sparse.layers._base import SparseLayer

X = sp.random(6, 5, density=0.4, format="csr", random_state=2, dtype=np.float64)


def test_every_public_layer_converts_scipy_in_its_own_call():
    for name in ks.layers.__all__:
        assert issubclass(getattr(ks.layers, name), SparseLayer), name
    # Keras's own Layer.__call__ is not replaced: a Keras layer still refuses a SciPy matrix.
    with pytest.raises(ValueError, match="Only input tensors"):
        keras.layers.Dense(2)(X)


@pytest.mark.parametrize("fmt", MATRIX_CLASSES, ids=lambda c: c.__name__)
def test_scipy_positional_or_inputs_keyword_equals_the_dense_reference(fmt):
    layer = ks.layers.SparseDenseInput(3)
    layer.build((None, 5))
    expected = X.toarray() @ layer.get_weights()[0]
    for got in (layer(fmt(X)), layer(inputs=fmt(X))):
        assert keras.backend.standardize_dtype(got.dtype) == keras.backend.floatx()
        np.testing.assert_allclose(dense_of(got), expected, rtol=1e-5, atol=1e-6)


def test_a_backend_sparse_tensor_passes_unchanged():
    layer = ks.layers.SparseDropout(0.5, seed=1)
    x = ks.to_sparse(X.astype(np.float32))
    np.testing.assert_array_equal(dense_of(layer(x)), X.toarray().astype(np.float32))
    np.testing.assert_array_equal(dense_of(layer(X)), X.toarray().astype(np.float32))
