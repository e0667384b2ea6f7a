"""The paper's offline evaluation (TJ Table 1) as pure pandas/numpy: no Spark, no models.

For each model variant ``M`` with scores on two pair sets:

* the **click log** C (pairs with clicks ``c`` and sales ``v``): the threshold
  ``tau_M = max{t : sum_{s>=t} c >= target * sum c}`` (click-weighted, "95% of clicks"; ``weighting="pairs"``
  counts clicked pairs instead), and the **sales kept** ``S_M = sum_{s>=tau} v / sum v``;
* the **recommendation segment** R (candidate pairs with the search engine's pass/fail): the
  **keyphrases kept** ``N_M = |{s >= tau}|`` and the **search pass rate** ``P_M`` among them.

:func:`relative_table` turns the rows into the paper's columns, relative to a baseline row
(``N_M / N_base - 1`` and so on; the baseline row reads 0%). Agreement figures (AUC and Cohen's
kappa vs human labels and vs the generator's ground truth, click concordance) and the
**debiasing** figure (share of truly relevant segment pairs *without clicks* that the filter
keeps: relevance the click log never saw) come with each row.

>>> import numpy as np, pandas as pd
>>> clicks = pd.DataFrame({"score": [0.9, 0.8, 0.2], "clicks": [10, 9, 1], "sales": [100.0, 0, 5]})
>>> seg = pd.DataFrame({"score": [0.9, 0.1, 0.85], "search_pass": [1, 0, 1]})
>>> row = evaluate_variant(clicks, seg, target=0.95)
>>> row["threshold"], row["keyphrases_kept"], row["search_pass_rate"]
(0.8, 2, 1.0)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from kpspark.evaluation import metrics
from kpspark.rules import retention_threshold

#: Columns of the paper's Table 1, in order, and the row figures they are relative changes of.
TABLE1 = {"keyphrases": "keyphrases_kept", "sales": "sales_kept", "search_pass_rate": "search_pass_rate"}


def evaluate_variant(clicks: pd.DataFrame, segment: pd.DataFrame, target: float = 0.95,
                     weighting: str = "clicks") -> dict[str, Any]:
    """One row of the offline table.

    ``clicks``: ``score, clicks, sales`` per clicked pair. ``segment``: ``score, search_pass`` and,
    where known, ``truth`` (0/1), ``human`` (0/1) and ``clicked`` (0/1). Rows with a null score count
    as not kept (a model that cannot judge a pair does not recommend it).
    """
    if weighting not in ("clicks", "pairs"):
        raise ValueError(f"weighting must be clicks or pairs, got {weighting!r}")
    cs = clicks["score"].to_numpy("float64")
    rule = f"{target:.0%} of {weighting}"
    if np.isnan(cs).all():  # no click log (e.g. a human-rated dataset): the labels' best-F1 point instead
        ref = next((c for c in ("truth", "human") if c in segment and segment[c].notna().any()), None)
        if ref is None:
            raise ValueError("no scored clicks and no labels: nothing to set a threshold on")
        lab = segment[ref].to_numpy("float64")
        tau, _ = metrics.best_f1_threshold(lab, segment["score"].to_numpy("float64"))
        rule = f"best F1 vs {ref} (no clicks; optimistic)"
    else:
        tau = retention_threshold(cs, clicks["clicks"].to_numpy("float64") if weighting == "clicks" else None,
                                 target)
    kept_c = np.nan_to_num(cs, nan=-np.inf) >= tau
    sales = clicks["sales"].fillna(0).to_numpy("float64")
    clk = clicks["clicks"].fillna(0).to_numpy("float64")
    ss = np.nan_to_num(segment["score"].to_numpy("float64"), nan=-np.inf)
    kept = ss >= tau
    passed = segment["search_pass"].fillna(0).to_numpy("int64") == 1
    row: dict[str, Any] = {
        "threshold": tau, "threshold_rule": rule,
        "clicks_kept": float(clk[kept_c].sum() / clk.sum()) if clk.sum() else float("nan"),
        "sales_kept": float(sales[kept_c].sum() / sales.sum()) if sales.sum() else float("nan"),
        "sales_kept_abs": float(sales[kept_c].sum()),
        "keyphrases_kept": int(kept.sum()),
        "keyphrases_kept_share": float(kept.mean()) if len(kept) else float("nan"),
        "search_pass_rate": float(passed[kept].mean()) if kept.any() and segment["search_pass"].notna().any()
        else float("nan"),
        "segment_pairs": int(len(segment)),
        "click_pairs": int(len(clicks)),
    }
    raw = segment["score"].to_numpy("float64")
    for col in ("truth", "human"):
        if col in segment and segment[col].notna().any():
            lab = segment[col].to_numpy("float64")
            known = ~np.isnan(lab)
            row.update(metrics.ranking_aucs(
                lab[known], raw[known], prefix=f"auc_{col}",
                **{k: segment[f"{k}_id"].to_numpy()[known] for k in ("item", "keyphrase") if f"{k}_id" in segment}))
            row[f"kappa_{col}"] = metrics.cohen_kappa(lab[known], kept[known].astype("float64"))
            row[f"accuracy_{col}"] = metrics.accuracy(lab[known], kept[known].astype("float64"))
            row[f"{col}_pairs"] = int(known.sum())
    if "truth" in segment and "clicked" in segment:
        truth = segment["truth"].to_numpy("float64") == 1
        unseen = truth & (segment["clicked"].fillna(0).to_numpy("int64") == 0)
        row["unclicked_relevant_kept"] = float(kept[unseen].mean()) if unseen.any() else float("nan")
        row["irrelevant_kept"] = float(kept[segment["truth"].to_numpy("float64") == 0].mean()) \
            if (segment["truth"] == 0).any() else float("nan")
    # concordance with click positives at the model's own decision point (score >= 0.5)
    row["click_concordance"] = float(np.mean(np.nan_to_num(cs, nan=-np.inf) >= 0.5)) if len(cs) and \
        not np.isnan(cs).all() else float("nan")
    return row


def relative_table(rows: Mapping[str, Mapping[str, Any]], baseline: str) -> pd.DataFrame:
    """One line per variant: the paper's relative columns (baseline = 0%) and the absolute figures."""
    if baseline not in rows:
        raise ValueError(f"baseline {baseline!r} is not among the evaluated variants {sorted(rows)}")
    base = rows[baseline]
    out = []
    for name, r in rows.items():
        line: dict[str, Any] = {"variant": name}
        for col, key in TABLE1.items():
            b, v = base.get(key), r.get(key)
            line[f"d_{col}"] = (float(v) / float(b) - 1.0) if b and v is not None and not np.isnan(float(b)) \
                else float("nan")
        line.update({k: v for k, v in r.items() if not isinstance(v, (dict, list))})
        out.append(line)
    return pd.DataFrame(out)


