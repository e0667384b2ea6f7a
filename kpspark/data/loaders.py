"""Loaders from files into the lakehouse tables.

* :func:`read_file` — generic CSV/Parquet with a ``{table column: file column}`` mapping;
* :func:`read_homedepot` — the Home Depot search-relevance competition ``train.csv`` (latin-1;
  ``search_term, product_title, product_uid, relevance`` 1-3, the mean of >=3 raters);
* :func:`read_esci` — Amazon ESCI ``shopping_queries_dataset_examples`` + ``..._products`` parquet;
* :func:`load_sources` — your own data (``kpspark load``): the sources of the config's ``load`` section (rated pairs,
  items, keyphrases, clicks, search relevance), each a file or table with a column mapping.

Each ``read_*`` returns ``{"items", "keyphrases", "human_labels"}`` DataFrames plus ``"malformed"``
(file rows that could not be parsed, with a reason); :func:`load_to_tables` writes them, so every
file row ends in ``human_labels`` or in ``quarantine``. Human ratings are mapped to binary and the
mapping is stored in ``human_labels.mapping``. Keyphrase ids are ``xxhash64`` of the normalized text,
so the same query gets the same id across loads.
"""
from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from kpspark.config import Config
from kpspark.errors import SchemaError
from kpspark.rules import normalize_text_col
from kpspark.sparkutil import scratch_dir, try_cast

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)
CORRUPT = "_corrupt_record"
FORMATS = ("csv", "parquet", "json")
#: The Home Depot relevance file of internal evaluations: ``KPSPARK_HOMEDEPOT``, else ``../shared/data/homedepot/``
#: beside the working folder (the repository's checkout); never committed.
HOMEDEPOT_SHARED = Path(os.environ.get("KPSPARK_HOMEDEPOT") or "../shared/data/homedepot/train.csv.zip")
HOMEDEPOT_RELEVANT_AT = 2.5  # Home Depot's mean rating (1-3) from which a pair counts as relevant


def keyphrase_id_col(normalized: "Column") -> "Column":
    """Stable 64-bit id of a normalized keyphrase."""
    from pyspark.sql import functions as F

    return F.xxhash64(normalized)


def _unzip(spark: "SparkSession", path: Path) -> Path:
    """The one file of a ``.zip``, extracted where every executor reads it: a folder beside the session's
    reliable checkpoints (``spark.checkpoint.dir``: shared storage on a cluster), or a scratch folder under a
    local master. On a cluster without a local checkpoint folder: a clear error (unzip it onto shared storage)."""
    import uuid

    if path.suffix != ".zip":
        return path
    master = spark.conf.get("spark.master", "local") or "local"
    ckpt = (spark.conf.get("spark.checkpoint.dir", "") or "").removeprefix("file:")
    if ckpt and "://" not in ckpt:
        import atexit
        import shutil

        out = Path(ckpt) / f"unzip-{uuid.uuid4().hex[:12]}"
        atexit.register(shutil.rmtree, out, True)  # Spark reads it lazily: removed when the driver ends
    elif master.startswith("local"):
        out = Path(scratch_dir("kpspark-unzip-"))
    else:
        raise SchemaError(f"{path}: a .zip is extracted before Spark reads it, and this cluster session has no "
                          "local spark.checkpoint.dir on shared storage to extract it to; unzip it onto storage "
                          "every node reads and load that file")
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            raise SchemaError(f"{path}: expected one file in the zip, found {names}")
        zf.extract(names[0], out)
    return out / names[0]


