from __future__ import annotations

import dataclasses
import zipfile

import pandas as pd
import pytest

from kpspark.data import loaders, tables
from kpspark.errors import SchemaError

HD_ROWS = [
    (2, 100001, "Simpson Strong-Tie 12-Gauge Angle", "angle bracket", 3.0),
    (3, 100001, "Simpson Strong-Tie 12-Gauge Angle", "l bracket", 2.5),
    (9, 100002, "BEHR Premium Textured DeckOver 1-gal. #SC-141 Tugboat", "deck over", 3.0),
    (16, 100005, "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Caf\xe9", "rain shower head", 2.33),
    (17, 100005, "Delta Vero 1-Handle Shower Only Faucet Trim Kit in Caf\xe9", "shower only faucet", 1.0),
    (18, 100006, "Whirlpool 1.9 cu. ft. Over the Range", "!!!", 2.0),  # query normalizes to empty
]


def _homedepot_zip(tmp_path):
    csv = tmp_path / "train.csv"
    pd.DataFrame(HD_ROWS, columns=["id", "product_uid", "product_title", "search_term", "relevance"]) \
        .to_csv(csv, index=False, encoding="latin-1")
    z = tmp_path / "train.csv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(csv, "train.csv")
    return z


def test_homedepot_format_latin1_zip(spark, cfg, tmp_path):
    frames = loaders.read_homedepot(spark, _homedepot_zip(tmp_path))
    result = loaders.load_to_tables(spark, cfg, frames)
    assert result["file_rows"] == len(HD_ROWS)
    assert result["file_rows"] == result["labels_written"] + result["quarantined"]
    assert result["quarantined"] == 1  # the query that normalizes to nothing
    items = tables.read_table(spark, cfg, "items").toPandas()
    assert sorted(items["item_id"]) == [100001, 100002, 100005, 100006]
    assert "Caf\xe9" in items.loc[items.item_id == 100005, "title"].iloc[0]  # latin-1 decoded, not U+FFFD
    hl = tables.read_table(spark, cfg, "human_labels").toPandas()
    assert sorted(hl["label"]) == [0, 0, 1, 1, 1]  # relevance >= 2.5 -> 1
    assert hl["mapping"].str.contains("2.5").all()
    assert tables.read_table(spark, cfg, "pairs").count() == 5  # rated pairs become candidate pairs
    kp = tables.read_table(spark, cfg, "keyphrases").toPandas()
    assert set(kp["normalized"]) == {"angle bracket", "l bracket", "deck over", "rain shower head", "shower only faucet"}


def test_same_query_same_id_across_loads(spark, tmp_path):
    a = loaders.read_homedepot(spark, _homedepot_zip(tmp_path))["keyphrases"]
    from pyspark.sql import functions as F

    from kpspark.rules import normalize_text_col

    b = spark.createDataFrame([("Angle  Bracket!",)], "q string").select(
        loaders.keyphrase_id_col(normalize_text_col(F.col("q"))))
    assert b.first()[0] in {r[0] for r in a.select("keyphrase_id").collect()}


def test_esci_parquet(spark, cfg, tmp_path):
    ex = pd.DataFrame({"example_id": [1, 2, 3, 4], "query": ["iphone case", "iphone case", "usb cable", "x"],
                       "product_id": ["B01", "B02", "B03", "B09"], "product_locale": ["us", "us", "us", "jp"],
                       "esci_label": ["E", "C", "I", "E"]})
    pr = pd.DataFrame({"product_id": ["B01", "B02", "B03", "B09"], "product_locale": ["us", "us", "us", "jp"],
                       "product_title": ["Spigen case for iPhone", "iPhone charger", "Hammer", "jp item"]})
    ex.to_parquet(tmp_path / "examples.parquet")
    pr.to_parquet(tmp_path / "products.parquet")
    frames = loaders.read_esci(spark, tmp_path / "examples.parquet", tmp_path / "products.parquet")
    result = loaders.load_to_tables(spark, cfg, frames)
    assert result["labels_written"] == 3 and result["quarantined"] == 0
    hl = tables.read_table(spark, cfg, "human_labels").toPandas()
    assert sorted(hl["label"]) == [0, 0, 1]


