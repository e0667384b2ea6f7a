"""Production jobs on a copy of the session's demo lakehouse: the demo ran the full batch (state
recorded); here items and keyphrases change, the daily diff reads only those changes through the
Change Data Feed, and a run that crashes after its MERGE is rerun to the same table. The stream and the
changed-back diff run through their Databricks notebooks (jobs/notebooks/, as plain Python): one run
each tests the notebook and the job."""
from __future__ import annotations

import dataclasses
import shutil

import pandas as pd
import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.production import diff
from tests.conftest import notebook_settings, run_notebook, use_store

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes)


@pytest.fixture(autouse=True)
def _isolated_mlflow(pipeline, monkeypatch):
    """The copies share the session pipeline's MLflow store (its registered models and index)."""
    use_store(monkeypatch, pipeline[2])


def _copy(cfg, src, dst):
    shutil.copytree(src, dst)
    return dataclasses.replace(cfg, lakehouse=dataclasses.replace(cfg.lakehouse, root=str(dst)))


@pytest.fixture(scope="module")
def changed(spark, pipeline, tmp_path_factory):
    """A copy of the demo lakehouse with a day of changes applied."""
    cfg, out, tmp = pipeline
    mp = pytest.MonkeyPatch()
    use_store(mp, tmp)
    base = tmp_path_factory.mktemp("production")
    c1 = _copy(cfg, cfg.lakehouse.root, base / "crash")
    items = tables.read_table(spark, c1, "items")
    recs = tables.read_table(spark, c1, "recommendations")
    ids = [r.item_id for r in recs.select("item_id").distinct().orderBy("item_id").limit(6).collect()]
    revised, deleted = ids[:3], ids[3:5]
    # revise three titles, delete two items
    tables.upsert(spark, c1, "items", items.where(F.col("item_id").isin(revised))
                  .withColumn("title", F.concat(F.lit("Refurbished "), F.col("title"))))
    tables.delete_keys(spark, c1, "items", items.where(F.col("item_id").isin(deleted)).select("item_id"))
    # delete two keyphrases that are recommended to other items, add five new ones
    kp_del = [r.keyphrase_id for r in recs.where(~F.col("item_id").isin(ids)).groupBy("keyphrase_id").count()
              .orderBy(F.desc("count"), "keyphrase_id").limit(2).collect()]
    kps = tables.read_table(spark, c1, "keyphrases")
    tables.delete_keys(spark, c1, "keyphrases", kps.where(F.col("keyphrase_id").isin(kp_del)).select("keyphrase_id"))
    top = kps.agg(F.max("keyphrase_id")).first()[0]
    new = (kps.join(recs.select(F.col("keyphrase").alias("text")).distinct(), "text").orderBy("keyphrase_id").limit(5)
           .withColumn("keyphrase_id", F.col("keyphrase_id") + F.lit(top))
           .withColumn("text", F.concat(F.col("text"), F.lit(" new"))).withColumn("normalized", F.lit(None).cast("string")))
    tables.upsert(spark, c1, "keyphrases", new)
    before = recs.toPandas()
    yield c1, {"revised": revised, "deleted": deleted, "kp_del": kp_del, "before": before}
    mp.undo()


def test_full_batch_recorded_the_state(spark, pipeline):
    cfg, out, _ = pipeline
    state = diff.read_state(spark, cfg)
    assert state[diff.ITEMS_STATE]["version"] == tables.version(spark, cfg, "items")
    assert state[diff.KEYPHRASES_STATE]["version"] == tables.version(spark, cfg, "keyphrases")
    assert state[diff.ITEMS_STATE]["index_uri"] == out["recommendations"]["index_uri"]
    assert state[diff.ITEMS_STATE]["threshold"] == out["recommendations"]["threshold"]


