"""Hostile input (``tests.tools.hostile``): every row ends written or quarantined with a reason,
files with broken bytes, quoting and drifted schemas included. Figure: cases tried and rows lost (0)."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from kpspark.data import loaders, tables
from kpspark.errors import SchemaError
from tests.tools import hostile


def _table_cases(spark, cfg, name, cases, schema, key):
    rows = [r for c in cases for r in c.rows]
    df = spark.createDataFrame(rows, schema)
    rep = tables.upsert(spark, cfg, name, df)
    assert rep.rows_in == len(rows) and rep.balanced, str(rep)
    written = {r[0] for r in tables.read_table(spark, cfg, name).select(key).collect()}
    q = tables.read_table(spark, cfg, "quarantine").where(F.col("source_table") == name)
    assert q.count() == rep.rows_quarantined and q.where("reason IS NULL OR reason = ''").count() == 0
    for c in cases:
        ids = {int(r[0]) for r in c.rows if r[0] is not None and r[0].lstrip("-").isdigit() and len(r[0]) < 19}
        got = len(ids & written)
        assert got == min(c.written, len(ids)), (name, c.name, got)
    return {"cases": len(cases), "rows_in": rep.rows_in, "rows_written": rep.rows_written,
            "rows_quarantined": rep.rows_quarantined, "rows_lost": rep.rows_in - rep.rows_written - rep.rows_quarantined,
            "reasons": rep.reasons}


def test_hostile_rows_are_written_or_quarantined_with_a_reason(spark, cfg, figures):
    items = _table_cases(spark, cfg, "items", hostile.item_cases(), "item_id string, title string, category string",
                         "item_id")
    kps = _table_cases(spark, cfg, "keyphrases", hostile.keyphrase_cases(), "keyphrase_id string, text string",
                       "keyphrase_id")
    assert items["rows_lost"] == kps["rows_lost"] == 0
    figures.setdefault("hostile_input", {}).update({"items_table": items, "keyphrases_table": kps})


def test_hostile_files_are_accounted_row_for_row(spark, cfg, tmp_path, figures):
    # Home Depot format, latin-1, CRLF, quoted commas/newlines, broken values
    data, meta = hostile.homedepot_csv()
    (tmp_path / "hd.csv").write_bytes(data)
    res = loaders.load_to_tables(spark, cfg, loaders.read_homedepot(spark, tmp_path / "hd.csv"))
    assert res["file_rows"] == meta["rows"] == res["labels_written"] + res["quarantined"]
    assert res["labels_written"] >= meta["valid"]
    titles = [r.title for r in tables.read_table(spark, cfg, "items").collect()]
    assert "Café crème brûlée torch" in titles and "Garden hose\nwith nozzle" in titles
    assert not any("\x07" in t or len(t) > cfg.quality.max_title_chars for t in titles)

    # a generic UTF-8 items file with invalid bytes and a NUL byte
    data, meta = hostile.items_csv_utf8()
    (tmp_path / "items.csv").write_bytes(data)
    df = loaders.read_file(spark, tmp_path / "items.csv", "csv", {"item_id": "id", "title": "title",
                                                                    "category": "category"}, {"encoding": "UTF-8"})
    rep = tables.upsert(spark, cfg, "items", df)
    assert rep.rows_in == meta["rows"] and rep.balanced and rep.rows_written == meta["valid"], str(rep)
    assert set(rep.reasons) == {"undecodable_text:title", "control_characters:title"}, rep.reasons

    # schema drift in an input file: a clear error naming the column, nothing written
    (tmp_path / "drift.csv").write_bytes(hostile.drifted_items_csv())
    before = tables.version(spark, cfg, "items")
    with pytest.raises(SchemaError, match="title"):
        loaders.read_file(spark, tmp_path / "drift.csv", "csv", {"item_id": "id", "title": "title"})
    assert tables.version(spark, cfg, "items") == before
    figures.setdefault("hostile_input", {}).update({
        "homedepot_file": {"rows_in": res["file_rows"], "labels_written": res["labels_written"],
                           "quarantined": res["quarantined"],
                           "rows_lost": res["file_rows"] - res["labels_written"] - res["quarantined"]},
        "utf8_items_file": {"rows_in": rep.rows_in, "rows_written": rep.rows_written,
                            "rows_quarantined": rep.rows_quarantined, "reasons": rep.reasons,
                            "rows_lost": rep.rows_in - rep.rows_written - rep.rows_quarantined},
        "schema_drift": "SchemaError naming the missing column; nothing written"})
