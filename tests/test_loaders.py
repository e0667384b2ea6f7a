from __future__ import annotations

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
