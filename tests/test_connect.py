"""The production jobs over Spark Connect (marked ``connect``: ``make test-lanes`` runs it on the 4.2 lane).

Each job runs as its own process with ``--remote local[2]``: pyspark starts a local Connect server (with the
Delta jars) and the job's client has no SparkContext, no ``.rdd`` and no JVM handle — what Databricks shared
and serverless compute give. The full batch runs every stage (embedding, ANN, cross-encoder, filter) over the
Connect session, the daily diff MERGEs through SQL, and the stream's ``foreachBatch`` runs in a Python process
beside the server, so its figures come back through the MLflow run.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from tests.conftest import REPO, lake_copy
from tests.tools.jobout import job_result

pytestmark = [pytest.mark.connect, pytest.mark.slow]


def _job(job: str, cfg, *sets: str) -> dict:
    cmd = [sys.executable, str(REPO / "jobs" / f"{job}.py"), "--conf", str(REPO / "conf" / "local.yaml"),
           "--remote", "local[2]", "--set", f"lakehouse.root={cfg.lakehouse.root}",
           "--set", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}", "--set", f"mlflow.artifact_root={cfg.mlflow.artifact_root}",
           "--set", f"spark.jars_dir={REPO / '.cache' / 'jars'}", "--set", "spark.conf.spark.driver.memory=2g",
           "--set", "sample.size=tiny", "--set", f"retrieval.k={cfg.retrieval.k}",
           "--set", f"retrieval.top_n={cfg.retrieval.top_n}", "--set", f"bi_encoder.dim={cfg.bi_encoder.dim}",
           *[a for s in sets for a in ("--set", s)]]  # the pipeline fixture's test-sized settings, as on the harness
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=str(REPO))
    assert proc.returncode == 0, f"{job} over Spark Connect failed:\n{proc.stderr[-4000:]}"
    assert "Spark Connect session" in proc.stderr  # it ran on the Connect path, not a classic session
    assert "checkpoint failed" not in proc.stderr  # frames were frozen by a server-side checkpoint, not persisted
    return job_result(proc.stdout)


def test_full_batch_diff_and_stream_run_over_spark_connect(spark, pipeline, tmp_path, monkeypatch):
    cfg = lake_copy(pipeline, tmp_path, monkeypatch)
    full = _job("full_batch", cfg)
    recs = tables.read_table(spark, cfg, "recommendations")
    assert full["recommendations"] == recs.count() > 0
    assert {r[0] for r in recs.select("run_id").distinct().collect()} == {full["run_id"]}

    items = tables.read_table(spark, cfg, "items").localCheckpoint()
    # items the full batch recommended to: a revision must replace rows that exist
    ids = [r.item_id for r in recs.select("item_id").distinct().orderBy("item_id").limit(5).collect()]

    def revise(batch):
        tables.upsert(spark, cfg, "items", items.where(F.col("item_id").isin(batch))
                      .withColumn("title", F.concat(F.lit("Refurbished "), F.col("title"))))

    revise(ids[:2])
    tables.delete_keys(spark, cfg, "items", items.where(F.col("item_id") == ids[2]).select("item_id"))
    diff = _job("daily_diff", cfg)
    got = tables.read_table(spark, cfg, "recommendations").toPandas()
    assert diff["changed"] and not (got["item_id"] == ids[2]).any()
    assert set(got[got["run_id"] == diff["run_id"]]["item_id"]) <= set(ids[:2])
    assert not got.duplicated(["item_id", "keyphrase_id"]).any()

    revise(ids[3:5])
    stream = _job("streaming", cfg)  # trigger auto: availableNow over Connect (a processingTime query would not end)
    assert stream["batches"] >= 1 and stream["items_upserted"] == 2, stream  # from the MLflow run
    got = tables.read_table(spark, cfg, "recommendations").toPandas()
    mine = got[got["run_id"] == stream["run_id"]]
    assert set(mine["item_id"]) <= set(ids[3:5])
    # the revised items' old rows are gone: what they have is exactly what the stream wrote (a revised item can lose
    # every candidate to the filter: the 4.2 lane saw one, then both, keep no row)
    revised = got[got["item_id"].isin(ids[3:5])]
    assert set(revised["run_id"]) <= {stream["run_id"]} and len(revised) == len(mine) == stream["rows_upserted"]
    again = _job("streaming", cfg, "streaming.trigger=availableNow")  # restarted from its checkpoint
    assert again["batches"] == 0 and again["app_id"] == stream["app_id"]
