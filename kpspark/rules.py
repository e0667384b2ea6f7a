"""The domain rules, each defined once; every stage, workflow, job and the sample marketplace import them.

* **click positive** (:func:`click_positives`): a pair of the click log is a positive when, summed over the
  log's window, it has at least ``click_positive.min_impressions`` impressions, ``min_clicks`` clicks and a CTR
  of at least ``min_ctr`` (TJ section 3.1.2: >= 30 impressions, >= 1 click, a CTR floor; the floors
  remove "1 click 1 impression" noise). Training, distillation, calibration and evaluation read the same set.
* **keyphrase text** (:func:`keyphrase_texts`): the ``keyphrases`` table keeps its text in
  :data:`KEYPHRASE_TEXT`; stages read it as :data:`KEYPHRASE`.
* **top-n ordering** (:func:`top_n`): an item's recommendations are its rows by CE score, ties by retriever score,
  then keyphrase id; the full batch, the daily diff and the stream all cut with it.
* **version stamp** (:func:`version_stamp`): ``<registered name>/<version>`` of the retriever and the
  cross-encoder, read from the pinned URIs of the pipeline that produced the rows.
* **threshold search** (:func:`retention_threshold`): the largest score that keeps a target share of
  (optionally weighted) positives.
* **normalizer** (:func:`normalize_text`, :func:`group_key`): the text a keyphrase id is hashed from
  (loaders and the sample alike), and the de-duplication key built on it.

>>> normalize_text("  USB-C  Cables!! ")
'usb-c cables'
>>> group_key("Cables, USB-C")
'c cable usb'
>>> retention_threshold([0.9, 0.8, 0.7, 0.1], target=0.75)
0.7
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import PipelineModel
    from pyspark.sql import Column, DataFrame

    from kpspark.config import ClickPositiveConfig

# --- keyphrase text -------------------------------------------------------------------------------------------
#: The keyphrases table's text column, and the name every stage reads it under.
KEYPHRASE_TEXT, KEYPHRASE = "text", "keyphrase"


def keyphrase_texts(keyphrases: "DataFrame", *extra: str) -> "DataFrame":
    """``keyphrase_id, keyphrase`` (+ ``extra`` columns) from the ``keyphrases`` table."""
    from pyspark.sql import functions as F

    return keyphrases.select("keyphrase_id", F.col(KEYPHRASE_TEXT).alias(KEYPHRASE), *extra)


# --- click positive -------------------------------------------------------------------------------------------
def click_positives(clicks: "DataFrame", rule: "ClickPositiveConfig") -> "DataFrame":
    """The click positives of a click log: one row per pair, ``item_id, keyphrase_id, impressions, clicks,
    sales`` summed over the log, kept when they pass ``rule`` (see the module doc)."""
    from pyspark.sql import functions as F

    agg = clicks.groupBy("item_id", "keyphrase_id").agg(
        F.sum("impressions").alias("impressions"), F.sum("clicks").cast("double").alias("clicks"),
        F.sum(F.coalesce(F.col("sales"), F.lit(0.0))).cast("double").alias("sales"))
    return agg.where((F.col("impressions") >= rule.min_impressions) & (F.col("clicks") >= rule.min_clicks)
                     & (F.col("clicks") >= F.lit(rule.min_ctr) * F.col("impressions")))


# --- top-n ordering -------------------------------------------------------------------------------------------
#: (column, descending) in the order that ranks an item's recommendations.
TOP_N_ORDER: tuple[tuple[str, bool], ...] = (("ce_score", True), ("retriever_score", True), ("keyphrase_id", False))


def top_n(df: "DataFrame", n: int) -> "DataFrame":
    """Each item's first ``n`` rows in :data:`TOP_N_ORDER`, with ``rank`` (1 = best)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.desc(c) if desc else F.asc(c) for c, desc in TOP_N_ORDER]
    w = Window.partitionBy("item_id").orderBy(*order)
    return df.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n)


