"""Recommendation workflow: de-duplicate keyphrases, build the sharded index from the canonical
keyphrases' embeddings (the executors upload its shards to an MLflow run and download them from there), and run the
``embed -> retrieve -> score -> filter`` pipeline over the items into ``recommendations``."""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

from kpspark.config import Config

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)
#: What the recommendation pipeline's rows carry into ``recommendations`` (before rank and stamp).
RECOMMENDATION_COLS = ("item_id", "keyphrase_id", "keyphrase", "retriever_score", "ce_score")


def build_recommendation_pipeline(cfg: Config, index_uri: str, be_uri: str | None = None,
                                  ce_uri: str | None = None, threshold: float | None = None,
                                  category_thresholds: Mapping[str, float] | None = None) -> "PipelineModel":
    """A ``PipelineModel`` (TextEmbedder -> KeyphraseRetrieverModel -> OnnxCrossEncoderModel ->
    ThresholdModel) over an items DataFrame (``item_id, title, category``). Model URIs default to
    the serving alias of the configured names, pinned to their current versions. The filter keeps a row whose
    CE score reaches its category's threshold (``category_thresholds``) or, for other categories, ``threshold``
    (default ``retrieval.threshold``)."""
    from pyspark.ml import PipelineModel

    from kpspark.artifacts import verify_export
    from kpspark.biencoder.embedder import TextEmbedder
    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.evaluation.calibration import ThresholdModel
    from kpspark.registry import models, tracking
    from kpspark.registry.models import pin_alias
    from kpspark.retrieval.retriever import KeyphraseRetrieverModel

    r = cfg.retrieval
    tracking_uri, registry_uri = tracking.tracking_uri(cfg), tracking.registry_uri(cfg)
    be_uri = pin_alias(be_uri or models.model_uri(cfg.models.bi_encoder, cfg.models.serving_alias), registry_uri)
    ce_uri = pin_alias(ce_uri or models.model_uri(cfg.models.cross_encoder, cfg.models.serving_alias), registry_uri)
    # refuse a broken model here, on the driver, before any job writes a table (executors load the same files)
    verify_export(be_uri, "bi_encoder", cfg.bi_encoder.precision, tracking_uri, registry_uri)
    verify_export(ce_uri, "cross_encoder", cfg.cross_encoder.precision, tracking_uri, registry_uri)
    stages = [
        TextEmbedder(inputCol="title", categoryCol="category", outputCol="item_embedding", modelUri=be_uri,
                     precision=cfg.bi_encoder.precision, dim=cfg.bi_encoder.dim, batchSize=cfg.batch.embedder,
                     trackingUri=tracking_uri, registryUri=registry_uri),
        KeyphraseRetrieverModel(indexDir=index_uri, embeddingCol="item_embedding", idCol="item_id", k=r.k,
                                fallback=r.fallback, efSearch=r.ef_search, nprobe=r.nprobe,
                                trackingUri=tracking_uri),
        OnnxCrossEncoderModel(keyphraseCol="keyphrase", categoryCol="category", titleCol="title",
                              outputCol="ce_score", modelUri=ce_uri, precision=cfg.cross_encoder.precision,
                              batchSize=cfg.batch.cross_encoder, trackingUri=tracking_uri, registryUri=registry_uri),
        ThresholdModel(scoreCol="ce_score", categoryCol="category", filterRows=True,
                       threshold=r.threshold if threshold is None else threshold,
                       categoryThresholds=json.dumps(dict(category_thresholds or {}), sort_keys=True)),
    ]
    return PipelineModel(stages=stages)


def index_input(spark: "SparkSession", cfg: Config) -> "DataFrame":
    """Canonical keyphrases (one per de-duplication group) with text (``keyphrase``), category and embedding."""
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.rules import keyphrase_texts

    canon = tables.read_table(spark, cfg, "keyphrase_map").where(F.col("keyphrase_id") == F.col("canonical_id")) \
        .select("keyphrase_id")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    emb = tables.read_table(spark, cfg, "keyphrase_embeddings").select("keyphrase_id", "category", "embedding")
    return canon.join(kps, "keyphrase_id").join(emb, "keyphrase_id")


