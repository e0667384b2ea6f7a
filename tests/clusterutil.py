"""A cluster on one host that shares only what a real cluster shares (``cluster`` fixture):

* a Spark standalone master and two one-core workers on 127.0.0.1, started with the ``spark-class`` launcher
  of the pyspark package;
* the driver (``spark-submit`` in client mode, :func:`submit`), each worker (and so its executor and the
  executor's Python workers) and the MLflow server each run in a **mount namespace of their own**
  (``unshare --mount``) with a private tmpfs over ``/tmp``: no node sees another's temp folder, download
  folder, block-manager or work dir. The workers also cannot see the submitting client's folder (the py-files
  zip travels through Spark) nor the package's source folder (executors import kpspark from the zip);
* the only shared storage is one folder outside ``/tmp`` (:attr:`Cluster.shared`) for the lakehouse and Spark
  checkpoints, and the only shared service is a real MLflow tracking server over HTTP with proxied artifacts
  (its database and artifact store live in its own private ``/tmp``);
* ``spark.shuffle.readHostLocalDisk=false``: executors on one host would otherwise read each other's shuffle
  files from disk, which separate hosts cannot.

:func:`shared_lake` puts a copy of the session pipeline's lakehouse on the shared storage and publishes its
serving models to the tracking server (downloaded from the pipeline's own store, logged and registered anew).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from tests.tools.jobout import job_result

REPO = Path(__file__).resolve().parents[1]
#: runs a command in a new mount namespace with a private /tmp (and the folders given after it hidden)
_ISOLATE = ('mount -t tmpfs -o size=6g kpspark-node /tmp && mkdir -p /tmp/local /tmp/work /tmp/home && '
            'for d in $KPSPARK_HIDE; do mount -t tmpfs -o size=1m,ro kpspark-hidden "$d"; done && '
            'cd /tmp && exec "$@"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def isolated(cmd: list[str], hide: list[Path] = ()) -> list[str]:
    """``cmd`` in its own mount namespace: a private tmpfs over /tmp (cwd), ``hide`` folders made empty."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"KPSPARK_HIDE='{' '.join(str(h) for h in hide)}'; {_ISOLATE}", "node", *cmd]


