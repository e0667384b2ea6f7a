"""The synthetic sample marketplace, generated in Spark (``mapInPandas`` over item chunks).

Examples
--------
>>> from kpspark.sample import generate                  # doctest: +SKIP
>>> frames = generate(spark, size="tiny", seed=42)        # doctest: +SKIP
>>> sorted(frames)                                        # doctest: +SKIP
['clicks', 'ground_truth', 'human_labels', 'items', 'keyphrases', 'pairs', 'search_relevance']
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from kpspark.sample.marketplace import (
    SIZES, SampleSize, chunk_bounds, generate_pandas, items_chunk, keyphrase_universe, pairs_chunk, resolve_size,
    to_tables,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["generate", "generate_pandas", "item_attributes", "resolve_size", "to_tables", "SIZES", "SampleSize"]

_WIDE_ITEMS = ("item_id long, title string, category string, seller_id long, price double, updated_at timestamp, "
               "ptype string, brand string, color string, spec string, model string, popularity double")
_WIDE_PAIRS = ("item_id long, keyphrase_id long, relevant int, grade string, search_score double, search_label int, "
               "position int, impressions long, clicks long, sales double, human_rating double")


def _chunks(spark: "SparkSession", s: SampleSize) -> "DataFrame":
    from kpspark.sparkutil import task_slots

    # chunks are grouped into at most one task per slot: a task per one-item chunk of a small sample costs more
    # than its generation (30 tasks took 3.9 s for 30 items of 0.03 s); the rows never depend on the grouping
    bounds = chunk_bounds(s)
    return spark.createDataFrame(bounds, "start long, stop long").repartition(min(len(bounds), 64, task_slots(spark)))


def generate(spark: "SparkSession", size: str | int = "small", seed: int = 42, cache: bool = False) -> dict[str, "DataFrame"]:
    """Return the marketplace tables as Spark DataFrames (same rows as :func:`generate_pandas`
    for a given ``size``/``seed``, whatever the partitioning).

    Besides the tables, ``frames["signals"]`` is the generator's wide pair frame (every signal of
    every candidate pair: truth, search score, position, impressions...). Lazy unless
    ``cache=True``, which persists it once, since most tables are projections of it; call
    ``frames["signals"].unpersist()`` when done."""
    import pandas as pd

    s = resolve_size(size)
    chunks = _chunks(spark, s)

    def gen_items(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            for a, z in zip(b["start"], b["stop"]):
                yield items_chunk(seed, s, int(a), int(z))

    def gen_pairs(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            for a, z in zip(b["start"], b["stop"]):
                yield pairs_chunk(seed, s, int(a), int(z))

    items = chunks.mapInPandas(gen_items, _WIDE_ITEMS)
    pairs = chunks.mapInPandas(gen_pairs, _WIDE_PAIRS)
    if cache:
        pairs = pairs.persist()
    kp_pdf = keyphrase_universe(s.models, seed)[["keyphrase_id", "text", "normalized", "category", "search_volume"]]
    keyphrases = spark.createDataFrame(kp_pdf, "keyphrase_id long, text string, normalized string, "
                                               "category string, search_volume long")
    return {**_project(items, pairs, keyphrases), "signals": pairs}


def _project(items: "DataFrame", pairs: "DataFrame", keyphrases: "DataFrame") -> dict[str, "DataFrame"]:
    from pyspark.sql import functions as F

    from kpspark.sample.marketplace import HUMAN_MAPPING, WINDOW

    rated = pairs.where(F.col("human_rating").isNotNull())
    return {
        "items": items.select("item_id", "title", "category", "seller_id", "price", "updated_at"),
        "keyphrases": keyphrases,
        "pairs": pairs.select("item_id", "keyphrase_id", F.lit("sample_recommender").alias("source")),
        "ground_truth": pairs.select("item_id", "keyphrase_id", "relevant", "grade"),
        "search_relevance": pairs.select("item_id", "keyphrase_id", F.col("search_score").alias("score"),
                                         F.col("search_label").alias("label")),
        "clicks": pairs.where(F.col("impressions") > 0).select(
            "item_id", "keyphrase_id", "impressions", "clicks", "sales", F.lit(WINDOW).alias("window")),
        "human_labels": rated.select(
            "item_id", "keyphrase_id", F.col("human_rating").alias("rating"),
            (F.col("human_rating") >= 3).cast("int").alias("label"),
            F.lit("sample_annotators").alias("source"), F.lit(HUMAN_MAPPING).alias("mapping")),
    }


def item_attributes(spark: "SparkSession", size: str | int = "small", seed: int = 42) -> "DataFrame":
    """The items with their latent attributes (brand, product type, color, spec, model, popularity)."""
    s = resolve_size(size)

    def gen(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        for b in batches:
            for a, z in zip(b["start"], b["stop"]):
                yield items_chunk(seed, s, int(a), int(z))

    return _chunks(spark, s).mapInPandas(gen, _WIDE_ITEMS)

