"""Bi-encoder: one real multi-task training run (module fixture) on the sample marketplace, then its
export parity, the TextEmbedder stage, the registry round trip and bad input.

The run is the session's demo pipeline (tests/conftest.py): the teacher is the pipeline's
cross-encoder, whose scores of the candidate pairs are in ``pair_scores``. Quality checks are relative (student vs its own starting point,
ONNX vs sentence-transformers, int8 vs fp32, Spark vs pure Python), never fixed values.
"""
from __future__ import annotations

import mlflow
import numpy as np
import pytest
from pyspark.sql import functions as F

from kpspark.biencoder.embedder import TextEmbedder, load_embedder
from kpspark.biencoder.estimator import BiEncoderEstimator
from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder
from kpspark.biencoder.text import item_texts
from kpspark.biencoder.workflow import run_embed, task_rows
from kpspark.data import tables
from kpspark.errors import SchemaError
from kpspark.registry import models
from tests.conftest import REPO, use_store

def _pearson_to_teacher(embed, pdf):
    a = embed(item_texts(pdf["title"], pdf["category"]))
    b = embed(pdf["keyphrase"].tolist())
    return float(np.corrcoef(np.sum(a * b, axis=1), pdf["label"])[0, 1])


@pytest.fixture(scope="module")
def trained(pipeline):
    """The student the session's demo pipeline trained (2-layer MiniLM, click + search + distillation
    from the pipeline's cross-encoder scores, Matryoshka dims 384/128/64)."""
    from pathlib import Path

    cfg, out, _ = pipeline
    return cfg, out["bi_encoder"], Path(out["bi_encoder"]["output_dir"])


@pytest.fixture(autouse=True)
def _isolated_mlflow(pipeline, monkeypatch):
    use_store(monkeypatch, pipeline[2])


def test_multitask_run_is_logged_with_recall_per_dim(trained):
    cfg, res, _ = trained
    assert set(res["rows"]) == {"click", "search", "distill"} and min(res["rows"].values()) > 0
    run = mlflow.get_run(res["run_id"])
    assert run.data.params["be_tasks"] == "click,search,distill"
    dims = {r["dim"] for r in res["recall"]}
    assert dims == {384, 128, 64}
    assert {r["relevant"] for r in res["recall"]} == {"click", "cross_encoder"}
    for r in res["recall"]:
        if r["items"]:
            assert 0.0 <= r["recall@10"] <= r["recall@50"] <= 1.0  # recall grows with k
    assert "be_recall_click_at50_d64" in run.data.metrics
    assert models.get_version(cfg, res["model"], "challenger") == res["version"]
    assert models.get_version(cfg, res["model"], "champion") == res["version"]  # first version


def test_distillation_moves_the_student_towards_the_teacher(spark, trained):
    """Held-out items: the trained student's cosines correlate with the teacher better than the
    starting model's (the Pearson task did something)."""
    from kpspark.biencoder.estimator import BiEncoderEstimator
    from kpspark.biencoder.train import load_base

    cfg, res, tmp = trained
    rows = task_rows(spark, cfg, ("distill",))
    _, val = BiEncoderEstimator(seed=cfg.sample.seed).split(rows)
    assert len(val) > 20
    base = load_base("minilm2", cfg.bi_encoder.max_length)
    before = _pearson_to_teacher(lambda t: base.encode(t, normalize_embeddings=True), val)
    emb = OnnxTextEmbedder(f"{res['export_dir']}/model.onnx", res["export_dir"], cfg.bi_encoder.max_length, threads=0)
    after = _pearson_to_teacher(emb.embed, val)
    assert after > before + 0.02, (before, after)


def test_an_int8_export_that_misses_parity_is_dropped_and_the_model_serves_in_fp32(trained, tmp_path):
    import json

    from kpspark.artifacts import META_FILE, verify_export
    from kpspark.biencoder.export import export_with_parity

    cfg, _, tmp = trained
    texts = ["cordless drill 20v", "OtterBox Defender Case for iPhone 11 [SEP] Cell Phones", "red shoe"]
    out, parity = export_with_parity(tmp / "model", tmp_path / "export", texts, cfg.bi_encoder.max_length, (64,),
                                     min_cosine=1.01)  # unreachable
    meta = json.loads((out / META_FILE).read_text())
    assert not parity.int8_ok and "cosine" in meta["int8_rejected"] and meta["files"] == {"fp32": "model.onnx"}
    verify_export(str(out), "bi_encoder", "int8")
    got = load_embedder(str(out), "int8", threads=0).embed(texts)
    want = OnnxTextEmbedder(out / "model.onnx", out, cfg.bi_encoder.max_length, threads=0).embed(texts)
    assert np.allclose(got, want, atol=1e-6)


