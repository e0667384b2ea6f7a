"""``BiEncoderEstimator``: multi-task rows -> trained, exported, parity-checked bi-encoder.

Input columns: ``task`` (click | search | distill), ``item_id``, ``title``, ``category``,
``keyphrase`` and ``label`` (1.0 for click positives, 0/1 for search relevance, the
cross-encoder's score for distill). The validation split is by item. ``fit`` collects the rows to
the driver, trains with sentence-transformers' trainer (see :mod:`kpspark.biencoder.train`), exports
ONNX fp32 + per-channel int8 with the cosine parity check to ``outputDir/export`` and returns a
:class:`~kpspark.biencoder.embedder.TextEmbedder` (item side by default) that every node can load: with an
active MLflow run (and ``logToRun``, the default) on ``runs:/<run id>/export``, otherwise on the folder.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.biencoder.embedder import TextEmbedder
from kpspark.biencoder.text import TASKS
from kpspark.config import BiEncoderTraining
from kpspark.params import TrainingParams, TrainingSummary, hyperparams_mixin, set_params


if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)
class BiEncoderEstimator(Estimator, TrainingParams, hyperparams_mixin(BiEncoderTraining),  # type: ignore[misc]
                         DefaultParamsReadable, DefaultParamsWritable):
    """Train and export the bi-encoder student (see the module doc). Params: ``outputDir``, ``logToRun``,
    ``validationFraction``, ``seed``, ``tasks``, ``taskWeights``, ``parityTexts`` and one per field of
    :class:`~kpspark.config.BiEncoderTraining` (``init``, ``dims``, ``maxLength``, ``epochs``, ``lr``, ...)."""

    tasks: Param[list[str]] = Param(Params._dummy(), "tasks", "tasks to train: click, search, distill",
                                    TypeConverters.toListString)
    taskWeights: Param[list[float]] = Param(Params._dummy(), "taskWeights", "one weight per task, in tasks order",
                                            TypeConverters.toListFloat)
    parityTexts: Param[int] = Param(Params._dummy(), "parityTexts", "validation texts used by the parity check",
                                    TypeConverters.toInt)

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._training_defaults()
        self._setDefault(**self.hyperparam_defaults(), tasks=list(TASKS), taskWeights=[1.0] * len(TASKS),
                         parityTexts=400)
        set_params(self, {k: v for k, v in params.items() if v is not None})

    def setParams(self, **params: Any) -> "BiEncoderEstimator":
        """Set several params at once."""
        return set_params(self, {k: v for k, v in params.items() if v is not None})

    def split(self, dataset: "DataFrame") -> tuple[Any, Any]:
        """(train, validation) pandas frames, split by a hash of ``item_id``."""
        from kpspark.sparkutil import split_by_item

        need = ["task", "item_id", "title", "category", "keyphrase", "label"]
        return split_by_item("BiEncoderEstimator", dataset, need, ("keyphrase_id",),
                             self.getOrDefault(self.validationFraction), self.getOrDefault(self.seed))

    def train_config(self) -> Any:
        """The :class:`~kpspark.biencoder.train.BiTrainConfig` these params describe."""
        from kpspark.biencoder.train import BiTrainConfig

        g = self.getOrDefault
        tasks, weights = list(g(self.tasks)), list(g(self.taskWeights))
        if len(weights) != len(tasks):
            if self.isSet(self.taskWeights):
                raise ValueError(f"taskWeights {weights} must have one weight per task {tasks}")
            weights = [1.0] * len(tasks)
        return BiTrainConfig(**dataclasses.asdict(self.hyperparams()), tasks=tuple(tasks),
                             weights=dict(zip(tasks, weights)), seed=g(self.seed))

    def _fit(self, dataset: "DataFrame") -> TextEmbedder:
        from kpspark.biencoder.export import export_with_parity
        from kpspark.biencoder.text import item_texts, keyphrase_texts
        from kpspark.biencoder.train import train_bi_encoder
        from kpspark.registry.tracking import shareable_export

        g = self.getOrDefault
        if not g(self.outputDir):
            raise ValueError("BiEncoderEstimator: outputDir is not set")
        cfg = self.train_config()
        train, val = self.split(dataset)
        out = Path(g(self.outputDir))
        res = train_bi_encoder(train, val, out, cfg)
        ref = val if len(val) else train
        k = max(1, g(self.parityTexts) // 2)
        texts = list(dict.fromkeys(item_texts(ref["title"], ref["category"])))[:k] + \
            list(dict.fromkeys(keyphrase_texts(ref["keyphrase"])))[:k]
        export_dir, parity = export_with_parity(res["model_dir"], out / "export", texts, cfg.max_length, cfg.dims,
                                               quantization=cfg.quantization)
        uri, tracking = shareable_export(str(export_dir)) if g(self.logToRun) else (str(export_dir), "")
        model = TextEmbedder(modelUri=uri, trackingUri=tracking, inputCol="title", categoryCol="category")
        model.summary = TrainingSummary(  # type: ignore[attr-defined]
            export_dir=str(export_dir), figures=res, parity=parity.__dict__, train_rows=len(train), validation=val)
        return model
