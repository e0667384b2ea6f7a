"""Delta tables by logical name: create, read, append/overwrite, MERGE, Change Data Feed.

Every write validates rows against the table's schema (:mod:`kpspark.data.validation`):
good rows land in the table, rejected rows land in ``quarantine`` with a reason, and the
returned :class:`WriteReport` holds ``rows_in == rows_written + rows_quarantined``.

Delta is driven through SQL only (``CREATE TABLE IF NOT EXISTS``, ``MERGE INTO``, ``DESCRIBE HISTORY``), never
the Python ``DeltaTable`` API, whose Spark Connect form needs a server plugin that classic Delta jars lack: the
same statements run on a classic session, over Spark Connect and on Databricks serverless.

Examples
--------
>>> from kpspark.data import tables                                  # doctest: +SKIP
>>> report = tables.write_table(spark, cfg, "items", items_df)       # doctest: +SKIP
>>> report.rows_in == report.rows_written + report.rows_quarantined  # doctest: +SKIP
True
"""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from kpspark.config import Config
from kpspark.data.schemas import QUARANTINE, TableSchema, schema_of
from kpspark.data.validation import REASON_COL, annotate, split
from kpspark.errors import KPSparkError

if TYPE_CHECKING:  # pragma: no cover
    from typing import Callable

    from pyspark.sql import DataFrame, DataFrameWriter, Row, SparkSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableRef:
    """Where a logical table lives: a path (``is_path``) or a metastore name."""

    name: str
    location: str
    is_path: bool

    @property
    def sql_name(self) -> str:
        """Identifier usable in SQL (``delta.`/path``` or the table name, each part quoted)."""
        if self.is_path:
            return f"delta.`{self.location.replace('`', '``')}`"
        return ".".join(f"`{p.replace('`', '``')}`" for p in self.location.split("."))


@dataclass
class WriteReport:
    """Row accounting of one write."""

    table: str
    rows_in: int
    rows_written: int
    rows_quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)
    version: int | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    batch_id: str = ""

    @property
    def balanced(self) -> bool:
        """True when every input row is accounted for."""
        return self.rows_in == self.rows_written + self.rows_quarantined

    def __str__(self) -> str:
        extra = f", quarantined by reason {self.reasons}" if self.reasons else ""
        return (f"{self.table}: {self.rows_in} in = {self.rows_written} written + "
                f"{self.rows_quarantined} quarantined{extra} (version {self.version})")


def table_ref(cfg: Config, name: str) -> TableRef:
    """Resolve a logical table name with the lakehouse config."""
    schema_of(name)
    folder = cfg.lakehouse.tables.get(name, name)
    if cfg.lakehouse.schema:
        return TableRef(name, f"{cfg.lakehouse.schema}.{folder}", is_path=False)
    return TableRef(name, f"{lakehouse_root(cfg)}/{folder}", is_path=True)


def lakehouse_root(cfg: Config) -> str:
    """``lakehouse.root`` as an absolute path or URI, without a trailing slash."""
    root = cfg.lakehouse.root
    if "://" not in root and not root.startswith(("dbfs:", "/")):
        root = os.path.abspath(root)
    return root.rstrip("/")


def exists(spark: "SparkSession", cfg: Config, name: str) -> bool:
    """True when the logical table exists as a Delta table."""
    ref = table_ref(cfg, name)
    if not ref.is_path:
        return bool(spark.catalog.tableExists(ref.location))
    try:
        return str(spark.sql(f"DESCRIBE DETAIL {ref.sql_name}").select("format").first()[0]) == "delta"
    except Exception:  # noqa: BLE001 (no table at that path: Spark's AnalysisException, classic or Connect)
        return False


def _ddl(schema: TableSchema) -> str:
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}"
                     for f in schema.struct.fields)


def ensure_table(spark: "SparkSession", cfg: Config, name: str) -> TableRef:
    """Create the table with its schema (and Change Data Feed where the contract says) if absent."""
    ref = table_ref(cfg, name)
    schema = schema_of(name)
    sql = f"CREATE TABLE IF NOT EXISTS {ref.sql_name} ({_ddl(schema)}) USING DELTA"
    if schema.partition_by:
        sql += f" PARTITIONED BY ({', '.join(f'`{c}`' for c in schema.partition_by)})"
    if schema.cdf:
        sql += " TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')"
    spark.sql(sql)
    return ref


