"""A Spark standalone cluster on 127.0.0.1 for tests: a master and two one-core workers started with
the ``spark-class`` launcher of the pyspark package (``cluster`` fixture), and ``submit`` to run a job
through ``spark-submit`` against it with the package shipped as a zip (``--py-files``).

Each worker (and so each executor and its Python workers) has its own ``TMPDIR`` and ``SPARK_LOCAL_DIRS``."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


class Cluster:
    """A running master + workers; ``workers[i]`` is the worker's Popen, ``worker_tmps[i]`` its TMPDIR
    and local dir (where its executors keep their block-manager folders)."""

    def __init__(self, tmp: Path, n_workers: int = 2) -> None:
        self.tmp = tmp
        self.home = _spark_home()
        self.env = {**os.environ, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_NO_DAEMONIZE": "1", "PYSPARK_PYTHON": sys.executable,
                    "PYSPARK_DRIVER_PYTHON": sys.executable}
        self.env.pop("PYSPARK_GATEWAY_PORT", None)
        self.port, self.ui = _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.logs: list = []
        self.master = self._launch(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                                    str(self.port), "--webui-port", str(self.ui)], "master")
        self.worker_tmps = []
        self.workers: list[subprocess.Popen] = []
        for i in range(n_workers):
            wt = tmp / f"worker{i}-tmp"
            wt.mkdir()
            self.worker_tmps.append(wt)
            self.workers.append(self._start_worker(i))
        self.wait_alive(n_workers)

    def _launch(self, args: list[str], name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "a")
        self.logs.append(log)
        return subprocess.Popen([str(self.home / "bin" / "spark-class"), *args], stdout=log, stderr=subprocess.STDOUT,
                                env={**self.env, **(extra_env or {})}, start_new_session=True)

    def _start_worker(self, i: int) -> subprocess.Popen:
        return self._launch(["org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1", "--cores", "1",
                             "--memory", "3g", "--work-dir", str(self.tmp / f"worker{i}"), "--webui-port",
                             str(_free_port())], f"worker{i}",
                            {"TMPDIR": str(self.worker_tmps[i]), "SPARK_LOCAL_DIRS": str(self.worker_tmps[i])})

    def alive(self) -> int:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=5) as r:
                return sum(w["state"] == "ALIVE" for w in json.load(r)["workers"])
        except OSError:
            return 0

    def wait_alive(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.alive() >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"standalone cluster: {self.alive()} of {n} workers alive; logs in {self.tmp}")

    def kill_worker(self, i: int) -> None:
        """SIGKILL a worker and everything it started (its executor JVM and the executor's Python workers)."""
        os.killpg(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait()

    def restart_worker(self, i: int) -> None:
        if self.workers[i].poll() is None:
            return
        self.workers[i] = self._start_worker(i)
        self.wait_alive(len(self.workers))

    def stop(self) -> None:
        for p in [*self.workers, self.master]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*self.workers, self.master]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A loopback standalone cluster shared by the tests that ask for it; torn down at the end."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.stop()


def submit_cmd(c: Cluster, job: str, cfg, pyfiles: Path, extra_conf: dict | None = None,
               sets: dict | None = None) -> list[str]:
    from kpspark import jars

    overrides = [f"lakehouse.root={cfg.lakehouse.root}", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
            f"mlflow.artifact_root={cfg.mlflow.artifact_root}", "spark.master=", "spark.conf.spark.driver.memory=2g"]
    for k, v in {"retrieval.k": cfg.retrieval.k, "retrieval.top_n": cfg.retrieval.top_n,
                 "bi_encoder.dim": cfg.bi_encoder.dim, **(sets or {})}.items():
        overrides.append(f"{k}={v}")
    conf = {"spark.executor.memory": "1500m", "spark.executor.cores": "1", "spark.cores.max": "2",
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
            "spark.pyspark.python": sys.executable, "spark.sql.shuffle.partitions": "2", "spark.task.maxFailures": "2",
            **(extra_conf or {})}
    cmd = [str(c.home / "bin" / "spark-submit"), "--master", c.url]
    for k, v in conf.items():
        cmd += ["--conf", f"{k}={v}"]
    cmd += ["--jars", ",".join(jars.jar_paths(jars.REQUIRED, str(REPO / ".cache" / "jars"))),
            "--py-files", str(pyfiles), str(REPO / "jobs" / f"{job}.py"), "--conf", str(REPO / "conf" / "local.yaml")]
    for s in overrides:
        cmd += ["--set", s]
    return cmd


def submit(c: Cluster, job: str, cfg, pyfiles: Path, tmp: Path, extra_conf: dict | None = None,
           during=None, sets: dict | None = None) -> dict:
    """spark-submit ``jobs/<job>.py`` to the cluster and return the job's JSON result (from its stdout).
    ``during(proc)``, when given, runs in this thread while the job runs (fault injection)."""
    # the driver's own temp dir: anything the executors need must not come from here
    denv = {**c.env, "TMPDIR": str(tmp / "driver-tmp"), "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri}
    (tmp / "driver-tmp").mkdir(exist_ok=True)
    out_f, err_f = open(tmp / f"{job}.stdout.log", "w+"), open(tmp / f"{job}.stderr.log", "w+")
    proc = subprocess.Popen(submit_cmd(c, job, cfg, pyfiles, extra_conf, sets), stdout=out_f, stderr=err_f, text=True,
                            env=denv, cwd=str(tmp), start_new_session=True)
    try:
        if during is not None:
            during(proc)
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out_f.seek(0), err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    out_f.close(), err_f.close()
    assert proc.returncode == 0, f"spark-submit {job} failed ({proc.returncode}):\n{err[-4000:]}"
    return json.loads(out[out.rindex("\n{\n") + 1:] if "\n{\n" in out else out[out.index("{"):])
