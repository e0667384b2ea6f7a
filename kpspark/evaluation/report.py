"""The offline evaluation report and the promotion gate (``jobs/calibrate_evaluate.py``, ``make report``).

Steps, all from the lakehouse and the registry:

1. **Evaluation frames** (Spark): the click positives (:func:`kpspark.rules.click_positives`: clicks, sales) and the
   recommendation segment (the ``pairs`` table with the search engine's pass/fail, ground truth and
   human labels where present), on the items every estimator held out for validation
   (``evaluation.holdout``), each sampled by a hash of the pair to ``evaluation.max_pairs``.
2. **Variants**: the Jaccard baseline and one cross-encoder per recipe in ``evaluation.recipes``
   (the registered version; the evaluation never trains: with ``train_missing`` the workflow trains the
   missing recipes before it, and a recipe whose data is unusable is listed as skipped with the reason). Scores come from the same
   ``OnnxCrossEncoderModel`` stage the jobs use.
3. **Table** (:mod:`kpspark.evaluation.offline`): per variant the 95%-click threshold, keyphrases
   kept, sales kept, search pass rate (relative to ``evaluation.baseline``, the paper's Table 1) and
   agreement / debiasing figures; retrieval figures (recall of clicks in the final recommendations,
   diversity, and the bi-encoder's recall per Matryoshka dim from its training run).
4. **Report**: ``report.html`` + PNG plots + ``table.csv`` + ``report.json`` under
   ``evaluation.output_dir``, logged to an MLflow run as artifacts.

:func:`run_gate` evaluates ``challenger`` against ``champion`` of the serving cross-encoder on the same
frames and moves ``champion`` only when no configured metric regresses (the version is tagged
``gate=passed|failed`` with the reasons either way).
"""
from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kpspark.config import Config
from kpspark.evaluation import offline
from kpspark.sparkutil import freeze

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


def _sample(df: "DataFrame", n: int) -> "DataFrame":
    from pyspark.sql import functions as F

    return df.orderBy(F.xxhash64("item_id", "keyphrase_id")).limit(n) if n > 0 else df


def eval_frames(spark: "SparkSession", cfg: Config) -> tuple["DataFrame", "DataFrame"]:
    """(clicks, segment) with the texts to score: ``item_id, keyphrase_id, keyphrase, category, title``
    plus ``clicks, sales`` (clicks) or ``search_pass, truth, human, clicked`` (segment)."""
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.rules import click_positives, keyphrase_texts
    from kpspark.sparkutil import validation_items

    def opt(name: str, col: str, alias: str) -> "DataFrame | None":
        if not tables.exists(spark, cfg, name):
            return None
        df = tables.read_table(spark, cfg, name).where(F.col(col).isNotNull())
        return df.groupBy("item_id", "keyphrase_id").agg(F.max(col).cast("int").alias(alias))

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    if cfg.evaluation.holdout:
        items = items.where(validation_items(seed=cfg.sample.seed))
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    if tables.exists(spark, cfg, "clicks"):  # the click log C: the click positives
        clicked = click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive) \
            .select("item_id", "keyphrase_id", "clicks", "sales")
    else:  # a human-rated dataset without a click log: agreement figures only
        clicked = spark.createDataFrame([], "item_id long, keyphrase_id long, clicks double, sales double")
    clicks = _sample(clicked.join(items.select("item_id"), "item_id"), cfg.evaluation.max_pairs) \
        .join(items, "item_id").join(kps, "keyphrase_id")
    seg = tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id").distinct()
    seg = _sample(seg.join(items.select("item_id"), "item_id"), cfg.evaluation.max_pairs)
    sr = opt("search_relevance", "label", "search_pass")
    seg = seg.join(sr, ["item_id", "keyphrase_id"], "left") if sr is not None else \
        seg.withColumn("search_pass", F.lit(None).cast("int"))
    for name, col, alias in (("ground_truth", "relevant", "truth"), ("human_labels", "label", "human")):
        ref = opt(name, col, alias)
        seg = seg.join(ref, ["item_id", "keyphrase_id"], "left") if ref is not None else \
            seg.withColumn(alias, F.lit(None).cast("int"))
    seg = seg.join(clicked.select("item_id", "keyphrase_id", F.lit(1).alias("clicked")),
                   ["item_id", "keyphrase_id"], "left").fillna({"clicked": 0})
    seg = seg.join(items, "item_id").join(kps, "keyphrase_id")
    return clicks, seg


