"""The Databricks-style notebooks under jobs/notebooks/: each is a Databricks source file whose cells
declare the ``conf``/``set`` widgets and call one workflow; each is executed here as plain Python on
local Spark (the ``spark`` session and a local ``dbutils`` stand-in are handed in, as Databricks
would), on a copy of the session's demo lakehouse and MLflow store with test-sized settings."""
from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from kpspark import workflows
from kpspark.data import tables
from kpspark.notebook import LocalDbutils, config
from tests.conftest import REPO, lake_copy

NOTEBOOKS = sorted((REPO / "jobs" / "notebooks").glob("*.py"))


def _workflow_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "workflows"]


def test_every_notebook_is_a_databricks_source_file_calling_one_workflow():
    assert len(NOTEBOOKS) == 7
    for nb in NOTEBOOKS:
        text = nb.read_text()
        assert text.startswith("# Databricks notebook source\n"), nb.name
        assert text.count("# COMMAND ----------") >= 2, nb.name
        calls = _workflow_calls(nb)
        assert len(calls) == 1 and callable(getattr(workflows, calls[0], None)), (nb.name, calls)


def test_widget_values_build_the_config():
    cfg = config("conf/local.yaml", "sample.size=tiny; retrieval.top_n=7\nstreaming.trigger=availableNow")
    assert (cfg.sample.size, cfg.retrieval.top_n, cfg.streaming.trigger) == ("tiny", 7, "availableNow")
    assert cfg.spark.conf["spark.ui.enabled"] == "false"  # from conf/local.yaml
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"  # the default, merged with the file's
    db = LocalDbutils({"set": "x=1"})
    db.widgets.text("conf", "conf/cluster.yaml")
    db.widgets.text("set", "")
    assert db.widgets.getAll() == {"conf": "conf/cluster.yaml", "set": "x=1"}
    with pytest.raises(KeyError, match="no widget"):
        db.widgets.get("missing")


def test_notebooks_run_as_plain_python_on_local_spark(spark, pipeline, tmp_path, monkeypatch):
    cfg = pipeline[0]
    lake_copy(pipeline, tmp_path, monkeypatch)
    common = [f"lakehouse.root={tmp_path / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
              f"mlflow.artifact_root={tmp_path / 'mlartifacts'}", "sample.size=tiny", "retrieval.k=20",
              "retrieval.top_n=10", f"bi_encoder.dim={cfg.bi_encoder.dim}", "bi_encoder.dims=[384,64]",
              "bi_encoder.init=minilm2", "bi_encoder.max_pairs_per_task=64", "bi_encoder.epochs=0.5",
              "bi_encoder.eval_steps=10", "cross_encoder.epochs=1", "cross_encoder.batch_size=32",
              "cross_encoder.eval_steps=20", "cross_encoder.precision=fp32",
              # the real CPU teacher (jobs refuse the unit-test `fake` backend), on a handful of pairs
              "llm.backend=transformers", "llm.model=smollm2", "llm.prompt_version=v1", "llm.sample_size=2",
              "llm.chunk_pairs=2",
              "evaluation.recipes=[click_search]", "evaluation.baseline=jaccard", "evaluation.train_missing=false",
              "evaluation.judge_sample=0", f"evaluation.output_dir={tmp_path / 'reports'}",
              "streaming.trigger=availableNow", f"streaming.checkpoint={tmp_path / 'checkpoint'}"]
    lake = config("conf/local.yaml", ";".join(common))
    items = tables.read_table(spark, lake, "items")
    first = items.orderBy("item_id").limit(2).collect()

    def run(name: str, **expect) -> dict:
        path = next(p for p in NOTEBOOKS if p.stem.endswith(name))
        out = runpy.run_path(str(path), init_globals={
            "spark": spark, "dbutils": LocalDbutils({"conf": "conf/local.yaml", "set": ";".join(common)})})
        result = out["result"]
        for k, v in expect.items():
            assert result[k] == v, (name, k, result)
        return result

    full = run("full_batch")
    assert full["recommendations"] == tables.read_table(spark, lake, "recommendations").count() > 0
    tables.upsert(spark, lake, "items", items.where(F.col("item_id") == first[0].item_id)
                  .withColumn("title", F.concat(F.lit("Vintage "), F.col("title"))))
    run("daily_diff", changed=True, items_upserted=1)
    tables.upsert(spark, lake, "items", items.where(F.col("item_id") == first[1].item_id)
                  .withColumn("title", F.concat(F.lit("Boxed "), F.col("title"))))
    run("streaming", items_upserted=1)
    labels = run("label_pairs")
    assert labels["labeled"] > 0
    ce = run("train_cross_encoder")
    assert ce["version"]
    be = run("train_bi_encoder")
    assert be["version"]
    report = run("evaluate")
    assert "click_search" in report["rows"] and Path(report["report"]).exists()
    # the notebook's new cross-encoder is the challenger the gate judged against the champion
    assert report["gate"]["decision"] in ("promoted", "passed", "refused")
    assert str(report["gate"]["challenger"]) == str(ce["version"])
