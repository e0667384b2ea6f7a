from __future__ import annotations

import mlflow

from kpspark import workflows
from kpspark.data import tables
from kpspark.registry import models


def test_demo_writes_the_lakehouse_and_registers_the_baseline(spark, cfg):
    out = workflows.run_demo(cfg, spark)
    for name in workflows.SAMPLE_TABLES:
        rep = out["sample"]["tables"][name]
        assert rep["rows_in"] == rep["rows_written"] + rep["rows_quarantined"], name
        assert tables.read_table(spark, cfg, name).count() == rep["rows_written"], name
    assert out["sample"]["tables"]["items"]["rows_written"] == 200
    base = out["baseline"]
    assert models.get_version(cfg, cfg.models.baseline, cfg.models.serving_alias) == base["version"]
    run = mlflow.get_run(base["run_id"])
    assert 0.5 < run.data.metrics["baseline_auc_truth"] <= 1.0
    assert run.data.tags["delta.items.version"] == str(tables.version(spark, cfg, "items"))

    # a rerun with the same config leaves every table with the same rows
    before = {n: tables.read_table(spark, cfg, n).count() for n in workflows.SAMPLE_TABLES}
    workflows.run_generate_sample(cfg, spark)
    after = {n: tables.read_table(spark, cfg, n).count() for n in workflows.SAMPLE_TABLES}
    assert before == after
