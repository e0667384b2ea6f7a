"""Faults on the isolated loopback cluster (``tests/clusterutil.py``: nodes share only the lakehouse storage and
the MLflow server; marked ``reliability``): while the full batch and then the daily
diff run through ``spark-submit``, one executor's busy Python worker is killed, then a whole worker
(its JVM, its executor and the executor's Python workers). Spark retries the failed tasks and moves
the lost executor's work to the other one; the outputs must equal those of undisturbed runs on an
identical copy.

The comparison runs both models in fp32: int8 dynamic quantization makes a score depend on its Arrow
batch-mates (~1e-3), and losing an executor changes the number of task slots, hence the partitioning
of later stages; fp32 scores are batch-invariant to ~1e-5. Same (item, keyphrase) rows and ranks,
scores within 1e-4."""
from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from tests.clusterutil import shared_lake, submit

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
FP32 = {"cross_encoder.precision": "fp32", "bi_encoder.precision": "fp32"}


def _busy_python_workers(c, i: int) -> list:
    """Python worker processes under worker ``i`` that are using the CPU (running a task)."""
    import psutil

    try:
        procs = psutil.Process(c.workers[i].pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    daemons = [p for p in procs if "python" in p.name() and any("pyspark.daemon" in a for a in p.cmdline())]
    pids = {d.pid for d in daemons}
    forked = [p for p in daemons if p.ppid() in pids]  # the daemon's forked workers, not the daemon itself
    busy = []
    for p in forked:
        try:
            if p.cpu_percent(interval=0.3) > 30:
                busy.append(p)
        except psutil.NoSuchProcess:
            pass
    return busy


def _injector(c, log: list, timeout: float = 300):
    """``during(proc)`` for :func:`submit`: kill a busy Python worker of worker 0, then, 2 s later,
    worker 1 with its executor."""
    def during(proc) -> None:
        t0 = time.time()
        step = 0
        while proc.poll() is None and time.time() - t0 < timeout and step < 2:
            if step == 0:
                busy = _busy_python_workers(c, 0)
                if busy:
                    busy[0].kill()
                    log.append({"fault": "python_worker_killed", "worker": 0, "at_s": round(time.time() - t0, 1)})
                    step, t1 = 1, time.time()
            elif time.time() - t1 > 2:  # then the other worker, whatever it is doing
                c.kill_worker(1)
                log.append({"fault": "worker_killed", "worker": 1, "at_s": round(time.time() - t0, 1)})
                step = 2
            time.sleep(0.2)
    return during


def _rows(spark, cfg):
    return {(r.item_id, r.keyphrase_id): (r.rank, r.ce_score) for r in
            tables.read_table(spark, cfg, "recommendations").select("item_id", "keyphrase_id", "rank", "ce_score")
            .collect()}


def _same(a: dict, b: dict) -> dict:
    assert a.keys() == b.keys(), (len(a), len(b), len(a.keys() ^ b.keys()))
    worst = max((abs(a[k][1] - b[k][1]) for k in a), default=0.0)
    assert worst < 1e-4 and all(a[k][0] == b[k][0] for k in a)
    return {"rows": len(a), "max_score_diff": worst}


def test_jobs_survive_killed_python_workers_and_a_lost_worker(spark, pipeline, cluster, tmp_path, figures):
    from kpspark.package import build_zip

    base = shared_lake(cluster, pipeline, "faults")
    # 8x the items (same titles, new ids): a job long enough to be hit mid-flight
    items = tables.read_table(spark, base, "items")
    top = items.agg(F.max("item_id")).first()[0]
    more = None
    for k in range(1, 8):
        part = items.withColumn("item_id", F.col("item_id") + F.lit(k * (top + 1)))
        more = part if more is None else more.unionByName(part)
    tables.upsert(spark, base, "items", more)
    n_items = tables.read_table(spark, base, "items").count()
    lakes = {}
    for name in ("calm", "faulty"):
        shutil.copytree(base.lakehouse.root, cluster.shared / name)
        lakes[name] = dataclasses.replace(base, lakehouse=dataclasses.replace(base.lakehouse,
                                                                              root=str(cluster.shared / name)))
    pyfiles = build_zip(cluster.client / "dist-faults")
    sets = dict(FP32)
    out = {"items": n_items}
    for job in ("full_batch", "daily_diff"):
        if job == "daily_diff":  # the same revisions in both copies
            for lake in lakes.values():
                it = tables.read_table(spark, lake, "items")
                tables.upsert(spark, lake, "items", it.where(F.pmod(F.col("item_id"), F.lit(4)) == 0)
                              .withColumn("title", F.concat(F.lit("Renewed "), F.col("title"))))
        calm_dir, faulty_dir = tmp_path / f"{job}-calm", tmp_path / f"{job}-faulty"
        calm_dir.mkdir(), faulty_dir.mkdir()
        submit(cluster, job, lakes["calm"], pyfiles, calm_dir, sets=sets)
        log: list = []
        try:
            submit(cluster, job, lakes["faulty"], pyfiles, faulty_dir, during=_injector(cluster, log),
                   extra_conf={"spark.task.maxFailures": "8"}, sets=sets)
        finally:
            cluster.restart_worker(1)
        assert [e["fault"] for e in log] == ["python_worker_killed", "worker_killed"], log
        out[job] = {"faults": log, **_same(_rows(spark, lakes["calm"]), _rows(spark, lakes["faulty"]))}
    figures["cluster_faults"] = out
