"""``TextEmbedder``: texts -> L2-normalized float arrays with the exported bi-encoder.

===========  ============  ===============================================================
column       type          meaning
===========  ============  ===============================================================
embedding    array<float>  first ``dim`` components of the pooled embedding, re-normalized
                           (Matryoshka); null when the text is null or blank
===========  ============  ===============================================================

Item side: set ``categoryCol`` and the text is ``title [SEP] category`` (see
:mod:`kpspark.biencoder.text`); keyphrase side: leave ``categoryCol`` empty. The model reaches
executors from ``modelUri`` (``models:/name@alias`` pinned on the driver, ``runs:/``, or a folder
all executors read) and is loaded once per Python worker.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator, Tuple

import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.artifacts import local_model_dir
from kpspark.errors import KPSparkError
from kpspark.onnxstage import OnnxStageParams
from kpspark.sparkutil import check_input_cols

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


def load_embedder(model_uri: str, precision: str = "int8", tracking_uri: str | None = None, threads: int = 1,
                  batch_size: int = 32, registry_uri: str | None = None) -> Any:
    """An :class:`~kpspark.biencoder.onnx_embedder.OnnxTextEmbedder` for a model URI, cached per process.

    Refuses a model that is not a bi-encoder export or whose files are missing.
    """
    from kpspark.biencoder.onnx_embedder import get_cached_embedder
    from kpspark.artifacts import META_FILE, model_file

    d = local_model_dir(model_uri, tracking_uri, registry_uri)
    meta = json.loads((d / META_FILE).read_text())
    if meta.get("kind") != "bi_encoder":
        raise KPSparkError(f"{model_uri} is a {meta.get('kind')!r} export, not a bi-encoder")
    onnx_file = model_file(d, meta, precision, model_uri)
    return get_cached_embedder(str(onnx_file), str(d), int(meta["max_length"]), threads, batch_size)


def make_embed_fn(model_uri: str, precision: str, tracking_uri: str | None, threads: int, batch_size: int,
                  dim: int, registry_uri: str | None = None) -> Any:
    """The pandas UDF body; closes over plain values and loads the model on the executor."""

    def embed(batches: Iterator[Tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        from kpspark.biencoder.text import item_texts

        emb = load_embedder(model_uri, precision, tracking_uri, threads, batch_size, registry_uri)
        for text, cat in batches:
            ok = (text.fillna("").astype(str).str.strip().str.len() > 0).to_numpy()
            out: list[Any] = [None] * len(text)
            if ok.any():
                vecs = emb.embed(item_texts(text[ok], cat[ok]), dim or None)
                for i, v in zip(ok.nonzero()[0], vecs):
                    out[i] = v
            yield pd.Series(out, dtype=object)

    return embed


class TextEmbedder(Model, OnnxStageParams, DefaultParamsReadable, DefaultParamsWritable):
    """Embed a text column (or title + category) with an exported bi-encoder (see the module doc)."""

    inputCol: Param[str] = Param(Params._dummy(), "inputCol", "text column (keyphrase, or item title)",
                                 TypeConverters.toString)
    categoryCol: Param[str] = Param(Params._dummy(), "categoryCol", "item category column ('' = plain text)",
                                    TypeConverters.toString)
    outputCol: Param[str] = Param(Params._dummy(), "outputCol", "embedding column", TypeConverters.toString)
    dim: Param[int] = Param(Params._dummy(), "dim", "Matryoshka dim to keep (0 = full)", TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, inputCol: str = "text", categoryCol: str = "", outputCol: str = "embedding",
                 modelUri: str = "", precision: str = "int8", dim: int = 0, batchSize: int = 32, threads: int = 1,
                 minPartitions: int = 0, trackingUri: str = "", registryUri: str = "") -> None:
        super().__init__()
        self._setDefault(inputCol="text", categoryCol="", outputCol="embedding", modelUri="", precision="int8",
                         dim=0, batchSize=32, threads=1, minPartitions=0, trackingUri="", registryUri="")
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "text", categoryCol: str = "", outputCol: str = "embedding",
                  modelUri: str = "", precision: str = "int8", dim: int = 0, batchSize: int = 32, threads: int = 1,
                  minPartitions: int = 0, trackingUri: str = "", registryUri: str = "") -> "TextEmbedder":
        """Set several params at once."""
        return self._set(**self._input_kwargs)

    def setDim(self, value: int) -> "TextEmbedder":
        """Set the Matryoshka dim (0 = full)."""
        if value < 0:
            raise ValueError(f"dim must be >= 0, got {value}")
        return self._set(dim=value)

    def setOutputCol(self, value: str) -> "TextEmbedder":
        """Set the embedding column name."""
        return self._set(outputCol=value)

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.sql import functions as F

        from kpspark.data.schemas import EMBEDDING_TYPE

        g = self.getOrDefault
        self._check_model_uri()
        if g(self.dim) < 0:
            raise ValueError(f"TextEmbedder: dim must be >= 0, got {g(self.dim)}")
        check_input_cols("TextEmbedder", dataset, {"text": g(self.inputCol), "category": g(self.categoryCol)},
                         outputs=[g(self.outputCol)], optional=["category"])
        tracking, registry = self._stores_for_executors()
        fn = make_embed_fn(self.resolvedModelUri(), g(self.precision), tracking, g(self.threads), g(self.batchSize),
                           g(self.dim), registry)
        return self._run_model(dataset, fn, EMBEDDING_TYPE, F.col(g(self.inputCol)), self._category())
