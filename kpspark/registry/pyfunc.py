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

            from kpspark.artifacts import META_FILE, find_export_dir, model_file
            from kpspark.crossencoder.onnx_scorer import OnnxPairScorer

            d = find_export_dir(context.artifacts["export"])
            meta = json.loads((d / META_FILE).read_text())
            precision = (context.model_config or {}).get("precision", "int8")
            self.scorer = OnnxPairScorer(model_file(d, meta, precision), d, int(meta["max_length"]), threads=0)

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


def bi_encoder_pyfunc_class() -> type:
    """The pyfunc class of an exported bi-encoder (ONNX + tokenizer + max length + Matryoshka dims)."""
    base = _python_model_base()

    class BiEncoderPyfunc(base):  # type: ignore[misc, valid-type]
        """Input column ``text`` (and optional ``category``: the text is then an item title and is
        embedded as ``title [SEP] category``); output: a float32 array (rows, dim), each row
        L2-normalized and truncated to the ``dim`` param (0 = full). Blank texts give a NaN row."""

        def load_context(self, context: Any) -> None:
            import json

            from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder
            from kpspark.artifacts import META_FILE, find_export_dir, model_file

            d = find_export_dir(context.artifacts["export"])
            meta = json.loads((d / META_FILE).read_text())
            precision = (context.model_config or {}).get("precision", "int8")
            self.embedder = OnnxTextEmbedder(model_file(d, meta, precision), d, int(meta["max_length"]), threads=0)

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
            from kpspark.biencoder.text import item_texts

            if "text" not in model_input.columns:
                raise ValueError(f"bi-encoder input lacks column 'text'; found {list(model_input.columns)}")
            dim = int((params or {}).get("dim", 0) or 0)
            text = model_input["text"]
            cat = model_input["category"] if "category" in model_input else None
            import numpy as np

            ok = (text.fillna("").astype(str).str.strip().str.len() > 0).to_numpy()
            width = min(dim, self.embedder.dimension) if dim else self.embedder.dimension
            out = np.full((len(text), width), np.nan, dtype="float32")
            if ok.any():
                out[ok] = self.embedder.embed(item_texts(text[ok], None if cat is None else cat[ok]), dim or None)
            return out

    return BiEncoderPyfunc


def log_bi_encoder(export_dir: str, artifact_path: str = "model", precision: str = "int8") -> Any:
    """Log a bi-encoder export folder as a pyfunc (signature with a ``dim`` param, input example)."""
    pyfunc = require("mlflow.pyfunc", "mlflow")
    from mlflow.models import ModelSignature
    import numpy as np
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    example = pd.DataFrame({"text": ["OtterBox Defender Case for iPhone 11 Red"], "category": ["Cell Phones"]})
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "category", required=False)]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, -1), "embedding")]),
        params=ParamSchema([ParamSpec("dim", "long", 0)]))
    return pyfunc.log_model(name=artifact_path, python_model=bi_encoder_pyfunc_class()(),  # type: ignore[attr-defined]
                            artifacts={"export": export_dir}, signature=signature, input_example=example,
                            model_config={"precision": precision},
                            pip_requirements=["onnxruntime", "tokenizers", "pandas<3", "numpy"])


def judge_pyfunc_class() -> type:
    """The pyfunc class of a fine-tuned judge export (:mod:`kpspark.labeling.finetune`)."""
    base = _python_model_base()

    class JudgePyfunc(base):  # type: ignore[misc, valid-type]
        """Input columns ``keyphrase, category, title``; output: P(yes) of the fine-tuned judge, with the prompt
        it was trained on (NaN for a blank keyphrase or title)."""

        def load_context(self, context: Any) -> None:
            from kpspark.artifacts import find_export_dir
            from kpspark.labeling.backends.hf import TransformersBackend, finetuned_export
            from kpspark.labeling.prompts import PromptTemplate

            d = str(find_export_dir(context.artifacts["export"]))
            meta = finetuned_export(d)[1]  # type: ignore[index]
            self.template = PromptTemplate(meta["prompt_version"], meta["prompt_system"], meta["prompt_user"])
            self.backend = TransformersBackend(model=d)

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
            import numpy as np

            from kpspark.labeling.backends import PairPrompt
            from kpspark.labeling.backends.base import DEFAULT_BATCH
            from kpspark.labeling.prompts import render

            missing = {"keyphrase", "title"} - set(model_input.columns)
            if missing:
                raise ValueError(f"judge input lacks column(s) {sorted(missing)}")
            cat = model_input["category"] if "category" in model_input else pd.Series([None] * len(model_input))
            out = np.full(len(model_input), np.nan)
            todo = [(i, PairPrompt(k, c, t, render(self.template, k, c, t)))
                    for i, (k, c, t) in enumerate(zip(model_input["keyphrase"], cat, model_input["title"]))
                    if str(k or "").strip() and str(t or "").strip()]
            step = DEFAULT_BATCH["transformers"]
            for s in range(0, len(todo), step):
                chunk = todo[s:s + step]
                for (i, _), r in zip(chunk, self.backend.judge([p for _, p in chunk])):
                    out[i] = np.nan if r.p_yes is None else r.p_yes
            return pd.Series(out, name="p_yes")

    return JudgePyfunc


def log_judge(export_dir: str, artifact_path: str = "model") -> Any:
    """Log a fine-tuned judge export as a pyfunc (the adapter and its metadata as artifacts; the base model comes
    from the ``llm`` extra where it loads)."""
    pyfunc = require("mlflow.pyfunc", "mlflow")
    from mlflow.models import infer_signature

    example = pd.DataFrame({"keyphrase": ["cordless drill"], "category": ["Power Tools"],
                            "title": ["DeWalt 20V MAX Cordless Drill Driver Kit"]})
    signature = infer_signature(example, pd.Series([0.5], name="p_yes"))
    return pyfunc.log_model(name=artifact_path, python_model=judge_pyfunc_class()(),  # type: ignore[attr-defined]
                            artifacts={"export": export_dir}, signature=signature,
                            pip_requirements=["torch", "transformers", "peft", "gguf", "pandas<3", "numpy"])
