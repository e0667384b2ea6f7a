"""Cross-encoder workflows: train a recipe (log + register as ``challenger``) and score pairs into
``pair_scores`` with the model an alias points at."""
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
LEARNED_NOTHING_AUC = 0.55  # a trained model whose held-out AUC vs its own labels is below this is flagged, not hidden


def model_name_for(cfg: Config, recipe: str) -> str:
    """``models.cross_encoder`` for the configured recipe, a variant name for the others
    (:func:`kpspark.registry.models.variant_name`)."""
    from kpspark.registry.models import variant_name

    return variant_name(cfg.models.cross_encoder, recipe, cfg.cross_encoder.recipe)


def _validation_metrics(spark: "SparkSession", cfg: Config, val: Any, scorer: Any) -> dict[str, float]:
    """AUCs (pooled, within a keyphrase, within an item) of the exported int8 model on the validation pairs:
    against the training labels, and against ground truth / human labels where those tables have the pairs
    (joined in Spark: only the validation pairs' labels reach the driver, not the tables)."""
    from kpspark.crossencoder.text import pair_texts
    from kpspark.data import tables
    from kpspark.evaluation import metrics

    a, b = pair_texts(val["keyphrase"], val["category"], val["title"])
    val = val.assign(score=scorer.scores(a, b))

    def aucs(df: Any, label: str, prefix: str) -> dict[str, float]:
        return metrics.frame_aucs(df, label, df["score"], prefix)

    out = aucs(val, "label", "ce_val_auc_labels")
    keys = None
    for table, col, key in (("ground_truth", "relevant", "ce_val_auc_truth"), ("human_labels", "label", "ce_val_auc_human")):
        if tables.exists(spark, cfg, table):
            if keys is None:
                keys = spark.createDataFrame(val[["item_id", "keyphrase_id"]].astype("int64"))
            ref = tables.read_table(spark, cfg, table).select("item_id", "keyphrase_id", col) \
                .join(keys, ["item_id", "keyphrase_id"]).toPandas()
            m = val.merge(ref.rename(columns={col: "_ref"}), on=["item_id", "keyphrase_id"])
            if len(m) and m["_ref"].nunique() == 2:
                out.update(aucs(m, "_ref", key))
    return out


def learned_nothing(val_auc: float) -> bool:
    """Whether a model's held-out AUC against its own labels says it learned nothing (below
    ``LEARNED_NOTHING_AUC``, or NaN: scores that do not vary)."""
    return not val_auc >= LEARNED_NOTHING_AUC


def run_train_cross_encoder(cfg: Config, spark: "SparkSession", recipe: str | None = None,
                            output_dir: str | None = None) -> dict[str, Any]:
    """Train ``recipe`` (default ``cross_encoder.recipe``), export with parity, log the run (recipe,
    rows per source, class balance, losses, parity, validation AUCs) and register the pyfunc with
    the candidate alias. Returns the run id, model name, version and figures."""
    import mlflow
    from pyspark.sql import functions as F

    from kpspark.artifacts import META_FILE, model_file
    from kpspark.config import CrossEncoderTraining
    from kpspark.crossencoder.estimator import CrossEncoderEstimator
    from kpspark.params import hyperparam_kwargs
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer
    from kpspark.crossencoder.recipes import recipe_pairs, with_texts
    from kpspark.registry import models, tracking
    from kpspark.registry.pyfunc import log_cross_encoder

    ce = cfg.cross_encoder
    recipe = recipe or ce.recipe
    t0 = time.time()
    pairs = recipe_pairs(spark, cfg, recipe, judge_model=ce.judge_model or None)
    counts = {f"{r['source']}_{'pos' if r['label'] == 1 else 'neg'}": int(r["count"])
              for r in pairs.groupBy("source", "label").count().collect()}
    n = sum(counts.values())
    pos = sum(v for k, v in counts.items() if k.endswith("_pos"))
    if n == 0 or pos in (0, n):
        raise ValueError(f"recipe {recipe!r} has no usable mix of labels: {counts or 'no rows'}")
    data = with_texts(spark, cfg, pairs).orderBy(F.xxhash64("item_id", "keyphrase_id")).limit(ce.max_train_pairs)
    out_dir = Path(output_dir or scratch_dir(f"kpspark-ce-{recipe}-"))  # the registry keeps the model
    est = CrossEncoderEstimator(outputDir=str(out_dir), logToRun=False, seed=cfg.sample.seed,
                                **hyperparam_kwargs(ce, CrossEncoderTraining))
    name = model_name_for(cfg, recipe)
    with tracking.start_run(cfg, f"train-cross-encoder-{recipe}", spark=spark,
                            tables=["clicks", "search_relevance", "llm_labels", "human_labels", "items", "keyphrases"],
                            tags={"kind": "cross_encoder", "recipe": recipe}) as run:
        mlflow.log_params({"recipe": recipe, **{f"rows.{k}": v for k, v in counts.items()}})
        mlflow.log_metric("ce_class_balance", pos / n)
        model = est.fit(data)
        summary = model.summary  # type: ignore[attr-defined]
        export_dir = model.getOrDefault(model.modelUri)
        meta = json.loads((Path(export_dir) / META_FILE).read_text())
        if meta.get("int8_rejected"):  # served in fp32: say so where the run and the version are read
            mlflow.set_tag("int8_rejected", meta["int8_rejected"][:500])
        scorer = OnnxPairScorer(model_file(Path(export_dir), meta, ce.precision), export_dir, ce.max_length, threads=0)
        figures = {"ce_train_loss": summary.figures["train_loss"], "ce_eval_loss": summary.figures["eval_loss"],
                   "ce_train_rows": summary.train_rows, "ce_validation_rows": summary.validation_rows,
                   **{f"ce_parity_{k}": float(v) for k, v in summary.parity.items() if isinstance(v, (bool, int, float))},
                   **{f"ce_{k}": float(v) for k, v in summary.figures.items()  # a teacher's losses and held-out AUCs
                      if k.startswith("teacher_") and isinstance(v, (int, float))},
                   **_validation_metrics(spark, cfg, summary.validation, scorer)}
        mlflow.log_metrics({k: float(v) for k, v in figures.items()})
        if learned_nothing(figures["ce_val_auc_labels"]):
            logger.warning("the %s cross-encoder ranks its held-out pairs no better than chance (validation AUC vs its "
                           "labels %.3f): more epochs, more pairs or another init (cross_encoder.*)", recipe,
                           figures["ce_val_auc_labels"])
            mlflow.set_tag("learned_nothing", f"ce_val_auc_labels={figures['ce_val_auc_labels']:.3f}")
        info = log_cross_encoder(export_dir, precision=ce.precision)
        version, promoted = models.register_candidate(cfg, info.model_uri, name,
                                                      tags={"recipe": recipe, "run_id": run.info.run_id})
    return {"recipe": recipe, "run_id": run.info.run_id, "model": name, "version": version, "promoted": promoted,
            "rows": counts, "output_dir": str(out_dir), "seconds": round(time.time() - t0, 1), **figures}


