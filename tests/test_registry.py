from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from kpspark.evaluation.baselines import jaccard, jaccard_scores
from kpspark.registry import models, tracking
from kpspark.registry.pyfunc import log_jaccard_model

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes)


def test_jaccard_penalises_short_head_keyphrases():
    title = "Apple iPhone 11 64GB Red Unlocked Smartphone"
    assert jaccard("iphone", title) < jaccard("apple iphone 11 red", title)
    assert jaccard("", title) == 0.0 and jaccard(None, title) == 0.0
    assert jaccard("Red iPhone", "red iphone") == 1.0


def test_run_logs_config_params_and_lineage_tags(spark, cfg):
    from kpspark.data import tables

    tables.write_table(spark, cfg, "items", spark.createDataFrame([(1, "t")], "item_id long, title string"))
    with tracking.start_run(cfg, "unit", spark=spark, tables=["items", "clicks"]) as run:
        mlflow.log_metric("m", 1.0)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params["models.serving_alias"] == "champion"
    assert got.data.tags["delta.items.version"] == str(tables.version(spark, cfg, "items"))
    assert "delta.clicks.version" not in got.data.tags  # absent table: no tag
    assert got.data.tags["git_sha"]
    assert tracking.tracking_uri(cfg).startswith("sqlite:///")


def test_register_alias_promote_rollback_and_load(cfg):
    name = "kp-test-baseline"
    uris = []
    for _ in range(2):
        with tracking.start_run(cfg, "reg"):
            uris.append(log_jaccard_model().model_uri)
    v1 = models.register(cfg, uris[0], name, alias="champion")
    v2 = models.register(cfg, uris[1], name, alias="challenger")
    assert (v1, v2) == ("1", "2")
    assert models.get_version(cfg, name, "champion") == "1"
    assert models.promote(cfg, name) == "2"
    assert models.get_version(cfg, name, "champion") == "2"
    assert models.rollback(cfg, name) == "1"
    assert models.get_version(cfg, name, "champion") == "1"
    assert models.get_version(cfg, name, "nope") is None
    with pytest.raises(ValueError, match="not set"):
        models.promote(cfg, name, from_alias="nope")

    model = mlflow.pyfunc.load_model(models.model_uri(name, "champion"))
    df = pd.DataFrame({"keyphrase": ["red iphone", "drill"], "category": ["c", "c"],
                       "title": ["Apple iPhone Red", "Apple iPhone Red"]})
    assert list(model.predict(df)) == list(jaccard_scores(df["keyphrase"], df["title"]))
    with pytest.raises(Exception, match="keyphrase"):
        model.predict(pd.DataFrame({"title": ["x"]}))


def test_spark_udf_gives_the_same_scores(spark, cfg):
    with tracking.start_run(cfg, "udf"):
        uri = log_jaccard_model().model_uri
    version = models.register(cfg, uri, "kp-udf", alias="champion")
    assert version == "1"
    udf = mlflow.pyfunc.spark_udf(spark, models.model_uri("kp-udf", "champion"), result_type="double",
                                  env_manager="local")
    df = spark.createDataFrame([("red iphone", "c", "Apple iPhone Red"), ("drill", "c", "DeWalt Drill 20v")],
                               "keyphrase string, category string, title string")
    got = [r[0] for r in df.select(udf("keyphrase", "category", "title")).collect()]
    assert got == pytest.approx([jaccard("red iphone", "Apple iPhone Red"), jaccard("drill", "DeWalt Drill 20v")])


def test_a_registry_of_its_own_is_where_the_driver_and_the_executors_resolve_models(spark, pipeline, tmp_path,
                                                                                     monkeypatch):
    """``mlflow.registry_uri`` apart from the tracking store (Unity Catalog's shape: ``databricks-uc`` next to
    ``databricks``): a version registered there is resolved there by the driver (alias pinning, the check
    before a job) and by the executors (the download), its files coming from the tracking store's run."""
    import dataclasses

    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from tests.conftest import lake_copy

    cfg = lake_copy(pipeline, tmp_path / "a", monkeypatch)
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    split = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, registry_uri=registry))
    champion = models.client(cfg).get_model_version_by_alias(cfg.models.cross_encoder, "champion")
    assert models.register(split, champion.source, "kp-split-ce", alias="champion") == "1"
    assert mlflow.get_registry_uri() == registry and mlflow.get_tracking_uri() == tracking.tracking_uri(cfg)
    pairs = spark.createDataFrame([("red iphone case", "Cell Phones", "OtterBox Case for iPhone 11 Red"),
                                   ("cordless drill", "Tools", "DeWalt 20V Cordless Drill")],
                                  "keyphrase string, category string, title string")
    stores = dict(trackingUri=tracking.tracking_uri(split), registryUri=tracking.registry_uri(split))
    got = OnnxCrossEncoderModel(modelUri="models:/kp-split-ce@champion", precision="fp32", **stores) \
        .transform(pairs).toPandas()
    assert got["score"].between(0, 1).all() and len(got) == 2
    # the tracking store has no model of that name: executors told to use it as their registry cannot load it
    with pytest.raises(Exception, match="kp-split-ce"):
        OnnxCrossEncoderModel(modelUri="models:/kp-split-ce/1", precision="fp32", trackingUri=stores["trackingUri"],
                              registryUri=stores["trackingUri"]).transform(pairs).collect()
