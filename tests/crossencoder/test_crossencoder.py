"""Cross-encoder: one real training run on the sample marketplace (module fixture), then its export,
registry round trip, Spark scoring and bad input. Quality checks are relative (ONNX vs torch,
int8 vs fp32, our Transformer vs mlflow's spark_udf), never fixed scores."""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from kpspark.config import ClickPositiveConfig
from kpspark.crossencoder import recipes
from kpspark.crossencoder.export import check_parity
from kpspark.errors import ParityError
from kpspark.crossencoder.scorer import OnnxCrossEncoderModel, load_scorer
from kpspark.crossencoder.workflow import run_score_pairs
from kpspark.data import tables
from kpspark.errors import SchemaError
from kpspark.registry import models
from tests.conftest import use_store


@pytest.fixture(scope="module")
def trained(pipeline):
    """The cross-encoder the session's demo pipeline trained (recipe click_search, bert-tiny)."""
    from pathlib import Path

    cfg, out, _ = pipeline
    res = out["cross_encoder"]
    return cfg, res, Path(res["output_dir"])


@pytest.fixture(autouse=True)
def _isolated_mlflow(pipeline, monkeypatch):
    """This module shares the session's trained model, so its tests share its MLflow store."""
    use_store(monkeypatch, pipeline[2])


def test_training_learns_and_the_run_is_logged(trained):
    cfg, res, out = trained
    # the trainer's checkpoints (weights + optimizer state) are gone once the best model is saved
    assert (out / "model").is_dir() and not (out / "checkpoints").exists()
    assert res["ce_eval_loss"] < 0.69  # better than a constant (ln 2) on held-out items
    # better than chance on held-out items, against its own labels and against ground truth
    assert res["ce_val_auc_labels"] > 0.55 and res["ce_val_auc_truth"] > 0.55
    run = mlflow.get_run(res["run_id"])
    assert run.data.params["recipe"] == "click_search"
    assert int(run.data.params["rows.click_pos"]) > 0 and int(run.data.params["rows.search_neg"]) > 0
    assert 0 < run.data.metrics["ce_class_balance"] < 1
    assert "learned_nothing" not in run.data.tags
    assert models.get_version(cfg, res["model"], "challenger") == res["version"]


def test_a_model_no_better_than_chance_on_its_held_out_pairs_is_flagged():
    from kpspark.crossencoder.workflow import learned_nothing

    assert learned_nothing(0.5) and learned_nothing(float("nan")) and learned_nothing(0.3)
    assert not learned_nothing(0.83)


def test_export_parity_holds_on_the_trained_model(trained):
    _, res, out = trained
    assert res["ce_parity_fp32_max_abs_diff"] <= 1e-3
    assert res["ce_parity_int8_pearson"] >= 0.99 and res["ce_parity_int8_decision_agreement"] >= 0.99
    # decisions also compared at the operating point: the fp32 logit keeping 95% of the validation positives
    import json

    from kpspark.artifacts import META_FILE

    parity = json.loads((out / "export" / META_FILE).read_text())["parity"]
    assert parity["operating_threshold"] == res["ce_parity_operating_threshold"] != parity["threshold"]
    assert 0.0 <= res["ce_parity_int8_decision_agreement_operating"] <= 1.0


def test_int8_with_constant_logits_misses_its_gate():
    """Static int8 of a barely-trained model can flatten every logit to one value (seen over Spark Connect with a
    1-epoch bert-tiny: fp32 spread 0.0005, int8 one value): the Pearson is then undefined, and that is a miss."""
    from kpspark.crossencoder.export import int8_problems

    assert int8_problems(0.995, 1.0) == []
    assert int8_problems(float("nan"), 1.0) == ["int8 vs fp32 Pearson undefined (constant logits)"]
    assert int8_problems(0.9, float("nan"))[0].startswith("int8 vs fp32 Pearson 0.9000 <")
    assert len(int8_problems(0.9, float("nan"))) == 2


def test_parity_failure_fails_the_export(trained):
    _, _, tmp = trained
    a, b = ["red iphone", "drill"], ["Phones [SEP] Apple iPhone Red", "Tools [SEP] DeWalt drill"]
    with pytest.raises(ParityError, match="atol"):
        check_parity(tmp / "model", tmp / "export", a, b, 64, atol=0.0)


def _real_pairs(spark, cfg, n: int) -> tuple[list[str], list[str]]:
    from kpspark.crossencoder.text import pair_texts

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = tables.read_table(spark, cfg, "keyphrases").selectExpr("keyphrase_id", "text AS keyphrase")
    pdf = (tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id").join(items, "item_id")
           .join(kps, "keyphrase_id").orderBy("item_id", "keyphrase_id").limit(n).toPandas())
    return pair_texts(pdf["keyphrase"], pdf["category"], pdf["title"])