def test_generic_mapping_missing_column(spark, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(SchemaError, match="missing column"):
        loaders.read_file(spark, p, "csv", {"item_id": "nope"})
    df = loaders.read_file(spark, p, "csv", {"item_id": "a", "title": "b"})
    assert [tuple(r)[:2] for r in df.collect()] == [("1", "2")]


@pytest.mark.skipif(not loaders.HOMEDEPOT_SHARED.exists(), reason="shared Home Depot data not present")
def test_real_homedepot_file_accounts_for_every_row(spark, cfg):
    frames = loaders.read_homedepot(spark)
    result = loaders.load_to_tables(spark, cfg, frames)
    assert result["file_rows"] == 74_067
    assert result["labels_written"] + result["quarantined"] == 74_067


def _rated_pairs_csv(path):
    """A shop's own rated pairs: string SKUs, its own column names, 1-5 stars (>= 4 relevant), one query that
    normalizes to nothing and one row without a title (both quarantined, not lost)."""
    import random

    rng = random.Random(7)
    brands, kinds = ["Acme", "Bolt", "Crest", "Delta", "Ember"], ["drill", "sander", "lamp", "kettle", "blender", "saw"]
    colors = ["red", "black", "steel", "white"]
    rows = []
    for i in range(36):
        b, k, c = brands[i % 5], kinds[i % 6], colors[i % 4]
        title = f"{b} {c} {k} {20 + i}V"
        for q in (f"{k}", f"{b} {k}", f"{c} {k}"):
            rows.append((f"SKU-{i:03d}", title, "Tools" if k in ("drill", "sander", "saw") else "Home", q,
                         rng.choice([4, 5])))
        for q in rng.sample([x for x in kinds if x != k], 3):
            rows.append((f"SKU-{i:03d}", title, "Tools" if k in ("drill", "sander", "saw") else "Home", q,
                         rng.choice([1, 2])))
    rows.append(("SKU-900", "Acme lamp", "Home", "???", 5))
    rows.append(("SKU-901", "", "Home", "lamp", 5))
    pd.DataFrame(rows, columns=["sku", "product name", "dept", "search term", "stars"]).to_csv(path, index=False)
    return len(rows)


def test_your_own_rated_pairs_csv_loads_trains_and_evaluates(spark, tmp_path, monkeypatch):
    """The README's path for a user's data: a YAML mapping -> ``kpspark load`` (its workflow) -> a cross-encoder
    trained on the ratings (recipe ``human``) -> the offline report, every file row accounted for."""
    from pyspark.sql import functions as F

    from kpspark import workflows
    from kpspark.cli import _WORKFLOWS
    from kpspark.config import load_config
    from tests.conftest import REPO

    import re

    readme = (REPO / "README.md").read_text()
    mapping = re.search(r"```yaml\n# my_data.yaml\n(.*?)```", readme, flags=re.S).group(1)
    commands = re.search(r"```bash\n(\.venv/bin/kpspark load .*?)```", readme, flags=re.S).group(1).split("\n")
    n = _rated_pairs_csv(tmp_path / "ratings.csv")
    (tmp_path / "my_data.yaml").write_text(mapping)  # the README's mapping as written (path: ratings.csv)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = load_config(REPO / "conf" / "local.yaml", "my_data.yaml", overrides=[
        f"lakehouse.root={tmp_path / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"mlflow.artifact_root={tmp_path / 'mlartifacts'}", "cross_encoder.epochs=3", "cross_encoder.batch_size=16",
        "cross_encoder.eval_steps=10", "cross_encoder.precision=fp32", "evaluation.judge_sample=0",
        f"evaluation.output_dir={tmp_path / 'report'}"])
    # the README's three commands are these workflows, in this order
    assert [_WORKFLOWS[c.split()[1]] for c in commands if c] == [
        "run_load", "run_train_cross_encoder", "run_calibrate_evaluate"]
    res = workflows.run_load(cfg, spark)["rated_pairs"]
    assert res["rows_in"] == n == res["rows_written"] + res["rows_quarantined"] and res["rows_quarantined"] == 2
    hl = tables.read_table(spark, cfg, "human_labels")
    assert hl.where(F.col("source") == "user").count() == n - 2 and hl.where("label = 1").count() == 36 * 3
    items = tables.read_table(spark, cfg, "items")
    sku = items.where(F.col("item_id") == spark.range(1).select(F.xxhash64(F.lit("SKU-000"))).first()[0])
    assert sku.select("title", "category").first() == ("Acme red drill 20V", "Tools")
    assert tables.read_table(spark, cfg, "pairs").count() == n - 2

    ce = workflows.run_train_cross_encoder(cfg, spark)
    assert ce["recipe"] == "human" and ce["version"] and ce["ce_val_auc_human"] > 0.5
    ev = workflows.run_calibrate_evaluate(cfg, spark)
    assert {"jaccard", "human"} <= set(ev["rows"]) and ev["rows"]["human"]["human_pairs"] > 0
    assert "auc_human_within_item" in ev["rows"]["human"]
    with pytest.raises(SchemaError, match="missing column"):
        loaders.read_source(spark, "rated_pairs", dataclasses.replace(cfg.load.rated_pairs, columns={}))
