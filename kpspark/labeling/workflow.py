"""The incremental, resumable labeling job and the judge agreement report.

``run_label_pairs``: candidate pairs (``pairs`` ⋈ ``items`` ⋈ ``keyphrases``) minus those already
labeled without error by the same judge model and prompt version, sampled by a strategy, judged
in chunks, each chunk MERGEd into ``llm_labels`` in its own Delta commit. A crash loses at most
the chunk in flight; a rerun labels only the rest. Rows the judge could not score keep their
``error`` and count as pending, so the next run retries them; none are dropped.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpspark.config import Config
from kpspark.errors import KPSparkError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from kpspark.labeling.judge import LLMJudge

logger = logging.getLogger(__name__)
STRATEGIES = ("uniform", "stratified", "human", "all")
ERROR_RATE_MIN_ROWS = 100  # rows judged before llm.max_error_rate can stop a run before its last chunk


def build_judge(cfg: Config) -> "LLMJudge":
    """An :class:`LLMJudge` configured from ``cfg.llm``."""
    import json

    from kpspark.labeling.judge import LLMJudge

    from kpspark.labeling.prompts import load_template

    # the template's text goes into the stage (read here, on the driver): no executor reads prompt_path
    text = ""
    if cfg.llm.prompt_path:
        load_template(cfg.llm.prompt_version, cfg.llm.prompt_path)  # a clear error for a missing/bad file
        text = Path(cfg.llm.prompt_path).read_text(encoding="utf-8")
    model, options = judge_model_uri(cfg), dict(cfg.llm.options)
    if cfg.llm.backend == "transformers":
        from kpspark.artifacts import is_artifact_uri
        from kpspark.labeling.backends.hf import finetuned_export
        from kpspark.labeling.finetune import check_template
        from kpspark.registry import tracking

        if is_artifact_uri(model):  # the executors download the judge from the tracking server, as the driver does
            options.setdefault("tracking_uri", tracking.tracking_uri(cfg))
            options.setdefault("registry_uri", tracking.registry_uri(cfg))
        export = finetuned_export(model, options.get("tracking_uri"), options.get("registry_uri"))
        if export is not None:
            check_template(export[1], load_template(cfg.llm.prompt_version, cfg.llm.prompt_path or None), model)
    return LLMJudge(backend=cfg.llm.backend, model=model, promptVersion=cfg.llm.prompt_version,
                    promptText=text, threshold=cfg.llm.threshold, batchSize=cfg.batch.llm,
                    backendOptions=json.dumps(options), keyphraseCol="keyphrase")


def judge_model_uri(cfg: Config) -> str:
    """``llm.model``, with ``finetuned`` resolved to the fine-tuned judge's registered version at the serving
    alias (``models:/<models.judge>/<version>``: labels name the version that made them, not a moving alias)."""
    if cfg.llm.model != "finetuned":
        return cfg.llm.model
    from kpspark.registry import models, tracking

    uri = models.model_uri(cfg.models.judge, cfg.models.serving_alias)
    tracking.configure(cfg)
    try:
        return models.pin_alias(uri, tracking.registry_uri(cfg))
    except Exception as e:  # noqa: BLE001 (MLflow raises its own types)
        raise KPSparkError(f"llm.model=finetuned: no fine-tuned judge at {uri} ({type(e).__name__}: "
                           f"{str(e)[:200]}); train one first: kpspark train-judge") from e


def is_finetuned(judge_model: str) -> bool:
    """Whether labels of ``judge_model`` (``<backend>:<model>``) come from a fine-tuned judge export (the transformers
    backend over a model URI or an export folder) rather than a general model."""
    from kpspark.artifacts import META_FILE, is_artifact_uri

    backend, _, model = judge_model.partition(":")
    return backend == "transformers" and (is_artifact_uri(model) or (Path(model) / META_FILE).exists())


def judge_training_pairs(spark: "SparkSession", cfg: Config
                         ) -> tuple["pd.DataFrame", "pd.DataFrame", "pd.DataFrame"]:
    """(training, held-out, held-out clicked) pairs for the judge, as pandas: human-labeled pairs of training items
    (at most ``judge.max_pairs``), human-labeled pairs of the evaluation's held-out items (at most
    ``judge.eval_pairs``), click positives of held-out items (as many; none without a click log); each a
    deterministic sample by pair hash."""
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.rules import keyphrase_texts
    from kpspark.sparkutil import validation_items

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    human = tables.read_table(spark, cfg, "human_labels").select("item_id", "keyphrase_id", "label")
    rated = (human.where(F.col("label").isNotNull()).dropDuplicates(["item_id", "keyphrase_id"])
             .join(items, "item_id").join(kps, "keyphrase_id"))
    order = F.xxhash64("item_id", "keyphrase_id", F.lit(cfg.judge.seed))
    held_out = validation_items(seed=cfg.sample.seed)

    def take(df: "DataFrame", n: int) -> "pd.DataFrame":
        return (df.orderBy(order).limit(n) if n > 0 else df).toPandas()

    clicked = None
    if tables.exists(spark, cfg, "clicks"):
        from kpspark.rules import click_positives

        clicked = (click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive)
                   .select("item_id", "keyphrase_id").join(items, "item_id").join(kps, "keyphrase_id"))
    return (take(rated.where(~held_out), cfg.judge.max_pairs), take(rated.where(held_out), cfg.judge.eval_pairs),
            take(clicked.where(held_out), cfg.judge.eval_pairs) if clicked is not None else None)


def run_train_judge(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Fine-tune ``judge.base`` on the human labels of training items with ``llm.prompt_version``'s prompt, compare
    it with the general judge on held-out items (κ, accuracy, AUC, yes-rate: MLflow metrics ``general_*`` and
    ``finetuned_*``), log the export as a pyfunc and register it as ``models.judge`` (the candidate alias; the
    first version is also the serving alias that ``llm.model: finetuned`` labels with)."""
    import mlflow

    from kpspark.labeling.finetune import train_judge
    from kpspark.labeling.prompts import load_template
    from kpspark.registry import models, tracking
    from kpspark.registry.pyfunc import log_judge
    from kpspark.sparkutil import scratch_dir

    train, val, clicked = judge_training_pairs(spark, cfg)
    logger.info("fine-tuning the judge %s on %d human-labeled pairs of training items (%d rated and %d clicked "
                "held-out pairs to compare on)", cfg.judge.base, len(train), len(val),
                0 if clicked is None else len(clicked))
    template = load_template(cfg.llm.prompt_version, cfg.llm.prompt_path or None)
    with tracking.start_run(cfg, "train-judge", spark=spark, tables=["human_labels", "items", "keyphrases"],
                            tags={"kind": "judge", "base": cfg.judge.base,
                                  "prompt_version": template.version}) as run:
        out = scratch_dir("kpspark-judge-")
        try:
            metrics = train_judge(train, val, out, cfg.judge, template, cfg.llm.threshold, clicked)
            mlflow.log_params({f"judge.{k}": v for k, v in cfg.to_dict()["judge"].items()}
                              | {"llm.prompt_version": template.version})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not math.isnan(float(v))})
            info = log_judge(str(out))
        finally:
            _rmtree(str(out))
        version, moved = models.register_candidate(cfg, info.model_uri, cfg.models.judge,
                                                   tags={"kind": "judge", "run_id": run.info.run_id})
    return {**metrics, "run_id": run.info.run_id, "model": cfg.models.judge, "version": version,
            "aliases": [cfg.models.candidate_alias, *([moved] if moved else [])],
            "model_uri": models.model_uri(cfg.models.judge, cfg.models.serving_alias)}


