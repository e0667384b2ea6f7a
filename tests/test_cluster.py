"""A real Spark standalone cluster on 127.0.0.1: a master and two one-core workers started with the
``spark-class`` launcher of the pyspark package; the full-batch and daily-diff jobs go through
``spark-submit`` with the package shipped as a zip (``--py-files``), on a copy of the session's demo
lakehouse and MLflow store.

Each worker (and so each executor and its Python workers) has its own ``TMPDIR``: the models and the
index the executors use must show up there, downloaded from the registry/run artifacts, since nothing
is handed over from the driver's disk."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.production import diff
from tests.conftest import REPO, use_store

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``(master_url, [worker tmp dirs], env)``; torn down at the end of the module."""
    tmp = tmp_path_factory.mktemp("cluster")
    home = _spark_home()
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs, logs = [], []

    def launch(args: list[str], name: str, extra_env: dict[str, str] | None = None) -> None:
        log = open(tmp / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([str(home / "bin" / "spark-class"), *args], stdout=log, stderr=subprocess.STDOUT,
                                      env={**env, **(extra_env or {})}, start_new_session=True))

    launch(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
            "--webui-port", str(ui)], "master")
    worker_tmps = []
    for i in range(2):
        wt = tmp / f"worker{i}-tmp"
        wt.mkdir()
        worker_tmps.append(wt)
        launch(["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--cores", "1",
                "--memory", "3g", "--work-dir", str(tmp / f"worker{i}"), "--webui-port", str(_free_port())],
               f"worker{i}", {"TMPDIR": str(wt)})
    try:
        import urllib.request

        deadline = time.time() + 120
        alive = 0
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                    alive = sum(w["state"] == "ALIVE" for w in json.load(r)["workers"])
            except OSError:
                alive = 0
            if alive == 2:
                break
            time.sleep(1)
        if alive != 2:
            raise RuntimeError(f"standalone cluster did not come up: {alive} workers alive; logs in {tmp}")
        yield url, worker_tmps, env
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _submit(cluster, job: str, cfg, pyfiles: Path, tmp: Path) -> dict:
    """spark-submit ``jobs/<job>.py`` to the cluster; the job's JSON result from its stdout."""
    from kpspark import jars

    url, _, env = cluster
    sets = [f"lakehouse.root={cfg.lakehouse.root}", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
            f"mlflow.artifact_root={cfg.mlflow.artifact_root}", "spark.master=", "spark.conf.spark.driver.memory=2g"]
    for k, v in {"retrieval.k": cfg.retrieval.k, "retrieval.top_n": cfg.retrieval.top_n,
                 "bi_encoder.dim": cfg.bi_encoder.dim}.items():
        sets.append(f"{k}={v}")
    cmd = [str(_spark_home() / "bin" / "spark-submit"), "--master", url,
           "--conf", "spark.executor.memory=1500m", "--conf", "spark.executor.cores=1", "--conf", "spark.cores.max=2",
           "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
           "--conf", "spark.ui.enabled=false", "--conf", f"spark.pyspark.python={sys.executable}",
           "--conf", "spark.sql.shuffle.partitions=2", "--conf", "spark.task.maxFailures=2",
           "--jars", ",".join(jars.jar_paths(jars.REQUIRED, str(REPO / ".cache" / "jars"))),
           "--py-files", str(pyfiles), str(REPO / "jobs" / f"{job}.py"), "--conf", str(REPO / "conf" / "local.yaml")]
    for s in sets:
        cmd += ["--set", s]
    # the driver's own temp dir: anything the executors need must not come from here
    denv = {**env, "TMPDIR": str(tmp / "driver-tmp"), "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri}
    (tmp / "driver-tmp").mkdir(exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=denv, cwd=str(tmp), timeout=900)
    (tmp / f"{job}.stderr.log").write_text(proc.stderr)
    assert proc.returncode == 0, f"spark-submit {job} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    out = proc.stdout
    return json.loads(out[out.rindex("\n{\n") + 1:] if "\n{\n" in out else out[out.index("{"):])


def test_full_batch_and_daily_diff_run_through_spark_submit_on_a_standalone_cluster(
        spark, pipeline, cluster, tmp_path, monkeypatch):
    from kpspark.package import build_zip

    cfg, _, ptmp = pipeline
    # a copy of the demo lakehouse and of its MLflow store (the jobs register runs and may rebuild the index)
    shutil.copy(ptmp / "mlflow.db", tmp_path / "mlflow.db")
    lake = dataclasses.replace(
        cfg, lakehouse=dataclasses.replace(cfg.lakehouse, root=str(tmp_path / "lakehouse")),
        mlflow=dataclasses.replace(cfg.mlflow, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                   artifact_root=str(tmp_path / "mlartifacts")))
    shutil.copytree(cfg.lakehouse.root, lake.lakehouse.root)
    use_store(monkeypatch, tmp_path)
    pyfiles = build_zip(tmp_path / "dist")

    full = _submit(cluster, "full_batch", lake, pyfiles, tmp_path)
    recs = tables.read_table(spark, lake, "recommendations")
    assert full["recommendations"] == recs.count() > 0
    assert recs.where(F.col("run_id") != full["run_id"]).count() == 0  # one atomic overwrite by that run
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["run_id"] == full["run_id"]

    # the executors fetched the models and the index themselves, into their workers' temp dirs
    _, worker_tmps, _ = cluster
    fetched = [p for wt in worker_tmps for p in wt.glob("kpspark-model-*")]
    assert fetched, f"no model downloaded under the executors' TMPDIRs {worker_tmps}"
    metas = [m for p in fetched for m in p.rglob("kpspark_model.json")]
    assert len(metas) >= 2, f"expected the cross-encoder, bi-encoder and index exports, got {metas}"

    # revise two items, delete one: the diff job applies exactly that
    ids = [r.item_id for r in recs.select("item_id").distinct().orderBy("item_id").limit(3).collect()]
    items = tables.read_table(spark, lake, "items")
    tables.upsert(spark, lake, "items", items.where(F.col("item_id").isin(ids[:2]))
                  .withColumn("title", F.concat(F.lit("Used "), F.col("title"))))
    tables.delete_keys(spark, lake, "items", items.where(F.col("item_id") == ids[2]).select("item_id"))
    res = _submit(cluster, "daily_diff", lake, pyfiles, tmp_path)
    assert res["changed"] and res["items_upserted"] == 2 and res["items_deleted"] == 1
    after = tables.read_table(spark, lake, "recommendations")
    assert after.where(F.col("item_id") == ids[2]).count() == 0
    assert after.where(F.col("run_id") == res["run_id"]).select("item_id").distinct().count() <= 2
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["version"] == res["items_version"]
