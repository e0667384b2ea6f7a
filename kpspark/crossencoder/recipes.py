"""Training-data mixes of the TJ paper, as named recipes over the lakehouse tables.

=================  ===============================================  ==================================
recipe             positives                                        negatives
=================  ===============================================  ==================================
``search``         search-relevance label 1                         search-relevance label 0
``click_search``   click positives                                  search-relevance label 0
``click_llm``      click positives + LLM label 1                    LLM label 0
``click_llm_neg``  click positives                                  LLM label 0
``llm``            LLM label 1                                      LLM label 0
``human``          human label 1                                    human label 0
=================  ===============================================  ==================================

Click positives: :func:`kpspark.rules.click_positives` with ``cfg.click_positive`` (the rule every stage
uses). When a pair is both a positive of one source and a negative of
another, the click positive wins (``click_*`` recipes) — clicks are the strongest positive signal.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kpspark.config import ClickPositiveConfig, Config

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

RECIPES = ("search", "click_search", "click_llm", "click_llm_neg", "llm", "human")


def _click_pos(spark: "SparkSession", cfg: Config, rule: ClickPositiveConfig) -> "DataFrame":
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.rules import click_positives

    c = click_positives(tables.read_table(spark, cfg, "clicks"), rule)
    return c.select("item_id", "keyphrase_id", F.lit(1).alias("label"), F.lit(None).cast("double").alias("p_yes"),
                    F.lit("click").alias("source"))


def _labels(spark: "SparkSession", cfg: Config, table: str, source: str, only: int | None = None,
            judge_model: str | None = None) -> "DataFrame":
    from pyspark.sql import functions as F

    from kpspark.data import tables

    df = tables.read_table(spark, cfg, table).where(F.col("label").isNotNull())
    if judge_model:
        df = df.where(F.col("judge_model") == judge_model)
    if only is not None:
        df = df.where(F.col("label") == only)
    p = F.col("p_yes") if "p_yes" in df.columns else F.col("label").cast("double")
    return df.select("item_id", "keyphrase_id", F.col("label").cast("int").alias("label"), p.alias("p_yes"),
                     F.lit(source).alias("source")).dropDuplicates(["item_id", "keyphrase_id"])


def recipe_pairs(spark: "SparkSession", cfg: Config, recipe: str, clicks: ClickPositiveConfig | None = None,
                 judge_model: str | None = None) -> "DataFrame":
    """``item_id, keyphrase_id, label, p_yes, source`` of a recipe, one row per pair (``clicks``: the click
    positive rule, default ``cfg.click_positive``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {recipe!r}")
    f = clicks or cfg.click_positive
    parts: list[DataFrame]
    if recipe == "search":
        parts = [_labels(spark, cfg, "search_relevance", "search")]
    elif recipe == "click_search":
        parts = [_click_pos(spark, cfg, f), _labels(spark, cfg, "search_relevance", "search", only=0)]
    elif recipe == "click_llm":
        parts = [_click_pos(spark, cfg, f), _labels(spark, cfg, "llm_labels", "llm", judge_model=judge_model)]
    elif recipe == "click_llm_neg":
        parts = [_click_pos(spark, cfg, f), _labels(spark, cfg, "llm_labels", "llm", only=0, judge_model=judge_model)]
    elif recipe == "llm":
        parts = [_labels(spark, cfg, "llm_labels", "llm", judge_model=judge_model)]
    else:
        parts = [_labels(spark, cfg, "human_labels", "human")]
    df = parts[0]
    for p in parts[1:]:
        df = df.unionByName(p)
    prio = F.when(F.col("source") == "click", 0).otherwise(1)
    w = Window.partitionBy("item_id", "keyphrase_id").orderBy(prio, F.col("label").desc())
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


def with_texts(spark: "SparkSession", cfg: Config, pairs: "DataFrame") -> "DataFrame":
    """Join titles, categories and keyphrase texts (pairs whose item or keyphrase is unknown drop out
    of training; :func:`recipe_pairs` counts are taken before this join)."""
    from kpspark.data import tables
    from kpspark.rules import keyphrase_texts

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    return pairs.join(items, "item_id").join(kps, "keyphrase_id")
