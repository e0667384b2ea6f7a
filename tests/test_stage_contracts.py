"""The contract every pyspark.ml stage of the package keeps: its Params are JSON-only, it saves and loads with
pyspark.ml's default writer to the same params, an Estimator and its Model share their Params, and ``transform``
is lazy (no Spark job runs until an action). Each stage builds the small inputs it needs here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kpspark.biencoder.embedder import TextEmbedder
from kpspark.biencoder.estimator import BiEncoderEstimator
from kpspark.crossencoder.estimator import CrossEncoderEstimator
from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
from kpspark.crossencoder.sparknlp import SparkNlpCrossEncoderModel
from kpspark.evaluation.calibration import ThresholdCalibrator, ThresholdModel
from kpspark.labeling.judge import LLMJudge
from kpspark.retrieval.retriever import KeyphraseRetriever, KeyphraseRetrieverModel

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes)

STAGES = {
    "LLMJudge": lambda tmp: LLMJudge(backend="fake", model="fake-judge"),
    "CrossEncoderEstimator": lambda tmp: CrossEncoderEstimator(outputDir=str(tmp / "ce"), epochs=2.0, lr=5e-5),
    "OnnxCrossEncoderModel": lambda tmp: OnnxCrossEncoderModel(modelUri=str(tmp / "no-model"), batchSize=4),
    "SparkNlpCrossEncoderModel": lambda tmp: SparkNlpCrossEncoderModel(modelUri=str(tmp / "no-model"), batchSize=4),
    "BiEncoderEstimator": lambda tmp: BiEncoderEstimator(tasks=["click"], taskWeights=[1.0], dims=[384, 64]),
    "TextEmbedder": lambda tmp: TextEmbedder(inputCol="title", categoryCol="category", modelUri=str(tmp / "m"),
                                             dim=64),
    "KeyphraseRetriever": lambda tmp: KeyphraseRetriever(indexDir=str(tmp / "index"), k=3),
    "KeyphraseRetrieverModel": lambda tmp: KeyphraseRetrieverModel(indexDir=str(tmp / "index"), k=3),
    "ThresholdCalibrator": lambda tmp: ThresholdCalibrator(categoryCol="category", minPositives=2),
    "ThresholdModel": lambda tmp: ThresholdModel(threshold=0.4, categoryThresholds='{"a": 0.7}', filterRows=True,
                                                 categoryCol="category"),
}


def _params(stage) -> dict:
    return {p.name: stage.getOrDefault(p) for p in stage.params if stage.hasDefault(p) or stage.isSet(p)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_json_only_and_survive_save_and_load(spark, name, tmp_path):
    stage = STAGES[name](tmp_path)
    params = _params(stage)
    assert params and json.loads(json.dumps(params)) == params, name  # every value is plain JSON
    stage.write().overwrite().save(str(tmp_path / "saved"))
    back = type(stage).load(str(tmp_path / "saved"))
    assert _params(back) == params and back.uid == stage.uid


@pytest.mark.parametrize("estimator, model", [(KeyphraseRetriever, KeyphraseRetrieverModel),
                                               (ThresholdCalibrator, ThresholdModel)])
def test_an_estimator_and_its_model_share_their_params(estimator, model):
    shared = {p.name for p in estimator().params}
    assert shared <= {p.name for p in model().params}


def test_hyperparameters_are_the_config_dataclasses():
    from dataclasses import fields

    from kpspark.config import BiEncoderTraining, CrossEncoderTraining
    from kpspark.params import camel

    for est, hp in ((CrossEncoderEstimator(), CrossEncoderTraining), (BiEncoderEstimator(), BiEncoderTraining)):
        assert {camel(f.name) for f in fields(hp)} <= {p.name for p in est.params}
        assert est.hyperparams() == hp()  # the defaults are the dataclass's
    with pytest.raises(TypeError, match="has no param"):
        CrossEncoderEstimator(learningRate=0.1)


def _jobs(spark, fn) -> int:
    sc = spark.sparkContext
    sc.setJobGroup("contract", "contract")
    before = set(sc.statusTracker().getJobIdsForGroup("contract"))
    out = fn()
    after = set(sc.statusTracker().getJobIdsForGroup("contract"))
    sc.setJobGroup("", "")
    return len(after - before), out


def test_transform_is_lazy(spark, tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(6, 8))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    kps = spark.createDataFrame([(i, f"kp {i}", "a" if i < 3 else "b", vec[i].tolist()) for i in range(6)],
                                "keyphrase_id long, text string, category string, embedding array<float>")
    index = KeyphraseRetriever(indexDir=str(tmp_path / "index"), k=3).fit(kps)  # fitting runs jobs; fine
    items = spark.createDataFrame([(1, "usb cable", "a", vec[0].tolist())],
                                  "item_id long, title string, category string, embedding array<float>")
    pairs = spark.createDataFrame([(1, "usb cable", "a", "kp 0", 0.9)],
                                  "item_id long, title string, category string, keyphrase string, ce_score double")
    stages = [(LLMJudge(backend="fake", model="fake-judge"), pairs), (index, items),
              (OnnxCrossEncoderModel(modelUri=str(tmp_path / "no-model"), outputCol="s"), pairs),
              (TextEmbedder(inputCol="title", categoryCol="category", modelUri=str(tmp_path / "m"), outputCol="e"),
               items),
              (ThresholdModel(threshold=0.5, filterRows=True), pairs)]
    assert _jobs(spark, items.count)[0] >= 1  # the counter sees an action's job
    for stage, df in stages:
        n, out = _jobs(spark, lambda s=stage, d=df: s.transform(d))
        assert n == 0, f"{type(stage).__name__}.transform ran {n} Spark job(s)"
        assert out.columns  # a plan, not data