def read_file(spark: "SparkSession", path: str | Path, fmt: str = "csv", mapping: Mapping[str, str] | None = None,
              options: Mapping[str, Any] | None = None) -> "DataFrame":
    """Read CSV/Parquet and rename columns by ``mapping`` (table column -> file column).

    A CSV keeps unparsable lines in ``_corrupt_record`` (PERMISSIVE mode) instead of failing or
    dropping them. Missing mapped columns raise :class:`SchemaError` naming them.
    """
    from pyspark.sql import functions as F

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    local = _unzip(spark, Path(path)) if "://" not in str(path) else path
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.options(header="true", mode="PERMISSIVE", multiLine="true", escape='"',
                                columnNameOfCorruptRecord=CORRUPT)
    elif fmt == "json":
        reader = reader.options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
    for k, v in (options or {}).items():
        reader = reader.option(k, v)
    df = reader.load(str(local))
    if mapping:
        missing = [src for src in mapping.values() if src not in df.columns]
        if missing:
            raise SchemaError(f"{path}: missing column(s) {missing}; found {df.columns}")
        cols = [F.col(f"`{src}`").alias(dst) for dst, src in mapping.items()]
        if CORRUPT in df.columns:
            cols.append(F.col(CORRUPT))
        df = df.select(*cols)
    return df


def _split_malformed(df: "DataFrame", required: list[str]) -> tuple["DataFrame", "DataFrame"]:
    from pyspark.sql import functions as F

    bad_cond = F.lit(False)
    if CORRUPT in df.columns:
        bad_cond = F.col(CORRUPT).isNotNull()
    bad = df.where(bad_cond).select(
        F.lit("malformed_record").alias("reason"),
        F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*required))).alias("record") if CORRUPT in df.columns
        else F.to_json(F.struct(*required)).alias("record"))
    good = df.where(~bad_cond)
    if CORRUPT in good.columns:
        good = good.drop(CORRUPT)
    return good, bad


def _tables_from_pairs(pairs: "DataFrame", label: "Column", source: str, mapping: str) -> dict[str, "DataFrame"]:
    """items / keyphrases / human_labels from a frame with item_id, title, category, query, rating."""
    from pyspark.sql import functions as F

    norm = normalize_text_col(F.col("query"))
    p = pairs.withColumn("normalized", norm).withColumn("keyphrase_id", keyphrase_id_col(F.col("normalized")))
    return {
        "items": p.select("item_id", "title", "category").dropDuplicates(["item_id", "title", "category"]),
        "keyphrases": p.where(F.length("normalized") > 0)
        .groupBy("keyphrase_id", "normalized").agg(F.min("query").alias("text"))
        .select("keyphrase_id", "text", "normalized", F.lit(None).cast("string").alias("category"),
                F.lit(None).cast("long").alias("search_volume")),
        # rows whose query normalizes to nothing keep a null keyphrase_id -> quarantined on write
        "human_labels": p.select(
            "item_id", F.when(F.length("normalized") > 0, F.col("keyphrase_id")).alias("keyphrase_id"),
            try_cast("rating", "double").alias("rating"), label.cast("int").alias("label"),
            F.lit(source).alias("source"), F.lit(mapping).alias("mapping")),
    }


def read_homedepot(spark: "SparkSession", path: str | Path = HOMEDEPOT_SHARED,
                   relevant_at: float = HOMEDEPOT_RELEVANT_AT) -> dict[str, "DataFrame"]:
    """Home Depot ``train.csv`` (or ``train.csv.zip``), latin-1. ``relevance >= relevant_at`` -> 1.

    ``category`` is unknown in this data set and left null.
    """
    from pyspark.sql import functions as F

    df = read_file(spark, path, "csv", {"item_id": "product_uid", "title": "product_title",
                                        "query": "search_term", "rating": "relevance"},
                   options={"encoding": "ISO-8859-1"})
    good, bad = _split_malformed(df, ["item_id", "title", "query", "rating"])
    good = good.withColumn("category", F.lit(None).cast("string"))
    out = _tables_from_pairs(good, try_cast("rating", "double") >= relevant_at, "homedepot",
                             f"relevance>={relevant_at}->1; else 0 (mean of >=3 raters on 1-3)")
    out["malformed"] = bad
    return out


