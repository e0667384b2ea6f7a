"""Full-batch and daily-diff recommendation jobs.

**Full batch** (:func:`run_full_batch`): pins the versions of ``items`` and ``keyphrases`` it reads,
runs :func:`kpspark.retrieval.workflow.run_recommend` on that snapshot (atomic overwrite of
``recommendations``, models by alias from the registry), then records in ``pipeline_state`` the
versions it covered together with the index and threshold it used.

**Daily diff** (:func:`run_daily_diff`): reads only what changed since those versions through Delta's
Change Data Feed and MERGEs the consequences into ``recommendations`` in **one** commit:

* new or revised items: re-embedded (``item_embeddings``) and run through the same pipeline against
  the whole index; their old rows are replaced;
* deleted items: their rows are removed;
* new or revised keyphrases: embedded, de-duplicated, the index rebuilt; the new canonical keyphrases are
  searched for **all** items the other way round (an index of only the new keyphrases, queried with
  the stored item embeddings of the same category), scored, and merged into each item's list when they
  beat its current weakest keyphrase (the list is re-cut to ``top_n`` by CE score);
* deleted keyphrases: their rows are removed (the list is not back-filled until the item changes or the
  next full batch).

Only then is ``pipeline_state`` advanced. A crash anywhere before that leaves the state at the old
versions; the rerun recomputes the same diff (the same inputs give the same rows) and the MERGE
converges to the same table: at-least-once computation, exactly-once effect.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kpspark.config import Config
from kpspark.sparkutil import find_stage, freeze

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

#: The ``pipeline_state`` rows the jobs keep.
ITEMS_STATE, KEYPHRASES_STATE = "recommendations.items", "recommendations.keyphrases"
#: Columns that make a recommendation row's content (the checksum ignores run id and timestamps).
CONTENT = ("item_id", "keyphrase_id", "keyphrase", "ce_score", "rank", "retriever_version", "ce_version")


class StateMissing(RuntimeError):
    """The diff has no starting point: run the full batch first."""


def read_state(spark: "SparkSession", cfg: Config) -> dict[str, dict[str, Any]]:
    """``{name: {"version": v, **details}}`` from ``pipeline_state`` (empty when it does not exist)."""
    from kpspark.data import tables

    if not tables.exists(spark, cfg, "pipeline_state"):
        return {}
    return {r["name"]: {"version": r["version"], **json.loads(r["details"] or "{}")}
            for r in tables.read_table(spark, cfg, "pipeline_state").collect()}


def write_state(spark: "SparkSession", cfg: Config, versions: dict[str, int], details: dict[str, Any]) -> None:
    """MERGE the processed versions (one commit for both rows)."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    rows = [(name, int(v), json.dumps(details, default=str)) for name, v in versions.items()]
    df = spark.createDataFrame(rows, "name string, version long, details string") \
        .withColumn("updated_at", F.current_timestamp())
    tables.upsert(spark, cfg, "pipeline_state", df)


def state_pipeline(cfg: Config, details: dict[str, Any], index_uri: str | None = None) -> "PipelineModel":
    """The recommendation pipeline of a ``pipeline_state`` entry: its index (or ``index_uri``, a rebuilt one) and
    the filter's global and per-category thresholds the full batch calibrated (the diff and the stream use it)."""
    from kpspark.retrieval.workflow import build_recommendation_pipeline

    return build_recommendation_pipeline(cfg, index_uri or details["index_uri"], threshold=float(details["threshold"]),
                                         category_thresholds=details.get("category_thresholds") or {})


def content_checksum(df: "DataFrame") -> dict[str, Any]:
    """Row count and an order-independent checksum of the content columns (scores rounded to 1e-6)."""
    from pyspark.sql import functions as F

    cols = [F.round("ce_score", 6).cast("string") if c == "ce_score" else F.col(c).cast("string") for c in CONTENT]
    row = df.select(F.xxhash64(*cols).alias("h")).agg(F.count("*").alias("n"),
                                                      F.sum(F.col("h").cast("decimal(38,0)")).alias("s")).first()
    return {"rows": int(row["n"]), "checksum": str(row["s"])}


