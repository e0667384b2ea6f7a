"""MLflow pyfunc wrappers of kpspark models."""
from __future__ import annotations

from typing import Any

import pandas as pd

from kpspark.errors import require



def _python_model_base() -> type:
    return require("mlflow.pyfunc", "mlflow").PythonModel  # type: ignore[attr-defined, no-any-return]


def jaccard_pyfunc_class() -> type:
    """The pyfunc class of the Jaccard baseline (built lazily so ``import kpspark`` needs no MLflow)."""
    base = _python_model_base()

    class JaccardRelevanceModel(base):  # type: ignore[misc, valid-type]
        """Scores ``(keyphrase, title)`` rows with the Jaccard token overlap; input columns
        ``keyphrase`` and ``title`` (``category`` is accepted and ignored)."""

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
            from kpspark.evaluation.baselines import jaccard_scores

            missing = {"keyphrase", "title"} - set(model_input.columns)
            if missing:
                raise ValueError(f"JaccardRelevanceModel input lacks column(s) {sorted(missing)}")
            return pd.Series(jaccard_scores(model_input["keyphrase"], model_input["title"]), name="score")

    return JaccardRelevanceModel


def log_jaccard_model(artifact_path: str = "model") -> Any:
    """Log the Jaccard baseline as a pyfunc (with signature and input example) in the active run."""
    pyfunc = require("mlflow.pyfunc", "mlflow")
    from mlflow.models import infer_signature

    example = pd.DataFrame({"keyphrase": ["red iphone 11"], "category": ["Cell Phones"],
                            "title": ["Apple iPhone 11 64GB Red Unlocked"]})
    model = jaccard_pyfunc_class()()
    signature = infer_signature(example, model.predict(None, example))
    return pyfunc.log_model(name=artifact_path, python_model=model, signature=signature,  # type: ignore[attr-defined]
                            input_example=example, pip_requirements=["pandas<3", "numpy"],
                            code_paths=None)


def cross_encoder_pyfunc_class() -> type:
    """The pyfunc class of an exported cross-encoder (ONNX + tokenizer + max length + threshold)."""
    base = _python_model_base()

    class CrossEncoderPyfunc(base):  # type: ignore[misc, valid-type]
        """Input columns ``keyphrase, category, title``; output: relevance score in [0, 1]
        (null-free: empty keyphrase/title score NaN)."""

        def load_context(self, context: Any) -> None:
            import json

            from kpspark.crossencoder.export import META_FILE
            from kpspark.crossencoder.onnx_scorer import OnnxPairScorer
            from kpspark.crossencoder.scorer import find_export_dir

            d = find_export_dir(context.artifacts["export"])
            meta = json.loads((d / META_FILE).read_text())
            precision = (context.model_config or {}).get("precision", "int8")
            self.scorer = OnnxPairScorer(d / meta["files"][precision], d, int(meta["max_length"]), threads=0)

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
            import numpy as np

            from kpspark.crossencoder.text import pair_texts

            missing = {"keyphrase", "title"} - set(model_input.columns)
            if missing:
                raise ValueError(f"cross-encoder input lacks column(s) {sorted(missing)}")
            cat = model_input["category"] if "category" in model_input else pd.Series([None] * len(model_input))
            kp, title = model_input["keyphrase"], model_input["title"]
            ok = ((kp.fillna("").astype(str).str.strip().str.len() > 0)
                  & (title.fillna("").astype(str).str.strip().str.len() > 0)).to_numpy()
            out = np.full(len(model_input), np.nan)
            if ok.any():
                a, b = pair_texts(kp[ok], cat[ok], title[ok])
                out[ok] = self.scorer.scores(a, b)
            return pd.Series(out, name="score")

    return CrossEncoderPyfunc


def log_cross_encoder(export_dir: str, artifact_path: str = "model", precision: str = "int8") -> Any:
    """Log an export folder as a pyfunc (signature, input example, ONNX + tokenizer as artifacts)."""
    pyfunc = require("mlflow.pyfunc", "mlflow")
    from mlflow.models import infer_signature

    example = pd.DataFrame({"keyphrase": ["red iphone case"], "category": ["Cell Phones"],
                            "title": ["OtterBox Defender Case for iPhone 11 Red"]})
    signature = infer_signature(example, pd.Series([0.5], name="score"))
    return pyfunc.log_model(name=artifact_path, python_model=cross_encoder_pyfunc_class()(),  # type: ignore[attr-defined]
                            artifacts={"export": export_dir}, signature=signature, input_example=example,
                            model_config={"precision": precision},
                            pip_requirements=["onnxruntime", "tokenizers", "pandas<3", "numpy"])