def gate(candidate: Mapping[str, Any], champion: Mapping[str, Any], max_drop: Mapping[str, float]
         ) -> tuple[bool, list[str]]:
    """May ``candidate`` replace ``champion``? For each configured metric the candidate may fall at
    most ``max_drop[metric]`` below the champion. A metric missing (or NaN) on either side cannot be
    compared and is reported; with no comparable metric at all the gate refuses.

    >>> gate({"auc": 0.80}, {"auc": 0.82}, {"auc": 0.01})
    (False, ['auc: 0.8000 < champion 0.8200 - 0.0100'])
    """
    reasons, compared = [], 0
    for m, drop in max_drop.items():
        c, p = candidate.get(m), champion.get(m)
        if c is None or p is None or np.isnan(float(c)) or np.isnan(float(p)):
            reasons.append(f"{m}: not comparable (candidate {c}, champion {p})")
            continue
        compared += 1
        if float(c) < float(p) - float(drop):
            reasons.append(f"{m}: {float(c):.4f} < champion {float(p):.4f} - {float(drop):.4f}")
    failed = [r for r in reasons if "not comparable" not in r]
    if compared == 0:
        return False, reasons + ["no gate metric could be compared"]
    return not failed, failed if failed else reasons


def curve(clicks: pd.DataFrame, segment: pd.DataFrame, thresholds: np.ndarray) -> pd.DataFrame:
    """Click retention, sales kept and keyphrases kept as the threshold moves (for the report's plot)."""
    cs = np.nan_to_num(clicks["score"].to_numpy("float64"), nan=-np.inf)
    clk = clicks["clicks"].fillna(0).to_numpy("float64")
    sales = clicks["sales"].fillna(0).to_numpy("float64")
    ss = np.nan_to_num(segment["score"].to_numpy("float64"), nan=-np.inf)
    rows = []
    for t in thresholds:
        kc, ks = cs >= t, ss >= t
        rows.append({"threshold": float(t),
                     "click_retention": clk[kc].sum() / clk.sum() if clk.sum() else np.nan,
                     "sales_kept": sales[kc].sum() / sales.sum() if sales.sum() else np.nan,
                     "keyphrases_kept": ks.mean() if len(ks) else np.nan})
    return pd.DataFrame(rows)