def read_esci(spark: "SparkSession", examples: str | Path, products: str | Path, locale: str = "us",
              relevant: tuple[str, ...] = ("E",)) -> dict[str, "DataFrame"]:
    """Amazon ESCI: ``esci_label`` in ``relevant`` -> 1 (default Exact only), others (S/C/I) -> 0."""
    from pyspark.sql import functions as F

    ex = read_file(spark, examples, "parquet")
    pr = read_file(spark, products, "parquet")
    for need, df, name in ((("query", "product_id", "esci_label", "product_locale"), ex, "examples"),
                           (("product_id", "product_title", "product_locale"), pr, "products")):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise SchemaError(f"ESCI {name} file lacks column(s) {missing}; found {df.columns}")
    ex = ex.where(F.col("product_locale") == locale)
    pr = pr.where(F.col("product_locale") == locale).select("product_id", "product_title")
    joined = ex.join(pr, "product_id", "left").select(
        F.xxhash64(F.lit(locale), F.col("product_id")).alias("item_id"),
        F.col("product_title").alias("title"), F.lit(None).cast("string").alias("category"),
        F.col("query"), F.col("esci_label").alias("rating_label"))
    joined = joined.withColumn("rating", F.lit(None).cast("double"))
    out = _tables_from_pairs(joined, F.col("rating_label").isin(*relevant),
                             "esci", f"esci_label in {list(relevant)}->1; else 0")
    out["malformed"] = joined.limit(0).select(F.lit("").alias("reason"), F.lit("").alias("record"))
    return out


