"""Near-real-time recommendations for items just created or revised (``jobs/streaming.py``).

A Structured Streaming query reads the Change Data Feed of ``items`` (from the version after the one
the last full batch or daily diff covered, on its first start; from its checkpoint afterwards) and, in
``foreachBatch``, runs each micro-batch's changed items through the same pipeline as the batch jobs
(embedding -> ANN -> cross-encoder -> relevance filter -> top-n) and MERGEs the result into
``recommendations``: the items' rows are replaced, deleted items' rows removed.

Exactly-once effect: the MERGE carries Delta's transaction identifier ``(app id, batch_id)``, so a
micro-batch replayed after a crash (the checkpoint had not recorded it as done) is skipped by Delta
if its MERGE had committed, and applied otherwise. The app id is ``<query_name>:<query id>``: the query id
is kept in the checkpoint (it survives restarts from it), so a query started on a new checkpoint, whose
batch ids begin at 0 again, is not mistaken for replays of the old query's batches (Delta's own advice for
``foreachBatch`` writes).

The pipeline (index, threshold, model versions) is read from ``pipeline_state`` and the registry for
every micro-batch, so a rebuilt index or a promoted model is picked up without restarting the query.
The daily diff stays the authority: it re-applies the same item changes later (same rows, no-op
updates), updates the embeddings tables, and handles keyphrase changes.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from kpspark.config import Config
from kpspark.sparkutil import freeze

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

logger = logging.getLogger(__name__)


def checkpoint_location(cfg: Config) -> str:
    """``streaming.checkpoint``, or ``<lakehouse.root>/_checkpoints/items_stream``."""
    from kpspark.data.tables import lakehouse_root

    return cfg.streaming.checkpoint or f"{lakehouse_root(cfg)}/_checkpoints/items_stream"


def app_id(cfg: Config, query_id: str) -> str:
    """The MERGEs' transaction app id for the query with this (checkpoint-persistent) id."""
    return f"{cfg.streaming.query_name}:{query_id}"


def process_batch(cfg: Config, batch: "DataFrame", batch_id: int, app: str, run_id: str = "") -> dict[str, Any]:
    """One micro-batch of ``items`` change rows -> one MERGE into ``recommendations``, idempotent per
    ``(app, batch_id)`` (``app``: :func:`app_id` of the query)."""
    from kpspark.production import diff

    t0 = time.time()
    spark = batch.sparkSession
    last = freeze(diff.last_changes(batch, "item_id"))
    try:
        return _process(cfg, spark, last, batch_id, app, run_id, t0)
    finally:
        last.unpersist()


def _process(cfg: Config, spark: "SparkSession", last: "DataFrame", batch_id: int, app: str, run_id: str,
             t0: float) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from kpspark.production import diff
    from kpspark.retrieval.workflow import RECOMMENDATION_COLS
    from kpspark.rules import stamp_columns, top_n, version_stamp

    ups = last.where(F.col("_change_type") != "delete").select("item_id", "title", "category")
    dels = last.where(F.col("_change_type") == "delete").select("item_id")
    n_ups, n_dels = ups.count(), dels.count()
    if not n_ups and not n_dels:
        return {"batch_id": batch_id, "items_upserted": 0, "items_deleted": 0, "skipped": 0}
    state = diff.read_state(spark, cfg)
    if diff.ITEMS_STATE not in state:
        raise diff.StateMissing("no pipeline_state: run the full batch (jobs/full_batch.py) before the stream")
    details = state[diff.ITEMS_STATE]
    pipe = diff.state_pipeline(cfg, details)
    want = None
    if n_ups:
        want = top_n(pipe.transform(ups).select(*RECOMMENDATION_COLS), cfg.retrieval.top_n).select(
            *RECOMMENDATION_COLS, "rank", *stamp_columns(version_stamp(pipe), run_id))
    touched = ups.select("item_id").unionByName(dels)
    merged = diff.merge_recommendations(spark, cfg, want, touched, txn=(app, batch_id))
    out = {"batch_id": batch_id, "items_upserted": n_ups, "items_deleted": n_dels, **merged,
           "seconds": round(time.time() - t0, 2)}
    logger.info("streaming batch %s: %s", batch_id, out)
    return out


def _query_id(spark: "SparkSession", name: str) -> str:
    """The id of the running query ``name``, from inside its ``foreachBatch``. Classic: the stream thread's
    ``sql.streaming.queryId`` local property (the batch's session is a clone that lists no queries); Spark
    Connect (no SparkContext): the session's active queries (the batch runs in the client's session)."""
    from kpspark.sparkutil import is_connect

    if not is_connect(spark):
        qid = spark.sparkContext.getLocalProperty("sql.streaming.queryId")
        if qid:
            return str(qid)
    for q in spark.streams.active:
        if q.name == name:
            return str(q.id)
    raise RuntimeError(f"no active streaming query named {name!r} in this session")