def test_export_parity(trained):
    cfg, res, tmp = trained
    n = cfg.bi_encoder.max_length
    assert res["be_parity_fp32_max_abs_diff"] <= 1e-4
    assert res["be_parity_int8_mean_cosine"] >= 0.99
    # independent of the gate: sentence-transformers vs the ONNX fp32 export on fresh texts
    from sentence_transformers import SentenceTransformer

    assert not (tmp / "checkpoints").exists()  # dropped once the best model is saved (~0.5 GB each)
    texts = ["cordless drill 20v", "OtterBox Defender Case for iPhone 11 [SEP] Cell Phones", "日本語 emoji 🎉"]
    st = SentenceTransformer(str(tmp / "model"), device="cpu")
    st.max_seq_length = n
    ref = st.encode(texts, normalize_embeddings=True)
    got = OnnxTextEmbedder(f"{res['export_dir']}/model.onnx", res["export_dir"], n).embed(texts)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_text_embedder_in_spark_matches_pure_python_and_matryoshka(spark, trained):
    cfg, res, _ = trained
    rows = [(1, "DeWalt 20V Cordless Drill", "Power Tools"), (2, "", "Power Tools"), (3, None, None),
            (4, "Apple iPhone 11 64GB Red", None)]
    df = spark.createDataFrame(rows, "id long, title string, category string")
    stage = TextEmbedder(inputCol="title", categoryCol="category", modelUri=res["export_dir"], precision="fp32")
    full = {r.id: r.embedding for r in stage.transform(df).collect()}
    assert full[2] is None and full[3] is None  # blank/null text: null embedding, row kept
    ref = OnnxTextEmbedder(f"{res['export_dir']}/model.onnx", res["export_dir"], cfg.bi_encoder.max_length).embed(
        item_texts(["DeWalt 20V Cordless Drill", "Apple iPhone 11 64GB Red"], ["Power Tools", None]))
    np.testing.assert_allclose(np.array([full[1], full[4]]), ref, atol=1e-5)
    small = {r.id: np.array(r.embedding) for r in stage.copy({stage.dim: 64}).transform(df).collect() if r.embedding}
    assert small[1].shape == (64,)
    prefix = np.array(full[1][:64])
    np.testing.assert_allclose(small[1], prefix / np.linalg.norm(prefix), atol=1e-5)


def test_registry_pyfunc_and_text_embedder_agree(spark, trained):
    _, res, _ = trained
    uri = f"models:/{res['model']}@champion"
    # compared by row id (the stage spreads its input over the task slots, so rows come back in another order),
    # in one batch on both sides: int8 dynamic quantization depends on batch-mates
    df = spark.createDataFrame([(0, "cordless drill"), (1, "red iphone case")], "id int, text string")
    ours = [np.array(r.embedding) for r in sorted(TextEmbedder(inputCol="text", modelUri=uri, dim=64, minPartitions=1)
                                                  .transform(df).select("id", "embedding").collect())]
    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="array<float>", env_manager="local", params={"dim": 64})
    theirs = [np.array(r.e) for r in sorted(df.coalesce(1).select("id", udf("text").alias("e")).collect())]
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape == (64,)
        assert float(a @ b) >= 0.999  # same model and texts; int8 dynamic quantization depends on batch-mates
    direct = load_embedder(uri).embed(["cordless drill", "red iphone case"], 64)[0]  # the same batch
    assert float(direct @ ours[0]) >= 0.999


def test_run_embed_writes_both_tables(spark, trained):
    cfg, res, _ = trained
    out = run_embed(cfg, spark)  # the pipeline embedded once already: this MERGE must change nothing
    items = tables.read_table(spark, cfg, "item_embeddings")
    n_items = tables.read_table(spark, cfg, "items").count()
    assert items.count() == n_items == out["items_written"]
    kp = tables.read_table(spark, cfg, "keyphrase_embeddings")
    assert kp.count() == tables.read_table(spark, cfg, "keyphrases").count()
    sizes = {r.n for r in kp.select(F.size("embedding").alias("n")).distinct().collect()}
    assert sizes == {64}
    assert {r.model_version for r in kp.select("model_version").distinct().collect()} == {res["version"]}


def test_stages_save_and_load(tmp_path, trained):
    _, res, _ = trained
    stage = TextEmbedder(inputCol="text", modelUri=res["export_dir"], dim=128, precision="fp32")
    stage.save(str(tmp_path / "emb"))
    back = TextEmbedder.load(str(tmp_path / "emb"))
    assert back.getOrDefault("dim") == 128 and back.getOrDefault("modelUri") == res["export_dir"]
    est = BiEncoderEstimator(tasks=["click", "distill"], taskWeights=[1.0, 0.5], dims=[384, 64])
    est.save(str(tmp_path / "est"))
    est2 = BiEncoderEstimator.load(str(tmp_path / "est"))
    cfg = est2.train_config()
    assert cfg.tasks == ("click", "distill") and cfg.weights == {"click": 1.0, "distill": 0.5}
    with pytest.raises(ValueError, match="one weight per task"):
        BiEncoderEstimator(tasks=["click"], taskWeights=[1.0, 2.0]).train_config()


def test_bad_input_is_refused_clearly(spark, trained):
    _, res, _ = trained
    df = spark.createDataFrame([(1, 5)], "id long, text long")
    with pytest.raises(SchemaError, match="must be string"):
        TextEmbedder(inputCol="text", modelUri=res["export_dir"]).transform(df)
    with pytest.raises(SchemaError, match="lacks the text column"):
        TextEmbedder(inputCol="nope", modelUri=res["export_dir"]).transform(df)
    with pytest.raises(ValueError, match="modelUri"):
        TextEmbedder(inputCol="text").transform(spark.createDataFrame([("a",)], "text string"))
    with pytest.raises(SchemaError, match="lacks"):
        BiEncoderEstimator(outputDir="/tmp/x").fit(spark.createDataFrame([("a",)], "title string"))
    with pytest.raises(Exception, match="not a kpspark model export"):
        load_embedder(str(REPO / "nonexistent-model"))


def test_distill_without_teacher_scores_says_what_to_run(spark, trained):
    from dataclasses import replace

    cfg, _, _ = trained
    other = replace(cfg, bi_encoder=replace(cfg.bi_encoder, teacher="no-such-model"))
    with pytest.raises(ValueError, match="score_pairs"):
        task_rows(spark, other, ("click", "distill"))