def test_static_int8_scores_a_pair_the_same_whatever_it_is_batched_with(spark, trained, tmp_path):
    """Static int8 (activation ranges calibrated on half of the real pairs, parity judged on the other half) gives
    a pair one score alone and in any batch; dynamic int8's ranges are the batch's own, so its scores move with
    their batch-mates (the full batch and the daily diff batch an item's pairs differently)."""
    import json

    from kpspark.artifacts import META_FILE
    from kpspark.crossencoder.export import export_with_parity
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer

    cfg, _, tmp = trained
    a, b = _real_pairs(spark, cfg, 240)
    out, parity = export_with_parity(tmp / "model", tmp_path / "static", a, b, 64, quantization="static")
    meta = json.loads((out / META_FILE).read_text())
    assert meta["quantization"] == "static" and parity.int8_ok and parity.n == len(a) // 2, (meta, parity)
    moved = {}
    for mode, folder in (("static", out), ("dynamic", tmp / "export")):
        scorer = OnnxPairScorer(folder / "model.int8.onnx", folder, 64, threads=0, batch_size=16)
        batched = scorer.logits(a, b)
        alone = np.array([scorer.logits([x], [y])[0] for x, y in zip(a[:80], b[:80])])
        moved[mode] = float(np.max(np.abs(alone - batched[:80])))
    assert moved["static"] < 1e-5 < moved["dynamic"], moved


def test_int8_that_misses_in_one_mode_is_quantized_the_other_way_and_judged_on_held_out_rows(spark, trained, tmp_path):
    """The rescue: dynamic int8 missing its gate (forced here by the judge) is quantized static, calibrated on the
    even rows and judged on the odd ones; the metadata says which mode was kept and why the other was not."""
    import shutil
    from dataclasses import replace

    from kpspark.crossencoder.export import check_parity
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer
    from kpspark.onnxutil import int8_with_parity, length_batches

    cfg, _, tmp = trained
    a, b = _real_pairs(spark, cfg, 120)
    out = tmp_path / "export"
    shutil.copytree(tmp / "export", out)
    fp32 = OnnxPairScorer(out / "model.onnx", out, 64, threads=0)
    judged = []

    def judge(rows):
        judged.append((rows, open(out / "model.int8.onnx", "rb").read()[-64:]))
        p = check_parity(tmp / "model", out, a[rows], b[rows], 64)
        return replace(p, int8_ok=False, int8_problems="forced miss") if len(judged) == 1 else p

    parity, meta = int8_with_parity(out, "dynamic", len(a), lambda rows: (
        f for _, f in length_batches(*fp32.encode(a[rows], b[rows]), 16)), judge, "cross-encoder")
    assert [r for r, _ in judged] == [slice(None), slice(1, None, 2)] and judged[0][1] != judged[1][1]
    assert meta["quantization"] == "static" and meta["int8_rejected"] == "dynamic int8: forced miss"
    assert parity.int8_ok and parity.n == len(a) // 2 and (out / "model.int8.onnx").exists()


def test_an_int8_export_that_misses_parity_is_dropped_and_the_model_serves_in_fp32(trained, tmp_path, caplog):
    """Not a lost model: the export keeps fp32 only (the metadata says why), the driver's check passes, and a job
    asking for int8 scores in fp32 with a warning."""
    import json
    import logging

    import numpy as np

    from kpspark.artifacts import META_FILE, verify_export
    from kpspark.crossencoder.export import export_with_parity
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer
    from kpspark.crossencoder.scorer import load_scorer

    _, _, tmp = trained
    a, b = ["red iphone", "drill", "case"], ["Phones [SEP] Apple iPhone Red", "Tools [SEP] DeWalt drill",
                                             "Phones [SEP] OtterBox case"]
    out, parity = export_with_parity(tmp / "model", tmp_path / "export", a, b, 64, min_pearson=1.01)  # unreachable
    meta = json.loads((out / META_FILE).read_text())
    assert not parity.int8_ok and "Pearson" in meta["int8_rejected"] and meta["files"] == {"fp32": "model.onnx"}
    assert "dynamic int8" in meta["int8_rejected"] and "static int8" in meta["int8_rejected"]  # both were tried
    assert not (out / "model.int8.onnx").exists()
    verify_export(str(out), "cross_encoder", "int8")
    with caplog.at_level(logging.WARNING, logger="kpspark.artifacts"):
        got = load_scorer(str(out), "int8", threads=0).scores(a, b)
    assert "no int8 file" in caplog.text
    fp32 = OnnxPairScorer(out / "model.onnx", out, 64, threads=0).scores(a, b)
    assert np.allclose(got, fp32)