def run_build_index(cfg: Config, spark: "SparkSession", index_dir: str | None = None) -> dict[str, Any]:
    """De-duplicate, fit the retriever on the canonical keyphrases into an MLflow run's artifacts (each
    executor uploads the shards it builds; ``index_dir``: a folder on shared storage instead), and log the
    figures. Returns the index URI every node can load (``runs:/<run id>/index``, or the folder)."""
    import mlflow

    from kpspark.registry import tracking
    from kpspark.retrieval.dedupe import run_dedupe
    from kpspark.retrieval.retriever import KeyphraseRetriever
    from kpspark.rules import KEYPHRASE, NormalizeOptions

    r = cfg.retrieval
    dedupe = run_dedupe(cfg, spark, NormalizeOptions(plural=r.plural, word_order=r.word_order))
    uri = tracking.tracking_uri(cfg)
    with tracking.start_run(cfg, "build-keyphrase-index", spark=spark,
                            tables=["keyphrases", "keyphrase_embeddings", "keyphrase_map"],
                            tags={"kind": "keyphrase_index"}) as run:
        location = index_dir or f"runs:/{run.info.run_id}/index"
        retriever = KeyphraseRetriever(indexDir=location, shardBy=r.shard_by, numHashShards=r.num_hash_shards,
                                       k=r.k, fallback=r.fallback, idCol="keyphrase_id", textCol=KEYPHRASE,
                                       indexKind=r.index_kind,
                                       exactMax=r.exact_max, efSearch=r.ef_search, nprobe=r.nprobe,
                                       trackingUri=uri)
        t0 = time.time()
        model = retriever.fit(index_input(spark, cfg))
        manifest = model.manifest()
        mlflow.log_params({"shard_by": r.shard_by, "index_kind": r.index_kind, "k": r.k})
        mlflow.log_metrics({"index_shards": len(manifest["shards"]),
                            "index_keyphrases": sum(s["n"] for s in manifest["shards"]),
                            "dedupe_duplicates_removed": dedupe["duplicates_removed"],
                            "dedupe_quarantined": dedupe["quarantined"], "index_build_s": time.time() - t0})
    return {"index_uri": location, "run_id": run.info.run_id, "dedupe": dedupe,
            "shards": len(manifest["shards"]), "kinds": sorted({s["kind"] for s in manifest["shards"]}),
            "indexed": sum(s["n"] for s in manifest["shards"])}


def run_calibrate(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """The CE score thresholds that keep ``retrieval.click_retention`` of the click positives (their scores
    from ``pair_scores`` by the serving cross-encoder): one global and, with ``retrieval.per_category``, one
    per category that has ``retrieval.min_category_positives`` positives; logged to MLflow. Falls back to
    ``retrieval.threshold`` when no click positive has a score."""
    import mlflow
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.evaluation.calibration import ThresholdCalibrator
    from kpspark.registry import models, tracking
    from kpspark.rules import click_positives
    from kpspark.sparkutil import freeze

    r = cfg.retrieval
    version = models.get_version(cfg, cfg.models.cross_encoder, cfg.models.serving_alias)
    clicks = click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive)
    scores = tables.read_table(spark, cfg, "pair_scores").where(
        (F.col("model_name") == cfg.models.cross_encoder) & (F.col("model_version") == str(version)))
    items = tables.read_table(spark, cfg, "items").select("item_id", "category")
    pos = freeze(clicks.join(scores, ["item_id", "keyphrase_id"]).join(items, "item_id")
                 .select(F.col("score").alias("ce_score"), "clicks", "category"))
    n = pos.count()
    if n == 0:
        logger.warning("no click positive has a CE score: using retrieval.threshold=%s", r.threshold)
        return {"threshold": r.threshold, "category_thresholds": {}, "positives": 0, "calibrated": False}
    # "95% of clicks" (click-weighted, as the evaluation report counts them) or of clicked pairs
    weight = "clicks" if cfg.evaluation.weighting == "clicks" else ""
    model = ThresholdCalibrator(scoreCol="ce_score", targetRetention=r.click_retention, weightCol=weight,
                                categoryCol="category" if r.per_category else "",
                                minPositives=r.min_category_positives).fit(pos)
    per = model.thresholds()
    with tracking.start_run(cfg, "calibrate-threshold", spark=spark, tables=["clicks", "pair_scores"],
                            tags={"kind": "calibration"}) as run:
        mlflow.log_params({"click_retention": r.click_retention, "ce_version": version,
                           "per_category": r.per_category})
        mlflow.log_metrics({"threshold": model.getThreshold(), "click_positives": n, "category_thresholds": len(per)})
        mlflow.log_dict(per, "category_thresholds.json")
    return {"threshold": model.getThreshold(), "category_thresholds": per, "positives": n, "calibrated": True,
            "run_id": run.info.run_id}