def run_full_batch(cfg: Config, spark: "SparkSession", show: int = 0) -> dict[str, Any]:
    """Every item of a pinned snapshot -> ``recommendations`` (atomic overwrite); records the state."""
    from kpspark.data import tables
    from kpspark.retrieval.workflow import run_recommend

    v_items, v_kps = tables.version(spark, cfg, "items"), tables.version(spark, cfg, "keyphrases")
    items = tables.read_table(spark, cfg, "items", version=v_items)
    out = run_recommend(cfg, spark, items=items, show=show)
    if tables.version(spark, cfg, "keyphrases") != v_kps:  # the index read a newer keyphrase snapshot
        logger.warning("keyphrases changed during the full batch; the next diff re-applies those changes")
    write_state(spark, cfg, {ITEMS_STATE: v_items, KEYPHRASES_STATE: v_kps},
                {"index_uri": out["index_uri"], "threshold": out["threshold"],
                 "category_thresholds": out["category_thresholds"], "run_id": out["run_id"],
                 "recommendations_version": tables.version(spark, cfg, "recommendations"), "job": "full_batch"})
    out.update({"items_version": v_items, "keyphrases_version": v_kps})
    return out


def _changes(spark: "SparkSession", cfg: Config, name: str, key: str, start: int, end: int
             ) -> tuple["DataFrame", "DataFrame", int, int]:
    """(upserted keys, deleted keys, their counts) of ``name`` between versions ``start`` (exclusive) and
    ``end``: the last change of each key decides. One Spark job reads the feed."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    empty = spark.createDataFrame([], f"{key} long")
    if end <= start:
        return empty, empty, 0, 0
    last = last_changes(tables.read_changes(spark, cfg, name, start + 1, end), key) \
        .select(key, (F.col("_change_type") == "delete").alias("_deleted"))
    last = freeze(last)
    n = {r["_deleted"]: r["count"] for r in last.groupBy("_deleted").count().collect()}
    return last.where(~F.col("_deleted")).select(key), last.where(F.col("_deleted")).select(key), \
        n.get(False, 0), n.get(True, 0)


def last_changes(changes: "DataFrame", key: str) -> "DataFrame":
    """The last Change Data Feed row of each key (pre-images dropped; within one commit a delete comes
    before an insert of the same key, so the insert wins)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ch = changes.where(F.col("_change_type") != "update_preimage")
    w = Window.partitionBy(key).orderBy(F.desc("_commit_version"),
                                        F.when(F.col("_change_type") == "delete", 1).otherwise(0))
    return ch.withColumn("_r", F.row_number().over(w)).where("_r = 1").drop("_r")


def rescore_changed_items(spark: "SparkSession", cfg: Config, pipe: "PipelineModel", changed_items: "DataFrame",
                          item_ups: "DataFrame") -> "DataFrame":
    """Diff step 1: the new or revised items against the whole (new) index, ranked; their vectors, just
    written to ``item_embeddings``, feed the retriever (no second embedding pass)."""
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from kpspark.biencoder.embedder import TextEmbedder
    from kpspark.data import tables
    from kpspark.retrieval.workflow import RECOMMENDATION_COLS
    from kpspark.rules import top_n

    embedder = find_stage(pipe, TextEmbedder)
    vecs = tables.read_table(spark, cfg, "item_embeddings").join(item_ups, "item_id") \
        .select("item_id", F.col("embedding").alias(embedder.getOrDefault("outputCol")))
    rest = PipelineModel(stages=[s for s in pipe.stages if s is not embedder])
    found = rest.transform(changed_items.join(vecs, "item_id"))
    return top_n(found.select(*RECOMMENDATION_COLS), cfg.retrieval.top_n)


