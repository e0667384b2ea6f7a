"""A real Spark standalone cluster on 127.0.0.1: a master and two one-core workers started with the
``spark-class`` launcher of the pyspark package; the full-batch and daily-diff jobs go through
``spark-submit`` with the package shipped as a zip (``--py-files``), on a copy of the session's demo
lakehouse and MLflow store.

Each worker (and so each executor and its Python workers) has its own ``TMPDIR``: the models and the
index the executors use must show up there, downloaded from the registry/run artifacts, since nothing
is handed over from the driver's disk."""
from __future__ import annotations


import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.production import diff
from tests.clusterutil import submit
from tests.conftest import lake_copy

pytestmark = pytest.mark.slow


def test_full_batch_and_daily_diff_run_through_spark_submit_on_a_standalone_cluster(
        spark, pipeline, cluster, tmp_path, monkeypatch):
    from kpspark.package import build_zip

    # a copy of the demo lakehouse and of its MLflow store (the jobs register runs and may rebuild the index)
    lake = lake_copy(pipeline, tmp_path, monkeypatch)
    pyfiles = build_zip(tmp_path / "dist")

    full = submit(cluster, "full_batch", lake, pyfiles, tmp_path)
    recs = tables.read_table(spark, lake, "recommendations")
    assert full["recommendations"] == recs.count() > 0
    assert recs.where(F.col("run_id") != full["run_id"]).count() == 0  # one atomic overwrite by that run
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["run_id"] == full["run_id"]

    # the executors fetched the models and the index themselves, into their workers' temp dirs
    fetched = [p for wt in cluster.worker_tmps for p in wt.glob("kpspark-model-*")]
    assert fetched, f"no model downloaded under the executors' TMPDIRs {cluster.worker_tmps}"
    metas = [m for p in fetched for m in p.rglob("kpspark_model.json")]
    assert len(metas) >= 2, f"expected the cross-encoder, bi-encoder and index exports, got {metas}"

    # revise two items, delete one: the diff job applies exactly that
    ids = [r.item_id for r in recs.select("item_id").distinct().orderBy("item_id").limit(3).collect()]
    items = tables.read_table(spark, lake, "items")
    tables.upsert(spark, lake, "items", items.where(F.col("item_id").isin(ids[:2]))
                  .withColumn("title", F.concat(F.lit("Used "), F.col("title"))))
    tables.delete_keys(spark, lake, "items", items.where(F.col("item_id") == ids[2]).select("item_id"))
    res = submit(cluster, "daily_diff", lake, pyfiles, tmp_path)
    assert res["changed"] and res["items_upserted"] == 2 and res["items_deleted"] == 1
    after = tables.read_table(spark, lake, "recommendations")
    assert after.where(F.col("item_id") == ids[2]).count() == 0
    assert after.where(F.col("run_id") == res["run_id"]).select("item_id").distinct().count() <= 2
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["version"] == res["items_version"]