def load_to_tables(spark: "SparkSession", cfg: Config, frames: Mapping[str, "DataFrame"]) -> dict[str, Any]:
    """Write a ``read_*`` result: items/keyphrases are MERGEd, human labels MERGEd on their key,
    malformed file rows go to quarantine. Returns the reports and the file-row accounting."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    reports = {name: tables.upsert(spark, cfg, name, frames[name]) for name in ("items", "keyphrases", "human_labels")}
    # the rated pairs are candidate pairs too (so the judge and the scorers can run on them)
    labeled = tables.read_table(spark, cfg, "human_labels")
    src = frames["human_labels"].select("source").limit(1).collect()
    if src:
        labeled = labeled.where(F.col("source") == src[0][0])
    reports["pairs"] = tables.upsert(spark, cfg, "pairs", labeled.select(
        "item_id", "keyphrase_id", F.col("source")).dropDuplicates(["item_id", "keyphrase_id"]))
    malformed = frames["malformed"].select(
        F.lit("human_labels").alias("source_table"), "reason", "record",
        F.lit(reports["human_labels"].batch_id).alias("batch_id"), F.current_timestamp().alias("quarantined_at"))
    n_bad = tables.append_quarantine(spark, cfg, malformed)
    hl = reports["human_labels"]
    return {"reports": {k: str(v) for k, v in reports.items()}, "file_rows": hl.rows_in + n_bad,
            "labels_written": hl.rows_written, "quarantined": hl.rows_quarantined + n_bad}


# ------------------------------------------------------------------------------------------------ your own data

#: what each ``load`` source must provide (kpspark names), what it may, and the table it fills
SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rated_pairs": (("query", "title", "rating"), ("item_id", "category")),
    "items": (("item_id", "title"), ("category", "seller_id", "price", "updated_at")),
    "keyphrases": (("text",), ("keyphrase_id", "category", "search_volume")),
    "clicks": (("item_id", "query", "clicks"), ("keyphrase_id", "impressions", "sales", "window")),
    "search_relevance": (("item_id", "query", "label"), ("keyphrase_id", "score")),
}


def read_source(spark: "SparkSession", name: str, src: Any) -> tuple["DataFrame", "DataFrame"]:
    """``(rows under kpspark's column names, malformed rows with a reason)`` of the ``load.<name>`` source ``src``
    (:class:`~kpspark.config.SourceConfig`). A required column the source lacks is a :class:`SchemaError` naming
    it and the columns found; ``query`` (or a keyphrase's ``text``) also gives ``keyphrase_id`` by the one rule."""
    from pyspark.sql import functions as F

    need, may = SOURCES[name]
    if src.format == "table":
        raw = spark.table(src.path)
    else:  # a local path is the caller's (relative to where the job runs, not the JVM's folder)
        path = src.path if "://" in src.path else str(Path(src.path).resolve())
        raw = read_file(spark, path, src.format, options=src.options)
    mapped = {c: src.columns.get(c, c) for c in (*need, *may)}
    unknown = sorted(set(src.columns) - set(mapped))
    if unknown:
        raise SchemaError(f"load.{name}.columns: unknown kpspark column(s) {unknown}; known: {sorted(mapped)}")
    missing = [f"{c} (from {mapped[c]!r})" for c in need if mapped[c] not in raw.columns]
    if missing:
        raise SchemaError(f"load.{name} ({src.path}): missing column(s) {missing}; found {raw.columns}")
    cols = [F.col(f"`{mapped[c]}`").alias(c) for c in (*need, *may) if mapped[c] in raw.columns]
    df = raw.select(*cols, *([F.col(CORRUPT)] if CORRUPT in raw.columns else []))
    good, bad = _split_malformed(df, [c for c in (*need, *may) if mapped[c] in raw.columns])
    if "item_id" in good.columns and src.hash_ids:
        good = good.withColumn("item_id", F.xxhash64(F.col("item_id").cast("string")))
    text = "text" if name == "keyphrases" else "query"
    if text in good.columns and "keyphrase_id" not in good.columns:
        norm = normalize_text_col(F.col(text))
        good = good.withColumn("keyphrase_id", F.when(F.length(norm) > 0, keyphrase_id_col(norm)))
        if name == "keyphrases":
            good = good.withColumn("normalized", norm)
    if name == "clicks" and "window" not in good.columns:
        good = good.withColumn("window", F.lit("all"))
    return good, bad


def read_rated_pairs(spark: "SparkSession", src: Any) -> dict[str, "DataFrame"]:
    """Rated pairs of ``load.rated_pairs`` as :func:`read_homedepot` returns them (``rating >= relevant_at`` -> 1);
    without an ``item_id`` column an item is its title (xxhash64 of it)."""
    from pyspark.sql import functions as F

    good, bad = read_source(spark, "rated_pairs", src)
    untitled = F.coalesce(F.length(F.trim(F.col("title"))), F.lit(0)) == 0  # a pair no model can judge
    bad = bad.unionByName(good.where(untitled).select(F.lit("empty_text:title").alias("reason"),
                                                      F.to_json(F.struct(*good.columns)).alias("record")))
    good = good.where(~untitled)
    if "item_id" not in good.columns:
        good = good.withColumn("item_id", F.xxhash64(F.col("title")))
    if "category" not in good.columns:
        good = good.withColumn("category", F.lit(None).cast("string"))
    out = _tables_from_pairs(good.drop("keyphrase_id"), try_cast("rating", "double") >= src.relevant_at,
                             src.name, f"rating>={src.relevant_at}->1; else 0")
    out["malformed"] = bad
    return out


def load_sources(spark: "SparkSession", cfg: Config) -> dict[str, Any]:
    """Write every source of ``cfg.load`` that has a path: rated pairs through :func:`load_to_tables`, the others
    MERGEd into their table; malformed rows to quarantine. Per source: rows in, written, quarantined (in = written
    + quarantined)."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    out: dict[str, Any] = {}
    for name in SOURCES:
        src = getattr(cfg.load, name)
        if not src.path:
            continue
        if name == "rated_pairs":
            res = load_to_tables(spark, cfg, read_rated_pairs(spark, src))
            out[name] = {"rows_in": res["file_rows"], "rows_written": res["labels_written"],
                         "rows_quarantined": res["quarantined"], "tables": res["reports"]}
            continue
        good, bad = read_source(spark, name, src)
        rep = tables.upsert(spark, cfg, name, good.drop("query"))
        n_bad = tables.append_quarantine(spark, cfg, bad.select(
            F.lit(name).alias("source_table"), "reason", "record", F.lit(rep.batch_id).alias("batch_id"),
            F.current_timestamp().alias("quarantined_at")))
        out[name] = {"rows_in": rep.rows_in + n_bad, "rows_written": rep.rows_written,
                     "rows_quarantined": rep.rows_quarantined + n_bad, "tables": {name: str(rep)}}
    if not out:
        raise ValueError("nothing to load: set load.<source>.path for at least one of " + ", ".join(SOURCES))
    return out

