"""Run a ``jobs/<job>.py`` in its own process group (its own driver JVM and Python workers), as
spark-submit would, so that a test can kill the whole job with SIGKILL at a moment of its choosing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from tests.conftest import REPO
from tests.tools.jobout import job_result


def job_cmd(job: str, sets: list[str]) -> list[str]:
    cmd = [sys.executable, str(REPO / "jobs" / f"{job}.py"), "--conf", str(REPO / "conf" / "local.yaml"),
           "--set", "spark.master=local[2]", "--set", f"spark.jars_dir={REPO / '.cache' / 'jars'}",
           "--set", "spark.conf.spark.sql.shuffle.partitions=2", "--set", "spark.conf.spark.driver.memory=2g"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def job_env(cfg: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri,
           **(extra or {})}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


def cfg_sets(cfg: Any) -> list[str]:
    """The ``--set`` overrides that point a job at ``cfg``'s lakehouse and MLflow store."""
    return [f"lakehouse.root={cfg.lakehouse.root}", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
            f"mlflow.artifact_root={cfg.mlflow.artifact_root}"]


def pipeline_sets(cfg: Any) -> list[str]:
    """The overrides the session pipeline was built with that inference jobs must share (index dim, k, n)."""
    return [f"retrieval.k={cfg.retrieval.k}", f"retrieval.top_n={cfg.retrieval.top_n}",
            f"bi_encoder.dim={cfg.bi_encoder.dim}"]


def run_job(job: str, cfg: Any, sets: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 900) -> dict[str, Any]:
    """Run to completion; the job's JSON result."""
    proc = subprocess.run(job_cmd(job, cfg_sets(cfg) + sets), capture_output=True, text=True,
                          env=env or job_env(cfg), cwd=str(cwd), timeout=timeout)
    if proc.returncode:
        raise AssertionError(f"{job} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = proc.stdout
    return job_result(out)


def kill_when(job: str, cfg: Any, sets: list[str], cwd: Path, condition: Callable[[], bool],
              timeout: float = 600, poll: float = 0.2) -> dict[str, Any]:
    """Start the job and SIGKILL its whole process group (driver, JVM, Python workers) as soon as
    ``condition()`` holds. Returns ``{"killed": bool, "seconds": .., "returncode": ..}``; ``killed`` is
    False when the job finished before the condition was seen."""
    log = open(cwd / f"{job}-killed.log", "w")
    proc = subprocess.Popen(job_cmd(job, cfg_sets(cfg) + sets), stdout=log, stderr=subprocess.STDOUT,
                            env=job_env(cfg), cwd=str(cwd), start_new_session=True)
    t0 = time.time()
    killed = False
    try:
        while proc.poll() is None and time.time() - t0 < timeout:
            if condition():
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(poll)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    return {"killed": killed, "seconds": round(time.time() - t0, 1), "returncode": proc.returncode}


def delta_commits(table_dir: str | Path) -> int:
    """Number of commit files in a Delta table's log (0 when it does not exist yet): readable while
    another process writes, without a Spark session."""
    log = Path(table_dir) / "_delta_log"
    return len(list(log.glob("*.json"))) if log.exists() else 0
