"""The near-real-time job's driver killed with SIGKILL mid-stream on the isolated cluster
(``tests/clusterutil.py``; checkpoint on the shared storage) and restarted from its checkpoint (marked
``reliability``): no duplicates (one row per item and keyphrase; each micro-batch's MERGE committed at most
once, by its Delta transaction id) and no gaps (every revised item's full-batch rows were replaced)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from tests.clusterutil import shared_lake, submit, submit_and_kill
from tests.reliability.jobproc import delta_commits

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def _txn_versions(table_dir: str, query_name: str) -> list[tuple[str, int]]:
    """(app id, batch id) of every commit by a query of this name (app id ``<name>:<query id>``)."""
    out = []
    for f in sorted((Path(table_dir) / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action and action["txn"]["appId"].startswith(query_name + ":"):
                out.append((action["txn"]["appId"], int(action["txn"]["version"])))
    return out


def test_streaming_killed_and_restarted_has_no_duplicates_and_no_gaps(spark, pipeline, cluster, tmp_path, figures):
    from kpspark.package import build_zip

    lake = shared_lake(cluster, pipeline, "streamkill")
    pyfiles = build_zip(cluster.client / "dist-streamkill")
    # a full batch on the cluster first: its index goes to the tracking server (the copy's state names the
    # demo's own store)
    submit(cluster, "full_batch", lake, pyfiles, tmp_path / "full")
    checkpoint = Path(lake.lakehouse.root).parent / "checkpoint"
    full_run = tables.read_table(spark, lake, "recommendations").select("run_id").first()[0]
    ids = [r.item_id for r in tables.read_table(spark, lake, "recommendations").select("item_id").distinct()
           .orderBy("item_id").limit(6).collect()]
    items = tables.read_table(spark, lake, "items").localCheckpoint()

    def revise(batch: list[int], word: str) -> None:
        tables.upsert(spark, lake, "items", items.where(F.col("item_id").isin(batch))
                      .withColumn("title", F.concat(F.lit(word + " "), F.col("title"))))

    sets = {"streaming.trigger": "processingTime", "streaming.interval": "2 seconds",
            "streaming.checkpoint": str(checkpoint)}
    recs_dir = tables.table_ref(lake, "recommendations").location
    app = lake.streaming.query_name
    revise(ids[:2], "Mint")
    state = {"phase": 0, "t": 0.0, "v": delta_commits(recs_dir)}

    def scenario() -> bool:
        """First micro-batch committed -> revise two more items -> kill 1.5 s later (mid-batch, most likely)."""
        if state["phase"] == 0 and delta_commits(recs_dir) > state["v"]:
            revise(ids[2:4], "Mint")
            state.update(phase=1, t=time.time())
        return state["phase"] == 1 and time.time() - state["t"] > 1.5

    kill = submit_and_kill(cluster, "streaming", lake, pyfiles, tmp_path / "killed", scenario, sets=sets)
    assert kill["killed"], kill
    before_restart = _txn_versions(recs_dir, app)
    revise(ids[4:], "Mint")
    res = submit(cluster, "streaming", lake, pyfiles, tmp_path / "restart",
                 sets={**sets, "streaming.trigger": "availableNow"})
    after = _txn_versions(recs_dir, app)

    got = tables.read_table(spark, lake, "recommendations").toPandas()
    dups = int(got.duplicated(["item_id", "keyphrase_id"]).sum())
    gaps = sorted(int(i) for i in got[got["item_id"].isin(ids) & (got["run_id"] == full_run)]["item_id"].unique())
    assert dups == 0 and gaps == [], (dups, gaps)
    assert len(after) == len(set(after)), after  # no micro-batch committed twice
    assert len({a for a, _ in after}) == 1, after  # the restart is the same query (its id is in the checkpoint)
    assert res["items_upserted"] >= 2  # the restart picked up at least the revisions made after the kill
    figures["streaming_kill_restart"] = {
        "revised_items": len(ids), "batches_committed_before_kill": len(before_restart),
        "batches_committed_after_restart": len(after) - len(before_restart),
        "items_processed_after_restart": res["items_upserted"], "duplicates": dups, "gaps": len(gaps),
        "kill_after_s": kill["seconds"], "on": "isolated cluster (spark-submit, 2 workers)"}