@pytest.mark.delta_release  # the 4.0 and 4.2 lanes run Delta 4.4.0 as the default lane does: run there and on 3.5
def test_daily_diff_applies_only_the_changes_and_a_crashed_run_converges(spark, changed):
    lake, ch = changed
    # a run that dies right after its MERGE: recommendations written, state not advanced
    v0 = diff.read_state(spark, lake)[diff.ITEMS_STATE]["version"]
    with pytest.raises(RuntimeError, match="injected failure"):
        diff.run_daily_diff(lake, spark, fail_after="merge")
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["version"] == v0
    crashed = diff.content_checksum(tables.read_table(spark, lake, "recommendations"))
    # the rerun redoes the same diff and converges to the same table
    res = diff.run_daily_diff(lake, spark)
    assert res["changed"] and res["items_upserted"] == 3 and res["items_deleted"] == 2
    assert res["keyphrases_upserted"] == 5 and res["keyphrases_deleted"] == 2
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["version"] == res["items_version"] > v0
    assert diff.content_checksum(tables.read_table(spark, lake, "recommendations")) == crashed
    assert crashed["rows"] > 0

    got = tables.read_table(spark, lake, "recommendations").toPandas()
    before = ch["before"]
    assert not got["item_id"].isin(ch["deleted"]).any()  # deleted items: gone
    assert not got["keyphrase_id"].isin(ch["kp_del"]).any()  # deleted keyphrases: gone
    revised = got[got["item_id"].isin(ch["revised"])]
    assert len(revised) and revised["run_id"].ne(before["run_id"].iloc[0]).any()  # revised: recomputed
    assert not got.duplicated(["item_id", "keyphrase_id"]).any()
    # items nothing touched keep their rows exactly (same run id: not rewritten)
    touched = set(got[got["run_id"] != before["run_id"].iloc[0]]["item_id"]) | set(ch["deleted"]) | set(ch["revised"])
    untouched_before = before[~before["item_id"].isin(touched) & ~before["keyphrase_id"].isin(ch["kp_del"])]
    untouched_after = got[~got["item_id"].isin(touched)]
    key = ["item_id", "keyphrase_id", "run_id"]
    assert set(map(tuple, untouched_before[key].to_numpy())) == set(map(tuple, untouched_after[key].to_numpy()))
    # nothing changed since: the next diff is a no-op
    assert diff.run_daily_diff(lake, spark)["changed"] is False


def test_diff_without_a_full_batch_is_a_clear_error(spark, cfg):
    tables.ensure_table(spark, cfg, "items")
    with pytest.raises(diff.StateMissing, match="run the full batch"):
        diff.run_daily_diff(cfg, spark)


def test_streaming_updates_revised_items_once_per_batch_and_restarts_from_its_checkpoint(spark, pipeline, tmp_path):
    from kpspark.notebook import config
    from kpspark.production import streaming

    cfg, _, ptmp = pipeline
    shutil.copytree(cfg.lakehouse.root, tmp_path / "stream")
    # fp32 models, so that the replayed batch below recomputes the stream's rows exactly (dynamic int8 scores move
    # with their batch-mates; the 3.5 lane once saw 578 rows vs 577)
    settings = notebook_settings(pipeline, tmp_path / "stream", f"sqlite:///{ptmp / 'mlflow.db'}",
                                 "streaming.trigger=availableNow", f"streaming.checkpoint={tmp_path / 'checkpoint'}",
                                 "cross_encoder.precision=fp32", "bi_encoder.precision=fp32")
    lake = config("conf/local.yaml", ";".join(settings))  # what the notebook builds from its widgets
    before = tables.read_table(spark, lake, "recommendations").toPandas()
    ids = sorted(before["item_id"].unique())[:3]
    revised, deleted = ids[:2], ids[2]
    items = tables.read_table(spark, lake, "items")
    tables.upsert(spark, lake, "items", items.where(F.col("item_id").isin(revised))
                  .withColumn("title", F.concat(F.lit("Refurbished "), F.col("title"))))
    tables.delete_keys(spark, lake, "items", items.where(F.col("item_id") == int(deleted)).select("item_id"))

    res = run_notebook(spark, "streaming", settings)
    assert res["batches"] >= 1 and res["items_upserted"] == 2 and res["items_deleted"] == 1
    got = tables.read_table(spark, lake, "recommendations").toPandas()
    assert not (got["item_id"] == deleted).any()
    assert not got.duplicated(["item_id", "keyphrase_id"]).any()
    mine = got[got["run_id"] == res["run_id"]]
    assert set(mine["item_id"]) <= set(map(int, revised)) and len(mine) > 0
    # every other item keeps its rows as the full batch wrote them
    others_before = before[~before["item_id"].isin(ids)]
    others_after = got[~got["item_id"].isin(ids)]
    key = ["item_id", "keyphrase_id", "run_id"]
    assert set(map(tuple, others_before[key].to_numpy())) == set(map(tuple, others_after[key].to_numpy()))

    # restarted from its checkpoint with nothing new: no micro-batch, no commit
    v = tables.version(spark, lake, "recommendations")
    restart = streaming.run_streaming(lake, spark)
    assert restart["batches"] == 0 and restart["app_id"] == res["app_id"]  # the query id lives in the checkpoint
    assert tables.version(spark, lake, "recommendations") == v

    # a replayed micro-batch (same batch id, as after a crash before the checkpoint's commit) is skipped by
    # Delta's transaction id; only a new one commits
    state = diff.read_state(spark, lake)[diff.ITEMS_STATE]
    changes = tables.read_changes(spark, lake, "items", int(state["version"]) + 1)
    app = res["app_id"]
    replay = streaming.process_batch(lake, changes, batch_id=0, app=app, run_id="replay")
    assert replay["skipped"] == 1 and tables.version(spark, lake, "recommendations") == v
    again = streaming.process_batch(lake, changes, batch_id=10**6, app=app, run_id="replay")
    assert again["skipped"] == 0 and tables.version(spark, lake, "recommendations") == v + 1
    # the new batch recomputed the same rows (its MERGE leaves rows whose content did not change as they were)
    redone = tables.read_table(spark, lake, "recommendations").toPandas()
    pair = ["item_id", "keyphrase_id"]
    assert set(map(tuple, redone[pair].to_numpy())) == set(map(tuple, got[pair].to_numpy())) and len(redone) == len(got)

    # a query on a new checkpoint starts its batch ids at 0 again: a new app id, so its batches are applied, not
    # skipped as replays of the old query's (which would leave the items it re-reads with stale rows)
    fresh = dataclasses.replace(lake, streaming=dataclasses.replace(lake.streaming,
                                                                    checkpoint=str(tmp_path / "new-checkpoint")))
    anew = streaming.run_streaming(fresh, spark)
    assert anew["app_id"] != app and anew["batches"] >= 1 and anew["batches_skipped"] == 0, anew