def new_keyphrases_for_other_items(spark: "SparkSession", cfg: Config, pipe: "PipelineModel", run_id: str,
                                   kp_ups: "DataFrame", kps_now: "DataFrame", items_now: "DataFrame",
                                   current: "DataFrame", touched: "DataFrame", kp_dels: "DataFrame"
                                   ) -> "DataFrame | None":
    """Diff step 2: the new canonical keyphrases searched for every other item the other way round (an index
    of only them, in this run's artifacts, queried with the stored item embeddings of the same category),
    scored and filtered; each affected item's list re-cut with its current rows. None when no new keyphrase
    is canonical."""
    from pyspark.sql import functions as F

    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.data import tables
    from kpspark.evaluation.calibration import ThresholdModel
    from kpspark.registry import tracking
    from kpspark.retrieval.retriever import KeyphraseRetriever
    from kpspark.retrieval.workflow import RECOMMENDATION_COLS
    from kpspark.rules import KEYPHRASE, keyphrase_texts, top_n

    r = cfg.retrieval
    canon = tables.read_table(spark, cfg, "keyphrase_map").where("keyphrase_id = canonical_id").select("keyphrase_id")
    new_canon = canon.join(kp_ups, "keyphrase_id")
    emb = tables.read_table(spark, cfg, "keyphrase_embeddings").join(new_canon, "keyphrase_id") \
        .join(keyphrase_texts(kps_now), "keyphrase_id")
    if not emb.limit(1).count():
        return None
    # the new keyphrases' index goes to this run's artifacts: every executor reaches it there
    rev = KeyphraseRetriever(indexDir=f"runs:/{run_id}/new_keyphrase_index", shardBy=r.shard_by,
                             numHashShards=r.num_hash_shards, k=r.k, fallback="none", idCol="keyphrase_id",
                             textCol=KEYPHRASE, indexKind="flat", trackingUri=tracking.tracking_uri(cfg)).fit(emb)
    others = tables.read_table(spark, cfg, "item_embeddings").join(touched, "item_id", "left_anti")
    rev.set(rev.embeddingCol, "embedding")
    rev.set(rev.idCol, "item_id")  # the fitted model queries with items
    cands = rev.transform(others.select("item_id", "category", "embedding"))
    # only candidates that beat the item's weakest current keyphrase (or fill a short list)
    floor = current.groupBy("item_id").agg(F.min("retriever_score").alias("_floor"), F.count("*").alias("_n"))
    cands = cands.join(floor, "item_id", "left").where(
        F.col("_floor").isNull() | (F.col("_n") < r.top_n) | (F.col("retriever_score") >= F.col("_floor")))
    texts = items_now.select("item_id", "title", "category")
    scored = find_stage(pipe, OnnxCrossEncoderModel).transform(
        cands.select("item_id", "keyphrase_id", KEYPHRASE, "retriever_score").join(texts, "item_id"))
    kept = find_stage(pipe, ThresholdModel).transform(scored).select(*RECOMMENDATION_COLS)
    affected = kept.select("item_id").distinct()
    old = current.join(affected, "item_id").join(kp_dels, "keyphrase_id", "left_anti").select(*RECOMMENDATION_COLS)
    return top_n(old.unionByName(kept).dropDuplicates(["item_id", "keyphrase_id"]), r.top_n)


