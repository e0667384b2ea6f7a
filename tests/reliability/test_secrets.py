"""Secrets: the LLM API key comes only from an environment variable (named by ``api_key_env``). A canary
key is given to a real labeling job (spark-submit-style subprocess, openai backend against a llama.cpp
server on 127.0.0.1, which receives it as a bearer token); afterwards every file the run left (Delta
tables, the MLflow store and artifacts, a saved judge stage, the Spark event log, where the key handed to
executors as ``spark.executorEnv`` must appear redacted) and everything it printed (driver and executor
logs) is scanned for the key. Putting the key itself into the options is refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kpspark.labeling.judge import LLMJudge
from tests.tools.local_server import available, llama_server
from tests.conftest import REPO


def _files_with(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle in p.read_bytes():
            hits.append(str(p.relative_to(root)))
    return hits


def test_secret_like_options_are_refused():
    with pytest.raises(ValueError, match="api_key_env"):
        LLMJudge(backend="openai", backendOptions=json.dumps({"api_key": "sk-live-123"}))


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="llama-cpp-python[server] not installed (make setup installs it)")
def test_a_canary_key_leaves_no_trace_in_tables_mlflow_stages_or_logs(spark, cfg, tmp_path, figures):
    from kpspark import workflows

    canary = f"sk-canary-{uuid.uuid4().hex}"
    workflows.run_generate_sample(cfg, spark)
    with llama_server("smollm2", n_threads=1) as base:
        opts = json.dumps({"base_url": base, "api_key_env": "KPSPARK_CANARY_KEY", "concurrency": 2})
        sets = [f"lakehouse.root={cfg.lakehouse.root}", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
                f"mlflow.artifact_root={cfg.mlflow.artifact_root}", "sample.size=tiny", "llm.backend=openai",
                "llm.model=smollm2", f"llm.options={opts}", "llm.sample_size=6", "llm.chunk_pairs=3",
                "spark.master=local[2]", "spark.conf.spark.ui.enabled=false",
                f"spark.jars_dir={REPO / '.cache' / 'jars'}"]
        # as on a cluster, the key also reaches the executors through spark.executorEnv (Spark conf, not
        # kpspark config): Spark's UI, environment listing and event log must show it redacted
        events = tmp_path / "spark-events"
        events.mkdir()
        env = {**os.environ, "KPSPARK_CANARY_KEY": canary, "PYSPARK_PYTHON": sys.executable,
               "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri,
               "PYSPARK_SUBMIT_ARGS": f"--conf spark.executorEnv.KPSPARK_CANARY_KEY={canary} "
                                      f"--conf spark.eventLog.enabled=true --conf spark.eventLog.dir={events.as_uri()} "
                                      # plain text, so the byte scan below reads it (Spark 4 compresses it)
                                      "--conf spark.eventLog.compress=false "
                                      "pyspark-shell"}
        cmd = [sys.executable, str(REPO / "jobs" / "label_pairs.py"), "--conf", str(REPO / "conf" / "local.yaml")]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["labeled"] == 6 and result["errors"] == 0  # the key reached the server: pairs got labels

    # a judge stage saved with the same options
    judge = LLMJudge(backend="openai", model="smollm2",
                     backendOptions=json.dumps({"base_url": "http://127.0.0.1:1/v1", "api_key_env": "KPSPARK_CANARY_KEY"}))
    judge.save(str(tmp_path / "saved_judge"))

    needle = canary.encode()
    scanned = {"files": sum(1 for p in tmp_path.rglob("*") if p.is_file()), "log_chars": len(proc.stdout + proc.stderr)}
    leaks = _files_with(tmp_path, needle)
    assert leaks == [], f"the canary key was written to {leaks}"
    logs = [p for p in events.rglob("*") if p.is_file()]
    assert logs and b"KPSPARK_CANARY_KEY" in b"".join(p.read_bytes() for p in logs)  # listed, but redacted
    assert canary not in proc.stdout and canary not in proc.stderr
    figures["secrets"] = {"canary_runs": 1, "files_scanned": scanned["files"], "log_chars_scanned": scanned["log_chars"],
                          "leaks": len(leaks), "where_scanned": ["Delta tables", "MLflow sqlite store", "MLflow artifacts",
                                                                 "saved judge stage", "driver + executor logs",
                                                                 "Spark event log (spark.executorEnv)"]}
