"""Layers for sparse inputs and for outputs over large catalogues."""

from keras_sparse.layers.exclude_seen import ExcludeSeen
from keras_sparse.layers.sparse_dense_input import SparseDenseInput
from keras_sparse.layers.sparse_dense_output import SparseDenseOutput
from keras_sparse.layers.sparse_dropout import SparseDropout
from keras_sparse.layers.sparse_matmul import SparseMatMul
from keras_sparse.layers.top_k import TopK

__all__ = [
    "ExcludeSeen",
    "SparseDenseInput",
    "SparseDenseOutput",
    "SparseDropout",
    "SparseMatMul",
    "TopK",
]