def run_daily_diff(cfg: Config, spark: "SparkSession", fail_after: str | None = None) -> dict[str, Any]:
    """Apply the changes since the last processed versions (see the module doc). ``fail_after`` (tests
    only) raises after the named step: ``merge`` (recommendations written, state not advanced)."""
    import mlflow

    from kpspark.biencoder.workflow import run_embed
    from kpspark.data import tables
    from kpspark.registry import tracking
    from kpspark.retrieval.workflow import RECOMMENDATION_COLS, run_build_index
    from kpspark.rules import stamp_columns, version_stamp

    t0 = time.time()
    laps: dict[str, float] = {}
    t_lap = [t0]

    def lap(step: str) -> None:  # progress and the cost of each step (the diff-cost benchmark reads them)
        now = time.time()
        laps[step] = round(now - t_lap[0], 2)
        t_lap[0] = now
        logger.info("daily diff: %s done in %.1fs", step, laps[step])

    state = read_state(spark, cfg)
    if ITEMS_STATE not in state or KEYPHRASES_STATE not in state:
        raise StateMissing("no processed versions in pipeline_state: run the full batch (jobs/full_batch.py) first")
    v0_items, v0_kps = int(state[ITEMS_STATE]["version"]), int(state[KEYPHRASES_STATE]["version"])
    v1_items, v1_kps = tables.version(spark, cfg, "items"), tables.version(spark, cfg, "keyphrases")
    details = dict(state[ITEMS_STATE])
    details.pop("version", None)
    if (v1_items, v1_kps) == (v0_items, v0_kps):
        return {"changed": False, "items_version": v1_items, "keyphrases_version": v1_kps,
                "seconds": round(time.time() - t0, 1)}
    item_ups, item_dels, n_iu, n_id = _changes(spark, cfg, "items", "item_id", v0_items, v1_items)
    kp_ups, kp_dels, n_ku, n_kd = _changes(spark, cfg, "keyphrases", "keyphrase_id", v0_kps, v1_kps)
    counts = {"items_upserted": n_iu, "items_deleted": n_id, "keyphrases_upserted": n_ku, "keyphrases_deleted": n_kd}
    lap("changes")
    items_now = tables.read_table(spark, cfg, "items", version=v1_items)
    kps_now = tables.read_table(spark, cfg, "keyphrases", version=v1_kps)
    changed_items = items_now.join(item_ups, "item_id").select("item_id", "title", "category")
    new_kps = kps_now.join(kp_ups, "keyphrase_id")

    # embeddings of what changed (MERGE: a rerun rewrites the same vectors)
    which = tuple(side for side, n in (("items", n_iu), ("keyphrases", n_ku)) if n)
    if which:
        run_embed(cfg, spark, items=changed_items, keyphrases=new_kps, which=which)
    if counts["items_deleted"]:
        tables.delete_keys(spark, cfg, "item_embeddings", item_dels)
    index_uri, threshold = details["index_uri"], float(details["threshold"])
    if counts["keyphrases_upserted"] or counts["keyphrases_deleted"]:
        if counts["keyphrases_deleted"]:
            tables.delete_keys(spark, cfg, "keyphrase_embeddings", kp_dels)
        index_uri = run_build_index(cfg, spark)["index_uri"]  # the next changed items see the new keyphrases
    lap("embeddings")
    pipe = state_pipeline(cfg, details, index_uri)

    with tracking.start_run(cfg, "daily-diff", spark=spark, tables=["items", "keyphrases", "recommendations"],
                            tags={"kind": "daily_diff"}) as run:
        # the recommendations as the last successful job left them (time travel): a rerun after a crash
        # computes exactly what the crashed run computed, whatever the crashed run already wrote
        current = tables.read_table(spark, cfg, "recommendations", version=int(details["recommendations_version"]))
        touched = item_ups.unionByName(item_dels).distinct()
        desired = [d for d in (
            rescore_changed_items(spark, cfg, pipe, changed_items, item_ups) if n_iu else None,
            new_keyphrases_for_other_items(spark, cfg, pipe, run.info.run_id, kp_ups, kps_now, items_now, current,
                                           touched, kp_dels) if n_ku else None) if d is not None]
        want_rows = None
        if desired:
            want = desired[0]
            for d in desired[1:]:
                want = want.unionByName(d)
            want_rows = want.select(*RECOMMENDATION_COLS, "rank", *stamp_columns(version_stamp(pipe), run.info.run_id))
        merged = merge_recommendations(spark, cfg, want_rows, touched, kp_dels)
        lap("score_and_merge")
        if fail_after == "merge":
            raise RuntimeError("injected failure after the recommendations MERGE (state not advanced)")
        write_state(spark, cfg, {ITEMS_STATE: v1_items, KEYPHRASES_STATE: v1_kps},
                    {"index_uri": index_uri, "threshold": threshold,  # carried on: diff after diff filters the same
                     "category_thresholds": details.get("category_thresholds") or {},
                     "run_id": run.info.run_id, "job": "daily_diff",
                     "recommendations_version": tables.version(spark, cfg, "recommendations")})
        lap("state")
        figures = {**counts, **merged, "seconds": round(time.time() - t0, 1)}
        mlflow.log_metrics({f"diff_s_{k}": v for k, v in laps.items()})
        mlflow.log_metrics({f"diff_{k}": float(v) for k, v in figures.items()})
        mlflow.log_params({"items_from": v0_items, "items_to": v1_items, "keyphrases_from": v0_kps,
                           "keyphrases_to": v1_kps})
    return {"changed": True, "run_id": run.info.run_id, "items_version": v1_items, "keyphrases_version": v1_kps,
            "index_uri": index_uri, **figures, "step_seconds": laps}


