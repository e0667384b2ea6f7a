"""Bi-encoder workflows: build the multi-task training rows from the tables, train a recipe (log +
register as ``challenger``), the ablation table across recipes, and embedding items/keyphrases
into Delta with the model an alias points at."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpspark.config import Config
from kpspark.sparkutil import scratch_dir

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)


def model_name_for(cfg: Config, recipe: str) -> str:
    """``models.bi_encoder`` for the configured recipe, a variant name for the others
    (:func:`kpspark.registry.models.variant_name`)."""
    from kpspark.registry.models import variant_name

    return variant_name(cfg.models.bi_encoder, recipe, cfg.bi_encoder.recipe)


def task_rows(spark: "SparkSession", cfg: Config, tasks: tuple[str, ...], ce_model: str | None = None) -> "DataFrame":
    """Rows ``task, item_id, keyphrase_id, title, category, keyphrase, label`` for the tasks:

    * click: the click positives (:func:`kpspark.rules.click_positives`), label 1.0;
    * search: search-relevance 0/1 labels;
    * distill: the teacher's scores from ``pair_scores`` (model ``ce_model``, default
      ``bi_encoder.teacher`` or the configured cross-encoder name), label = score.

    At most ``bi_encoder.max_pairs_per_task`` rows per task, chosen by a hash of the pair.
    """
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.rules import click_positives, keyphrase_texts

    parts = []
    if "click" in tasks:
        parts.append(click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive)
                     .select(F.lit("click").alias("task"), "item_id", "keyphrase_id", F.lit(1.0).alias("label")))
    if "search" in tasks:
        parts.append(tables.read_table(spark, cfg, "search_relevance").where(F.col("label").isNotNull())
                     .select(F.lit("search").alias("task"), "item_id", "keyphrase_id",
                             F.col("label").cast("double").alias("label")))
    if "distill" in tasks:
        name = ce_model or cfg.bi_encoder.teacher or cfg.models.cross_encoder
        ps = tables.read_table(spark, cfg, "pair_scores").where((F.col("model_name") == name)
                                                               & F.col("score").isNotNull())
        if ps.limit(1).count() == 0:
            raise ValueError(f"the distill task needs cross-encoder scores of {name!r} in pair_scores: run "
                             "jobs/score_pairs.py first (or train recipe click_search)")
        parts.append(ps.select(F.lit("distill").alias("task"), "item_id", "keyphrase_id",
                               F.col("score").alias("label")))
    if not parts:
        raise ValueError(f"no known task in {list(tasks)}")
    rows = parts[0]
    for p in parts[1:]:
        rows = rows.unionByName(p)
    n = cfg.bi_encoder.max_pairs_per_task
    from pyspark.sql import Window

    w = Window.partitionBy("task").orderBy(F.xxhash64("item_id", "keyphrase_id"))
    rows = rows.withColumn("_r", F.row_number().over(w)).where(F.col("_r") <= n).drop("_r")
    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    return rows.join(items, "item_id").join(kps, "keyphrase_id")


def evaluate_recall(spark: "SparkSession", cfg: Config, export_dir: str, item_ids: list[int],
                    max_keyphrases: int = 50_000) -> list[dict[str, Any]]:
    """Recall@k per Matryoshka dim on ``item_ids`` (the validation items): of their click positives and
    of their cross-encoder-relevant keyphrases (score >= ``bi_encoder.relevant_score``), exact search
    over all keyphrases (up to ``max_keyphrases``) with the int8 export."""
    import numpy as np
    from pyspark.sql import functions as F

    from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder
    from kpspark.biencoder.text import item_texts
    from kpspark.artifacts import META_FILE, model_file
    from kpspark.data import tables
    from kpspark.evaluation.retrieval import recall_by_dim
    from kpspark.rules import KEYPHRASE, click_positives, keyphrase_texts

    be = cfg.bi_encoder
    meta = json.loads((Path(export_dir) / META_FILE).read_text())
    emb = OnnxTextEmbedder(model_file(Path(export_dir), meta, be.precision), export_dir, meta["max_length"], threads=0)
    ids = spark.createDataFrame([(int(i),) for i in item_ids], "item_id long")
    items = tables.read_table(spark, cfg, "items").join(ids, "item_id").select("item_id", "title", "category") \
        .toPandas()
    kps = (keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
           .orderBy(F.xxhash64("keyphrase_id")).limit(max_keyphrases).toPandas())
    if items.empty or kps.empty:
        return []
    kp_pos = {int(k): i for i, k in enumerate(kps["keyphrase_id"])}
    item_pos = {int(k): i for i, k in enumerate(items["item_id"])}
    item_emb = emb.embed(item_texts(items["title"], items["category"]))
    kp_emb = emb.embed(kps[KEYPHRASE].tolist())

    def rel_sets(df: "DataFrame") -> list[set[int]]:
        sets: list[set[int]] = [set() for _ in range(len(items))]
        for r in df.join(ids, "item_id").select("item_id", "keyphrase_id").distinct().toLocalIterator():
            if int(r["keyphrase_id"]) in kp_pos and int(r["item_id"]) in item_pos:
                sets[item_pos[int(r["item_id"])]].add(kp_pos[int(r["keyphrase_id"])])
        return sets

    relevant = {"click": rel_sets(click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive))}
    teacher = be.teacher or cfg.models.cross_encoder
    ps = tables.read_table(spark, cfg, "pair_scores").where((F.col("model_name") == teacher)
                                                           & (F.col("score") >= be.relevant_score))
    relevant["cross_encoder"] = rel_sets(ps)
    dims = sorted({int(d) for d in meta["dims"]}, reverse=True)
    rows = recall_by_dim(item_emb, kp_emb, relevant, dims, be.recall_k)
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]


def run_train_bi_encoder(cfg: Config, spark: "SparkSession", recipe: str | None = None,
                         output_dir: str | None = None) -> dict[str, Any]:
    """Train ``recipe`` (default ``bi_encoder.recipe``), export with parity, evaluate recall@k per dim,
    log the run (recipe, rows per task, losses, parity, recall table) and register the pyfunc with
    the candidate alias (the first version of a name also becomes ``champion``)."""
    import mlflow

    from kpspark.biencoder.estimator import BiEncoderEstimator
    from kpspark.biencoder.train import RECIPES
    from kpspark.config import BiEncoderTraining
    from kpspark.params import hyperparam_kwargs
    from kpspark.registry import models, tracking
    from kpspark.registry.pyfunc import log_bi_encoder

    be = cfg.bi_encoder
    recipe = recipe or be.recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown bi-encoder recipe {recipe!r}; known: {sorted(RECIPES)}")
    tasks = RECIPES[recipe]
    t0 = time.time()
    rows = task_rows(spark, cfg, tasks).cache()
    counts = {r["task"]: int(r["count"]) for r in rows.groupBy("task").count().collect()}
    out_dir = Path(output_dir or scratch_dir(f"kpspark-be-{recipe}-"))  # the registry keeps the model
    est = BiEncoderEstimator(outputDir=str(out_dir), logToRun=False, tasks=list(tasks), seed=cfg.sample.seed,
                             taskWeights=[float(be.weights.get(t, 1.0)) for t in tasks],
                             **hyperparam_kwargs(be, BiEncoderTraining))
    name = model_name_for(cfg, recipe)
    with tracking.start_run(cfg, f"train-bi-encoder-{recipe}", spark=spark,
                            tables=["clicks", "search_relevance", "pair_scores", "items", "keyphrases"],
                            tags={"kind": "bi_encoder", "recipe": recipe}) as run:
        mlflow.log_params({"be_recipe": recipe, "be_tasks": ",".join(tasks),
                           **{f"be_rows.{k}": v for k, v in counts.items()}})
        model = est.fit(rows)
        summary = model.summary  # type: ignore[attr-defined]
        export_dir = model.getOrDefault(model.modelUri)
        recall = evaluate_recall(spark, cfg, export_dir, sorted({int(i) for i in summary.validation["item_id"]}))
        figures: dict[str, float] = {"be_train_loss": summary.figures["train_loss"], "be_steps": summary.figures["steps"],
                                     "be_validation_rows": summary.validation_rows,
                                     **{f"be_{k}": v for k, v in summary.figures.get("eval", {}).items()},
                                     **{f"be_parity_{k}": summary.parity[k] for k in
                                        ("fp32_max_abs_diff", "int8_mean_cosine", "int8_min_cosine")}}
        for r in recall:
            for k in be.recall_k:
                v = r.get(f"recall@{k}")
                if v is not None:
                    figures[f"be_recall_{r['relevant']}_at{k}_d{r['dim']}"] = v
        mlflow.log_metrics({k: float(v) for k, v in figures.items()})
        mlflow.log_dict({"recipe": recipe, "rows": counts, "recall": recall}, "bi_encoder_recall.json")
        info = log_bi_encoder(export_dir, precision=be.precision)
        version, promoted = models.register_candidate(cfg, info.model_uri, name,
                                                      tags={"recipe": recipe, "run_id": run.info.run_id})
    rows.unpersist()
    return {"recipe": recipe, "run_id": run.info.run_id, "model": name, "version": version, "promoted": promoted,
            "rows": counts,
            "recall": recall, "export_dir": export_dir, "output_dir": str(out_dir), "seconds": round(time.time() - t0, 1), **figures}


def ablation_table(results: list[dict[str, Any]], k: int = 100) -> str:
    """Markdown table: one row per recipe x dim, recall@k of clicks and of CE-relevant keyphrases."""
    lines = [f"| recipe | dim | recall@{k} clicks | recall@{k} CE-relevant |", "|---|---|---|---|"]
    for res in results:
        by = {}
        for r in res["recall"]:
            by.setdefault(r["dim"], {})[r["relevant"]] = r.get(f"recall@{k}")
        for d in sorted(by, reverse=True):
            c, e = by[d].get("click"), by[d].get("cross_encoder")
            lines.append(f"| {res['recipe']} | {d} | {'' if c is None else f'{c:.3f}'} | "
                         f"{'' if e is None else f'{e:.3f}'} |")
    return "\n".join(lines)


def run_bi_encoder_ablation(cfg: Config, spark: "SparkSession", recipes: list[str] | None = None,
                            output_root: str | None = None) -> dict[str, Any]:
    """Train each recipe (click only, +search, +distill) and log the recall-per-dim table to MLflow
    (``output_root``: keep each recipe's model and export under ``<output_root>/<recipe>``; default a scratch
    folder removed when the process exits — the registry holds the models)."""
    import mlflow

    from kpspark.biencoder.train import RECIPES
    from kpspark.registry import tracking

    recipes = recipes or list(RECIPES)
    results = [run_train_bi_encoder(cfg, spark, r, output_dir=str(Path(output_root) / r) if output_root else None)
               for r in recipes]
    k = max(cfg.bi_encoder.recall_k)
    table = ablation_table(results, k)
    with tracking.start_run(cfg, "bi-encoder-ablation", spark=spark, tags={"kind": "bi_encoder_ablation"}) as run:
        mlflow.log_text(table, "ablation.md")
        mlflow.log_dict({r["recipe"]: {"recall": r["recall"], "rows": r["rows"], "version": r["version"]}
                         for r in results}, "ablation.json")
    return {"run_id": run.info.run_id, "table": table, "results": results}


def run_embed(cfg: Config, spark: "SparkSession", alias: str | None = None, items: "DataFrame | None" = None,
              keyphrases: "DataFrame | None" = None, which: tuple[str, ...] = ("items", "keyphrases")
              ) -> dict[str, Any]:
    """Embed items (``title [SEP] category``) and keyphrases at ``bi_encoder.dim`` with
    ``models:/<bi_encoder>@<alias>`` and MERGE them into ``item_embeddings`` / ``keyphrase_embeddings``
    (``items`` / ``keyphrases``: the rows to embed, default the whole tables; ``which``: the sides to do)."""
    from pyspark.sql import functions as F

    from kpspark.biencoder.embedder import TextEmbedder
    from kpspark.data import tables
    from kpspark.registry import models, tracking
    from kpspark.rules import KEYPHRASE, keyphrase_texts

    be = cfg.bi_encoder
    name = cfg.models.bi_encoder
    alias = alias or cfg.models.serving_alias
    version = models.get_version(cfg, name, alias)
    if version is None:
        raise ValueError(f"{name}@{alias} is not set: train a bi-encoder (jobs/train_bi_encoder.py) and promote it")
    common = dict(modelUri=f"models:/{name}/{version}", precision=be.precision, dim=be.dim,
                  batchSize=cfg.batch.embedder, trackingUri=tracking.tracking_uri(cfg),
                  registryUri=tracking.registry_uri(cfg))
    stamp = [F.lit(be.dim).alias("dim"), F.lit(name).alias("model_name"), F.lit(str(version)).alias("model_version"),
             F.current_timestamp().alias("embedded_at")]
    out: dict[str, Any] = {"model": name, "version": version, "dim": be.dim}
    if "items" in which:
        src_items = items if items is not None else tables.read_table(spark, cfg, "items")
        it = TextEmbedder(inputCol="title", categoryCol="category", **common).transform(
            src_items.select("item_id", "title", "category"))
        rep = tables.upsert(spark, cfg, "item_embeddings", it.select("item_id", "category", "embedding", *stamp))
        out.update({"items": str(rep), "items_written": rep.rows_written})
    if "keyphrases" in which:
        src_kps = keyphrases if keyphrases is not None else tables.read_table(spark, cfg, "keyphrases")
        kp = TextEmbedder(inputCol=KEYPHRASE, **common).transform(keyphrase_texts(src_kps, "category"))
        rep = tables.upsert(spark, cfg, "keyphrase_embeddings",
                            kp.select("keyphrase_id", "category", "embedding", *stamp))
        out.update({"keyphrases": str(rep), "keyphrases_written": rep.rows_written})
    return out
