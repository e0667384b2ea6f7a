"""Shared fixtures: one local[2] SparkSession with Delta for the whole run, a config whose
lakehouse and MLflow store live in a per-test tmp folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    from kpspark.config import load_config
    from kpspark.session import get_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    cfg = load_config(REPO / "conf" / "base.yaml", REPO / "conf" / "local.yaml", overrides=[
        "spark.master=local[2]", "spark.app_name=kpspark-tests",
        f"spark.jars_dir={REPO / '.cache' / 'jars'}",
        "spark.conf.spark.sql.shuffle.partitions=2",
        "spark.conf.spark.task.maxFailures=1",
        "spark.conf.spark.driver.host=127.0.0.1",
        "spark.conf.spark.driver.bindAddress=127.0.0.1",
        "spark.conf.spark.sql.pyspark.jvmStacktrace.enabled=false",
        "spark.conf.spark.driver.memory=3g",
        "spark.conf.spark.default.parallelism=2",
    ])
    session = get_spark(cfg)
    yield session
    session.stop()


@pytest.fixture()
def cfg(tmp_path):
    from kpspark.config import load_config

    return load_config(REPO / "conf" / "base.yaml", REPO / "conf" / "local.yaml", overrides=[
        f"lakehouse.root={tmp_path / 'lakehouse'}",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"mlflow.artifact_root={tmp_path / 'mlartifacts'}",
        "sample.size=tiny",
    ])


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test gets its own sqlite MLflow store unless it configures one itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("KPSPARK_JARS_DIR", raising=False)