def last_commit(spark: "SparkSession", ref: TableRef) -> "Row | None":
    """``version`` and ``operationMetrics`` of the table's latest commit (None for a table without one)."""
    return spark.sql(f"DESCRIBE HISTORY {ref.sql_name} LIMIT 1").select("version", "operationMetrics").first()


def _is_empty(spark: "SparkSession", ref: TableRef) -> bool:
    """True when the table's current snapshot has no data file (just created, or every row deleted)."""
    return int(spark.sql(f"DESCRIBE DETAIL {ref.sql_name}").select("numFiles").first()[0] or 0) == 0


def merge(spark: "SparkSession", ref: TableRef, source: "DataFrame", on: str, clauses: str) -> None:
    """``MERGE INTO <ref> t USING <source> s ON <on> <clauses>`` (the source as a temporary view of this session)."""
    view = f"kpspark_merge_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    try:
        spark.sql(f"MERGE INTO {ref.sql_name} t USING `{view}` s ON {on} {clauses}")
    finally:
        spark.catalog.dropTempView(view)


def read_table(spark: "SparkSession", cfg: Config, name: str, version: int | None = None) -> "DataFrame":
    """Read a logical table (optionally at a Delta version). Missing tables read as empty."""
    ref = ensure_table(spark, cfg, name)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(ref.location) if ref.is_path else reader.table(ref.location)


def version(spark: "SparkSession", cfg: Config, name: str) -> int:
    """Latest Delta version of a logical table."""
    row = last_commit(spark, ensure_table(spark, cfg, name))
    return int(row[0]) if row else -1


def read_changes(spark: "SparkSession", cfg: Config, name: str, starting_version: int,
                 ending_version: int | None = None) -> "DataFrame":
    """Change Data Feed rows (``_change_type``, ``_commit_version``, ``_commit_timestamp``) since a version."""
    schema = schema_of(name)
    if not schema.cdf:
        raise KPSparkError(f"table {name!r} has no Change Data Feed (only {['items', 'keyphrases']})")
    ref = ensure_table(spark, cfg, name)
    reader = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", starting_version)
    if ending_version is not None:
        reader = reader.option("endingVersion", ending_version)
    return reader.load(ref.location) if ref.is_path else reader.table(ref.location)


def _report(schema: TableSchema, batch_id: str, good_n: int, reasons: dict[str, int]) -> WriteReport:
    return WriteReport(schema.name, rows_in=good_n + sum(reasons.values()), rows_written=good_n,
                       rows_quarantined=sum(reasons.values()), reasons=reasons, batch_id=batch_id)


def _reasons(annotated: "DataFrame") -> dict[str, int]:
    """Quarantined rows by reason (a Spark job over the persisted rows)."""
    from pyspark.sql import functions as F

    bad = annotated.where(F.col(REASON_COL).isNotNull()).groupBy(F.col(REASON_COL)).count().collect()
    return {r[0]: int(r[1]) for r in bad}


def _quarantine(spark: "SparkSession", cfg: Config, bad: "DataFrame", report: WriteReport) -> None:
    if report.rows_quarantined:
        _save(bad.write.format("delta").mode("append"), ensure_table(spark, cfg, QUARANTINE.name))
        logger.warning("%s: %d row(s) quarantined: %s", report.table, report.rows_quarantined, report.reasons)


def _save(writer: "DataFrameWriter", ref: TableRef) -> None:
    if ref.is_path:
        writer.save(ref.location)
    else:
        writer.saveAsTable(ref.location)


def _finish(spark: "SparkSession", cfg: Config, name: str, report: WriteReport) -> WriteReport:
    last = last_commit(spark, table_ref(cfg, name))
    if last is not None:
        report.version = int(last[0])
        report.metrics = {k: str(v) for k, v in (last[1] or {}).items()}
    logger.info("%s", report)
    return report


