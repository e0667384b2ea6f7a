"""``LLMJudge``: a pyspark.ml Transformer that labels (title, category, keyphrase) rows with an LLM.

============  ========  ===========================================================
column        type      meaning
============  ========  ===========================================================
p_yes         double    P(yes) from the yes/no answer log-probabilities, normalised
                        over the yes/no mass; null when the judge could not score
label         int       1 when ``p_yes >= threshold``, 0 below, null without p_yes
raw           string    what the model said (first token), for audit
judge_model   string    the model that judged
prompt_version string   the prompt template version
error         string    null, or why this row has no score (it is retried next run)
============  ========  ===========================================================

Inference runs in ``mapInPandas`` over the session's task slots, in micro-batches of ``batchSize`` (0 = the
backend's default: 256 for vLLM); the backend loads once per executor Python process, on the GPU Spark
assigned to the task when GPUs are scheduled. A backend that cannot load fails the job with a clear error;
a call that fails marks its rows' ``error``. The prompt template's text travels in the ``promptText``
param, never as a path an executor would have to read. ``_transform`` is lazy. Null/empty fields are
judged as they are (an empty title gets ``error`` without calling the model).

Examples
--------
>>> judge = LLMJudge(backend="fake", keyphraseCol="kp")          # doctest: +SKIP
>>> judge.transform(df).select("kp", "p_yes", "label").show()    # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Iterator

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from kpspark.secrets import read_secret
from kpspark.sparkutil import check_input_cols
from kpspark.labeling.backends import BACKENDS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)
OUTPUT_COLS = ("p_yes", "label", "raw", "judge_model", "prompt_version", "error")


def _to_backend(value: Any) -> str:
    v = TypeConverters.toString(value)
    if v not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {v!r}")
    return v


def _to_json_object(value: Any) -> str:
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    v = TypeConverters.toString(value)
    parsed = json.loads(v or "{}")
    if not isinstance(parsed, dict):
        raise TypeError(f"backendOptions must be a JSON object, got {v!r}")
    secret_like = [k for k in parsed if "key" in k.lower() and not k.lower().endswith(("_env", "_secret"))]
    if secret_like:
        raise ValueError(f"backendOptions must not hold secrets ({secret_like}); pass api_key_env, the *name* of "
                         "the environment variable that holds the key, or api_key_secret ('<scope>/<key>' of a "
                         "Databricks secret scope)")
    return json.dumps(parsed, sort_keys=True)


class LLMJudge(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Label item/keyphrase pairs with P(yes) from an LLM judge (see the module doc for columns)."""

    titleCol: Param[str] = Param(Params._dummy(), "titleCol", "item title column", TypeConverters.toString)
    categoryCol: Param[str] = Param(Params._dummy(), "categoryCol", "item category column ('' for none)",
                                    TypeConverters.toString)
    keyphraseCol: Param[str] = Param(Params._dummy(), "keyphraseCol", "keyphrase text column", TypeConverters.toString)
    backend: Param[str] = Param(Params._dummy(), "backend", f"judge backend, one of {list(BACKENDS)}", _to_backend)
    model: Param[str] = Param(Params._dummy(), "model", "model name/path for the backend", TypeConverters.toString)
    promptVersion: Param[str] = Param(Params._dummy(), "promptVersion", "prompt template version",
                                      TypeConverters.toString)
    promptPath: Param[str] = Param(Params._dummy(), "promptPath", "optional template file overriding the packaged "
                                   "one (read on the driver; its text reaches the executors in promptText)",
                                   TypeConverters.toString)
    promptText: Param[str] = Param(Params._dummy(), "promptText", "the template's text ('' = the packaged template "
                                   "of promptVersion, or promptPath's file)", TypeConverters.toString)
    minPartitions: Param[int] = Param(Params._dummy(), "minPartitions", "judge tasks (0 = the session's task slots, "
                                      "-1 = the input's partitions)", TypeConverters.toInt)
    threshold: Param[float] = Param(Params._dummy(), "threshold", "label = p_yes >= threshold", TypeConverters.toFloat)
    batchSize: Param[int] = Param(Params._dummy(), "batchSize", "pairs per backend call (0 = the backend's "
                                  "default)", TypeConverters.toInt)
    backendOptions: Param[str] = Param(Params._dummy(), "backendOptions",
                                       "JSON object of backend options (never secrets: use api_key_env)",
                                       _to_json_object)

    @keyword_only
    def __init__(self, *, titleCol: str = "title", categoryCol: str = "category", keyphraseCol: str = "keyphrase",
                 backend: str = "transformers", model: str = "smollm2", promptVersion: str = "v1",
                 promptPath: str = "", promptText: str = "", threshold: float = 0.5, batchSize: int = 0,
                 backendOptions: str = "{}", minPartitions: int = 0) -> None:
        super().__init__()
        self._setDefault(titleCol="title", categoryCol="category", keyphraseCol="keyphrase", backend="transformers",
                         model="smollm2", promptVersion="v1", promptPath="", promptText="", threshold=0.5,
                         batchSize=0, backendOptions="{}", minPartitions=0)
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, titleCol: str = "title", categoryCol: str = "category", keyphraseCol: str = "keyphrase",
                  backend: str = "transformers", model: str = "smollm2", promptVersion: str = "v1",
                  promptPath: str = "", promptText: str = "", threshold: float = 0.5, batchSize: int = 0,
                  backendOptions: str = "{}", minPartitions: int = 0) -> "LLMJudge":
        """Set several params at once."""
        return self._set(**self._input_kwargs)

    def setBackend(self, value: str) -> "LLMJudge":
        """Set the backend (one of ``vllm``, ``openai``, ``transformers``, ``fake``)."""
        return self._set(backend=value)

    def setModel(self, value: str) -> "LLMJudge":
        """Set the model name or path."""
        return self._set(model=value)

    def setThreshold(self, value: float) -> "LLMJudge":
        """Set the label threshold on p_yes."""
        return self._set(threshold=value)

    def setBatchSize(self, value: int) -> "LLMJudge":
        """Set pairs per backend call."""
        return self._set(batchSize=value)

    def judgeModelName(self) -> str:
        """The ``judge_model`` value rows get: ``<backend>:<model>``."""
        return f"{self.getOrDefault(self.backend)}:{self.getOrDefault(self.model)}"

    def template(self) -> Any:
        """The :class:`~kpspark.labeling.prompts.PromptTemplate` this judge renders (read on the driver)."""
        from kpspark.labeling.prompts import load_template, parse_template

        g = self.getOrDefault
        if g(self.promptText):
            return parse_template(g(self.promptText), g(self.promptVersion))
        return load_template(g(self.promptVersion), g(self.promptPath) or None)

    def effectiveBatchSize(self) -> int:
        """``batchSize``, or the backend's default when it is 0."""
        from kpspark.labeling.backends.base import DEFAULT_BATCH

        return int(self.getOrDefault(self.batchSize)) or DEFAULT_BATCH[self.getOrDefault(self.backend)]

    def _transform(self, dataset: "DataFrame") -> "DataFrame":
        from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

        from kpspark.sparkutil import ensure_parallelism

        g = self.getOrDefault
        cols = {"title": g(self.titleCol), "category": g(self.categoryCol), "keyphrase": g(self.keyphraseCol)}
        check_input_cols("LLMJudge", dataset, cols, outputs=OUTPUT_COLS, optional=["category"])
        template = self.template()  # a bad version or a missing file fails here, on the driver
        out_schema = StructType(list(dataset.schema.fields) + [
            StructField("p_yes", DoubleType()), StructField("label", IntegerType()), StructField("raw", StringType()),
            StructField("judge_model", StringType()), StructField("prompt_version", StringType()),
            StructField("error", StringType())])
        ref = json.loads(g(self.backendOptions)).get("api_key_secret")
        api_key = read_secret(ref, dataset.sparkSession) if ref else None  # on the driver; to tasks in the closure
        fn = make_judge_fn(g(self.backend), g(self.model), g(self.backendOptions), template.version,
                           template.system, template.user, float(g(self.threshold)), self.effectiveBatchSize(),
                           cols["title"], cols["category"], cols["keyphrase"], self.judgeModelName(), api_key)
        # one task per slot: a work list after a sort + limit is one partition, which one core would judge
        return ensure_parallelism(dataset, g(self.minPartitions)).mapInPandas(fn, out_schema)


