"""``CrossEncoderEstimator``: labelled pairs -> trained, exported, parity-checked cross-encoder.

Input columns: ``keyphrase, category, title, label`` (0/1; ``p_yes`` too with ``softLabels``) and
``item_id`` (the validation split is by item, so no item is in both splits). ``fit`` collects the
training rows to the driver (the model trains on one machine; the sample sizes of the paper's
recipes fit), trains with sentence-transformers' trainer, exports ONNX fp32 + int8 to
``outputDir`` with the parity check, and returns an :class:`OnnxCrossEncoderModel` that every node can load:
with an active MLflow run (and ``logToRun``, the default) the export is logged to the run and the model
points at ``runs:/<run id>/export``; otherwise at the folder, which on a cluster must be shared storage.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.crossencoder.scorer import OnnxCrossEncoderModel

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)


class CrossEncoderEstimator(Estimator, DefaultParamsReadable, DefaultParamsWritable):
    """Train and export a 2-layer cross-encoder (see the module doc)."""

    outputDir: Param[str] = Param(Params._dummy(), "outputDir", "folder for checkpoints and the export",
                                  TypeConverters.toString)
    init: Param[str] = Param(Params._dummy(), "init", "minilm2 or bert-tiny", TypeConverters.toString)
    maxLength: Param[int] = Param(Params._dummy(), "maxLength", "max tokens per pair", TypeConverters.toInt)
    epochs: Param[float] = Param(Params._dummy(), "epochs", "training epochs", TypeConverters.toFloat)
    learningRate: Param[float] = Param(Params._dummy(), "learningRate", "peak learning rate", TypeConverters.toFloat)
    batchSize: Param[int] = Param(Params._dummy(), "batchSize", "training batch size", TypeConverters.toInt)
    evalSteps: Param[int] = Param(Params._dummy(), "evalSteps", "validate every n steps", TypeConverters.toInt)
    patience: Param[int] = Param(Params._dummy(), "patience", "early-stopping patience (evaluations)",
                                 TypeConverters.toInt)
    softLabels: Param[bool] = Param(Params._dummy(), "softLabels", "train on p_yes instead of 0/1",
                                    TypeConverters.toBoolean)
    validationFraction: Param[float] = Param(Params._dummy(), "validationFraction", "share of items held out",
                                             TypeConverters.toFloat)
    seed: Param[int] = Param(Params._dummy(), "seed", "random seed", TypeConverters.toInt)
    logToRun: Param[bool] = Param(Params._dummy(), "logToRun", "log the export to the active MLflow run, so the "
                                  "fitted model loads on every node (runs:/<id>/export)", TypeConverters.toBoolean)

    @keyword_only
    def __init__(self, *, outputDir: str = "", init: str = "bert-tiny", maxLength: int = 64, epochs: float = 8.0,
                 learningRate: float = 1e-3, batchSize: int = 64, evalSteps: int = 100, patience: int = 3,
                 softLabels: bool = False, validationFraction: float = 0.2, seed: int = 42,
                 logToRun: bool = True) -> None:
        super().__init__()
        self._setDefault(outputDir="", init="bert-tiny", maxLength=64, epochs=8.0, learningRate=1e-3, batchSize=64,
                         evalSteps=100, patience=3, softLabels=False, validationFraction=0.2, seed=42,
                         logToRun=True)
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, outputDir: str = "", init: str = "bert-tiny", maxLength: int = 64, epochs: float = 8.0,
                  learningRate: float = 1e-3, batchSize: int = 64, evalSteps: int = 100, patience: int = 3,
                  softLabels: bool = False, validationFraction: float = 0.2, seed: int = 42,
                  logToRun: bool = True) -> "CrossEncoderEstimator":
        """Set several params at once."""
        return self._set(**self._input_kwargs)

    def split(self, dataset: "DataFrame") -> tuple[Any, Any]:
        """(train, validation) pandas frames, split by a hash of ``item_id``."""
        from kpspark.sparkutil import split_by_item

        return split_by_item("CrossEncoderEstimator", dataset, ["item_id", "keyphrase", "category", "title", "label"],
                             ("keyphrase_id", "p_yes"), self.getOrDefault(self.validationFraction),
                             self.getOrDefault(self.seed))

    def _fit(self, dataset: "DataFrame") -> OnnxCrossEncoderModel:
        from kpspark.crossencoder.export import export_with_parity
        from kpspark.crossencoder.text import pair_texts
        from kpspark.crossencoder.train import TrainConfig, train_cross_encoder
        from kpspark.registry.tracking import shareable_export

        g = self.getOrDefault
        if not g(self.outputDir):
            raise ValueError("CrossEncoderEstimator: outputDir is not set")
        train, val = self.split(dataset)
        cfg = TrainConfig(init=g(self.init), max_length=g(self.maxLength), epochs=g(self.epochs),
                          lr=g(self.learningRate), batch_size=g(self.batchSize), eval_steps=g(self.evalSteps),
                          patience=g(self.patience), soft_labels=g(self.softLabels), seed=g(self.seed))
        out = Path(g(self.outputDir))
        res = train_cross_encoder(train, val, out, cfg)
        a, b = pair_texts(val["keyphrase"], val["category"], val["title"])
        export_dir, parity = export_with_parity(res["model_dir"], out / "export", a, b, cfg.max_length)
        uri, tracking = shareable_export(str(export_dir)) if g(self.logToRun) else (str(export_dir), "")
        model = OnnxCrossEncoderModel(modelUri=uri, trackingUri=tracking)
        model.export_dir = str(export_dir)  # type: ignore[attr-defined]
        model.training_summary = {**res, "train_rows": len(train), "validation_rows": len(val),  # type: ignore[attr-defined]
                                  "parity": parity.__dict__}
        return model