def merge_recommendations(spark: "SparkSession", cfg: Config, want: "DataFrame | None", touched: "DataFrame",
                          kp_dels: "DataFrame | None" = None, txn: tuple[str, int] | None = None) -> dict[str, int]:
    """One MERGE into ``recommendations``: rows of ``want`` are upserted (rewritten only when their content
    changed); the table's rows for touched items (changed or deleted), for items in ``want`` that are no
    longer wanted, and for deleted keyphrases are deleted. Stale rows are read from the live table, so a
    rerun after a crash (or after the streaming job touched the same items) converges.

    ``txn=(app_id, version)`` makes the commit idempotent with Delta's transaction identifiers: a MERGE
    whose version is not above the last one committed by ``app_id`` is skipped (``skipped: 1``)."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    t0 = time.time()
    if want is not None:  # used three times below: compute it (the models run here) exactly once
        want = freeze(want)
    live = tables.read_table(spark, cfg, "recommendations")
    current = live.select("item_id", "keyphrase_id")
    scope = touched
    if want is not None:
        scope = scope.unionByName(want.select("item_id")).distinct()
    stale = current.join(scope, "item_id")
    if want is not None:
        stale = stale.join(want.select("item_id", "keyphrase_id"), ["item_id", "keyphrase_id"], "left_anti")
    if kp_dels is not None:
        stale = stale.unionByName(current.join(kp_dels, "keyphrase_id").select("item_id", "keyphrase_id"))
    stale = stale.distinct()
    schema = live.schema
    dels = stale.select(*[F.col(c) if c in ("item_id", "keyphrase_id") else F.lit(None).cast(schema[c].dataType)
                          .alias(c) for c in schema.names]).withColumn("_action", F.lit("delete"))
    source = dels
    if want is not None:
        source = want.select(*schema.names).withColumn("_action", F.lit("upsert")).unionByName(dels)
    source = freeze(source)
    n = {r["_action"]: r["count"] for r in source.groupBy("_action").count().collect()}
    n_up, n_del = n.get("upsert", 0), n.get("delete", 0)
    t_rows = time.time() - t0
    content = [c for c in schema.names if c not in ("item_id", "keyphrase_id", "run_id", "created_at")]
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in content)
    target = tables.ensure_table(spark, cfg, "recommendations")
    cols = ", ".join(f"`{c}`" for c in schema.names)
    clauses = (f"WHEN MATCHED AND s._action = 'delete' THEN DELETE "
               f"WHEN MATCHED AND s._action = 'upsert' AND ({changed}) THEN UPDATE SET "
               + ", ".join(f"t.`{c}` = s.`{c}`" for c in schema.names)
               + f" WHEN NOT MATCHED AND s._action = 'upsert' THEN INSERT ({cols}) VALUES ("
               + ", ".join(f"s.`{c}`" for c in schema.names) + ")")

    def run() -> None:
        tables.merge(spark, target, source, "t.item_id = s.item_id AND t.keyphrase_id = s.keyphrase_id", clauses)

    t0 = time.time()
    if txn is None:
        run()
        return {"rows_upserted": n_up, "rows_deleted": n_del, "rows_s": round(t_rows, 2),
                "merge_s": round(time.time() - t0, 2)}
    before = tables.version(spark, cfg, "recommendations")
    with _txn_conf(spark, *txn):
        run()
    skipped = int(tables.version(spark, cfg, "recommendations") == before)
    return {"rows_upserted": 0 if skipped else n_up, "rows_deleted": 0 if skipped else n_del, "skipped": skipped,
            "rows_s": round(t_rows, 2), "merge_s": round(time.time() - t0, 2)}


@contextlib.contextmanager
def _txn_conf(spark: "SparkSession", app_id: str, version: int) -> Iterator[None]:
    """Delta's idempotent-DML session confs for the writes inside the block (always unset after)."""
    keys = ("spark.databricks.delta.write.txnAppId", "spark.databricks.delta.write.txnVersion")
    spark.conf.set(keys[0], app_id)
    spark.conf.set(keys[1], str(int(version)))
    try:
        yield
    finally:
        for k in keys:
            spark.conf.unset(k)