def bind_gpu() -> str | None:
    """Point this Python worker at the GPU(s) Spark assigned to its task (``spark.task.resource.gpu.amount``):
    sets ``CUDA_VISIBLE_DEVICES`` from ``TaskContext.resources()`` before an engine loads. With one GPU per
    task, an executor runs one GPU task at a time, so it starts one engine per GPU, not one per core. Returns
    the addresses, or None without GPU resources (CPU, or a cluster that does not schedule GPUs)."""
    import os

    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpu = (ctx.resources() if ctx is not None else {}).get("gpu")
    if gpu is None or not gpu.addresses:
        return None
    addresses = ",".join(gpu.addresses)
    os.environ["CUDA_VISIBLE_DEVICES"] = addresses
    return addresses


def make_judge_fn(backend: str, model: str, options_json: str, prompt_version: str, system: str, user: str,
                  threshold: float, batch_size: int, title_col: str, category_col: str, keyphrase_col: str,
                  judge_model: str, api_key: str | None = None) -> Any:
    """The ``mapInPandas`` function; closes over plain values only (the template's text, not a path) and
    loads the backend on the executor. A backend that cannot load fails the task (and so the job) with a
    clear error; one failing call marks its rows' ``error`` and the task goes on."""

    def judge_batches(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        from kpspark.errors import KPSparkError
        from kpspark.labeling.backends import PairPrompt, get_cached_backend
        from kpspark.labeling.prompts import PromptTemplate, render

        template = PromptTemplate(prompt_version, system, user)
        be = None
        done, t0 = 0, time.time()
        for pdf in batches:
            n = len(pdf)
            p_yes: list[float | None] = [None] * n
            raw: list[str | None] = [None] * n
            err: list[str | None] = [None] * n
            todo = []
            for i in range(n):
                title = pdf[title_col].iat[i]
                kp = pdf[keyphrase_col].iat[i]
                cat = pdf[category_col].iat[i] if category_col else None
                if title is None or not str(title).strip():
                    err[i] = "empty title"
                elif kp is None or not str(kp).strip():
                    err[i] = "empty keyphrase"
                else:
                    todo.append((i, PairPrompt(kp, cat, title, render(template, kp, cat, title))))
            if todo and be is None:
                bind_gpu()
                try:
                    be = get_cached_backend(backend, model, options_json, api_key)
                except Exception as e:
                    raise KPSparkError(f"LLM judge: the {backend} backend cannot load {model!r}: "
                                       f"{type(e).__name__}: {e}") from e
            for s in range(0, len(todo), batch_size):
                chunk = todo[s:s + batch_size]
                try:
                    results = be.judge([p for _, p in chunk])  # type: ignore[union-attr]
                except Exception as e:  # a failing call marks the rows (retried next run); the task goes on
                    logger.warning("judge batch failed: %s", e)
                    for i, _ in chunk:
                        err[i] = f"{type(e).__name__}: {e}"[:500]
                    continue
                for (i, _), r in zip(chunk, results):
                    p_yes[i], raw[i], err[i] = r.p_yes, r.raw, r.error
            done += n
            rate = done / max(1e-9, time.time() - t0)
            logger.info("judged %d pairs in this task (%.1f pairs/s)", done, rate)
            out = pdf.copy()
            out["p_yes"] = p_yes
            out["label"] = [None if p is None else int(p >= threshold) for p in p_yes]
            out["raw"] = raw
            out["judge_model"] = judge_model
            out["prompt_version"] = prompt_version
            out["error"] = err
            out["label"] = out["label"].astype("Int32")
            out["p_yes"] = out["p_yes"].astype("float64")
            yield out

    return judge_batches
