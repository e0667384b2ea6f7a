"""Retrieval metrics: exact top-k by inner product and recall@k of known-relevant keyphrases.

Embeddings are L2-normalized, so the inner product is the cosine. ``recall_at_k`` is the mean over
items (with at least one relevant keyphrase) of |top-k ∩ relevant| / min(k, |relevant|), the form
that reaches 1.0 when k is smaller than the relevant set.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def exact_topk(queries: np.ndarray, corpus: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the ``k`` highest inner products per query row, best first (brute force)."""
    k = min(k, corpus.shape[0])
    n = queries.shape[0]
    idx = np.empty((n, k), dtype="int64")
    val = np.empty((n, k), dtype="float32")
    for s in range(0, n, block):
        sims = queries[s:s + block] @ corpus.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < corpus.shape[0] else \
            np.tile(np.arange(corpus.shape[0]), (sims.shape[0], 1))
        ps = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx[s:s + block] = np.take_along_axis(part, order, axis=1)
        val[s:s + block] = np.take_along_axis(ps, order, axis=1)
    return val, idx


def recall_at_k(retrieved: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int]) -> dict[int, float]:
    """Mean recall@k over rows with a non-empty relevant set (``retrieved``: indices, best first)."""
    out: dict[int, float] = {}
    rows = [i for i, r in enumerate(relevant) if r]
    for k in ks:
        if not rows:
            out[k] = float("nan")
            continue
        hits = [len(set(retrieved[i, :k].tolist()) & relevant[i]) / min(k, len(relevant[i])) for i in rows]
        out[k] = float(np.mean(hits))
    return out


def recall_by_dim(item_emb: np.ndarray, kp_emb: np.ndarray, relevant: Mapping[str, Sequence[set[int]]],
                  dims: Sequence[int], ks: Sequence[int]) -> list[dict[str, float]]:
    """One row per (dim, relevance source): recall@k for each k, exact search on the Matryoshka prefix."""
    from kpspark.biencoder.onnx_embedder import truncate_normalize

    rows = []
    for d in dims:
        q = truncate_normalize(item_emb, d)
        c = truncate_normalize(kp_emb, d)
        _, top = exact_topk(q, c, max(ks))
        for source, rel in relevant.items():
            r = recall_at_k(top, rel, ks)
            rows.append({"dim": int(d), "relevant": source, "items": int(sum(1 for x in rel if x)),
                         **{f"recall@{k}": v for k, v in r.items()}})
    return rows
