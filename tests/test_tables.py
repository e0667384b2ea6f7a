from __future__ import annotations

import datetime as dt

import pytest

from kpspark.data import tables
from kpspark.data.schemas import SCHEMAS
from kpspark.errors import SchemaError

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes)

ITEMS = "item_id string, title string, category string"


def _rows(df, *cols):
    return sorted(tuple(r) for r in df.select(*cols).collect())


def test_round_trip_and_schema(spark, cfg):
    df = spark.createDataFrame([(1, "Apple iPhone 11", "Phones"), (2, "Nike Air", "Shoes")],
                               "item_id long, title string, category string")
    rep = tables.write_table(spark, cfg, "items", df)
    assert rep.balanced and rep.rows_written == 2 and rep.rows_quarantined == 0
    out = tables.read_table(spark, cfg, "items")
    assert out.schema.fieldNames() == SCHEMAS["items"].columns
    assert _rows(out, "item_id", "title") == [(1, "Apple iPhone 11"), (2, "Nike Air")]


def test_quarantine_accounting_with_hostile_rows(spark, cfg):
    long_title = "x" * (cfg.quality.max_title_chars + 1)
    rows = [
        ("1", "good title", "c"),
        ("2", "", "c"),                       # empty_text
        ("3", "   ", "c"),                    # blank
        (None, "no id", "c"),                 # null_key
        ("abc", "bad id", "c"),               # bad_type
        ("4", long_title, "c"),               # too_long
        ("5", "bad \ufffd bytes", "c"),       # undecodable
        ("6", "bell \x07 char", "c"),         # control chars
        ("7", "same", "c"), ("7", "same", "c"),            # exact duplicate: one kept
        ("8", "first", "c"), ("8", "second", "c"),         # conflict: both quarantined
        ("9", None, "c"),                     # null title
    ]
    df = spark.createDataFrame(rows, ITEMS)
    rep = tables.upsert(spark, cfg, "items", df)
    assert rep.rows_in == len(rows)
    assert rep.balanced
    assert rep.rows_written == 2  # item 1 and one copy of item 7
    assert rep.reasons == {
        "empty_text:title": 2, "null_required:title": 1, "null_key:item_id": 1, "bad_type:item_id": 1, "too_long:title": 1,
        "undecodable_text:title": 1, "control_characters:title": 1, "duplicate_row": 1,
        "duplicate_key_conflict": 2,
    }
    q = tables.read_table(spark, cfg, "quarantine")
    assert q.count() == rep.rows_quarantined
    assert q.where("record LIKE '%second%'").select("reason").first()[0] == "duplicate_key_conflict"
    assert set(_rows(tables.read_table(spark, cfg, "items"), "item_id")) == {(1,), (7,)}


def test_schema_drift_is_a_clear_error(spark, cfg):
    df = spark.createDataFrame([(1, "t")], "id long, title string")
    with pytest.raises(SchemaError, match=r"items.*item_id"):
        tables.write_table(spark, cfg, "items", df)


def test_merge_is_idempotent_and_cdf_tracks_changes(spark, cfg):
    batch = spark.createDataFrame([(1, "A", "c"), (2, "B", "c")], "item_id long, title string, category string")
    tables.upsert(spark, cfg, "items", batch)
    v1 = tables.version(spark, cfg, "items")
    # into a table with no rows the batch is appended (no MERGE), and the Change Data Feed has its inserts
    ref = tables.table_ref(cfg, "items")
    assert spark.sql(f"DESCRIBE HISTORY {ref.sql_name} LIMIT 1").first()["operation"] == "WRITE"
    assert _rows(tables.read_changes(spark, cfg, "items", v1, v1), "item_id", "_change_type") == [
        (1, "insert"), (2, "insert")]
    tables.upsert(spark, cfg, "items", batch)  # same batch twice
    v2 = tables.version(spark, cfg, "items")
    assert _rows(tables.read_table(spark, cfg, "items"), "item_id", "title") == [(1, "A"), (2, "B")]
    changes = tables.read_changes(spark, cfg, "items", v1 + 1, v2) if v2 > v1 else None
    assert changes is None or changes.count() == 0  # no row changed, so no change events

    revised = spark.createDataFrame([(2, "B v2", "c"), (3, "C", "c")], "item_id long, title string, category string")
    tables.upsert(spark, cfg, "items", revised)
    assert spark.sql(f"DESCRIBE HISTORY {ref.sql_name} LIMIT 1").first()["operation"] == "MERGE"
    cdf = tables.read_changes(spark, cfg, "items", v2 + 1)
    got = _rows(cdf, "item_id", "_change_type")
    assert got == [(2, "update_postimage"), (2, "update_preimage"), (3, "insert")]


def test_overwrite_replaces_in_one_commit_and_time_travel(spark, cfg):
    a = spark.createDataFrame([(1, 2, "s")], "item_id long, keyphrase_id long, source string")
    b = spark.createDataFrame([(5, 6, "s"), (7, 8, "s")], "item_id long, keyphrase_id long, source string")
    tables.write_table(spark, cfg, "pairs", a, mode="overwrite")
    v = tables.version(spark, cfg, "pairs")
    tables.write_table(spark, cfg, "pairs", b, mode="overwrite")
    assert tables.version(spark, cfg, "pairs") == v + 1
    assert tables.read_table(spark, cfg, "pairs").count() == 2
    assert tables.read_table(spark, cfg, "pairs", version=v).count() == 1


def test_delete_keys(spark, cfg):
    df = spark.createDataFrame([(1, "A", "c"), (2, "B", "c")], "item_id long, title string, category string")
    tables.upsert(spark, cfg, "items", df)
    n = tables.delete_keys(spark, cfg, "items", spark.createDataFrame([(2,)], "item_id long"))
    assert n == 1
    assert _rows(tables.read_table(spark, cfg, "items"), "item_id") == [(1,)]


def test_unknown_table_and_mode(spark, cfg):
    with pytest.raises(ValueError, match="table must be one of"):
        tables.table_ref(cfg, "nope")
    with pytest.raises(ValueError, match="mode must be one of"):
        tables.write_table(spark, cfg, "items", spark.createDataFrame([(1, "a")], "item_id long, title string"),
                           mode="merge")  # type: ignore[arg-type]


def test_cdf_only_on_items_and_keyphrases(spark, cfg):
    with pytest.raises(Exception, match="Change Data Feed"):
        tables.read_changes(spark, cfg, "pairs", 0)


def test_timestamps_and_optional_columns_are_filled(spark, cfg):
    df = spark.createDataFrame([(1, "t", dt.datetime(2026, 1, 1))], "item_id int, title string, updated_at timestamp")
    tables.write_table(spark, cfg, "items", df)
    row = tables.read_table(spark, cfg, "items").first()
    assert row.category is None and row.updated_at == dt.datetime(2026, 1, 1)
