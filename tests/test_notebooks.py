"""The Databricks-style notebooks under jobs/notebooks/: each is a Databricks source file whose cells
declare the ``conf``/``set`` widgets and call one workflow; each is executed as plain Python on local
Spark (the ``spark`` session and a local ``dbutils`` stand-in are handed in, as Databricks would), on a
copy of the session's demo lakehouse with test-sized settings: the production notebooks as the jobs of
tests/test_production.py, the training and evaluation ones here."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kpspark import workflows
from kpspark.notebook import LocalDbutils, config
from tests.conftest import NOTEBOOKS, REPO, lake_copy, notebook_settings, run_notebook


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


def test_every_notebook_runs_in_a_test():
    """The production notebooks run as the production tests' jobs (tests/test_production.py), the others below."""
    calls = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    for nb in NOTEBOOKS:
        name = nb.stem.split("_", 1)[1]
        assert f'run_notebook(spark, "{name}"' in calls, nb.name


def test_training_and_evaluation_notebooks_run_as_plain_python_on_local_spark(spark, pipeline, tmp_path,
                                                                               monkeypatch):
    lake_copy(pipeline, tmp_path, monkeypatch)
    settings = notebook_settings(
        pipeline, tmp_path / "lakehouse", f"sqlite:///{tmp_path / 'mlflow.db'}",
        f"mlflow.artifact_root={tmp_path / 'mlartifacts'}",
        "bi_encoder.dims=[384,64]", "bi_encoder.init=minilm2", "bi_encoder.max_pairs_per_task=64",
        "bi_encoder.epochs=0.5", "bi_encoder.eval_steps=10", "cross_encoder.epochs=1", "cross_encoder.batch_size=32",
        "cross_encoder.eval_steps=20", "cross_encoder.precision=fp32",
        # the real CPU teacher (jobs refuse the unit-test `fake` backend), on a handful of pairs
        "llm.backend=transformers", "llm.model=smollm2", "llm.prompt_version=v1", "llm.sample_size=2",
        "llm.chunk_pairs=2",
        "evaluation.recipes=[click_search]", "evaluation.baseline=jaccard", "evaluation.train_missing=false",
        "evaluation.judge_sample=0", f"evaluation.output_dir={tmp_path / 'reports'}")
    assert run_notebook(spark, "label_pairs", settings)["labeled"] > 0
    ce = run_notebook(spark, "train_cross_encoder", settings)
    assert ce["version"]
    assert run_notebook(spark, "train_bi_encoder", settings)["version"]
    report = run_notebook(spark, "evaluate", settings)
    assert "click_search" in report["rows"] and Path(report["report"]).exists()
    # the notebook's new cross-encoder is the challenger the gate judged against the champion
    assert report["gate"]["decision"] in ("promoted", "passed", "refused")
    assert str(report["gate"]["challenger"]) == str(ce["version"])
