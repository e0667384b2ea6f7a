"""The Databricks template (``kpspark/conf/databricks.yaml``): Unity Catalog names for tables and models, a
registry URI of its own, checkpoints under the configured volume, the experiment as a workspace path. What can
run here: name and URI handling (the secret scope path is tested with a stand-in dbutils in
tests/labeling/test_openai_backend.py)."""
from __future__ import annotations

import re

import pytest

from kpspark.config import load_config, templates

UC_NAME = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+$")


@pytest.fixture()
def dbx(monkeypatch):
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(k, raising=False)
    return load_config("databricks")


def test_tables_are_three_part_names_and_checkpoints_live_on_the_volume(dbx):
    from kpspark.data.tables import table_ref
    from kpspark.production.streaming import checkpoint_location
    from kpspark.session import checkpoint_dir

    ref = table_ref(dbx, "recommendations")
    assert not ref.is_path and ref.location == "main.kpspark.recommendations"
    assert checkpoint_location(dbx).startswith("/Volumes/main/kpspark/state/")
    assert checkpoint_dir(dbx).startswith("/Volumes/main/kpspark/state/")
    assert dbx.spark.delta_provided and dbx.spark.master == ""


def test_the_registry_has_its_own_uri_and_every_model_name_is_valid_in_unity_catalog(dbx, monkeypatch):
    from kpspark.biencoder.workflow import model_name_for as be_name
    from kpspark.crossencoder.workflow import model_name_for as ce_name
    from kpspark.registry import tracking

    assert tracking.tracking_uri(dbx) == "databricks" and tracking.registry_uri(dbx) == "databricks-uc"
    assert dbx.mlflow.experiment.startswith("/")
    names = [dbx.models.baseline, *(ce_name(dbx, r) for r in dbx.evaluation.recipes),
             *(be_name(dbx, r) for r in ("multitask", "click", "search", "distill"))]
    assert all(UC_NAME.match(n) for n in names), names
    assert ce_name(dbx, "llm") == "main.kpspark.cross_encoder_llm"
    # mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI: a store configured earlier does not leak into this one
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere.db")
    assert tracking.registry_uri(dbx) == "databricks-uc"


def test_a_local_store_keeps_one_uri_and_its_variant_names():
    from kpspark.crossencoder.workflow import model_name_for
    from kpspark.registry import tracking

    cfg = load_config("local", overrides=["mlflow.tracking_uri=http://127.0.0.1:5000"])
    assert tracking.registry_uri(cfg) == tracking.tracking_uri(cfg)
    assert model_name_for(cfg, "llm") == "kpspark-cross-encoder-llm"


def test_the_templates_ship_in_the_package_and_load():
    assert {"local", "cluster", "databricks"} <= set(templates())
    for name in templates():
        load_config(name)
