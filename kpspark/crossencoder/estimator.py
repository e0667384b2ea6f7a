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

from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.config import CrossEncoderTraining
from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
from kpspark.params import TrainingParams, TrainingSummary, hyperparams_mixin, set_params

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)


class CrossEncoderEstimator(Estimator, TrainingParams, hyperparams_mixin(CrossEncoderTraining),  # type: ignore[misc]
                            DefaultParamsReadable, DefaultParamsWritable):
    """Train and export a 2-layer cross-encoder (see the module doc). Params: ``outputDir``, ``logToRun``,
    ``validationFraction``, ``seed`` and one per field of :class:`~kpspark.config.CrossEncoderTraining`
    (``init``, ``maxLength``, ``epochs``, ``lr``, ...), with its defaults."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self._training_defaults()
        self._setDefault(**self.hyperparam_defaults())
        set_params(self, params)

    def setParams(self, **params: Any) -> "CrossEncoderEstimator":
        """Set several params at once."""
        return set_params(self, params)

    def split(self, dataset: "DataFrame") -> tuple[Any, Any]:
        """(train, validation) pandas frames, split by a hash of ``item_id``."""
        from kpspark.sparkutil import split_by_item

        return split_by_item("CrossEncoderEstimator", dataset, ["item_id", "keyphrase", "category", "title", "label"],
                             ("keyphrase_id", "p_yes"), self.getOrDefault(self.validationFraction),
                             self.getOrDefault(self.seed))

    def _fit(self, dataset: "DataFrame") -> OnnxCrossEncoderModel:
        from kpspark.crossencoder.export import export_with_parity
        from kpspark.crossencoder.text import pair_texts
        from kpspark.crossencoder.train import train_cross_encoder
        from kpspark.registry.tracking import shareable_export

        g = self.getOrDefault
        if not g(self.outputDir):
            raise ValueError("CrossEncoderEstimator: outputDir is not set")
        train, val = self.split(dataset)
        cfg = self.hyperparams()
        out = Path(g(self.outputDir))
        res = train_cross_encoder(train, val, out, cfg, seed=g(self.seed))
        a, b = pair_texts(val["keyphrase"], val["category"], val["title"])
        export_dir, parity = export_with_parity(res["model_dir"], out / "export", a, b, cfg.max_length,
                                               positives=(val["label"] == 1).to_numpy(), quantization=cfg.quantization)
        uri, tracking = shareable_export(str(export_dir)) if g(self.logToRun) else (str(export_dir), "")
        model = OnnxCrossEncoderModel(modelUri=uri, trackingUri=tracking)
        model.summary = TrainingSummary(  # type: ignore[attr-defined]
            export_dir=str(export_dir), figures=res, parity=parity.__dict__, train_rows=len(train), validation=val)
        return model
