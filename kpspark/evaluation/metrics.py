"""Pure numpy metrics (no Spark): AUC, accuracy, Cohen's kappa, best-F1 threshold."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def _arrays(y: ArrayLike, s: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    ya, sa = np.asarray(y, dtype="float64"), np.asarray(s, dtype="float64")
    if ya.shape != sa.shape:
        raise ValueError(f"labels and scores differ in shape: {ya.shape} vs {sa.shape}")
    keep = ~(np.isnan(ya) | np.isnan(sa))
    return ya[keep], sa[keep]


def roc_auc(y: ArrayLike, s: ArrayLike) -> float:
    """Area under the ROC curve (ties counted half); NaN when one class is absent."""
    ya, sa = _arrays(y, s)
    pos, neg = sa[ya == 1], sa[ya == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    ranks_sorted = np.arange(1, len(allv) + 1, dtype="float64")
    # average ranks over ties
    _, start, counts = np.unique(allv, return_index=True, return_counts=True)
    for a, c in zip(start, counts):
        ranks_sorted[a:a + c] = a + (c + 1) / 2
    ranks[order] = ranks_sorted
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def accuracy(y: ArrayLike, pred: ArrayLike) -> float:
    """Share of equal binary decisions."""
    ya, pa = _arrays(y, pred)
    return float(np.mean(ya == pa)) if len(ya) else float("nan")


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's kappa of two binary raters."""
    aa, ba = _arrays(a, b)
    if not len(aa):
        return float("nan")
    po = np.mean(aa == ba)
    pa, pb = aa.mean(), ba.mean()
    pe = pa * pb + (1 - pa) * (1 - pb)
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def best_f1_threshold(y: ArrayLike, s: ArrayLike) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``score >= threshold``."""
    ya, sa = _arrays(y, s)
    order = np.argsort(-sa)
    ys, ss = ya[order], sa[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    total = ys.sum()
    if total == 0:
        return float("nan"), 0.0
    f1 = 2 * tp / (tp + fp + total)
    # only cut where the score changes
    last = np.r_[ss[1:] != ss[:-1], True]
    i = int(np.argmax(np.where(last, f1, -1)))
    return float(ss[i]), float(f1[i])
