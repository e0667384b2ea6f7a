"""Faults survived (marked ``reliability``: ``make reliability`` runs them, ``make test`` does not).

* the labeling job killed with SIGKILL (driver, JVM and Python workers) after its first committed
  chunk: the rerun labels only the rest;
* the daily diff's driver killed at two moments (mid-job, before the recommendations MERGE, and right after
  it commits), on the isolated cluster (``tests/clusterutil.py``: the driver, the workers and the MLflow server
  share only the lakehouse storage and the tracking server): the rerun converges to the table an undisturbed
  diff produces.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.production import diff
from tests.clusterutil import shared_lake, submit, submit_and_kill
from tests.reliability.jobproc import delta_commits, kill_when, run_job

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_killed_labeling_job_reruns_only_the_rest(spark, cfg, tmp_path, figures):
    from kpspark import workflows

    workflows.run_generate_sample(cfg, spark)
    pairs = tables.read_table(spark, cfg, "pairs").orderBy("item_id", "keyphrase_id").limit(16).localCheckpoint()
    tables.write_table(spark, cfg, "pairs", pairs, mode="overwrite")
    total = tables.read_table(spark, cfg, "pairs").count()
    assert total == 16
    sets = ["llm.backend=transformers", "llm.model=smollm2", "llm.prompt_version=v1", "llm.sample_size=0",
            "llm.chunk_pairs=4", "llm.strategy=uniform",
            "sample.size=tiny"]
    labels_dir = tables.table_ref(cfg, "llm_labels").location

    def after_first_chunk() -> bool:  # version 0 creates llm_labels, version 1 is the first chunk's MERGE
        # read from the Delta log's files, not through this session: a Spark read per poll competes with the
        # job for the cores and, in one full reliability run, never saw the rows before the job had finished
        return delta_commits(labels_dir) >= 2

    kill = kill_when("label_pairs", cfg, sets, tmp_path, after_first_chunk, poll=0.5)
    assert kill["killed"], "the labeling job finished before its first chunk was seen"
    done = tables.read_table(spark, cfg, "llm_labels").where("error IS NULL").count()
    assert 0 < done < total
    res = run_job("label_pairs", cfg, sets, tmp_path)
    assert res["pending"] == total - done and res["labeled"] == total - done
    labels = tables.read_table(spark, cfg, "llm_labels")
    assert labels.count() == total == labels.select("item_id", "keyphrase_id").distinct().count()
    figures["labeling_kill"] = {"pairs": total, "labeled_before_kill": done, "relabeled_by_rerun": 0,
                                "labeled_by_rerun": res["labeled"], "pairs_lost": total - labels.count(),
                                "kill_after_s": kill["seconds"]}


@pytest.fixture(scope="module")
def changed_lake(spark, pipeline, cluster, tmp_path_factory):
    """A copy of the demo lakehouse on the cluster's shared storage (its models on the tracking server), a full
    batch there (its index is logged to the server: the copy's state points at the demo's own store), then a day
    of item changes."""
    from kpspark.package import build_zip

    lake = shared_lake(cluster, pipeline, "diffkill")
    submit(cluster, "full_batch", lake, build_zip(cluster.client / "dist-driverkill"),
           tmp_path_factory.mktemp("diffkill-full"), sets=FP32)
    items = tables.read_table(spark, lake, "items")
    ids = [r.item_id for r in tables.read_table(spark, lake, "recommendations").select("item_id").distinct()
           .orderBy("item_id").limit(6).collect()]
    tables.upsert(spark, lake, "items", items.where(F.col("item_id").isin(ids[:4]))
                  .withColumn("title", F.concat(F.lit("Open box "), F.col("title"))))
    tables.delete_keys(spark, lake, "items", items.where(F.col("item_id").isin(ids[4:])).select("item_id"))
    return lake


def _clone(lake, name):
    dst = Path(lake.lakehouse.root).parent / name
    shutil.copytree(lake.lakehouse.root, dst)
    return dataclasses.replace(lake, lakehouse=dataclasses.replace(lake.lakehouse, root=str(dst)))


#: fp32 on both sides of each comparison: int8 dynamic quantization makes a score depend on its batch-mates
FP32 = {"cross_encoder.precision": "fp32", "bi_encoder.precision": "fp32"}


@pytest.mark.timeout(2400)  # five spark-submits on 2 cores (full batch, reference diff, two kills and reruns)
def test_killed_diff_driver_reruns_to_the_undisturbed_table(spark, changed_lake, cluster, tmp_path, figures):
    from kpspark.package import build_zip

    lake = changed_lake
    pyfiles = build_zip(cluster.client / "dist-driverkill")
    reference = _clone(lake, "reference")
    submit(cluster, "daily_diff", reference, pyfiles, tmp_path / "reference", sets=FP32)
    want = diff.content_checksum(tables.read_table(spark, reference, "recommendations"))

    outcomes = []
    for moment in ("before_merge", "after_merge"):
        victim = _clone(lake, moment)
        recs_dir = tables.table_ref(victim, "recommendations").location
        v0 = delta_commits(recs_dir)
        if moment == "before_merge":  # mid-job: the changed items' embeddings committed, the MERGE not yet
            emb_dir = tables.table_ref(victim, "item_embeddings").location
            e0 = delta_commits(emb_dir)
            cond = lambda: delta_commits(emb_dir) > e0  # noqa: E731
        else:
            cond = lambda: delta_commits(recs_dir) > v0  # noqa: E731 (the MERGE just committed)
        kill = submit_and_kill(cluster, "daily_diff", victim, pyfiles, tmp_path / moment, cond, sets=FP32,
                               poll=0.05)
        state_moved = diff.read_state(spark, victim)[diff.ITEMS_STATE]["version"] == \
            tables.version(spark, victim, "items")
        merged = delta_commits(recs_dir) > v0
        submit(cluster, "daily_diff", victim, pyfiles, tmp_path / f"{moment}-rerun", sets=FP32)
        got = diff.content_checksum(tables.read_table(spark, victim, "recommendations"))
        assert got == want, (moment, kill, merged, state_moved)
        outcomes.append({"moment": moment, "killed": kill["killed"], "after_s": kill["seconds"],
                         "merge_committed_before_kill": merged, "state_advanced_before_kill": state_moved,
                         "rerun_matches_undisturbed": got == want})
    assert all(o["killed"] for o in outcomes), outcomes  # each kill hit a running job
    figures["diff_driver_kill"] = {"on": "isolated cluster (spark-submit, 2 workers)", "runs": outcomes,
                                   "rows": want["rows"]}