def test_a_diff_over_items_changed_and_changed_back_reproduces_the_full_batch_rows(spark, pipeline, tmp_path):
    """Full batch, diff and stream cut each item's list with the one top-n rule (kpspark.rules.top_n): items
    revised and revised back go through the diff's own path (stored embeddings, the same filter with the state's
    per-category thresholds) and come out with the full batch's rows, rank for rank. fp32 models on both sides:
    int8 outputs move with their batch-mates (dynamic quantization), which blurs rows at the threshold, the top-n
    cut and the top-k candidates (an int8 run saw 10 such rows of 8 items)."""
    from kpspark.notebook import config

    cfg, _, ptmp = pipeline
    shutil.copytree(cfg.lakehouse.root, tmp_path / "lake")
    settings = notebook_settings(pipeline, tmp_path / "lake", f"sqlite:///{ptmp / 'mlflow.db'}",
                                 "cross_encoder.precision=fp32", "bi_encoder.precision=fp32")
    lake = config("conf/local.yaml", ";".join(settings))
    full = run_notebook(spark, "full_batch", settings)
    assert full["recommendations"] == tables.read_table(spark, lake, "recommendations").count() > 0
    before = tables.read_table(spark, lake, "recommendations").toPandas()
    ids = sorted(before["item_id"].unique())[:8]
    items = tables.read_table(spark, lake, "items").where(F.col("item_id").isin([int(i) for i in ids]))
    orig = items.toPandas()
    # revised, then revised back: the diff recomputes these items from content the full batch saw
    tables.upsert(spark, lake, "items", items.withColumn("title", F.concat(F.col("title"), F.lit(" (v2)"))))
    tables.upsert(spark, lake, "items", spark.createDataFrame(orig, items.schema))
    state = diff.read_state(spark, lake)[diff.ITEMS_STATE]
    res = run_notebook(spark, "daily_diff", settings)
    assert res["changed"] and res["items_upserted"] == len(ids) and res["keyphrases_upserted"] == 0
    after_state = diff.read_state(spark, lake)[diff.ITEMS_STATE]  # the next diff filters the same way
    assert after_state["category_thresholds"] == state["category_thresholds"] != {}
    after = tables.read_table(spark, lake, "recommendations").toPandas()
    cols = ["item_id", "keyphrase_id", "keyphrase", "rank", "retriever_version", "ce_version"]
    got = after[cols].sort_values(cols).reset_index(drop=True)
    want = before[cols].sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    both = after.merge(before, on=["item_id", "keyphrase_id"], suffixes=("", "_before"))
    assert (both["ce_score"] - both["ce_score_before"]).abs().max() < 1e-4
    assert set(after.loc[after["item_id"].isin(ids), "run_id"]) <= {res["run_id"], before["run_id"].iloc[0]}