def resolve_variants(cfg: Config) -> tuple[dict[str, str], dict[str, str]]:
    """``({recipe: models:/name/version}, {recipe: why skipped})`` for ``evaluation.recipes``: the registered
    versions (serving alias, else candidate alias). The evaluation never trains: the workflow trains missing
    recipes before it (:func:`kpspark.crossencoder.workflow.train_missing_recipes`)."""
    from kpspark.crossencoder.workflow import model_name_for
    from kpspark.registry import models

    uris, skipped = {}, {}
    for recipe in cfg.evaluation.recipes:
        name = model_name_for(cfg, recipe)
        version = None
        for alias in (cfg.models.serving_alias, cfg.models.candidate_alias):
            version = version or models.get_version(cfg, name, alias)
        if version is None:
            skipped[recipe] = f"no registered version of {name} (train it or set evaluation.train_missing)"
            continue
        uris[recipe] = f"models:/{name}/{version}"
    return uris, skipped


def score_frames(spark: "SparkSession", cfg: Config, clicks: "DataFrame", segment: "DataFrame",
                 uris: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames to pandas with one score column per variant (``jaccard`` + each URI's key)."""
    from pyspark.sql import functions as F

    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.evaluation.baselines import jaccard_scores

    keys = ["item_id", "keyphrase_id", "keyphrase", "category", "title"]
    pairs = clicks.select(*keys).unionByName(segment.select(*keys)).distinct()
    scored = pairs
    for name, uri in uris.items():
        scored = OnnxCrossEncoderModel(modelUri=uri, outputCol=f"score_{name}", precision=cfg.cross_encoder.precision,
                                       batchSize=cfg.batch.cross_encoder).transform(scored)
    scored = freeze(scored)  # score once, read twice
    cols = ["item_id", "keyphrase_id"] + [F.col(f"score_{n}") for n in uris]
    out = []
    for df in (clicks, segment):
        pdf = df.join(scored.select(*cols), ["item_id", "keyphrase_id"]).toPandas()
        pdf["score_jaccard"] = jaccard_scores(pdf["keyphrase"], pdf["title"]) if len(pdf) else []
        out.append(pdf)
    return out[0], out[1]


def variant_rows(clicks: pd.DataFrame, segment: pd.DataFrame, variants: list[str], target: float,
                 weighting: str) -> dict[str, dict[str, Any]]:
    """:func:`offline.evaluate_variant` for every ``score_<variant>`` column."""
    rows = {}
    for v in variants:
        c = clicks[["clicks", "sales"]].assign(score=clicks[f"score_{v}"])
        keep = ["search_pass", "truth", "human", "clicked", *(c for c in ("item_id", "keyphrase_id") if c in segment)]
        s = segment[keep].assign(score=segment[f"score_{v}"])  # the ids: AUC within an item and a keyphrase
        s = s.astype({"truth": "float64", "human": "float64"})
        rows[v] = offline.evaluate_variant(c, s, target=target, weighting=weighting)
    return rows


def retrieval_figures(spark: "SparkSession", cfg: Config) -> dict[str, Any]:
    """Recall of click positives in the final recommendations (after de-duplication and the relevance
    filter), diversity of the recommended set, and the bi-encoder's recall per Matryoshka dim from its
    training run. Empty when no recommendations exist yet."""
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.registry import models
    from kpspark.rules import click_positives

    out: dict[str, Any] = {}
    if not tables.exists(spark, cfg, "recommendations"):
        return out
    rec = tables.read_table(spark, cfg, "recommendations").select("item_id", "keyphrase_id")
    n_rec = rec.count()
    if n_rec == 0:
        return out
    recd_items = rec.select("item_id").distinct()
    clicks = click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive) \
        .select("item_id", "keyphrase_id")
    if tables.exists(spark, cfg, "keyphrase_map"):  # variants count as their canonical keyphrase
        kmap = tables.read_table(spark, cfg, "keyphrase_map").select("keyphrase_id", "canonical_id")
        clicks = clicks.join(kmap, "keyphrase_id").select("item_id", F.col("canonical_id").alias("keyphrase_id"))
        canon = kmap.where("keyphrase_id = canonical_id").count()
    else:
        canon = tables.read_table(spark, cfg, "keyphrases").count()
    clicks = clicks.distinct().join(recd_items, "item_id")  # items the job recommended for
    n_click = clicks.count()
    hit = clicks.join(rec, ["item_id", "keyphrase_id"]).count()
    per_kp = rec.groupBy("keyphrase_id").count().toPandas()["count"].sort_values(ascending=False).to_numpy()
    top = max(1, int(np.ceil(0.01 * len(per_kp))))
    out.update({
        "recommendations": n_rec, "items_with_recommendations": recd_items.count(),
        "recall_clicks_in_recommendations": hit / n_click if n_click else float("nan"),
        "distinct_keyphrases_recommended": int(len(per_kp)),
        "keyphrase_coverage": len(per_kp) / canon if canon else float("nan"),
        "top1pct_keyphrase_share": float(per_kp[:top].sum() / per_kp.sum()),
    })
    version = models.get_version(cfg, cfg.models.bi_encoder, cfg.models.serving_alias)
    if version is not None:
        client = models.client(cfg)
        mv = client.get_model_version(cfg.models.bi_encoder, version)
        run_id = mv.tags.get("run_id") or mv.run_id
        if run_id:
            m = client.get_run(run_id).data.metrics
            out["bi_encoder_recall"] = {k: v for k, v in sorted(m.items()) if k.startswith("be_recall_")}
            out["bi_encoder_version"] = version
    return out


def judged_precision(spark: "SparkSession", cfg: Config, n: int) -> dict[str, Any]:
    """LLM-judged precision of ``n`` final recommendations next to ``n`` random candidate pairs (the same
    judge, prompt ``evaluation.judge_prompt``, so the difference is what the pipeline adds)."""
    import dataclasses

    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.labeling.workflow import build_judge, candidate_pairs

    if n <= 0 or not tables.exists(spark, cfg, "recommendations"):
        return {}
    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    recs = tables.read_table(spark, cfg, "recommendations").select("item_id", "keyphrase_id", "keyphrase")
    recs = recs.orderBy(F.xxhash64("item_id", "keyphrase_id", F.lit(1))).limit(n).join(items, "item_id")
    cands = candidate_pairs(spark, cfg).orderBy(F.xxhash64("item_id", "keyphrase_id", F.lit(2))).limit(n)
    model = cfg.evaluation.judge_model or cfg.llm.model
    judge = build_judge(dataclasses.replace(cfg, llm=dataclasses.replace(
        cfg.llm, model=cfg.judge.base if model == "finetuned" else model, prompt_version=cfg.evaluation.judge_prompt,
        prompt_path="")))
    out: dict[str, Any] = {"judge": judge.judgeModelName(), "judge_prompt": cfg.evaluation.judge_prompt}
    cols = ("item_id", "keyphrase_id", "keyphrase", "title", "category")
    both = recs.select(*cols, F.lit("recommendations").alias("_set")).unionByName(
        cands.select(*cols, F.lit("candidates").alias("_set")))
    # a few pairs: one task, so one Python worker imports and loads the judge (not one per set, side by side)
    judged = judge.transform(both.coalesce(1)).toPandas()
    for name in ("recommendations", "candidates"):
        got = judged[judged["_set"] == name]
        ok = got[got["error"].isna()]
        out[f"llm_precision_{name}"] = float(ok["label"].mean()) if len(ok) else float("nan")
        out[f"llm_mean_p_yes_{name}"] = float(ok["p_yes"].mean()) if len(ok) else float("nan")
        out[f"llm_judged_{name}"] = int(len(ok))
        out[f"llm_errors_{name}"] = int(len(got) - len(ok))
    return out


def judge_comparison(cfg: Config) -> list[dict[str, Any]]:
    """The general vs the fine-tuned judge (the paper's comparison: κ with humans, click concordance), from the
    training run of the fine-tuned judge at the serving alias, measured there on held-out items; [] without one."""
    from kpspark.registry import models

    version = models.get_version(cfg, cfg.models.judge, cfg.models.serving_alias)
    if version is None:
        return []
    mc = models.client(cfg)
    run_id = mc.get_model_version(cfg.models.judge, version).tags.get("run_id")
    metrics = mc.get_run(run_id).data.metrics if run_id else {}
    keys = ("kappa", "accuracy", "auc", "auc_within_keyphrase", "auc_within_item", "yes_rate", "click_concordance")
    return [{"judge": f"{name} ({cfg.judge.base})" if name == "general" else f"{name} ({cfg.models.judge} v{version})",
             **{k: metrics.get(f"{name}_{k}", float("nan")) for k in keys},
             "held_out_pairs": metrics.get("eval_pairs", float("nan"))} for name in ("general", "finetuned")]


# ----------------------------------------------------------------------------------------------- plots + HTML

def _plots(clicks: pd.DataFrame, segment: pd.DataFrame, rows: dict[str, dict[str, Any]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    variants = list(rows)
    ts = np.linspace(0, 1, 101)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for v in variants:
        c = clicks[["clicks", "sales"]].assign(score=clicks[f"score_{v}"])
        s = segment[["search_pass"]].assign(score=segment[f"score_{v}"])
        cur = offline.curve(c, s, ts)
        line, = axes[0].plot(cur["threshold"], cur["click_retention"], label=v)
        axes[0].axvline(rows[v]["threshold"], color=line.get_color(), ls=":", lw=1)
        axes[1].plot(cur["threshold"], cur["keyphrases_kept"], label=v)
        axes[2].plot(cur["keyphrases_kept"], cur["click_retention"], label=v)
    axes[0].axhline(0.95, color="grey", ls="--", lw=1)
    axes[0].set(xlabel="threshold", ylabel="click retention", title="clicks kept (dotted: 95% threshold)")
    axes[1].set(xlabel="threshold", ylabel="share of segment kept", title="keyphrases kept")
    axes[2].set(xlabel="share of segment kept", ylabel="click retention", title="retention vs reduction")
    axes[2].axhline(0.95, color="grey", ls="--", lw=1)
    for a in axes:
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "threshold_curves.png", dpi=110)
    plt.close(fig)
    files.append("threshold_curves.png")

    n = len(variants)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    groups = {"clicked": clicks, "search pass": segment[segment["search_pass"] == 1],
              "search fail": segment[segment["search_pass"] == 0]}
    for ax, v in zip(axes[0], variants):
        for label, df in groups.items():
            vals = df[f"score_{v}"].dropna().to_numpy()
            if len(vals):
                ax.hist(np.clip(vals, 0, 1), bins=bins, alpha=0.5, density=True, label=label)
        ax.axvline(rows[v]["threshold"], color="k", ls=":", lw=1)
        ax.set(title=v, xlabel="score")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "score_histograms.png", dpi=110)
    plt.close(fig)
    files.append("score_histograms.png")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    table = pd.DataFrame(rows).T
    x = np.arange(n)
    for i, (col, label) in enumerate((("keyphrases_kept_share", "keyphrases kept"), ("sales_kept", "sales kept"),
                                      ("search_pass_rate", "search pass rate"))):
        ax.bar(x + (i - 1) * 0.27, table[col].astype(float), width=0.27, label=label)
    ax.set_xticks(x, variants, rotation=15)
    ax.set(ylim=(0, 1.05), title="at each variant's 95%-click threshold")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: bars reach the top
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "table1_bars.png", dpi=110)
    plt.close(fig)
    files.append("table1_bars.png")
    return files


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4f}"
    return html.escape(str(v))