def _log_batch(tracking_uri: str, run_id: str, res: dict[str, Any]) -> None:
    """A micro-batch's figures as metrics of the job's MLflow run (step = batch id)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient(tracking_uri).log_batch(run_id, metrics=[
        Metric(f"stream_{k}", float(v), now, int(res["batch_id"])) for k, v in res.items() if k != "batch_id"])


def make_batch_fn(cfg: Config, run_id: str = "", tracking_uri: str = "") -> Any:
    """The ``foreachBatch`` function. It closes over plain values only: over Spark Connect it is pickled and run
    by a Python process beside the server, so its results go to the MLflow run ``run_id`` (when given), not
    to a list in the client."""

    def _batch(df: "DataFrame", batch_id: int) -> None:
        app = app_id(cfg, _query_id(df.sparkSession, cfg.streaming.query_name))
        res = process_batch(cfg, df, batch_id, app, run_id=run_id)
        if run_id:
            _log_batch(tracking_uri, run_id, res)

    return _batch


def start_stream(cfg: Config, spark: "SparkSession", run_id: str = "", tracking_uri: str = "") -> "StreamingQuery":
    """Start the query (not waiting). With ``run_id``, every micro-batch's figures are logged to that MLflow run
    (through ``tracking_uri``)."""
    from kpspark.data import tables
    from kpspark.production import diff

    st = cfg.streaming
    state = diff.read_state(spark, cfg)
    if diff.ITEMS_STATE not in state:
        raise diff.StateMissing("no pipeline_state: run the full batch (jobs/full_batch.py) before the stream")
    start = int(state[diff.ITEMS_STATE]["version"]) + 1  # used on the first start only; then the checkpoint
    ref = tables.ensure_table(spark, cfg, "items")
    # nothing committed since the last full batch/diff: Delta refuses a starting version that does not exist yet,
    # and "latest" is the same point (changes after the newest version)
    starting = start if start <= tables.version(spark, cfg, "items") else "latest"
    reader = (spark.readStream.format("delta").option("readChangeFeed", "true")
              .option("startingVersion", starting).option("maxFilesPerTrigger", st.max_files_per_trigger))
    stream = reader.load(ref.location) if ref.is_path else reader.table(ref.location)
    writer = (stream.writeStream.queryName(st.query_name).option("checkpointLocation", checkpoint_location(cfg))
              .foreachBatch(make_batch_fn(cfg, run_id, tracking_uri)))
    trigger = resolve_trigger(st.trigger, spark)
    if trigger == "availableNow":
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=st.interval)
    return writer.start()


def resolve_trigger(trigger: str, spark: "SparkSession") -> str:
    """``streaming.trigger`` for this session: ``auto`` is ``availableNow`` over Spark Connect (Databricks serverless
    runs only that trigger) and ``processingTime`` on a classic session."""
    from kpspark.sparkutil import is_connect

    if trigger == "auto":
        return "availableNow" if is_connect(spark) else "processingTime"
    if trigger not in ("availableNow", "processingTime"):
        raise ValueError(f"streaming.trigger must be auto, availableNow or processingTime, got {trigger!r}")
    return trigger


def _batches_of(client: Any, run_id: str) -> list[dict[str, float]]:
    """The micro-batches a run logged (:func:`_log_batch`), in batch order."""
    run = client.get_run(run_id)
    keys = [k for k in run.data.metrics if k.startswith("stream_")]
    by_step: dict[int, dict[str, float]] = {}
    for k in keys:
        for m in client.get_metric_history(run_id, k):
            by_step.setdefault(int(m.step), {"batch_id": int(m.step)})[k.removeprefix("stream_")] = m.value
    return [by_step[s] for s in sorted(by_step)]


def run_streaming(cfg: Config, spark: "SparkSession", timeout_s: float | None = None) -> dict[str, Any]:
    """Run the near-real-time job: with ``trigger: availableNow`` (``auto`` over Spark Connect) it drains the
    pending item changes and returns; with ``processingTime`` (``auto`` on a classic session) it runs until stopped
    (or ``timeout_s``). Micro-batch figures go to
    an MLflow run (step = batch id), which is also where the result's totals are read from."""
    from kpspark.registry import models, tracking

    with tracking.start_run(cfg, "streaming", spark=spark, tables=["items", "recommendations"],
                            tags={"kind": "streaming"}) as run:
        q = start_stream(cfg, spark, run_id=run.info.run_id, tracking_uri=tracking.tracking_uri(cfg))
        try:
            q.awaitTermination(timeout_s)
        finally:
            if q.isActive:
                q.stop()
        if q.exception() is not None:
            raise RuntimeError(f"the streaming query failed: {q.exception()}")
        batches = _batches_of(models.client(cfg), run.info.run_id)
    total = {k: int(sum(b.get(k, 0) for b in batches)) for k in ("items_upserted", "items_deleted", "rows_upserted",
                                                                  "skipped")}
    return {"run_id": run.info.run_id, "app_id": app_id(cfg, str(q.id)), "batches": len(batches),
            "items_upserted": total["items_upserted"], "items_deleted": total["items_deleted"],
            "rows_upserted": total["rows_upserted"], "batches_skipped": total["skipped"],
            "checkpoint": checkpoint_location(cfg)}