def test_registry_transformer_and_spark_udf_give_the_same_scores(spark, trained):
    from pyspark.sql import functions as F

    from kpspark.rules import keyphrase_texts

    cfg, res, _ = trained
    uri = f"models:/{res['model']}@challenger"
    # in-domain pairs the model tells apart: the three it scored highest and the three lowest in the pipeline
    ps = tables.read_table(spark, cfg, "pair_scores").where(F.col("model_name") == res["model"])
    picked = ps.orderBy(F.desc("score"), "item_id", "keyphrase_id").limit(3).unionByName(
        ps.orderBy("score", "item_id", "keyphrase_id").limit(3))
    rows = [(r.keyphrase, r.category, r.title) for r in picked
            .join(tables.read_table(spark, cfg, "items").select("item_id", "title", "category"), "item_id")
            .join(keyphrase_texts(tables.read_table(spark, cfg, "keyphrases")).select("keyphrase_id", "keyphrase"),
                  "keyphrase_id").orderBy("item_id", "keyphrase_id").collect()]
    assert len(rows) == 6
    # the stage spreads its input over the task slots, so rows come back in another order: compare by row id
    df = spark.createDataFrame([(i, *r) for i, r in enumerate(rows)],
                               "id int, keyphrase string, category string, title string")

    def by_id(out):
        return [r.score for r in sorted(out.select("id", "score").collect())]

    ours = by_id(OnnxCrossEncoderModel(modelUri=uri).transform(df))
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    theirs = by_id(df.select("id", udf("keyphrase", "category", "title").alias("score")))
    local = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame(rows, columns=["keyphrase", "category", "title"]))
    # int8 is dynamically quantized: activation scales are per batch, so a pair's score moves by
    # up to ~2e-3 with its batch-mates (Spark partitions rows differently from a pandas call)
    assert ours == pytest.approx(theirs, abs=5e-3) and ours == pytest.approx(list(local), abs=5e-3)
    fp32 = by_id(OnnxCrossEncoderModel(modelUri=uri, precision="fp32").transform(df))
    fp32_one_by_one = [OnnxCrossEncoderModel(modelUri=uri, precision="fp32").transform(df.limit(0).union(
        spark.createDataFrame([(i, *row)], df.schema))).first().score for i, row in enumerate(rows)]
    assert fp32 == pytest.approx(fp32_one_by_one, abs=1e-5)  # fp32 does not depend on the batch
    assert max(ours) - min(ours) > 0.05  # not a constant model: the agreement above is not trivial


def test_bad_input_rows_and_save_load(spark, trained, tmp_path):
    cfg, res, _ = trained
    long_title = "Apple iPhone 11 " + "very long seller text " * 2000
    rows = [("iphone", "Phones", None), (None, "Phones", "Apple iPhone"), ("  ", "Phones", "Apple iPhone"),
            ("iphone", None, "Apple iPhone 11"), ("iphone", "Phones", long_title),
            ("айфон 11 📱", "Phones", "Apple iPhone 11 😀"), ("iphone", "Phones", "Apple iPhone 11"),
            ("iphone", "Phones", "Apple iPhone 11")]
    df = spark.createDataFrame([(i, *r) for i, r in enumerate(rows)],
                               "id int, keyphrase string, category string, title string")
    model = OnnxCrossEncoderModel(modelUri=f"models:/{res['model']}@challenger", precision="fp32")
    model.write().overwrite().save(str(tmp_path / "stage"))
    loaded = OnnxCrossEncoderModel.load(str(tmp_path / "stage"))
    got = [r.score for r in sorted(loaded.transform(df).select("id", "score").collect())]  # by row id
    assert len(got) == len(rows)  # no row lost, no task failure
    assert got[0] is None and got[1] is None and got[2] is None  # nothing to judge -> null score
    assert all(0.0 <= s <= 1.0 for s in got[3:])
    assert got[6] == got[7]  # duplicate pairs score the same
    # a long title is truncated, the keyphrase never is
    scorer = load_scorer(f"models:/{res['model']}@challenger", "fp32")
    enc = scorer.tokenizer.encode("iphone case pro max", "Phones [SEP] " + long_title)
    assert len(enc.ids) == 64 and enc.tokens[1:5] == ["iphone", "case", "pro", "max"]
    with pytest.raises(SchemaError, match="keyphrase"):
        loaded.transform(df.drop("keyphrase"))
    with pytest.raises(ValueError, match="precision must be one of"):
        OnnxCrossEncoderModel(precision="int4")


