"""``KeyphraseRetriever`` (Estimator) -> ``KeyphraseRetrieverModel``: per-item top-k keyphrases by ANN.

Fit builds one faiss index per shard *on the executors* (``applyInPandas`` per shard) into ``indexDir``: a
folder every node reads (shared storage), or ``runs:/<run id>/<path>``, where each executor uploads its
shards to the MLflow run and the driver adds the manifest (see :mod:`kpspark.retrieval.index`).
Transform checks on the driver that every shard the manifest lists is there, routes each item to its
shard(s) (rows of one shard to few tasks), searches them in ``mapInPandas`` with batched queries (each
executor downloads the shards it searches, a bounded cache per Python worker), and merges the per-shard candidates into the top ``k`` with
DataFrame code. Output: the input item columns (without the embedding) plus ``keyphrase_id``,
``keyphrase``, ``retriever_score`` (cosine) and ``retriever_rank`` (1 = best).

Defined behaviour: items with a null embedding get no candidates; a shard with fewer than ``k``
keyphrases returns what it has; an item whose category has no shard searches every shard when
``fallback='all'`` and gets no candidates with ``fallback='none'``; with ``shardBy='hash'`` every
item searches every shard.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.config import RetrievalConfig
from kpspark.errors import SchemaError
from kpspark.params import set_params

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

_R = RetrievalConfig()
SHARD_BY = ("category", "hash")
FALLBACKS = ("all", "none")
NO_CATEGORY = "__no_category__"


class _RetrieverParams(Params):
    indexDir: Param[str] = Param(Params._dummy(), "indexDir", "folder (or models:/ / runs:/ URI) of the index",
                                 TypeConverters.toString)
    shardBy: Param[str] = Param(Params._dummy(), "shardBy", "category or hash", TypeConverters.toString)
    numHashShards: Param[int] = Param(Params._dummy(), "numHashShards", "shards when shardBy=hash",
                                      TypeConverters.toInt)
    k: Param[int] = Param(Params._dummy(), "k", "candidates per item", TypeConverters.toInt)
    fallback: Param[str] = Param(Params._dummy(), "fallback", "items of unseen categories: all or none",
                                 TypeConverters.toString)
    embeddingCol: Param[str] = Param(Params._dummy(), "embeddingCol", "embedding column", TypeConverters.toString)
    categoryCol: Param[str] = Param(Params._dummy(), "categoryCol", "category column", TypeConverters.toString)
    idCol: Param[str] = Param(Params._dummy(), "idCol", "id column (item_id / keyphrase_id)", TypeConverters.toString)
    textCol: Param[str] = Param(Params._dummy(), "textCol", "keyphrase text column (fit input)",
                                TypeConverters.toString)
    indexKind: Param[str] = Param(Params._dummy(), "indexKind", "auto, flat, hnsw or ivf", TypeConverters.toString)
    exactMax: Param[int] = Param(Params._dummy(), "exactMax", "shards up to this size use exact search",
                                 TypeConverters.toInt)
    efSearch: Param[int] = Param(Params._dummy(), "efSearch", "HNSW search breadth", TypeConverters.toInt)
    nprobe: Param[int] = Param(Params._dummy(), "nprobe", "IVF lists probed", TypeConverters.toInt)
    trackingUri: Param[str] = Param(Params._dummy(), "trackingUri", "MLflow URI for registry index URIs",
                                    TypeConverters.toString)
    minPartitions: Param[int] = Param(Params._dummy(), "minPartitions", "search tasks (0 = the session's task "
                                      "slots)", TypeConverters.toInt)
    shardCacheSize: Param[int] = Param(Params._dummy(), "shardCacheSize", "shards kept loaded per Python worker "
                                       "(0 = KPSPARK_SHARD_CACHE or 8)", TypeConverters.toInt)

    # the search settings default to the config's (kpspark.config.RetrievalConfig): declared once, there
    _defaults: dict[str, Any] = dict(indexDir="", shardBy=_R.shard_by, numHashShards=_R.num_hash_shards, k=_R.k,
                                     fallback=_R.fallback, embeddingCol="embedding", categoryCol="category",
                                     idCol="item_id", textCol="text", indexKind=_R.index_kind, exactMax=_R.exact_max,
                                     efSearch=_R.ef_search, nprobe=_R.nprobe, trackingUri="", minPartitions=0,
                                     shardCacheSize=0)

    def _check(self) -> None:
        g = self.getOrDefault
        if g(self.shardBy) not in SHARD_BY:
            raise ValueError(f"shardBy must be one of {list(SHARD_BY)}, got {g(self.shardBy)!r}")
        if g(self.fallback) not in FALLBACKS:
            raise ValueError(f"fallback must be one of {list(FALLBACKS)}, got {g(self.fallback)!r}")
        if g(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {g(self.k)}")

    def index_params(self) -> Any:
        """The :class:`~kpspark.retrieval.index.IndexParams` of these params."""
        from kpspark.retrieval.index import IndexParams

        g = self.getOrDefault
        return IndexParams(kind=g(self.indexKind), exact_max=g(self.exactMax), ef_search=g(self.efSearch),
                           ivf_nprobe=g(self.nprobe))


def _shard_key(df: "DataFrame", shard_by: str, category_col: str, id_col: str, buckets: int) -> Any:
    from pyspark.sql import functions as F

    if shard_by == "hash":
        return F.concat(F.lit("hash-"), F.pmod(F.xxhash64(F.col(id_col)), F.lit(buckets)).cast("string"))
    if category_col not in df.columns:
        return F.lit(NO_CATEGORY)
    return F.coalesce(F.col(category_col), F.lit(NO_CATEGORY))


class KeyphraseRetriever(Estimator, _RetrieverParams, DefaultParamsReadable, DefaultParamsWritable):
    """Build the sharded keyphrase index (see the module doc). Fit input: ``keyphrase_id``, text,
    category, embedding (``idCol`` defaults to ``item_id`` for the model; the fit uses ``keyphrase_id``)."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._setDefault(**self._defaults)
        set_params(self, params)

    def _fit(self, dataset: "DataFrame") -> "KeyphraseRetrieverModel":
        from dataclasses import asdict

        from pyspark.sql import functions as F

        from kpspark.retrieval.index import write_manifest

        self._check()
        g = self.getOrDefault
        from kpspark.artifacts import is_artifact_uri
        from kpspark.retrieval.index import run_artifact_dest

        location, tracking = g(self.indexDir), g(self.trackingUri) or None
        if not location:
            raise ValueError("KeyphraseRetriever: indexDir is not set (a folder on shared storage, or "
                             "runs:/<run id>/<path> to log the shards to an MLflow run)")
        if is_artifact_uri(location):
            run_artifact_dest(location)  # ValueError unless runs:/<run id>/<path>
        need = ["keyphrase_id", g(self.textCol), g(self.embeddingCol)]
        missing = [c for c in need if c not in dataset.columns]
        if missing:
            raise SchemaError(f"KeyphraseRetriever: input lacks {missing}; found {dataset.columns}")
        params = asdict(self.index_params())
        src = dataset.where(F.col(g(self.embeddingCol)).isNotNull()).select(
            _shard_key(dataset, g(self.shardBy), g(self.categoryCol), "keyphrase_id", g(self.numHashShards))
            .alias("shard"), F.col("keyphrase_id").cast("long").alias("keyphrase_id"),
            F.col(g(self.textCol)).alias("keyphrase"), F.col(g(self.embeddingCol)).alias("embedding"))

        def build(pdf: pd.DataFrame) -> pd.DataFrame:
            from kpspark.retrieval.index import IndexParams, publish_shard

            emb = np.stack(pdf["embedding"].to_numpy()).astype("float32")
            entry = publish_shard(location, tracking, str(pdf["shard"].iat[0]), pdf["keyphrase_id"].to_numpy(),
                                  pdf["keyphrase"].tolist(), emb, IndexParams(**params))
            return pd.DataFrame([entry])

        rows = src.groupBy("shard").applyInPandas(build, "key string, sid string, n long, kind string, dim int") \
            .collect()
        if not rows:
            raise ValueError("KeyphraseRetriever: no keyphrase with an embedding to index")
        write_manifest(location, [r.asDict() for r in rows], g(self.shardBy), self.index_params(), tracking)
        model = KeyphraseRetrieverModel()
        self._copyValues(model)
        return model._set(indexDir=location)  # type: ignore[no-any-return]