def run_score_pairs(cfg: Config, spark: "SparkSession", alias: str | None = None, pairs: "DataFrame | None" = None,
                    recipe: str | None = None) -> dict[str, Any]:
    """Score ``pairs`` (default: the ``pairs`` table) with ``models:/<cross_encoder>@<alias>`` and
    MERGE the scores into ``pair_scores`` stamped with the model name and version."""
    from pyspark.sql import functions as F

    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.data import tables
    from kpspark.registry import models, tracking
    from kpspark.rules import keyphrase_texts

    name = model_name_for(cfg, recipe or cfg.cross_encoder.recipe)
    alias = alias or cfg.models.serving_alias
    version = models.get_version(cfg, name, alias)
    if version is None:
        raise ValueError(f"{name}@{alias} is not set: train a model (jobs/train_cross_encoder.py) and promote it")
    scorer = OnnxCrossEncoderModel(modelUri=f"models:/{name}/{version}", precision=cfg.cross_encoder.precision,
                                   batchSize=cfg.batch.cross_encoder, trackingUri=tracking.tracking_uri(cfg),
                                   registryUri=tracking.registry_uri(cfg))
    src = pairs if pairs is not None else tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id")
    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    scored = scorer.transform(src.join(items, "item_id", "left").join(kps, "keyphrase_id", "left"))
    rows = scored.select("item_id", "keyphrase_id", "score", F.lit(name).alias("model_name"),
                         F.lit(str(version)).alias("model_version"), F.current_timestamp().alias("scored_at"))
    rep = tables.upsert(spark, cfg, "pair_scores", rows)
    return {"model": name, "version": version, "report": str(rep), "rows_in": rep.rows_in,
            "rows_written": rep.rows_written, "rows_quarantined": rep.rows_quarantined}


def train_missing_recipes(cfg: Config, spark: "SparkSession") -> dict[str, str]:
    """Train (and register) each recipe of ``evaluation.recipes`` with no registered version yet; returns the
    recipes that could not be, with why (no usable label mix; an fp32 export off torch)."""
    from kpspark.errors import ParityError
    from kpspark.registry import models

    skipped: dict[str, str] = {}
    for recipe in cfg.evaluation.recipes:
        name = model_name_for(cfg, recipe)
        if any(models.get_version(cfg, name, a) for a in (cfg.models.serving_alias, cfg.models.candidate_alias)):
            continue
        try:
            run_train_cross_encoder(cfg, spark, recipe=recipe)
        except ParityError as e:  # trained, but the fp32 export does not match torch (a broken export)
            skipped[recipe] = f"trained, not registered: {e}"
        except ValueError as e:  # the recipe's data has no usable mix of labels
            skipped[recipe] = str(e)
    return skipped
