"""Pure numpy metrics (no Spark): AUC (pooled and within groups), accuracy, Cohen's kappa, best-F1 threshold."""
from __future__ import annotations

from typing import Any

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


def grouped_auc(y: ArrayLike, s: ArrayLike, groups: ArrayLike) -> tuple[float, int]:
    """``(mean AUC within a group, groups counted)`` over the groups that hold both classes.

    Pooled AUC can be won by priors (which keyphrases or items tend to be relevant); within a keyphrase it asks
    which products of one query are relevant, within an item which of its keyphrases are — the view a
    recommender serves. NaN and 0 when no group has both classes."""
    ya, sa = np.asarray(y, dtype="float64"), np.asarray(s, dtype="float64")
    ga = np.asarray(groups)
    if not (ya.shape == sa.shape == ga.shape):
        raise ValueError(f"labels, scores and groups differ in shape: {ya.shape}, {sa.shape}, {ga.shape}")
    keep = ~(np.isnan(ya) | np.isnan(sa))
    ya, sa, ga = ya[keep], sa[keep], ga[keep]
    order = np.argsort(ga, kind="mergesort")
    ya, sa, ga = ya[order], sa[order], ga[order]
    cuts = np.flatnonzero(ga[1:] != ga[:-1]) + 1
    aucs = [roc_auc(yy, ss) for yy, ss in zip(np.split(ya, cuts), np.split(sa, cuts)) if 0 < yy.sum() < len(yy)]
    return (float(np.mean(aucs)) if aucs else float("nan")), len(aucs)


def ranking_aucs(y: ArrayLike, s: ArrayLike, item: ArrayLike | None = None, keyphrase: ArrayLike | None = None,
                 prefix: str = "auc") -> dict[str, float]:
    """``{prefix: pooled, prefix_within_keyphrase: .., prefix_within_item: .., *_groups: n}`` (the grouped ones
    only where the groups are given): the three views every quality figure is reported in."""
    out: dict[str, float] = {prefix: roc_auc(y, s)}
    for name, g in (("keyphrase", keyphrase), ("item", item)):
        if g is not None:
            out[f"{prefix}_within_{name}"], out[f"{prefix}_within_{name}_groups"] = grouped_auc(y, s, g)
    return out


def frame_aucs(df: Any, label: str, scores: ArrayLike, prefix: str) -> dict[str, float]:
    """:func:`ranking_aucs` of ``scores`` against ``df[label]`` for a frame of pairs: grouped by its ``item_id`` (when
    present) and its keyphrase (``keyphrase_id``, else the ``keyphrase`` text)."""
    kp = df["keyphrase_id"] if "keyphrase_id" in df else df["keyphrase"]
    item = df["item_id"].to_numpy() if "item_id" in df else None
    return ranking_aucs(df[label], scores, item=item, keyphrase=kp.to_numpy(), prefix=prefix)


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
