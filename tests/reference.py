"""Independent, deliberately naive NumPy/Python references written from DEFINITIONS.md."""

import math

import numpy as np


def entries(y_true):
    """{(row, col): value} of stored entries of a SciPy matrix (duplicates summed)."""
    coo = y_true.tocoo()
    out = {}
    for r, c, v in zip(coo.row, coo.col, coo.data):
        out[(int(r), int(c))] = out.get((int(r), int(c)), 0.0) + float(v)
    return out


def ranked_list(scores_row, k, excluded=()):
    cand = [
        j
        for j, s in enumerate(scores_row)
        if j not in excluded and not math.isnan(s) and s != -math.inf
    ]
    return sorted(cand, key=lambda j: (-scores_row[j], j))[:k], set(cand)


def ranking_row(
    metric, scores_row, truth, k, excluded=(), threshold=0.0, denominator="k", gains="binary"
):
    """Value of one row, or None when the row is skipped (empty G)."""
    ranked, cand = ranked_list(scores_row, k, excluded)
    g = {j: v for j, v in truth.items() if v > threshold and j in cand}
    if not g:
        return None
    rel = [1.0 if j in g else 0.0 for j in ranked]
    hits = sum(rel)
    m = min(k, len(g))
    if metric == "precision":
        return hits / (k if denominator == "k" else m)
    if metric == "recall":
        return hits / (len(g) if denominator == "k" else m)
    if metric == "hit_rate":
        return 1.0 if hits > 0 else 0.0
    if metric == "mrr":
        return next((1.0 / (i + 1) for i, r in enumerate(rel) if r), 0.0)
    if metric == "map":
        total, seen = 0.0, 0
        for i, r in enumerate(rel):
            if r:
                seen += 1
                total += seen / (i + 1)
        return total / m
    if metric == "ndcg":

        def gain(v):
            return {"binary": 1.0, "linear": v, "exponential": 2.0**v - 1.0}[gains]

        dcg = sum(gain(g[j]) / math.log2(i + 2) for i, j in enumerate(ranked) if j in g)
        ideal = sorted((gain(v) for v in g.values()), reverse=True)[:k]
        idcg = sum(x / math.log2(i + 2) for i, x in enumerate(ideal))
        return dcg / idcg if idcg else 0.0
    raise ValueError(metric)


def ranking_mean(
    metric, scores, y_true, k, exclude=None, sample_weight=None, empty_rows="skip", **opts
):
    truth = entries(y_true)
    excl = entries(exclude) if exclude is not None else {}
    total = count = 0.0
    for u in range(scores.shape[0]):
        row_truth = {c: v for (r, c), v in truth.items() if r == u}
        row_excl = {c for (r, c) in excl if r == u}
        value = ranking_row(metric, list(scores[u]), row_truth, k, row_excl, **opts)
        w = 1.0 if sample_weight is None else float(sample_weight[u])
        if value is None:
            if empty_rows == "skip":
                continue
            value = 0.0
        total += w * value
        count += w
    return total / count if count else 0.0


def loss_rows(kind, y_true, y_pred, delta=1.0, from_logits=False):
    """Per-row masked loss of DEFINITIONS (row normalisation)."""
    truth = entries(y_true)
    out = np.zeros(y_pred.shape[0])
    for u in range(y_pred.shape[0]):
        obs = [(c, v) for (r, c), v in truth.items() if r == u]
        if not obs:
            continue
        if kind == "nll":
            p = y_pred[u] - y_pred[u].max()
            logsm = p - math.log(np.exp(p).sum())
            out[u] = -sum(v * logsm[c] for c, v in obs)
            continue
        errs = []
        for c, v in obs:
            e = y_pred[u, c] - v
            if kind == "mse":
                errs.append(e * e)
            elif kind == "mae":
                errs.append(abs(e))
            elif kind == "huber":
                errs.append(0.5 * e * e if abs(e) <= delta else delta * abs(e) - 0.5 * delta**2)
            elif kind == "bce":
                p = 1 / (1 + math.exp(-y_pred[u, c])) if from_logits else y_pred[u, c]
                p = min(max(p, 1e-7), 1 - 1e-7)
                errs.append(-(v * math.log(p) + (1 - v) * math.log(1 - p)))
        out[u] = sum(errs) / len(errs)
    return out
