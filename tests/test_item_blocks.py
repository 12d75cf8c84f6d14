"""Item-block math (`keras_sparse._item_blocks`) against NumPy, over random shapes (Hypothesis)."""

import keras
import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ranked_list

import keras_sparse as ks
from conftest import gradient
from keras_sparse import _item_blocks


@st.composite
def problems(draw):
    rows = draw(st.integers(1, 6))
    items = draw(st.integers(1, 40))
    dim = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(rows, dim)).astype(np.float32)
    kernel = rng.normal(size=(items, dim)).astype(np.float32)
    if draw(st.booleans()):  # exact ties between items (identical table rows)
        kernel[rng.integers(0, items, items // 2)] = kernel[0]
    bias = rng.normal(size=items).astype(np.float32) if draw(st.booleans()) else None
    block = draw(st.integers(1, 45))
    k = draw(st.integers(1, 45))
    density = draw(st.sampled_from([0.0, 0.2, 0.9]))
    exclude = sp.random(rows, items, density=density, format="coo", random_state=seed)
    return h, kernel, bias, block, k, exclude


def _scores(h, kernel, bias):
    return h @ kernel.T + (0 if bias is None else bias)


@settings(max_examples=30)
@given(problems())
def test_top_k_by_blocks_equals_the_dense_reference(problem):
    h, kernel, bias, block, k, exclude = problem
    masks = [_item_blocks.exclusion_mask(ks.to_sparse(exclude))] if exclude.nnz else None
    values, indices, valid = _item_blocks.top_k(h, kernel, bias, k, block, masks=masks)
    values, indices, valid = (np.asarray(a) for a in (values, indices, valid))
    scores = _scores(h, kernel, bias)
    for u in range(h.shape[0]):
        skip = set(exclude.col[exclude.row == u].tolist())
        want, _ = ranked_list(scores[u].tolist(), k, skip)
        got = indices[u][valid[u]].tolist()
        # Equal scores (identical table rows) may differ in the last ulp between a
        # block's matmul and the full one, so ties are compared by score.
        np.testing.assert_allclose(scores[u, got], scores[u, want], rtol=1e-5, atol=1e-5)
        assert len(got) == len(want) and not skip & set(got)


@settings(max_examples=30)
@given(problems())
def test_log_partition_equals_numpy(problem):
    h, kernel, bias, block, _, _ = problem
    scores = _scores(h, kernel, bias)
    top = scores.max(axis=1, keepdims=True)
    want = np.log(np.exp(scores - top).sum(axis=1)) + top[:, 0]
    got = np.asarray(_item_blocks.log_partition(h, kernel, bias, block))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=10)
@given(problems(), st.booleans())
def test_log_partition_gradient_with_an_excluded_item_equals_numpy(problem, exclude_label):
    h, kernel, bias, block, _, _ = problem
    rng = np.random.default_rng(h.size + kernel.size)
    rows, items = h.shape[0], kernel.shape[0]
    # Per-row upstream values of any sign (zero included), as a masked, weighted loss sends.
    upstream = rng.normal(size=rows).astype(np.float32) * rng.integers(0, 2, rows)
    # One item left out per row, or none (-1 and ids past the table leave the row whole).
    # A row whose only item is left out has no log-partition at all: two items or more.
    excluding = exclude_label and items > 1
    exclude = rng.integers(-1, items + 1, rows).astype(np.int32) if excluding else None
    scores = _scores(h, kernel, bias)
    if exclude is not None:
        inside = (exclude >= 0) & (exclude < items)
        scores[np.arange(rows)[inside], exclude[inside]] = -np.inf
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights = weights / weights.sum(axis=1, keepdims=True) * upstream[:, None]

    def fn(h_=h, kernel_=kernel, bias_=bias):
        lse = _item_blocks.log_partition(h_, kernel_, bias_, block, exclude=exclude)
        return keras.ops.multiply(lse, upstream)

    np.testing.assert_allclose(gradient(fn, h), weights @ kernel, rtol=1e-4, atol=1e-5)
    grad_kernel = gradient(lambda v: fn(h, v), kernel)
    np.testing.assert_allclose(grad_kernel, weights.T @ h, rtol=1e-4, atol=1e-5)
    if bias is not None:
        grad_bias = gradient(lambda v: fn(h, kernel, v), bias)
        np.testing.assert_allclose(grad_bias, weights.sum(axis=0), rtol=1e-4, atol=1e-5)


def test_group_max_and_its_gradient_equal_numpy_across_blocks_and_masks():
    rng = np.random.default_rng(4)
    rows, d, n, groups = 5, 3, 7, 3  # blocks of 2 groups: 4 blocks, the last one padded
    h = rng.normal(size=(rows, d)).astype(np.float32)
    kernel = rng.normal(size=(n * groups, d)).astype(np.float32)
    bias = rng.normal(size=n * groups).astype(np.float32)
    upstream = rng.normal(size=(rows, n)).astype(np.float32)
    masked = np.array([[0, 0], [0, 1], [0, 2], [2, 5], [4, 20], [3, 9]])  # row 0: group 0 all
    which = np.array([True, True, True, True, True, False])
    masks = [(masked.astype(np.int32), which)]
    scores = h @ kernel.T + bias
    scores[masked[which, 0], masked[which, 1]] = -np.inf
    grouped = scores.reshape(rows, n, groups)
    want = grouped.max(axis=2)

    def fn(h_, kernel_=kernel, bias_=bias):
        best = _item_blocks.group_max(h_, kernel_, bias_, groups, 6, masks)
        return keras.ops.multiply(best[:, 1:], upstream[:, 1:])  # row 0: group 0 all masked

    got = _item_blocks.group_max(h, kernel, bias, groups, 6, masks)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5)
    # The gradient reaches each group's best entry only, weighted by its upstream value.
    chosen = np.zeros_like(scores)
    best = grouped.argmax(axis=2)
    for r in range(rows):
        for k in range(1, n):
            chosen[r, k * groups + best[r, k]] = upstream[r, k]
    np.testing.assert_allclose(gradient(fn, h), chosen @ kernel, rtol=1e-4, atol=1e-6)
    grad_kernel = gradient(lambda v: fn(h, v), kernel)
    np.testing.assert_allclose(grad_kernel, chosen.T @ h, rtol=1e-4, atol=1e-6)
    grad_bias = gradient(lambda v: fn(h, kernel, v), bias)
    np.testing.assert_allclose(grad_bias, chosen.sum(axis=0), rtol=1e-4, atol=1e-6)