def candidate_pairs(spark: "SparkSession", cfg: Config) -> "DataFrame":
    """item_id, keyphrase_id, title, category, keyphrase for every row of ``pairs``."""
    from kpspark.data import tables
    from kpspark.rules import keyphrase_texts

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    pairs = tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id").dropDuplicates()
    return pairs.join(items, "item_id").join(kps, "keyphrase_id")


def pending_pairs(spark: "SparkSession", cfg: Config, judge_model: str, prompt_version: str) -> "DataFrame":
    """Candidates without an error-free label from this judge model and prompt version."""
    from pyspark.sql import functions as F

    from kpspark.data import tables

    done = (tables.read_table(spark, cfg, "llm_labels")
            .where((F.col("judge_model") == judge_model) & (F.col("prompt_version") == prompt_version)
                   & F.col("error").isNull())
            .select("item_id", "keyphrase_id"))
    return candidate_pairs(spark, cfg).join(done, ["item_id", "keyphrase_id"], "left_anti")


def sample_pairs(spark: "SparkSession", cfg: Config, df: "DataFrame", strategy: str, n: int, seed: int) -> "DataFrame":
    """Deterministic sample of ``n`` rows (``n <= 0``: all) by ``strategy``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from kpspark.data import tables

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    order = F.xxhash64("item_id", "keyphrase_id", F.lit(seed))
    if strategy == "human":
        human = tables.read_table(spark, cfg, "human_labels").select("item_id", "keyphrase_id").dropDuplicates()
        df = df.join(human, ["item_id", "keyphrase_id"], "left_semi")
    if strategy == "all" or n <= 0:
        return df
    if strategy == "stratified":
        n_cat = max(1, df.select("category").distinct().count())
        per = math.ceil(n / n_cat)
        w = Window.partitionBy("category").orderBy(order)
        return df.withColumn("_rn", F.row_number().over(w)).where(F.col("_rn") <= per).drop("_rn") \
            .orderBy(order).limit(n)
    return df.orderBy(order).limit(n)


def run_label_pairs(cfg: Config, spark: "SparkSession", stop_after_chunks: int | None = None) -> dict[str, Any]:
    """Label pending pairs into ``llm_labels``; returns counts, errors and throughput.

    ``stop_after_chunks`` ends the run early (a stand-in for a crash in tests and for time-boxed runs).
    """
    judge = build_judge(cfg)
    judge_model, version = judge.judgeModelName(), cfg.llm.prompt_version
    todo = sample_pairs(spark, cfg, pending_pairs(spark, cfg, judge_model, version), cfg.llm.strategy,
                        cfg.llm.sample_size, cfg.sample.seed)
    work = _work_list(spark, cfg, todo)  # frozen (chunks must not re-sample) and partitioned by chunk
    try:
        return _label_chunks(spark, cfg, judge, work, stop_after_chunks)
    finally:
        _rmtree(work[0])


def _work_list(spark: "SparkSession", cfg: Config, todo: "DataFrame") -> tuple[str, int, int]:
    """Write the pending pairs once, partitioned by chunk, next to the tables (shared storage): each chunk
    then reads only its own folder instead of rescanning the whole list. Returns (path, pairs, chunks)."""
    from pyspark.sql import functions as F

    from kpspark.data.tables import lakehouse_root
    from kpspark.sparkutil import task_slots

    path = f"{lakehouse_root(cfg)}/_work/labeling-{uuid.uuid4().hex[:12]}"
    todo.write.mode("overwrite").parquet(path + "/all")  # the sample is computed exactly once
    listed = spark.read.parquet(path + "/all")
    total = listed.count()
    n_chunks = max(1, math.ceil(total / max(1, cfg.llm.chunk_pairs)))
    (listed.withColumn("_chunk", F.pmod(F.xxhash64("item_id", "keyphrase_id"), F.lit(n_chunks)))
     .repartition(task_slots(spark), "_chunk").write.mode("overwrite").partitionBy("_chunk").parquet(path + "/chunks"))
    _rmtree(path + "/all")
    return path, total, n_chunks


def _rmtree(path: str) -> None:
    local = path.removeprefix("file:")
    if "://" in local:  # object storage: the folder is small and named by run; left for a lifecycle rule
        logger.info("labeling work list left at %s", path)
        return
    shutil.rmtree(local, ignore_errors=True)


def _label_chunks(spark: "SparkSession", cfg: Config, judge: "LLMJudge", work: tuple[str, int, int],
                  stop_after_chunks: int | None) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.data.schemas import LLM_LABELS
    from kpspark.sparkutil import freeze

    path, total, n_chunks = work
    judge_model, version = judge.judgeModelName(), cfg.llm.prompt_version
    logger.info("labeling %d pending pairs with %s (prompt %s) in %d chunk(s)", total, judge_model, version, n_chunks)
    written = errors = 0
    t0 = time.time()
    for c in range(n_chunks if total else 0):
        if stop_after_chunks is not None and c >= stop_after_chunks:
            break
        chunk = spark.read.parquet(path + "/chunks").where(F.col("_chunk") == c).drop("_chunk")
        labeled = judge.transform(chunk)
        # run the judge exactly once per chunk: the write below reads the rows more than once
        rows = labeled.select(*[F.col(x) for x in LLM_LABELS.columns if x != "labeled_at"],
                              F.current_timestamp().alias("labeled_at"))
        rows = freeze(rows)
        rep = tables.upsert(spark, cfg, "llm_labels", rows)
        written += rep.rows_written
        errors += int(rows.where(F.col("error").isNotNull()).count())
        rows.unpersist()
        elapsed = time.time() - t0
        rate = written / max(elapsed, 1e-9)
        eta = (total - written) / rate if rate > 0 else float("nan")
        logger.info("chunk %d/%d: %d labeled so far, %.2f pairs/s, ETA %.0fs", c + 1, n_chunks, written, rate, eta)
        # judged on enough rows (a first chunk may hold just the retried failures), and always at the end
        enough = written >= min(total, ERROR_RATE_MIN_ROWS) or c == n_chunks - 1
        if written and enough and errors / written > cfg.llm.max_error_rate:
            raise KPSparkError(
                f"LLM labeling: {errors} of {written} judged rows have an error ({errors / written:.0%} > "
                f"llm.max_error_rate={cfg.llm.max_error_rate}); stopping. The rows are in llm_labels with their "
                "error and are retried by the next run; see the error column for why (endpoint down, refused "
                "calls, a model without yes/no logprobs)")
    return {"judge_model": judge_model, "prompt_version": version, "pending": total, "labeled": written,
            "errors": errors, "chunks": n_chunks, "seconds": round(time.time() - t0, 1),
            "pairs_per_s": round(written / max(time.time() - t0, 1e-9), 2)}


def judge_agreement(spark: "SparkSession", cfg: Config, judge_model: str, prompt_version: str,
                    log: bool = True, held_out: bool = False) -> dict[str, Any]:
    """Cohen's kappa and accuracy against human labels, and concordance with click positives (the
    share of clicked pairs the judge calls relevant; the paper reports 90% for its general judge).
    ``held_out``: on the evaluation's held-out items only (a judge fine-tuned on the other items' human labels).
    Logged as an MLflow run when ``log``."""
    from pyspark.sql import functions as F

    from kpspark.data import tables
    from kpspark.evaluation import metrics
    from kpspark.rules import click_positives

    labels = (tables.read_table(spark, cfg, "llm_labels")
              .where((F.col("judge_model") == judge_model) & (F.col("prompt_version") == prompt_version)
                     & F.col("label").isNotNull())
              .select("item_id", "keyphrase_id", F.col("label").alias("llm"), "p_yes"))
    human = tables.read_table(spark, cfg, "human_labels").select("item_id", "keyphrase_id", F.col("label").alias("human"))
    clicks = click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive)
    if held_out:
        from kpspark.sparkutil import validation_items

        labels = labels.where(validation_items(seed=cfg.sample.seed))
    hp = labels.join(human, ["item_id", "keyphrase_id"]).toPandas()
    cp = labels.join(clicks, ["item_id", "keyphrase_id"]).toPandas()
    out: dict[str, Any] = {
        "judge_human_pairs": len(hp), "judge_click_pairs": len(cp),
        "judge_kappa_human": metrics.cohen_kappa(hp["human"], hp["llm"]) if len(hp) else float("nan"),
        "judge_accuracy_human": metrics.accuracy(hp["human"], hp["llm"]) if len(hp) else float("nan"),
        "judge_auc_human": metrics.roc_auc(hp["human"], hp["p_yes"]) if len(hp) else float("nan"),
        "judge_click_concordance": float(cp["llm"].mean()) if len(cp) else float("nan"),
        "judge_held_out_items_only": held_out,
    }
    if log:
        import mlflow

        from kpspark.registry import tracking

        with tracking.start_run(cfg, "judge-agreement", spark=spark, tables=["llm_labels", "human_labels", "clicks"],
                                tags={"kind": "judge_agreement", "judge_model": judge_model,
                                      "prompt_version": prompt_version}) as run:
            mlflow.log_metrics({k: float(v) for k, v in out.items() if not math.isnan(float(v))})
            out["run_id"] = run.info.run_id
    return out