def _write_validated(spark: "SparkSession", cfg: Config, schema: TableSchema, df: "DataFrame", batch_id: str,
                     write: "Callable[[DataFrame], None]", is_merge: bool = False) -> WriteReport:
    """Validate ``df`` (persisted once: every row is judged once, whatever upstream computes it), write its good
    rows with ``write``, its quarantined ones to ``quarantine``, and account for every row.

    A plain write counts its rows on the way (an ``Observation`` on the written plan: no Spark job of its own), and
    only a batch with quarantined rows runs a second job, for their reasons. A MERGE counts first: Delta's MERGE
    runs its source more than once and does not report a source's observed metrics reliably (none on Spark 3.5)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    annotated = annotate(df, schema, cfg.quality).persist()
    try:
        good, bad = split(annotated, schema, batch_id)
        if is_merge:
            counts = {r[0]: int(r[1]) for r in annotated.groupBy(F.col(REASON_COL)).count().collect()}
            report = _report(schema, batch_id, counts.pop(None, 0), counts)
            write(good)
        else:
            seen = Observation()
            write(split(annotated.observe(seen, F.count(F.lit(1)).alias("rows"),
                                          F.count_if(F.col(REASON_COL).isNull()).alias("good")), schema, batch_id)[0])
            counted = seen.get
            rows, good_n = int(counted.get("rows", 0)), int(counted.get("good", 0))
            report = _report(schema, batch_id, good_n, _reasons(annotated) if rows > good_n else {})
            if report.rows_in != rows:  # the observed count and the reasons' job read the same persisted rows
                raise RuntimeError(f"row accounting broke for {schema.name}: {rows} rows seen, {report}")
        _quarantine(spark, cfg, bad, report)
    finally:
        annotated.unpersist()
    return _finish(spark, cfg, schema.name, report)


def write_table(spark: "SparkSession", cfg: Config, name: str, df: "DataFrame",
                mode: Literal["append", "overwrite"] = "append", batch_id: str | None = None) -> WriteReport:
    """Validate ``df`` and append (or atomically overwrite) the logical table ``name``.

    Rejected rows go to ``quarantine``. ``overwrite`` replaces the table's rows in one Delta commit,
    so readers see the old or the new table, never half of it.
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be one of ['append', 'overwrite'], got {mode!r}")
    schema = schema_of(name)
    ref = ensure_table(spark, cfg, name)

    def write(good: "DataFrame") -> None:
        writer = good.write.format("delta").mode(mode)
        if mode == "overwrite":
            writer = writer.option("overwriteSchema", "false")
        _save(writer, ref)

    return _write_validated(spark, cfg, schema, df, batch_id or uuid.uuid4().hex, write)


def upsert(spark: "SparkSession", cfg: Config, name: str, df: "DataFrame", batch_id: str | None = None) -> WriteReport:
    """Validate ``df`` and MERGE it into ``name`` on the table's key columns.

    New keys are inserted; existing keys are updated only when some column differs, so
    merging the same batch twice leaves the table (and its Change Data Feed) unchanged. Into a table
    with no rows the batch is appended (the same rows and Change Data Feed inserts, without a MERGE's
    join: several seconds of a small job).
    """
    schema = schema_of(name)
    if not schema.keys:
        raise KPSparkError(f"table {name!r} has no key columns; use write_table(mode='append')")
    target = ensure_table(spark, cfg, name)
    batch_id = batch_id or uuid.uuid4().hex
    if _is_empty(spark, target):  # validation leaves one row per key: into no rows, the MERGE is an append
        return _write_validated(spark, cfg, schema, df, batch_id,
                                lambda good: _save(good.write.format("delta").mode("append"), target))
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in schema.keys)
    content = [c for c in schema.columns if c not in schema.keys]
    changed = " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in content) or "false"
    return _write_validated(spark, cfg, schema, df, batch_id, lambda good: merge(
        spark, target, good, on, f"WHEN MATCHED AND ({changed}) THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"),
        is_merge=True)


def delete_keys(spark: "SparkSession", cfg: Config, name: str, keys: "DataFrame") -> int:
    """Delete the rows of ``name`` whose key columns match a row of ``keys``; returns rows deleted."""
    schema = schema_of(name)
    target = ensure_table(spark, cfg, name)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in schema.keys)
    merge(spark, target, keys.select(*schema.keys).dropDuplicates(), on, "WHEN MATCHED THEN DELETE")
    last = last_commit(spark, target)
    return int((last[1] or {}).get("numTargetRowsDeleted", 0)) if last else 0


def append_quarantine(spark: "SparkSession", cfg: Config, rows: "DataFrame") -> int:
    """Append already-shaped quarantine rows (``source_table, reason, record, batch_id,
    quarantined_at``); returns how many were written."""
    ref = ensure_table(spark, cfg, QUARANTINE.name)
    rows = rows.select(*QUARANTINE.columns).persist()
    try:
        n = rows.count()
        if n:
            _save(rows.write.format("delta").mode("append"), ref)
    finally:
        rows.unpersist()
    return n
