"""``ThresholdCalibrator`` (Estimator) -> ``ThresholdModel``: the score threshold that keeps a target
share of clicked pairs (default 95%), globally or per category.

The paper sets the relevance filter's operating point so that 95% of held-out click positives
survive it. Fit input: scored click-positive rows (``scoreCol``; ``categoryCol`` optional). The
threshold is the largest t with ``share(score >= t) >= targetRetention``, i.e. the
``(1 - target)`` lower quantile of the positives' scores. Per category, categories with fewer than
``minPositives`` positives use the global threshold. ``ThresholdModel`` adds a boolean ``outputCol``
(or filters, with ``filterRows``); the thresholds are JSON-only params, so the stage saves and loads
with pyspark.ml's default writer.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.errors import SchemaError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame


def retention_curve(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Share of ``scores`` at or above each threshold."""
    s = np.sort(np.asarray(scores, dtype="float64"))
    return 1.0 - np.searchsorted(s, thresholds, side="left") / max(len(s), 1)


_GLOBAL = "\u0000all"  # the group of every positive (no category is named so)


class _ThresholdParams(Params):
    scoreCol: Param[str] = Param(Params._dummy(), "scoreCol", "relevance score column", TypeConverters.toString)
    categoryCol: Param[str] = Param(Params._dummy(), "categoryCol", "category column ('' = one global threshold)",
                                    TypeConverters.toString)
    targetRetention: Param[float] = Param(Params._dummy(), "targetRetention", "share of clicks kept",
                                          TypeConverters.toFloat)
    minPositives: Param[int] = Param(Params._dummy(), "minPositives", "positives a category needs for its own "
                                     "threshold", TypeConverters.toInt)
    weightCol: Param[str] = Param(Params._dummy(), "weightCol", "click count column: retain a share of clicks, not "
                                  "of clicked pairs ('' = count pairs)", TypeConverters.toString)
    _defaults: dict[str, Any] = dict(scoreCol="ce_score", categoryCol="", targetRetention=0.95, minPositives=50,
                                     weightCol="")


class ThresholdCalibrator(Estimator, _ThresholdParams, DefaultParamsReadable, DefaultParamsWritable):
    """Fit the click-retention threshold on scored click positives (see the module doc)."""

    @keyword_only
    def __init__(self, *, scoreCol: str = "ce_score", categoryCol: str = "", targetRetention: float = 0.95,
                 minPositives: int = 50, weightCol: str = "") -> None:
        super().__init__()
        self._setDefault(**self._defaults)
        self._set(**self._input_kwargs)

    def _fit(self, dataset: "DataFrame") -> "ThresholdModel":
        from pyspark.sql import functions as F

        g = self.getOrDefault
        sc, cat, wc = g(self.scoreCol), g(self.categoryCol), g(self.weightCol)
        for c in [sc] + ([cat] if cat else []) + ([wc] if wc else []):
            if c not in dataset.columns:
                raise SchemaError(f"ThresholdCalibrator: input lacks column {c!r}; found {dataset.columns}")
        target, weighted = float(g(self.targetRetention)), bool(wc)
        # every positive once in the global group and once in its category's: one pass, on the executors
        groups = F.array(F.lit(_GLOBAL), F.col(cat).cast("string")) if cat else F.array(F.lit(_GLOBAL))
        rows = dataset.where(F.col(sc).isNotNull()).select(
            F.explode(groups).alias("g"), F.col(sc).cast("double").alias("s"),
            (F.col(wc).cast("double") if wc else F.lit(1.0)).alias("w")).where(F.col("g").isNotNull())

        def search(pdf: "pd.DataFrame") -> "pd.DataFrame":
            import pandas as pd

            from kpspark.rules import retention_threshold

            w = pdf["w"].fillna(0).to_numpy() if weighted else None
            return pd.DataFrame({"g": [pdf["g"].iloc[0]], "n": [len(pdf)],
                                 "t": [retention_threshold(pdf["s"].to_numpy(), w, target)]})

        found = {r["g"]: (int(r["n"]), float(r["t"])) for r in
                 rows.groupBy("g").applyInPandas(search, "g string, n long, t double").collect()}
        if _GLOBAL not in found:
            raise ValueError("ThresholdCalibrator: no scored positives to calibrate on")
        n, glob = found.pop(_GLOBAL)
        per = {c: t for c, (k, t) in found.items() if k >= g(self.minPositives)}
        model = ThresholdModel(threshold=glob, categoryThresholds=json.dumps(per, sort_keys=True))
        self._copyValues(model)
        model.calibration_summary = {"positives": n, "threshold": glob,  # type: ignore[attr-defined]
                                     "categories": len(per)}
        return model


class ThresholdModel(Model, _ThresholdParams, DefaultParamsReadable, DefaultParamsWritable):
    """Mark (or keep) rows whose score reaches their threshold."""

    threshold: Param[float] = Param(Params._dummy(), "threshold", "global threshold", TypeConverters.toFloat)
    categoryThresholds: Param[str] = Param(Params._dummy(), "categoryThresholds",
                                           "JSON object category -> threshold", TypeConverters.toString)
    outputCol: Param[str] = Param(Params._dummy(), "outputCol", "boolean column", TypeConverters.toString)
    filterRows: Param[bool] = Param(Params._dummy(), "filterRows", "drop rows below the threshold instead of "
                                    "marking them", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, threshold: float = 0.5, categoryThresholds: str = "{}", outputCol: str = "relevant",
                 filterRows: bool = False, scoreCol: str = "ce_score", categoryCol: str = "",
                 targetRetention: float = 0.95, minPositives: int = 50) -> None:
        super().__init__()
        self._setDefault(threshold=0.5, categoryThresholds="{}", outputCol="relevant", filterRows=False,
                         **self._defaults)
        self._set(**self._input_kwargs)

    def setFilterRows(self, value: bool) -> "ThresholdModel":
        """Drop the rows below their threshold (the filter stage of a recommendation pipeline) instead of marking
        them."""
        return self._set(filterRows=value)

    def thresholds(self) -> dict[str, float]:
        """Per-category thresholds (categories absent use :meth:`getThreshold`)."""
        return {str(k): float(v) for k, v in json.loads(self.getOrDefault(self.categoryThresholds)).items()}

    def getThreshold(self) -> float:
        """The global threshold."""
        return float(self.getOrDefault(self.threshold))

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.sql import functions as F

        g = self.getOrDefault
        sc, cat = g(self.scoreCol), g(self.categoryCol)
        if sc not in dataset.columns:
            raise SchemaError(f"ThresholdModel: input lacks the score column {sc!r}; found {dataset.columns}")
        t = F.lit(self.getThreshold())
        per = self.thresholds()
        if cat and per and cat in dataset.columns:
            mapping = F.create_map(*[x for k, v in sorted(per.items()) for x in (F.lit(k), F.lit(v))])
            t = F.coalesce(mapping[F.col(cat)], t)
        keep = F.col(sc).isNotNull() & (F.col(sc) >= t)
        if g(self.filterRows):
            return dataset.where(keep)
        return dataset.withColumn(g(self.outputCol), keep)
