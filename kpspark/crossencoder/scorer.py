"""``OnnxCrossEncoderModel``: score (keyphrase, category, title) rows with an exported cross-encoder.

===========  ======  ====================================================================
column       type    meaning
===========  ======  ====================================================================
score        double  sigmoid of the cross-encoder logit, in [0, 1]; null when the
                     keyphrase or the title is null/blank (nothing to judge)
===========  ======  ====================================================================

The model folder reaches executors from ``modelUri``: a registry URI (``models:/name@alias`` is
pinned to its version on the driver when ``transform`` is called, so one job scores with one
version), a ``runs:/`` URI, or a path every executor can read. Executors download it themselves
(not from the driver's disk) and keep one ONNX Runtime session per Python worker, single-threaded
by default because Spark already runs one worker per core.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator, Tuple

import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.artifacts import META_FILE, local_model_dir, model_file
from kpspark.onnxstage import OnnxStageParams
from kpspark.sparkutil import check_input_cols

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)






def load_scorer(model_uri: str, precision: str = "int8", tracking_uri: str | None = None, threads: int = 1,
                batch_size: int = 16, registry_uri: str | None = None) -> Any:
    """An :class:`~kpspark.crossencoder.onnx_scorer.OnnxPairScorer` for a model URI, cached per process.

    Refuses, with a clear error, a model whose files are missing or corrupt or whose tokenizer does
    not match the ONNX inputs.
    """
    import json

    from kpspark.crossencoder.onnx_scorer import get_cached_scorer

    d = local_model_dir(model_uri, tracking_uri, registry_uri)
    meta = json.loads((d / META_FILE).read_text())
    onnx_file = model_file(d, meta, precision, model_uri)
    return get_cached_scorer(str(onnx_file), str(d), int(meta["max_length"]), threads, batch_size)


def make_score_fn(model_uri: str, precision: str, tracking_uri: str | None, threads: int, batch_size: int,
                  registry_uri: str | None = None) -> Any:
    """The pandas UDF body; closes over plain values and loads on the executor."""

    def score(batches: Iterator[Tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        import numpy as np

        from kpspark.crossencoder.text import pair_texts

        scorer = load_scorer(model_uri, precision, tracking_uri, threads, batch_size, registry_uri)
        for kp, cat, title in batches:
            ok = (kp.fillna("").str.strip().str.len() > 0) & (title.fillna("").str.strip().str.len() > 0)
            out = np.full(len(kp), np.nan)
            if ok.any():
                a, b = pair_texts(kp[ok], cat[ok], title[ok])
                out[ok.to_numpy()] = scorer.scores(a, b)
            yield pd.Series(out)

    return score




class OnnxCrossEncoderModel(Model, OnnxStageParams, DefaultParamsReadable, DefaultParamsWritable):
    """Score pairs with an exported cross-encoder (see the module doc)."""

    keyphraseCol: Param[str] = Param(Params._dummy(), "keyphraseCol", "keyphrase text column", TypeConverters.toString)
    categoryCol: Param[str] = Param(Params._dummy(), "categoryCol", "category column ('' for none)",
                                    TypeConverters.toString)
    titleCol: Param[str] = Param(Params._dummy(), "titleCol", "item title column", TypeConverters.toString)
    outputCol: Param[str] = Param(Params._dummy(), "outputCol", "score column", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, keyphraseCol: str = "keyphrase", categoryCol: str = "category", titleCol: str = "title",
                 outputCol: str = "score", modelUri: str = "", precision: str = "int8", batchSize: int = 16,
                 threads: int = 1, trackingUri: str = "", registryUri: str = "", minPartitions: int = 0) -> None:
        super().__init__()
        self._setDefault(keyphraseCol="keyphrase", categoryCol="category", titleCol="title", outputCol="score",
                         modelUri="", precision="int8", batchSize=16, threads=1, trackingUri="", registryUri="",
                         minPartitions=0)
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, keyphraseCol: str = "keyphrase", categoryCol: str = "category", titleCol: str = "title",
                  outputCol: str = "score", modelUri: str = "", precision: str = "int8", batchSize: int = 16,
                  threads: int = 1, trackingUri: str = "", registryUri: str = "", minPartitions: int = 0) -> "OnnxCrossEncoderModel":
        """Set several params at once."""
        return self._set(**self._input_kwargs)

    def setOutputCol(self, value: str) -> "OnnxCrossEncoderModel":
        """Set the score column name."""
        return self._set(outputCol=value)

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.sql import functions as F

        g = self.getOrDefault
        self._check_model_uri()
        check_input_cols("OnnxCrossEncoderModel", dataset,
                         {"keyphrase": g(self.keyphraseCol), "title": g(self.titleCol), "category": g(self.categoryCol)},
                         outputs=[g(self.outputCol)], optional=["category"])
        tracking, registry = self._stores_for_executors()
        fn = make_score_fn(self.resolvedModelUri(), g(self.precision), tracking, g(self.threads), g(self.batchSize),
                           registry)
        return self._run_model(dataset, fn, "double", F.col(g(self.keyphraseCol)), self._category(),
                               F.col(g(self.titleCol)))
