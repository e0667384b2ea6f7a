"""``RelevanceFilter``: keep candidate rows whose relevance score reaches the threshold.

The threshold comes from the calibration step (the score that keeps a target share of clicks) or
from ``retrieval.threshold``; rows with a null score (nothing to judge) are dropped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.errors import SchemaError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


class RelevanceFilter(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Keep rows with ``inputCol >= threshold``."""

    inputCol: Param[str] = Param(Params._dummy(), "inputCol", "score column", TypeConverters.toString)
    threshold: Param[float] = Param(Params._dummy(), "threshold", "minimum score kept", TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, inputCol: str = "ce_score", threshold: float = 0.5) -> None:
        super().__init__()
        self._setDefault(inputCol="ce_score", threshold=0.5)
        self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> "RelevanceFilter":
        """Set the minimum score kept."""
        return self._set(threshold=value)

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.sql import functions as F

        c = self.getOrDefault(self.inputCol)
        if c not in dataset.columns:
            raise SchemaError(f"RelevanceFilter: input lacks the score column {c!r}; found {dataset.columns}")
        return dataset.where(F.col(c).isNotNull() & (F.col(c) >= F.lit(self.getOrDefault(self.threshold))))