def _html_table(df: pd.DataFrame, pct: tuple[str, ...] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in df.columns:
            v = r[c]
            cells.append(f"<td>{'' if pd.isna(v) else f'{v:+.0%}'}</td>" if c in pct else f"<td>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(out: Path, table: pd.DataFrame, baseline: str, skipped: dict[str, str], retrieval: dict[str, Any],
               plots: list[str], meta: dict[str, Any], judges: list[dict[str, Any]] | None = None) -> Path:
    """``report.html``: the paper's table, agreement/debiasing, retrieval figures, plots."""
    t1 = table[["variant", "d_keyphrases", "d_sales", "d_search_pass_rate", "threshold"]].rename(columns={
        "d_keyphrases": "# keyphrases", "d_sales": "sales", "d_search_pass_rate": "search pass rate"})
    absolute = [c for c in ("variant", "threshold", "threshold_rule", "clicks_kept", "sales_kept", "keyphrases_kept",
                            "keyphrases_kept_share", "search_pass_rate", "auc_truth", "kappa_truth",
                            "accuracy_truth", "auc_human", "kappa_human", "accuracy_human",
                            "unclicked_relevant_kept", "irrelevant_kept", "click_concordance") if c in table]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kpspark offline evaluation</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1200px} table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} th{background:#f3f3f3}",
        "td:first-child{text-align:left} img{max-width:100%} .note{color:#555}</style></head><body>",
        "<h1>kpspark offline evaluation</h1>",
        f"<p class='note'>{html.escape(json.dumps(meta))}</p>",
        f"<h2>Table 1 (relative to <code>{html.escape(baseline)}</code>)</h2>",
        "<p class='note'>Each variant's threshold keeps 95% of clicks on the click log; # keyphrases and search "
        "pass rate are measured on the recommendation segment, sales on the click log (TJ, section 4.1).</p>",
        _html_table(t1, pct=("# keyphrases", "sales", "search pass rate")),
        "<h2>Absolute figures, agreement and debiasing</h2>",
        "<p class='note'>truth = the sample generator's ground truth; human = human labels. "
        "unclicked_relevant_kept: share of truly relevant segment pairs that clicks never saw which the filter "
        "keeps (the middleman-bias story); irrelevant_kept: share of truly irrelevant pairs kept.</p>",
        _html_table(table[absolute]),
    ]
    if skipped:
        parts.append("<h3>Recipes not evaluated</h3><ul>" + "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items()) + "</ul>")
    if judges:
        parts.append("<h2>LLM judge: general vs fine-tuned</h2><p class='note'>Against human labels on pairs of "
                     "held-out items (the judge trained on the other items' labels); click_concordance: the share "
                     "of clicked held-out pairs called relevant. The paper (Mixtral 8x7B): κ 0.258 general, 0.724 "
                     "fine-tuned.</p>" + _html_table(pd.DataFrame(judges)))
    if retrieval:
        flat = {k: v for k, v in retrieval.items() if not isinstance(v, dict)}
        parts.append("<h2>Retrieval</h2>" + _html_table(pd.DataFrame([flat])))
        be = retrieval.get("bi_encoder_recall") or {}
        if be:
            parts.append("<h3>Bi-encoder recall per Matryoshka dim (validation items, from its training run)</h3>"
                         + _html_table(pd.DataFrame([{"metric": k, "value": v} for k, v in be.items()])))
    parts += [f"<h2>{html.escape(p.rsplit('.', 1)[0].replace('_', ' '))}</h2><img src='{p}'>" for p in plots]
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- workflows

def run_evaluate(cfg: Config, spark: "SparkSession", output_dir: str | None = None,
                 extra_uris: dict[str, str] | None = None, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Score every registered variant, write and log the report; returns the table rows and file paths.
    ``skipped``: recipes the caller could not train, with the reason (they are listed in the report)."""
    import mlflow

    from kpspark.registry import tracking

    t0 = time.time()
    ev = cfg.evaluation
    uris, missing = resolve_variants(cfg)
    missing.update(skipped or {})
    skipped = missing
    uris.update(extra_uris or {})
    clicks, segment = eval_frames(spark, cfg)
    cp, sp = score_frames(spark, cfg, clicks, segment, uris)
    if not len(sp):
        raise ValueError(f"nothing to evaluate: no segment pair among the held-out items ({len(cp)} click pairs)")
    variants = ["jaccard", *uris]
    rows = variant_rows(cp, sp, variants, cfg.retrieval.click_retention, ev.weighting)
    baseline = ev.baseline if ev.baseline in rows else "jaccard"
    if baseline != ev.baseline:
        skipped.setdefault(ev.baseline, "baseline recipe unavailable")
        logger.warning("baseline %r was not evaluated; the table is relative to jaccard", ev.baseline)
    table = offline.relative_table(rows, baseline)
    retrieval = retrieval_figures(spark, cfg)
    retrieval.update(judged_precision(spark, cfg, ev.judge_sample))
    out = Path(output_dir or ev.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(cp, sp, rows, out)
    meta = {"click_pairs": len(cp), "segment_pairs": len(sp), "target_retention": cfg.retrieval.click_retention,
            "weighting": ev.weighting, "models": uris}
    judges = judge_comparison(cfg)
    page = write_html(out, table, baseline, skipped, retrieval, plots, meta, judges)
    table.to_csv(out / "table.csv", index=False)
    result = {"baseline": baseline, "rows": rows, "skipped": skipped, "models": uris, "retrieval": retrieval,
              "judges": judges, "report": str(page), "plots": [str(out / p) for p in plots]}
    (out / "report.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    with tracking.start_run(cfg, "offline-evaluation", spark=spark,
                            tables=["clicks", "pairs", "search_relevance", "ground_truth", "human_labels",
                                    "recommendations"], tags={"kind": "evaluation"}) as run:
        mlflow.log_params({"baseline": baseline, "weighting": ev.weighting, "max_pairs": ev.max_pairs,
                           **{f"model.{k}": v for k, v in uris.items()}})
        mlflow.log_metrics({f"{v}.{k}": float(x) for v, r in rows.items() for k, x in r.items()
                            if isinstance(x, (int, float)) and not np.isnan(float(x))})
        mlflow.log_artifacts(str(out), artifact_path="report")
    result.update({"run_id": run.info.run_id, "seconds": round(time.time() - t0, 1)})
    return result


def run_gate(cfg: Config, spark: "SparkSession", promote: bool = True) -> dict[str, Any]:
    """Compare ``<cross_encoder>@challenger`` with ``@champion`` on the evaluation frames; promote the
    challenger only if :func:`offline.gate` passes. Tags the challenger version with the decision."""
    from kpspark.registry import models

    name = cfg.models.cross_encoder
    champ = models.get_version(cfg, name, cfg.models.serving_alias)
    chall = models.get_version(cfg, name, cfg.models.candidate_alias)
    if chall is None:
        return {"decision": "nothing_to_compare", "reasons": [f"{name}@{cfg.models.candidate_alias} is not set"]}
    if champ is None or champ == chall:
        passed, reasons, rows = True, ["no other champion: the challenger is the only model"], {}
    else:
        uris = {"champion": f"models:/{name}/{champ}", "challenger": f"models:/{name}/{chall}"}
        clicks, segment = eval_frames(spark, cfg)
        cp, sp = score_frames(spark, cfg, clicks, segment, uris)
        rows = variant_rows(cp, sp, list(uris), cfg.retrieval.click_retention, cfg.evaluation.weighting)
        passed, reasons = offline.gate(rows["challenger"], rows["champion"], cfg.evaluation.gate)
    client = models.client(cfg)
    client.set_model_version_tag(name, chall, "gate", "passed" if passed else "failed")
    client.set_model_version_tag(name, chall, "gate_reasons", "; ".join(reasons)[:4000])
    promoted = None
    if passed and promote:
        promoted = models.promote(cfg, name, cfg.models.candidate_alias, cfg.models.serving_alias)
    logger.info("gate for %s v%s vs v%s: %s (%s)", name, chall, champ, "passed" if passed else "failed", reasons)
    return {"decision": "promoted" if promoted else ("passed" if passed else "refused"), "challenger": chall,
            "champion_before": champ, "champion_after": models.get_version(cfg, name, cfg.models.serving_alias),
            "reasons": reasons, "rows": rows}