# --- version stamp --------------------------------------------------------------------------------------------
def version_stamp(pipeline: "PipelineModel") -> dict[str, str]:
    """``{"retriever_version": "<name>/<v>", "ce_version": "<name>/<v>"}`` from the pinned model URIs of a
    recommendation pipeline (its embedder and cross-encoder stages, found by type)."""
    from kpspark.biencoder.embedder import TextEmbedder
    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.sparkutil import find_stage

    def stamp(kind: type) -> str:
        uri = find_stage(pipeline, kind).getOrDefault("modelUri")
        return uri.removeprefix("models:/") if uri.startswith("models:/") else uri

    return {"retriever_version": stamp(TextEmbedder), "ce_version": stamp(OnnxCrossEncoderModel)}


def stamp_columns(stamp: Mapping[str, str], run_id: str) -> list["Column"]:
    """The stamp, the run id and the creation time as columns of a recommendations row."""
    from pyspark.sql import functions as F

    return [*(F.lit(v).alias(k) for k, v in stamp.items()), F.lit(run_id).alias("run_id"),
            F.current_timestamp().alias("created_at")]


# --- threshold search -----------------------------------------------------------------------------------------
def retention_threshold(scores: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None,
                        target: float = 0.95) -> float:
    """The largest ``t`` with ``sum(weights[scores >= t]) >= target * sum(weights)`` (unit weights when
    ``weights`` is None; NaN scores and non-positive weights ignored)."""
    s = np.asarray(scores, dtype="float64")
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype="float64")
    keep = ~np.isnan(s) & (np.nan_to_num(w) > 0)
    s, w = s[keep], w[keep]
    if not len(s):
        raise ValueError("no scored positives to set a threshold on")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target retention must be in (0, 1], got {target}")
    order = np.argsort(-s, kind="mergesort")
    s, kept = s[order], np.cumsum(w[order])
    i = int(np.searchsorted(kept, target * kept[-1] * (1 - 1e-12)))
    return float(s[min(i, len(s) - 1)])


# --- normalizer -----------------------------------------------------------------------------------------------
_INNER_PUNCT = re.compile(r"[^\w\s.\-]+", re.UNICODE)  # everything but word chars, spaces, '.' and '-'
_REST_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_KEEP = ("ss", "us", "is", "ous")
_ES_AFTER = ("ches", "shes", "xes", "zes", "sses")


def normalize_text(text: str | None) -> str:
    """The normalized keyphrase a keyphrase id is hashed from: Unicode NFKC, case folded, punctuation other
    than ``.``/``-`` to spaces, whitespace collapsed ('' when nothing is left)."""
    if text is None:
        return ""
    s = _INNER_PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(s.split())


def normalize_text_col(col: "Column") -> "Column":
    """:func:`normalize_text` over a string column (a pandas UDF: the one definition runs in Spark too)."""
    from pyspark.sql.functions import pandas_udf

    def norm(s: pd.Series) -> pd.Series:
        return s.map(normalize_text, na_action="ignore").fillna("")

    return pandas_udf(norm, "string")(col)  # type: ignore[call-overload]


@dataclass(frozen=True)
class NormalizeOptions:
    """Which variants of a normalized keyphrase share a de-duplication group."""

    punctuation: bool = True  # the '.'/'-' that normalize_text keeps become spaces (usb-c ~ usb c)
    plural: bool = True  # batteries ~ battery
    word_order: bool = True  # case iphone ~ iphone case


def singular(token: str) -> str:
    """A conservative English singular of one lower-case token (words under 4 letters and ``-ss``/``-us``/
    ``-is``/``-ous`` endings kept)."""
    if len(token) < 4 or not token.isalpha() or token.endswith(_KEEP):
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(_ES_AFTER):
        return token[:-2]
    if token.endswith("s"):
        return token[:-1]
    return token


def group_key(text: str | None, opts: NormalizeOptions | None = None) -> str:
    """The de-duplication key of a keyphrase: :func:`normalize_text`, then the variants of ``opts`` collapsed
    ('' when nothing is left: the caller quarantines it)."""
    opts = opts or NormalizeOptions()
    s = normalize_text(text)
    if opts.punctuation:
        s = _REST_PUNCT.sub(" ", s)
    tokens = s.split()
    if opts.plural:
        tokens = [singular(t) for t in tokens]
    if opts.word_order:
        tokens = sorted(tokens)
    return " ".join(tokens)

