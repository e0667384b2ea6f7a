"""The Spark shell shared by the ONNX inference stages (``OnnxCrossEncoderModel``, ``TextEmbedder``): their common
Params (model URI, precision, batching, threads, partitions, tracking URI), the alias pinned on the driver, and one
way to run a model over a DataFrame (a non-deterministic pandas UDF over rows spread across the task slots)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pyspark.ml.param import Param, Params, TypeConverters

from kpspark.sparkutil import ensure_parallelism

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

PRECISIONS = ("int8", "fp32")


def _to_precision(v: Any) -> str:
    s = TypeConverters.toString(v)
    if s not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {s!r}")
    return s


class OnnxStageParams(Params):
    """Params shared by the ONNX inference stages (cross-encoder scorer, text embedder)."""

    modelUri: Param[str] = Param(Params._dummy(), "modelUri", "models:/name@alias, runs:/..., or an export folder",
                                 TypeConverters.toString)
    precision: Param[str] = Param(Params._dummy(), "precision", "int8 or fp32", _to_precision)
    batchSize: Param[int] = Param(Params._dummy(), "batchSize", "rows per ONNX call (length-sorted)",
                                  TypeConverters.toInt)
    threads: Param[int] = Param(Params._dummy(), "threads", "ONNX Runtime threads per Python worker",
                                TypeConverters.toInt)
    minPartitions: Param[int] = Param(Params._dummy(), "minPartitions", "repartition inputs with fewer partitions "
                                      "(0 = default parallelism, -1 = never)", TypeConverters.toInt)
    registryUri: Param[str] = Param(Params._dummy(), "registryUri", "MLflow registry URI for executors, when it "
                                    "is not the tracking URI (databricks-uc; '' = the driver's)",
                                    TypeConverters.toString)
    trackingUri: Param[str] = Param(Params._dummy(), "trackingUri", "MLflow tracking/registry URI for executors "
                                    "('' = MLFLOW_TRACKING_URI)", TypeConverters.toString)

    def setModelUri(self, value: str) -> Any:
        """Set the model URI or folder."""
        return self._set(modelUri=value)

    def setPrecision(self, value: str) -> Any:
        """Set ``int8`` or ``fp32``."""
        return self._set(precision=value)

    def setBatchSize(self, value: int) -> Any:
        """Set rows per ONNX call."""
        return self._set(batchSize=value)

    def resolvedModelUri(self) -> str:
        """``modelUri`` with a registry alias pinned to its current version."""
        from kpspark.registry.models import pin_alias

        return pin_alias(self.getOrDefault(self.modelUri), self._stores_for_executors()[1])

    def _run_model(self, dataset: "DataFrame", fn: Callable[..., Any], return_type: Any, *cols: "Column") -> "DataFrame":
        """``dataset`` with ``outputCol`` = ``fn`` over ``cols`` (lazy). Non-deterministic, so the optimizer never
        copies the call into a pushed-down filter (int8 outputs depend on batch-mates: a copy would run the model
        twice and filter on other numbers than it outputs); rows spread over the task slots first."""
        from pyspark.sql.functions import pandas_udf

        udf = pandas_udf(fn, return_type).asNondeterministic()  # type: ignore[call-overload]
        dataset = ensure_parallelism(dataset, self.getOrDefault(self.minPartitions))
        return dataset.withColumn(self.getOrDefault("outputCol"), udf(*cols))

    def _category(self) -> "Column":
        from pyspark.sql import functions as F

        c = self.getOrDefault("categoryCol")
        return F.col(c) if c else F.lit(None).cast("string")

    def _check_model_uri(self) -> None:
        if not self.getOrDefault(self.modelUri):
            raise ValueError(f"{type(self).__name__}: modelUri is not set")

    def _stores_for_executors(self) -> tuple[str, str]:
        """(tracking URI, registry URI) the executors use: the Params, else the driver's (the registry defaults
        to the tracking URI, as in MLflow)."""
        import mlflow

        tracking = self.getOrDefault(self.trackingUri)
        registry = self.getOrDefault(self.registryUri) or tracking or mlflow.get_registry_uri()
        return tracking or mlflow.get_tracking_uri(), registry