def isolation_available() -> bool:
    try:
        return subprocess.run(isolated(["true"]), capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class Cluster:
    """A running master, workers and MLflow server. ``workers[i]`` is worker i's Popen (its JVM, in the worker's
    namespace), :meth:`node_tmp` the worker's private /tmp as seen from outside (``/proc/<pid>/root/tmp``)."""

    def __init__(self, n_workers: int = 2, worker_env: list[dict[str, str]] | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="kpspark-cluster-", dir="/var/tmp"))
        self.shared, self.client, self.logdir = (self.base / n for n in ("shared", "client", "logs"))
        for d in (self.shared, self.client, self.logdir):
            d.mkdir()
        self.home = _spark_home()
        env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "PYSPARK_GATEWAY_PORT",
                                                                 "MLFLOW_TRACKING_URI", "SPARK_LOCAL_DIRS")}
        self.env = {**env, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
                    "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
        self.logs: list = []
        self.procs: list[subprocess.Popen] = []
        self.mlflow_port = _free_port()
        self.tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"
        self.mlflow = self._launch(isolated([
            str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
            "--port", str(self.mlflow_port), "--backend-store-uri", "sqlite:////tmp/mlflow.db",
            "--artifacts-destination", "/tmp/mlartifacts", "--workers", "1"]), "mlflow", {"HOME": "/tmp/home"})
        self.port, self.ui = _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.master = self._launch([str(self.home / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master",
                                    "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui)],
                                   "master")
        self.worker_env = worker_env or [{} for _ in range(n_workers)]
        self.workers = [self._start_worker(i) for i in range(n_workers)]
        self.wait_alive(n_workers)
        self._wait_mlflow()
        self.published: dict[str, str] = {}

    def _launch(self, cmd: list[str], name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "a")
        self.logs.append(log)
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**self.env, **(extra_env or {})},
                             cwd=str(self.base), start_new_session=True)
        self.procs.append(p)
        return p

    def _start_worker(self, i: int) -> subprocess.Popen:
        # the worker cannot see the client's folder (the zip reaches it through Spark) nor the package source
        hide = [self.client, REPO / "kpspark"]
        return self._launch(isolated([str(self.home / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                                      self.url, "--host", "127.0.0.1", "--cores", "1", "--memory", "3g",
                                      "--work-dir", "/tmp/work", "--webui-port", str(_free_port())], hide),
                            f"worker{i}", {"SPARK_LOCAL_DIRS": "/tmp/local", "HOME": "/tmp/home",
                                           **self.worker_env[i]})

    def node_tmp(self, i: int) -> Path:
        """Worker ``i``'s private /tmp, seen from outside its namespace (for the tests' watchers only)."""
        return Path(f"/proc/{self.workers[i].pid}/root/tmp")

    def _wait_mlflow(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.mlflow.poll() is not None:
                break
            time.sleep(1)
        raise RuntimeError(f"the MLflow server did not start; see {self.logdir / 'mlflow.log'}")

    def alive(self) -> int:
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
        raise RuntimeError(f"standalone cluster: {self.alive()} of {n} workers alive; logs in {self.logdir}")

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
        procs = [*self.workers, self.master, self.mlflow]
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    """The isolated loopback cluster shared by the tests that ask for it; torn down at the end."""
    if not isolation_available():
        pytest.skip("needs `unshare --mount` and tmpfs mounts (root on Linux): the cluster tests share nothing "
                    "but storage and the tracking server, which a private /tmp per node makes true")
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()


def publish_serving_models(c: Cluster, cfg) -> dict[str, str]:
    """Download the serving cross-encoder and bi-encoder of ``cfg``'s store and log + register them on the
    cluster's tracking server under the same names and serving alias (once per cluster)."""
    import mlflow

    from kpspark.artifacts import local_model_dir
    from kpspark.registry import pyfunc

    if c.published:
        return c.published
    src = cfg.mlflow.tracking_uri  # the pipeline's own store (not MLFLOW_TRACKING_URI, a test's own)
    m = cfg.models
    for name, log in ((m.cross_encoder, pyfunc.log_cross_encoder), (m.bi_encoder, pyfunc.log_bi_encoder)):
        version = mlflow.MlflowClient(src, src).get_model_version_by_alias(name, m.serving_alias).version
        export = local_model_dir(f"models:/{name}/{version}", src)
        client = mlflow.MlflowClient(c.tracking_uri, c.tracking_uri)
        mlflow.set_tracking_uri(c.tracking_uri)
        mlflow.set_registry_uri(c.tracking_uri)
        exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment) or None
        exp_id = exp.experiment_id if exp else mlflow.create_experiment(cfg.mlflow.experiment)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"publish-{name}"):
            info = log(str(export))
        mv = mlflow.register_model(info.model_uri, name)
        client.set_registered_model_alias(name, m.serving_alias, mv.version)
        c.published[name] = str(mv.version)
    mlflow.set_tracking_uri(src)
    mlflow.set_registry_uri(src)
    return c.published


def shared_lake(c: Cluster, pipeline, name: str):
    """A config on a copy of the session pipeline's lakehouse on the cluster's shared storage, with MLflow on
    the cluster's tracking server (serving models published there) and the server's artifact store."""
    import dataclasses

    cfg, _, _ = pipeline
    publish_serving_models(c, cfg)
    root = c.shared / name / "lakehouse"
    shutil.copytree(cfg.lakehouse.root, root)
    return dataclasses.replace(
        cfg, lakehouse=dataclasses.replace(cfg.lakehouse, root=str(root)),
        mlflow=dataclasses.replace(cfg.mlflow, tracking_uri=c.tracking_uri, artifact_root=""))


def submit_cmd(c: Cluster, job: str, cfg, pyfiles: Path, extra_conf: dict | None = None,
               sets: dict | None = None) -> list[str]:
    from kpspark import jars

    overrides = [f"lakehouse.root={cfg.lakehouse.root}", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
                 f"mlflow.artifact_root={cfg.mlflow.artifact_root}", "spark.master=",
                 "spark.conf.spark.driver.memory=2g"]
    for k, v in {"retrieval.k": cfg.retrieval.k, "retrieval.top_n": cfg.retrieval.top_n,
                 "bi_encoder.dim": cfg.bi_encoder.dim, **(sets or {})}.items():
        overrides.append(f"{k}={v}")
    conf = {"spark.executor.memory": "1500m", "spark.executor.cores": "1", "spark.cores.max": "2",
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
            "spark.pyspark.python": sys.executable, "spark.sql.shuffle.partitions": "2", "spark.task.maxFailures": "2",
            "spark.shuffle.readHostLocalDisk": "false", "spark.local.dir": "/tmp/local",
            # Delta rebuilds a table's snapshot in 50 tasks by default (sized for real tables): on this harness's
            # tiny tables and two one-core executors that was most of every job's tasks and minutes
            "spark.databricks.delta.snapshotPartitions": "2",
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
           during=None, sets: dict | None = None, expect_ok: bool = True) -> dict:
    """spark-submit ``jobs/<job>.py`` from the client (its own namespace: the driver's /tmp is private) and
    return the job's JSON result (its stdout). ``pyfiles`` must be a file in :attr:`Cluster.client`.
    ``during(proc)``, when given, runs in this thread while the job runs (fault injection)."""
    assert Path(pyfiles).is_relative_to(c.client), "the zip is the client's: build it in cluster.client"
    env = {**c.env, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri, "HOME": "/tmp/home"}
    tmp.mkdir(parents=True, exist_ok=True)
    out_f, err_f = open(tmp / f"{job}.stdout.log", "w+"), open(tmp / f"{job}.stderr.log", "w+")
    proc = subprocess.Popen(isolated(submit_cmd(c, job, cfg, pyfiles, extra_conf, sets)), stdout=out_f,
                            stderr=err_f, text=True, env=env, cwd=str(c.client), start_new_session=True)
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
    if not expect_ok:
        return {"returncode": proc.returncode, "stdout": out, "stderr": err}
    assert proc.returncode == 0, f"spark-submit {job} failed ({proc.returncode}):\n{err[-4000:]}"
    return job_result(out)


def submit_and_kill(c: Cluster, job: str, cfg, pyfiles: Path, tmp: Path, condition, sets: dict | None = None,
                    timeout: float = 600, poll: float = 0.2) -> dict:
    """spark-submit ``job`` and SIGKILL the driver's whole process group (spark-submit, its JVM and the Python
    driver: what a lost driver node leaves) as soon as ``condition()`` holds; the master then drops the
    application's executors. ``{"killed", "seconds", "returncode"}``; ``killed`` is False when the job ended
    before the condition was seen."""
    t0, seen = time.time(), {"killed": False}

    def during(proc: subprocess.Popen) -> None:
        while proc.poll() is None and time.time() - t0 < timeout:
            if condition():
                os.killpg(proc.pid, signal.SIGKILL)
                seen["killed"] = True
                return
            time.sleep(poll)

    res = submit(c, job, cfg, pyfiles, tmp, during=during, sets=sets, expect_ok=False)
    return {"killed": seen["killed"], "seconds": round(time.time() - t0, 1), "returncode": res["returncode"]}

def busiest_stage(events: Path) -> dict:
    """The stage with the most task time in a Spark event log folder (``spark.eventLog.dir``): its tasks,
    the executors that ran them, its wall seconds and each executor's busy seconds."""
    tasks: dict[int, list[dict]] = {}
    for log in (p for p in Path(events).rglob("*") if p.is_file()):  # Spark 4: a folder of rolling files per app
        for line in log.read_text().splitlines():
            if not line.startswith("{"):
                continue
            e = json.loads(line)
            if e.get("Event") == "SparkListenerTaskEnd":
                info = e["Task Info"]
                tasks.setdefault(e["Stage ID"], []).append(
                    {"executor": info["Executor ID"], "start": info["Launch Time"], "end": info["Finish Time"]})
    stage = max(tasks.values(), key=lambda ts: sum(t["end"] - t["start"] for t in ts))
    busy: dict[str, float] = {}
    for t in stage:
        busy[t["executor"]] = busy.get(t["executor"], 0.0) + (t["end"] - t["start"]) / 1000
    wall = (max(t["end"] for t in stage) - min(t["start"] for t in stage)) / 1000
    return {"tasks": len(stage), "executors_used": len(busy), "wall_s": round(wall, 2),
            "busy_s_per_executor": {k: round(v, 2) for k, v in sorted(busy.items())}}