def test_score_pairs_writes_pair_scores_with_accounting(spark, trained):
    cfg, res, _ = trained
    models.set_alias(cfg, res["model"], "champion", res["version"])
    extra = spark.createDataFrame([(999_999, 1)], "item_id long, keyphrase_id long")  # unknown item
    pairs = tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id").limit(50).unionByName(extra)
    out = run_score_pairs(cfg, spark, pairs=pairs)
    assert out["rows_in"] == 51 and out["rows_written"] == 50 and out["rows_quarantined"] == 1
    ps = tables.read_table(spark, cfg, "pair_scores").join(pairs, ["item_id", "keyphrase_id"]).toPandas()
    assert len(ps) == 50 and ps["model_version"].eq(res["version"]).all() and ps["score"].between(0, 1).all()


def test_recipes_mix_sources_and_clicks_win(spark, trained):
    cfg, _, _ = trained
    for r in recipes.RECIPES:
        if r in ("click_llm", "click_llm_neg", "llm"):
            continue  # no LLM labels in this lakehouse
        df = recipes.recipe_pairs(spark, cfg, r).toPandas()
        assert not df.duplicated(["item_id", "keyphrase_id"]).any(), r
        assert set(df["label"]) == {0, 1}, r
    cs = recipes.recipe_pairs(spark, cfg, "click_search", clicks=ClickPositiveConfig(1, 1, 0.0)).toPandas()
    assert set(cs["source"]) == {"click", "search"}
    assert (cs.loc[cs.source == "click", "label"] == 1).all() and (cs.loc[cs.source == "search", "label"] == 0).all()
    with pytest.raises(ValueError, match="recipe must be one of"):
        recipes.recipe_pairs(spark, cfg, "clicks")


def test_filtering_on_the_score_runs_the_model_once_and_keeps_what_it_outputs(spark, trained):
    """Regression (CI of session 2): a deterministic UDF was copied into the pushed-down filter, so every row
    was scored twice in different batches, and int8 scores (batch-dependent) in the output fell below the
    threshold the filter had applied."""
    from kpspark.evaluation.calibration import ThresholdModel

    cfg, res, _ = trained
    items = tables.read_table(spark, cfg, "items").select("title", "category").limit(30)
    pairs = items.crossJoin(tables.read_table(spark, cfg, "keyphrases").selectExpr("text AS keyphrase").limit(20))
    scored = OnnxCrossEncoderModel(modelUri=f"models:/{res['model']}@challenger", precision="int8",
                                   batchSize=7).transform(pairs)
    threshold = float(np.median(scored.select("score").toPandas()["score"].dropna()))
    kept = ThresholdModel(scoreCol="score", threshold=threshold, filterRows=True).transform(scored)
    plan = kept._jdf.queryExecution().executedPlan().toString()
    assert plan.count("ArrowEvalPython") == 1, plan
    got = kept.toPandas()
    assert len(got) > 0 and (got["score"] >= threshold).all()


def test_a_model_fitted_inside_a_run_loads_from_the_run_on_any_node(spark, trained, tmp_path):
    """fit() inside an MLflow run logs the export there: the model points at runs:/<id>/export, not at the
    driver's output folder (which no executor of a cluster could read), and scores from it after the folder
    is gone."""
    import shutil

    from kpspark.crossencoder.estimator import CrossEncoderEstimator
    from kpspark.crossencoder.recipes import recipe_pairs, with_texts

    cfg, _, _ = trained
    # trained as the demo's model is (a barely trained one fails the int8 parity gate: issue 17's subject)
    data = with_texts(spark, cfg, recipe_pairs(spark, cfg, "click_search"))
    est = CrossEncoderEstimator(outputDir=str(tmp_path / "out"), epochs=4.0, batchSize=32, evalSteps=20, patience=4)
    with mlflow.start_run() as run:
        model = est.fit(data)
    assert model.getOrDefault("modelUri") == f"runs:/{run.info.run_id}/export"
    assert model.getOrDefault("trackingUri") == mlflow.get_tracking_uri()
    # the typed summary carries the validation fold: held-out items only, none of them trained on
    s = model.summary
    _, val = est.split(data)
    assert s.validation_rows == len(val) > 0 and set(s.validation["item_id"]) == set(val["item_id"])
    assert s.train_rows > s.validation_rows and s.parity["int8_decision_agreement"] >= 0.99
    assert "train_loss" in s.figures
    shutil.rmtree(tmp_path / "out")  # the driver's folder is gone: only the run has the model
    model.save(str(tmp_path / "stage"))
    loaded = OnnxCrossEncoderModel.load(str(tmp_path / "stage"))
    scores = loaded.transform(data.limit(10)).select("score").toPandas()["score"]
    assert len(scores) == 10 and scores.between(0, 1).all()
    assert CrossEncoderEstimator(outputDir=str(tmp_path / "o2"), logToRun=False).getOrDefault("logToRun") is False
