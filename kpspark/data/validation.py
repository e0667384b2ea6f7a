"""Row validation for table writes: conform a DataFrame to a table schema, split good rows from
quarantined ones with a reason. Lazy: nothing here runs a Spark action.

Rules, first match wins (reason strings are stable; ``<col>`` is the column):

============================  =================================================================
reason                        when
============================  =================================================================
``null_key:<col>``            a key column is null
``bad_type:<col>``            a non-null value cannot be cast to the column's type
``null_required:<col>``       a required non-key column is null
``empty_text:<col>``          a text column that must have content is empty or blank
``too_long:<col>``            text longer than the configured limit (``quality.*``)
``undecodable_text:<col>``    text holds U+FFFD, the mark of bytes that were not valid text
``control_characters:<col>``  text holds ASCII control characters other than tab/newline
``duplicate_key_conflict``    several rows of one batch share a key with different content
                              (all of them are quarantined: which one is right is unknown)
``duplicate_row``             an exact copy of a row kept in the same batch
============================  =================================================================
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kpspark.config import QualityConfig
from kpspark.data.schemas import TableSchema
from kpspark.errors import SchemaError
from kpspark.sparkutil import try_cast

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

logger = logging.getLogger(__name__)

REASON_COL = "_kp_reason"
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"


def check_columns(df: "DataFrame", schema: TableSchema) -> None:
    """Raise :class:`SchemaError` when a required column is missing (schema drift) or a struct/array
    column arrives where a scalar is expected."""
    present = set(df.columns)
    missing = [c for c in schema.required if c not in present]
    if missing:
        raise SchemaError(
            f"table {schema.name!r}: input lacks required column(s) {missing}; "
            f"found {sorted(present)}; expected {schema.columns}"
        )
    types = dict(df.dtypes)
    for f in schema.struct.fields:
        if f.name in types and types[f.name].startswith(("struct", "array", "map")) \
                and not f.dataType.simpleString().startswith(types[f.name].split("<")[0]):
            raise SchemaError(f"table {schema.name!r}: column {f.name!r} is {types[f.name]}, "
                              f"expected {f.dataType.simpleString()}")


def annotate(df: "DataFrame", schema: TableSchema, quality: QualityConfig | None = None) -> "DataFrame":
    """Return ``df`` conformed to ``schema`` (cast, missing optional columns as null, extra columns
    dropped) plus a ``_kp_reason`` column (null for good rows) and ``_kp_record`` (the input row as JSON)."""
    from pyspark.sql import functions as F

    quality = quality or QualityConfig()
    check_columns(df, schema)
    extra = [c for c in df.columns if c not in schema.columns]
    if extra:
        logger.warning("table %r: ignoring columns not in its schema: %s", schema.name, extra)
    record = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))
    in_types = dict(df.dtypes)
    cols: list[Column] = []
    flags: list[str] = []
    for f in schema.struct.fields:
        if f.name in df.columns:
            src = F.col(f"`{f.name}`")
            if in_types[f.name] != f.dataType.simpleString():
                cast = try_cast(f.name, f.dataType)
                cols.append((src.isNotNull() & cast.isNull()).alias(f"_kp_bt_{f.name}"))
                flags.append(f.name)
            else:
                cast = src
            cols.append(cast.alias(f.name))
        else:
            cols.append(F.lit(None).cast(f.dataType).alias(f.name))
    out = df.select(*cols, record.alias("_kp_record"))

    checks: list[tuple[Column, str]] = []
    checks += [(F.col(k).isNull() & (~F.col(f"_kp_bt_{k}") if k in flags else F.lit(True)), f"null_key:{k}")
               for k in schema.keys]
    checks += [(F.col(f"_kp_bt_{n}"), f"bad_type:{n}") for n in flags]
    checks += [(F.col(c).isNull(), f"null_required:{c}") for c in schema.required if c not in schema.keys]
    for c in schema.nonempty:
        # blank = only whitespace of any kind (Spark's trim() strips spaces only: a tab-only title is blank too)
        checks.append((F.col(c).isNull() | F.col(c).rlike(r"^[\s\p{Z}]*$"), f"empty_text:{c}"))
    for c, limit_name in schema.text_columns.items():
        limit = int(getattr(quality, limit_name))
        checks.append((F.length(F.col(c)) > limit, f"too_long:{c}"))
        checks.append((F.instr(F.col(c), "\ufffd") > 0, f"undecodable_text:{c}"))
        checks.append((F.col(c).rlike(CONTROL_CHARS), f"control_characters:{c}"))
    reason: Column = F.lit(None).cast("string")
    for cond, why in reversed(checks):
        reason = F.when(F.coalesce(cond, F.lit(False)), F.lit(why)).otherwise(reason)
    out = out.withColumn(REASON_COL, reason).drop(*[f"_kp_bt_{n}" for n in flags])
    if schema.keys:
        out = _mark_duplicates(out, schema)
    return out


def _mark_duplicates(out: "DataFrame", schema: TableSchema) -> "DataFrame":
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    content = [c for c in schema.columns if c not in schema.keys]
    h = F.xxhash64(*[F.col(c) for c in content]) if content else F.lit(0)
    ok = F.col(REASON_COL).isNull()
    w = Window.partitionBy(*[F.col(k) for k in schema.keys], ok)
    marked = (out.withColumn("_kp_h", h)
              .withColumn("_kp_hmin", F.min("_kp_h").over(w))
              .withColumn("_kp_hmax", F.max("_kp_h").over(w))
              .withColumn("_kp_rn", F.row_number().over(w.orderBy(F.col("_kp_record")))))
    reason = (F.when(~ok, F.col(REASON_COL))
              .when(F.col("_kp_hmin") != F.col("_kp_hmax"), F.lit("duplicate_key_conflict"))
              .when(F.col("_kp_rn") > 1, F.lit("duplicate_row")))
    return marked.withColumn(REASON_COL, reason).drop("_kp_h", "_kp_hmin", "_kp_hmax", "_kp_rn")


def split(annotated: "DataFrame", schema: TableSchema, batch_id: str | None = None) -> tuple["DataFrame", "DataFrame"]:
    """Split an :func:`annotate` result into (good rows in schema order, quarantine rows)."""
    from pyspark.sql import functions as F

    good = annotated.where(F.col(REASON_COL).isNull()).select(*schema.columns)
    bad = annotated.where(F.col(REASON_COL).isNotNull()).select(
        F.lit(schema.name).alias("source_table"),
        F.col(REASON_COL).alias("reason"),
        F.col("_kp_record").alias("record"),
        F.lit(batch_id).cast("string").alias("batch_id"),
        F.current_timestamp().alias("quarantined_at"),
    )
    return good, bad
