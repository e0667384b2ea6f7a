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
