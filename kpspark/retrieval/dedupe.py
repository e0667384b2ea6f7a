"""Keyphrase de-duplication in Spark: one canonical keyphrase per normalization group.

``keyphrase_map`` holds, for every keyphrase, its group key and the canonical keyphrase of the
group (highest search volume, then lowest id). Keyphrases whose key is empty go to ``quarantine``
with reason ``empty_after_normalization``; in = mapped + quarantined.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterator

import pandas as pd

from kpspark.config import Config
from kpspark.rules import NormalizeOptions

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


def with_keys(df: "DataFrame", text_col: str = "text", opts: NormalizeOptions | None = None,
              out_col: str = "key") -> "DataFrame":
    """``df`` plus the normalization key of ``text_col`` (lazy; a pandas UDF)."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    o = asdict(opts or NormalizeOptions())

    def keys(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        from kpspark.rules import NormalizeOptions, group_key

        options = NormalizeOptions(**o)
        for s in batches:
            yield s.map(lambda t: group_key(t, options))

    return df.withColumn(out_col, pandas_udf(keys, "string")(F.col(text_col)))  # type: ignore[call-overload]


def canonical_map(keyphrases: "DataFrame", opts: NormalizeOptions | None = None) -> tuple["DataFrame", "DataFrame"]:
    """(map rows ``keyphrase_id, canonical_id, key, text, group_size``, rejected rows with a reason)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    vol = F.coalesce(F.col("search_volume"), F.lit(0)) if "search_volume" in keyphrases.columns else F.lit(0)
    keyed = with_keys(keyphrases.select("keyphrase_id", "text", vol.alias("_vol")), opts=opts)
    ok = keyed.where(F.length("key") > 0)
    bad = keyed.where(F.length("key") == 0).withColumn("reason", F.lit("empty_after_normalization"))
    w = Window.partitionBy("key").orderBy(F.desc("_vol"), F.asc("keyphrase_id"))
    wg = Window.partitionBy("key")
    mapped = ok.select("keyphrase_id", "text", "key",
                       F.first("keyphrase_id").over(w.rowsBetween(Window.unboundedPreceding,
                                                                   Window.unboundedFollowing)).alias("canonical_id"),
                       F.count("*").over(wg).cast("int").alias("group_size"))
    return mapped.select("keyphrase_id", "canonical_id", "key", "text", "group_size"), bad


def run_dedupe(cfg: Config, spark: "SparkSession", opts: NormalizeOptions | None = None) -> dict[str, Any]:
    """Write ``keyphrase_map`` for the ``keyphrases`` table (overwrite) and quarantine empty keys."""
    import uuid

    from pyspark.sql import functions as F

    from kpspark.data import tables

    src = tables.read_table(spark, cfg, "keyphrases")
    n_in = src.count()
    mapped, bad = canonical_map(src, opts)
    batch = uuid.uuid4().hex
    rep = tables.write_table(spark, cfg, "keyphrase_map", mapped, mode="overwrite", batch_id=batch)
    q = tables.append_quarantine(spark, cfg, bad.select(
        F.lit("keyphrase_map").alias("source_table"), "reason",
        F.to_json(F.struct("keyphrase_id", "text")).alias("record"), F.lit(batch).alias("batch_id"),
        F.current_timestamp().alias("quarantined_at")))
    m = tables.read_table(spark, cfg, "keyphrase_map")
    groups = m.select("canonical_id").distinct().count()
    return {"keyphrases_in": n_in, "mapped": rep.rows_written, "quarantined": q + rep.rows_quarantined,
            "canonical": groups, "duplicates_removed": rep.rows_written - groups}
