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

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.biencoder.embedder import TextEmbedder

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)
_DEFAULTS: dict[str, Any] = dict(outputDir="", init="minilm6", tasks=["click", "search", "distill"],
                                 taskWeights=[1.0, 1.0, 1.0], dims=[384, 256, 128, 64], maxLength=64, epochs=1.0,
                                 learningRate=5e-5, batchSize=32, sampler="round_robin", evalSteps=50, patience=3,
                                 validationFraction=0.2, seed=42, parityTexts=400, logToRun=True)


class BiEncoderEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable):
    """Train and export the bi-encoder student (see the module doc)."""

    outputDir: Param[str] = Param(Params._dummy(), "outputDir", "folder for checkpoints and the export",
                                  TypeConverters.toString)
    init: Param[str] = Param(Params._dummy(), "init", "minilm6 or minilm2", TypeConverters.toString)
    tasks: Param[list[str]] = Param(Params._dummy(), "tasks", "tasks to train: click, search, distill",
                                    TypeConverters.toListString)
    taskWeights: Param[list[float]] = Param(Params._dummy(), "taskWeights", "one weight per task, in tasks order",
                                            TypeConverters.toListFloat)
    dims: Param[list[int]] = Param(Params._dummy(), "dims", "Matryoshka dims", TypeConverters.toListInt)
    maxLength: Param[int] = Param(Params._dummy(), "maxLength", "max tokens per text", TypeConverters.toInt)
    epochs: Param[float] = Param(Params._dummy(), "epochs", "training epochs", TypeConverters.toFloat)
    learningRate: Param[float] = Param(Params._dummy(), "learningRate", "peak learning rate", TypeConverters.toFloat)
    batchSize: Param[int] = Param(Params._dummy(), "batchSize", "training batch size", TypeConverters.toInt)
    sampler: Param[str] = Param(Params._dummy(), "sampler", "round_robin or proportional", TypeConverters.toString)
    evalSteps: Param[int] = Param(Params._dummy(), "evalSteps", "validate every n steps", TypeConverters.toInt)
    patience: Param[int] = Param(Params._dummy(), "patience", "early-stopping patience (evaluations)",
                                 TypeConverters.toInt)
    validationFraction: Param[float] = Param(Params._dummy(), "validationFraction", "share of items held out",
                                             TypeConverters.toFloat)
    seed: Param[int] = Param(Params._dummy(), "seed", "random seed", TypeConverters.toInt)
    logToRun: Param[bool] = Param(Params._dummy(), "logToRun", "log the export to the active MLflow run, so the "
                                  "fitted model loads on every node (runs:/<id>/export)", TypeConverters.toBoolean)
    parityTexts: Param[int] = Param(Params._dummy(), "parityTexts", "validation texts used by the parity check",
                                    TypeConverters.toInt)

    @keyword_only
    def __init__(self, *, outputDir: str = "", init: str = "minilm6", tasks: list[str] | None = None,
                 taskWeights: list[float] | None = None, dims: list[int] | None = None, maxLength: int = 64,
                 epochs: float = 1.0, learningRate: float = 5e-5, batchSize: int = 32, sampler: str = "round_robin",
                 evalSteps: int = 50, patience: int = 3, validationFraction: float = 0.2, seed: int = 42,
                 parityTexts: int = 400, logToRun: bool = True) -> None:
        super().__init__()
        self._setDefault(**_DEFAULTS)
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    @keyword_only
    def setParams(self, *, outputDir: str = "", init: str = "minilm6", tasks: list[str] | None = None,
                  taskWeights: list[float] | None = None, dims: list[int] | None = None, maxLength: int = 64,
                  epochs: float = 1.0, learningRate: float = 5e-5, batchSize: int = 32, sampler: str = "round_robin",
                  evalSteps: int = 50, patience: int = 3, validationFraction: float = 0.2, seed: int = 42,
                  parityTexts: int = 400, logToRun: bool = True) -> "BiEncoderEstimator":
        """Set several params at once."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

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
        return BiTrainConfig(init=g(self.init), tasks=tuple(tasks), weights=dict(zip(tasks, weights)),
                             dims=tuple(g(self.dims)), max_length=g(self.maxLength), epochs=g(self.epochs),
                             lr=g(self.learningRate), batch_size=g(self.batchSize), sampler=g(self.sampler),
                             eval_steps=g(self.evalSteps), patience=g(self.patience), seed=g(self.seed))

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
        export_dir, parity = export_with_parity(res["model_dir"], out / "export", texts, cfg.max_length, cfg.dims)
        uri, tracking = shareable_export(str(export_dir)) if g(self.logToRun) else (str(export_dir), "")
        model = TextEmbedder(modelUri=uri, trackingUri=tracking, inputCol="title", categoryCol="category")
        model.export_dir = str(export_dir)  # type: ignore[attr-defined]
        model.training_summary = {**res, "validation_rows": len(val), "parity": parity.__dict__}  # type: ignore[attr-defined]
        return model
