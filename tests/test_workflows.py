from __future__ import annotations

import dataclasses

import mlflow

from kpspark import workflows
from kpspark.data import tables
from kpspark.registry import models


def test_demo_writes_the_lakehouse_registers_the_baseline_and_labels_with_the_cpu_teacher(spark, cfg):
    cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, sample_size=24, chunk_pairs=12),
                              cross_encoder=dataclasses.replace(cfg.cross_encoder, epochs=8.0,
                                                                batch_size=32, eval_steps=20))
    assert cfg.llm.backend == "transformers" and cfg.llm.model == "smollm2"  # the real teacher, not fake
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

    labels = out["labels"]
    assert labels["labeled"] == 24 and labels["errors"] == 0
    got = tables.read_table(spark, cfg, "llm_labels").toPandas()
    assert len(got) == 24 and got["p_yes"].between(0, 1).all() and got["error"].isna().all()
    assert (got["label"] == (got["p_yes"] >= cfg.llm.threshold).astype(int)).all()
    assert labels["agreement"]["judge_human_pairs"] == 24  # strategy "human": all overlap human labels
    assert mlflow.get_run(labels["agreement"]["run_id"]).data.tags["judge_model"] == "transformers:smollm2"

    ce = out["cross_encoder"]
    assert ce["recipe"] == "click_search" and ce["promoted"] == "champion"
    assert ce["ce_parity_int8_decision_agreement"] >= 0.99
    scores = out["scores"]
    assert scores["rows_in"] == scores["rows_written"] + scores["rows_quarantined"]
    assert tables.read_table(spark, cfg, "pair_scores").count() == scores["rows_written"] > 0