def run_recommend(cfg: Config, spark: "SparkSession", items: "DataFrame | None" = None,
                  index_uri: str | None = None, threshold: float | None = None,
                  category_thresholds: Mapping[str, float] | None = None, show: int = 0) -> dict[str, Any]:
    """Full batch: build the index (unless ``index_uri`` is given), run the pipeline over ``items``
    (default: the whole ``items`` table), keep the ``top_n`` per item (:func:`kpspark.rules.top_n`) and
    atomically overwrite ``recommendations``. The filter's thresholds are calibrated here unless
    ``threshold`` is given (or ``retrieval.calibrate`` is off). ``show`` prints that many items with their
    keyphrases."""
    import mlflow

    from kpspark.data import tables
    from kpspark.registry import tracking
    from kpspark.rules import stamp_columns, top_n, version_stamp

    built = None
    calibration = None
    if threshold is None and cfg.retrieval.calibrate:
        calibration = run_calibrate(cfg, spark)
        threshold, category_thresholds = calibration["threshold"], calibration["category_thresholds"]
    if threshold is None:
        threshold = cfg.retrieval.threshold
    if index_uri is None:
        built = run_build_index(cfg, spark)
        index_uri = built["index_uri"]
    pipe = build_recommendation_pipeline(cfg, index_uri, threshold=threshold, category_thresholds=category_thresholds)
    src = items if items is not None else tables.read_table(spark, cfg, "items")
    src = src.select("item_id", "title", "category")
    t0 = time.time()
    with tracking.start_run(cfg, "recommend", spark=spark, tables=["items", "keyphrases"],
                            tags={"kind": "recommend"}) as run:
        scored = pipe.transform(src).select(*RECOMMENDATION_COLS)
        recs = top_n(scored, cfg.retrieval.top_n).select(*RECOMMENDATION_COLS, "rank",
                                                          *stamp_columns(version_stamp(pipe), run.info.run_id))
        rep = tables.write_table(spark, cfg, "recommendations", recs, mode="overwrite")
        out = tables.read_table(spark, cfg, "recommendations")
        n_items = src.count()
        with_recs = out.select("item_id").distinct().count()
        figures = {"items_in": n_items, "items_with_recommendations": with_recs,
                   "recommendations": rep.rows_written, "seconds": round(time.time() - t0, 1)}
        mlflow.log_metrics({f"recommend_{k}": float(v) for k, v in figures.items()})
    result = {"run_id": run.info.run_id, "index_uri": index_uri, "report": str(rep), "threshold": threshold,
              "category_thresholds": dict(category_thresholds or {}), **figures}
    if calibration:
        result["calibration"] = calibration
    if built:
        result["index"] = {k: v for k, v in built.items() if k != "index_uri"}
    if show:
        result["examples"] = examples(spark, cfg, show)
        for ex in result["examples"]:
            print(f"\n{ex['title']}  [{ex['category']}]")
            for kp, s in ex["keyphrases"]:
                print(f"    {s:.3f}  {kp}")
    return result


def examples(spark: "SparkSession", cfg: Config, n: int = 5, per_item: int = 8) -> list[dict[str, Any]]:
    """A few items with their top recommended keyphrases (for the demo and the README)."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    recs = tables.read_table(spark, cfg, "recommendations")
    ids = [r.item_id for r in recs.select("item_id").distinct().orderBy(F.xxhash64("item_id")).limit(n).collect()]
    items = {r.item_id: r for r in tables.read_table(spark, cfg, "items").where(F.col("item_id").isin(ids)).collect()}
    rows = recs.where(F.col("item_id").isin(ids) & (F.col("rank") <= per_item)).orderBy("item_id", "rank").collect()
    out = []
    for i in ids:
        out.append({"item_id": i, "title": items[i].title, "category": items[i].category,
                    "keyphrases": [(r.keyphrase, round(float(r.ce_score), 3)) for r in rows if r.item_id == i]})
    return out