def make_search_fn(index_uri: str, k: int, ef_search: int, nprobe: int, tracking_uri: str | None = None,
                   cache_size: int | None = None, passthrough: list[str] | None = None) -> Any:
    """The ``mapInPandas`` body: rows (item_id, sid, embedding, *passthrough) -> (item_id, *passthrough,
    keyphrase_id, keyphrase, retriever_score), up to ``k`` rows per input row. Closes over plain values: each
    executor loads (downloads, for an artifact URI) the shards it searches."""
    keep = list(passthrough or [])

    def search(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from kpspark.retrieval.index import get_shard

        for pdf in batches:
            outs = []
            for sid, part in pdf.groupby("sid", sort=False):
                shard = get_shard(index_uri, str(sid), ef_search, nprobe, tracking_uri, cache_size)
                q = np.stack(part["embedding"].to_numpy()).astype("float32")
                scores, rows = shard.search(q, k)
                flat_rows, flat_scores = rows.reshape(-1), scores.reshape(-1)
                ok = flat_rows >= 0
                r = flat_rows[ok]
                cols = {c: np.repeat(part[c].to_numpy(), rows.shape[1])[ok] for c in ["item_id", *keep]}
                outs.append(pd.DataFrame({**cols, "keyphrase_id": shard.ids[r], "keyphrase": shard.texts[r],
                                          "retriever_score": flat_scores[ok]}))
            yield pd.concat(outs, ignore_index=True) if outs else pd.DataFrame(
                {"item_id": pd.Series(dtype="int64"), **{c: pd.Series(dtype=object) for c in keep},
                 "keyphrase_id": pd.Series(dtype="int64"), "keyphrase": pd.Series(dtype=object),
                 "retriever_score": pd.Series(dtype="float32")})

    return search


def route_by_shard(routed: "DataFrame", n_shards: int, partitions: int) -> "DataFrame":
    """Spread (item, shard) rows over ``partitions`` tasks so the rows of one shard go to few tasks (each
    shard gets ``partitions / n_shards`` hash buckets of its items), sorted by shard inside a task: a worker
    loads a shard once per task and only the shards routed to it, instead of every shard."""
    from pyspark.sql import functions as F

    per_shard = max(1, partitions // max(1, n_shards))
    bucket = F.pmod(F.xxhash64("item_id"), F.lit(per_shard))
    return routed.repartition(max(1, partitions), "sid", bucket).sortWithinPartitions("sid")


class KeyphraseRetrieverModel(Model, _RetrieverParams, DefaultParamsReadable, DefaultParamsWritable):
    """Per-item top-k keyphrases from the sharded index (see the module doc)."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._setDefault(**self._defaults)
        set_params(self, params)

    def setK(self, value: int) -> "KeyphraseRetrieverModel":
        """Set the number of candidates per item."""
        return self._set(k=value)

    def manifest(self) -> dict[str, Any]:
        """The index manifest (read on the driver: shard keys and sizes only)."""
        from kpspark.retrieval.index import read_manifest

        return read_manifest(self.getOrDefault(self.indexDir), self.getOrDefault(self.trackingUri) or None)

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.sql import Window
        from pyspark.sql import functions as F
        from pyspark.sql.types import FloatType, LongType, StringType, StructField, StructType

        from kpspark.registry.models import pin_alias
        from kpspark.retrieval.index import check_shards, read_manifest
        from kpspark.sparkutil import task_slots

        self._check()
        g = self.getOrDefault
        if not g(self.indexDir):
            raise ValueError("KeyphraseRetrieverModel: indexDir is not set")
        emb_col, id_col = g(self.embeddingCol), g(self.idCol)
        for c in (emb_col, id_col):
            if c not in dataset.columns:
                raise SchemaError(f"KeyphraseRetrieverModel: input lacks column {c!r}; found {dataset.columns}")
        if not dict(dataset.dtypes)[emb_col].startswith("array"):
            raise SchemaError(f"KeyphraseRetrieverModel: {emb_col!r} must be an array of floats")
        tracking = g(self.trackingUri) or None
        index_uri = pin_alias(g(self.indexDir), tracking)
        manifest = read_manifest(index_uri, tracking)
        check_shards(index_uri, manifest, tracking)  # a missing shard fails here, before any task
        spark = dataset.sparkSession
        # the input is read exactly once (its embedding is a model's nondeterministic output, which Spark would
        # compute again for a second branch): routing is one broadcast join, and the item's other columns travel
        # through the search to the output instead of being joined back
        rest = [c for c in dataset.columns if c not in (emb_col, id_col, "item_id")]
        clash = [c for c in ("keyphrase_id", "keyphrase", "retriever_score", "retriever_rank", "sid", "shard")
                 if c in rest]
        if clash:
            raise SchemaError(f"KeyphraseRetrieverModel: output column(s) {clash} already exist in the input")
        shards = spark.createDataFrame([(s["key"], s["sid"]) for s in manifest["shards"]], "shard string, sid string")
        every = F.array(*[F.lit(s["sid"]) for s in manifest["shards"]])
        items = dataset.where(F.col(emb_col).isNotNull()).select(
            F.col(id_col).cast("long").alias("item_id"), F.col(emb_col).alias("embedding"), *rest,
            _shard_key(dataset, "category", g(self.categoryCol), id_col, 1).alias("shard"))
        if manifest["shard_by"] == "hash":
            routed = items.withColumn("sid", F.explode(every))
        else:
            routed = items.join(F.broadcast(shards), "shard", "left" if g(self.fallback) == "all" else "inner")
            routed = routed.withColumn("sid", F.explode(F.when(F.col("sid").isNull(), every)
                                                        .otherwise(F.array("sid"))))
        routed = route_by_shard(routed.select("item_id", "sid", "embedding", *rest), len(manifest["shards"]),
                                task_slots(spark, g(self.minPartitions)))
        out_schema = StructType([routed.schema["item_id"], *[routed.schema[c] for c in rest],
                                 StructField("keyphrase_id", LongType()), StructField("keyphrase", StringType()),
                                 StructField("retriever_score", FloatType())])
        fn = make_search_fn(index_uri, g(self.k), g(self.efSearch), g(self.nprobe), tracking,
                            g(self.shardCacheSize) or None, rest)
        cands = routed.mapInPandas(fn, out_schema)
        w = Window.partitionBy("item_id").orderBy(F.desc("retriever_score"), F.asc("keyphrase_id"))
        top = (cands.dropDuplicates(["item_id", "keyphrase_id"])
               .withColumn("retriever_rank", F.row_number().over(w)).where(F.col("retriever_rank") <= g(self.k)))
        return top


def manifest_json(model: KeyphraseRetrieverModel) -> str:
    """The manifest as JSON text (for logging)."""
    return json.dumps(model.manifest(), indent=2)
