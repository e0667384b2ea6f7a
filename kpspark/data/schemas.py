"""Schemas of every lakehouse table, defined once.

Each :class:`TableSchema` has the Spark ``StructType``, its key columns (the MERGE condition),
which columns are required on write (the others may be missing from the input and are
filled with nulls), the text columns that validation checks, and whether Change Data Feed is on.

=================  ======================================  ==========================================
table              key                                     purpose
=================  ======================================  ==========================================
items              item_id                                 marketplace items (CDF on)
keyphrases         keyphrase_id                            buyer queries sellers can bid on (CDF on)
clicks             item_id, keyphrase_id, window           click log aggregated per window
search_relevance   item_id, keyphrase_id                   the search engine's relevance judgment
human_labels       item_id, keyphrase_id, source           human ratings, mapped to binary
ground_truth       item_id, keyphrase_id                   the sample generator's true relevance
pairs              item_id, keyphrase_id                   candidate pairs (recommendation segment)
llm_labels         item_id, keyphrase_id, judge_model,     LLM judge P(yes) labels
                   prompt_version
pair_scores        item_id, keyphrase_id, model_name,      cross-encoder scores
                   model_version
recommendations    item_id, keyphrase_id                   the served keyphrases per item
quarantine         (append only)                           rejected rows with a reason
pipeline_state     name                                    last processed table versions of the jobs
=================  ======================================  ==========================================
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql.types import (
    ArrayType, BooleanType, DoubleType, FloatType, IntegerType, LongType, StringType, StructField,
    StructType, TimestampType,
)

# Column names used across the package.
ITEM_ID = "item_id"
TITLE = "title"
CATEGORY = "category"
KEYPHRASE_ID = "keyphrase_id"
KEYPHRASE = "text"
NORMALIZED = "normalized"
REASON = "reason"


@dataclass(frozen=True)
class TableSchema:
    """Contract of one logical table."""

    name: str
    struct: StructType
    keys: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    text_columns: dict[str, str] = field(default_factory=dict)  # column -> quality limit name
    nonempty: tuple[str, ...] = ()  # text columns that must not be null/blank
    cdf: bool = False
    partition_by: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """Column names in schema order."""
        return [f.name for f in self.struct.fields]


def _s(*fields: tuple[str, object, bool]) -> StructType:
    return StructType([StructField(n, t, nullable) for n, t, nullable in fields])  # type: ignore[arg-type]


ITEMS = TableSchema(
    "items",
    _s(("item_id", LongType(), False), ("title", StringType(), False), ("category", StringType(), True),
       ("seller_id", LongType(), True), ("price", DoubleType(), True), ("updated_at", TimestampType(), True)),
    keys=("item_id",), required=("item_id", "title"),
    text_columns={"title": "max_title_chars", "category": "max_title_chars"}, nonempty=("title",), cdf=True,
)
KEYPHRASES = TableSchema(
    "keyphrases",
    _s(("keyphrase_id", LongType(), False), ("text", StringType(), False), ("normalized", StringType(), True),
       ("category", StringType(), True), ("search_volume", LongType(), True)),
    keys=("keyphrase_id",), required=("keyphrase_id", "text"),
    text_columns={"text": "max_keyphrase_chars"}, nonempty=("text",), cdf=True,
)
CLICKS = TableSchema(
    "clicks",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("impressions", LongType(), True),
       ("clicks", LongType(), True), ("sales", DoubleType(), True), ("window", StringType(), False)),
    keys=("item_id", "keyphrase_id", "window"), required=("item_id", "keyphrase_id", "clicks", "window"),
)
SEARCH_RELEVANCE = TableSchema(
    "search_relevance",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("score", DoubleType(), True),
       ("label", IntegerType(), True)),
    keys=("item_id", "keyphrase_id"), required=("item_id", "keyphrase_id", "label"),
)
HUMAN_LABELS = TableSchema(
    "human_labels",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("rating", DoubleType(), True),
       ("label", IntegerType(), True), ("source", StringType(), False), ("mapping", StringType(), True)),
    keys=("item_id", "keyphrase_id", "source"), required=("item_id", "keyphrase_id", "label", "source"),
)
GROUND_TRUTH = TableSchema(
    "ground_truth",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("relevant", IntegerType(), False),
       ("grade", StringType(), True)),
    keys=("item_id", "keyphrase_id"), required=("item_id", "keyphrase_id", "relevant"),
)
PAIRS = TableSchema(
    "pairs",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("source", StringType(), True)),
    keys=("item_id", "keyphrase_id"), required=("item_id", "keyphrase_id"),
)
LLM_LABELS = TableSchema(
    "llm_labels",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("p_yes", DoubleType(), True),
       ("label", IntegerType(), True), ("raw", StringType(), True), ("judge_model", StringType(), False),
       ("prompt_version", StringType(), False), ("error", StringType(), True),
       ("labeled_at", TimestampType(), True)),
    keys=("item_id", "keyphrase_id", "judge_model", "prompt_version"),
    required=("item_id", "keyphrase_id", "judge_model", "prompt_version"),
)
PAIR_SCORES = TableSchema(
    "pair_scores",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("score", DoubleType(), True),
       ("model_name", StringType(), False), ("model_version", StringType(), False),
       ("scored_at", TimestampType(), True)),
    keys=("item_id", "keyphrase_id", "model_name", "model_version"),
    required=("item_id", "keyphrase_id", "score", "model_name", "model_version"),
)
RECOMMENDATIONS = TableSchema(
    "recommendations",
    _s(("item_id", LongType(), False), ("keyphrase_id", LongType(), False), ("keyphrase", StringType(), True),
       ("retriever_score", FloatType(), True), ("ce_score", DoubleType(), True), ("rank", IntegerType(), True),
       ("retriever_version", StringType(), True), ("ce_version", StringType(), True),
       ("run_id", StringType(), True), ("created_at", TimestampType(), True)),
    keys=("item_id", "keyphrase_id"), required=("item_id", "keyphrase_id"),
)
ITEM_EMBEDDINGS = TableSchema(
    "item_embeddings",
    _s(("item_id", LongType(), False), ("category", StringType(), True),
       ("embedding", ArrayType(FloatType(), containsNull=False), True), ("dim", IntegerType(), False),
       ("model_name", StringType(), False), ("model_version", StringType(), False),
       ("embedded_at", TimestampType(), True)),
    keys=("item_id",), required=("item_id",),
)
KEYPHRASE_EMBEDDINGS = TableSchema(
    "keyphrase_embeddings",
    _s(("keyphrase_id", LongType(), False), ("category", StringType(), True),
       ("embedding", ArrayType(FloatType(), containsNull=False), True), ("dim", IntegerType(), False),
       ("model_name", StringType(), False), ("model_version", StringType(), False),
       ("embedded_at", TimestampType(), True)),
    keys=("keyphrase_id",), required=("keyphrase_id",),
)
KEYPHRASE_MAP = TableSchema(
    "keyphrase_map",
    _s(("keyphrase_id", LongType(), False), ("canonical_id", LongType(), False), ("key", StringType(), False),
       ("text", StringType(), True), ("group_size", IntegerType(), True)),
    keys=("keyphrase_id",), required=("keyphrase_id", "canonical_id", "key"),
)
QUARANTINE = TableSchema(
    "quarantine",
    _s(("source_table", StringType(), False), ("reason", StringType(), False), ("record", StringType(), True),
       ("batch_id", StringType(), True), ("quarantined_at", TimestampType(), True)),
)

PIPELINE_STATE = TableSchema(
    "pipeline_state",
    _s(("name", StringType(), False), ("version", LongType(), True), ("details", StringType(), True),
       ("updated_at", TimestampType(), True)),
    keys=("name",), required=("name",),
)

SCHEMAS: dict[str, TableSchema] = {s.name: s for s in (
    ITEMS, KEYPHRASES, CLICKS, SEARCH_RELEVANCE, HUMAN_LABELS, GROUND_TRUTH, PAIRS, LLM_LABELS, PAIR_SCORES,
    RECOMMENDATIONS, QUARANTINE, ITEM_EMBEDDINGS, KEYPHRASE_EMBEDDINGS, KEYPHRASE_MAP, PIPELINE_STATE,
)}

# Embedding arrays (used by the bi-encoder stages); kept here so column types are defined once.
EMBEDDING_TYPE = ArrayType(FloatType(), containsNull=False)
BOOL = BooleanType()


def schema_of(name: str) -> TableSchema:
    """Return the :class:`TableSchema` of a logical table name."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ValueError(f"table must be one of {sorted(SCHEMAS)}, got {name!r}") from None
