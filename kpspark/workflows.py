"""Workflows: the one function each job and notebook calls.

Each takes a :class:`~kpspark.config.Config` and a SparkSession and returns a small dict of what
it did (row counts, versions, run ids), so jobs stay ~30 lines and notebooks call the same code.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from kpspark.config import Config

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

#: sample tables in write order; items/keyphrases are MERGEd (their Change Data Feed stays meaningful)
SAMPLE_TABLES = ("items", "keyphrases", "pairs", "ground_truth", "search_relevance", "clicks", "human_labels")
_MERGED = ("items", "keyphrases")


def run_generate_sample(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Generate the synthetic sample marketplace (``cfg.sample``) and write its Delta tables.

    Returns ``{"tables": {name: WriteReport-as-dict}, "seconds": ...}``. Re-running with the same
    config leaves every table with the same rows.
    """
    from kpspark.data import tables
    from kpspark.sample import generate

    t0 = time.time()
    frames = generate(spark, cfg.sample.size, cfg.sample.seed, cache=True)
    reports = {}
    for name in SAMPLE_TABLES:
        if name in _MERGED:
            rep = tables.upsert(spark, cfg, name, frames[name])
        else:
            rep = tables.write_table(spark, cfg, name, frames[name], mode="overwrite")
        if not rep.balanced:  # pragma: no cover - accounting is by construction; guard anyway
            raise RuntimeError(f"row accounting broke for {name}: {rep}")
        reports[name] = rep
    frames["signals"].unpersist()
    return {"tables": {k: {f: v for f, v in vars(r).items() if f != "metrics"} for k, r in reports.items()},
            "seconds": round(time.time() - t0, 1)}


def run_baseline(cfg: Config, spark: "SparkSession", alias: str | None = None) -> dict[str, Any]:
    """Score the human-labelled pairs with the Jaccard baseline, log an MLflow run with its metrics
    (AUC, kappa and accuracy at the best-F1 threshold, against human labels and ground truth),
    and register the model under ``cfg.models.baseline`` with ``alias`` (default: the serving alias)."""
    from kpspark.data import tables
    from kpspark.evaluation import metrics
    from kpspark.evaluation.baselines import jaccard_scores
    from kpspark.registry import models, tracking
    from kpspark.registry.pyfunc import log_jaccard_model
    from kpspark.rules import keyphrase_texts

    items = tables.read_table(spark, cfg, "items").select("item_id", "title")
    kps = keyphrase_texts(tables.read_table(spark, cfg, "keyphrases"))
    human = tables.read_table(spark, cfg, "human_labels").select("item_id", "keyphrase_id", "label")
    truth = tables.read_table(spark, cfg, "ground_truth").select("item_id", "keyphrase_id", "relevant")
    pdf = (human.join(truth, ["item_id", "keyphrase_id"], "left").join(items, "item_id").join(kps, "keyphrase_id")
           .toPandas())
    out: dict[str, Any] = {"pairs": len(pdf)}
    with tracking.start_run(cfg, "baseline-jaccard", spark=spark, tables=SAMPLE_TABLES,
                            tags={"kind": "baseline"}) as run:
        scores = jaccard_scores(pdf["keyphrase"], pdf["title"]) if len(pdf) else []
        if len(pdf):
            thr, f1 = metrics.best_f1_threshold(pdf["label"], scores)
            pred = (scores >= thr).astype(int)
            out.update({
                "baseline_auc_human": metrics.roc_auc(pdf["label"], scores),
                "baseline_kappa_human": metrics.cohen_kappa(pdf["label"], pred),
                "baseline_accuracy_human": metrics.accuracy(pdf["label"], pred),
                "baseline_auc_truth": metrics.roc_auc(pdf["relevant"], scores),
                "baseline_f1_human": f1, "baseline_threshold": thr,
            })
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in out.items() if k != "pairs"} | {"baseline_pairs": len(pdf)})
        info = log_jaccard_model()
        version = models.register(cfg, info.model_uri, cfg.models.baseline, alias=alias or cfg.models.serving_alias,
                                  tags={"kind": "baseline", "run_id": run.info.run_id})
        out.update({"run_id": run.info.run_id, "model": cfg.models.baseline, "version": version,
                    "model_uri": models.model_uri(cfg.models.baseline, alias or cfg.models.serving_alias)})
    return out


def run_label_pairs(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Label pending pairs with the configured LLM judge (``cfg.llm``) into ``llm_labels``, then log
    the judge agreement report (kappa/accuracy vs humans, click concordance) as an MLflow run."""
    from kpspark.labeling import workflow

    if cfg.llm.backend == "fake":
        raise ValueError("llm.backend=fake is for unit tests only; use transformers, openai or vllm")
    out = workflow.run_label_pairs(cfg, spark)
    # a judge fine-tuned on human labels is measured on the items it did not train on
    out["agreement"] = workflow.judge_agreement(spark, cfg, out["judge_model"], out["prompt_version"],
                                                held_out=workflow.is_finetuned(out["judge_model"]))
    return out


def run_train_judge(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Fine-tune the LLM judge (``judge.base``, LoRA) on the human labels of training items, compare it with the
    general judge on held-out items (κ, AUC), register it as ``models.judge``; ``llm.model: finetuned`` then
    labels with it."""
    from kpspark.labeling import workflow

    return workflow.run_train_judge(cfg, spark)


def run_load_homedepot(cfg: Config, spark: "SparkSession", path: str | None = None) -> dict[str, Any]:
    """Load the Home Depot relevance data (``../shared/data/homedepot/train.csv.zip`` by default)
    into items / keyphrases / human_labels / pairs, accounting for every file row."""
    from kpspark.data import loaders

    frames = loaders.read_homedepot(spark, path or loaders.HOMEDEPOT_SHARED)
    return loaders.load_to_tables(spark, cfg, frames)


def run_load(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Your own data into the lakehouse: each source of the ``load`` section with a path (rated pairs, items,
    keyphrases, clicks, search relevance; files or tables, columns mapped by name), every row written or
    quarantined with its reason."""
    from kpspark.data import loaders

    return loaders.load_sources(spark, cfg)


def run_train_cross_encoder(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Train ``cross_encoder.recipe``, export with parity, log, register as the candidate alias; the
    first model of a name is also made the serving alias (nothing to compare it with yet)."""
    from kpspark.crossencoder.workflow import run_train_cross_encoder as train

    return train(cfg, spark)


def run_score_pairs(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Score the ``pairs`` table with ``models:/<cross_encoder>@<serving alias>`` into ``pair_scores``."""
    from kpspark.crossencoder.workflow import run_score_pairs as score

    return score(cfg, spark)


def run_train_bi_encoder(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Train ``bi_encoder.recipe`` (multi-task, Matryoshka), export with parity, evaluate recall@k per
    dim, log, register as the candidate alias (the first version of a name also as the serving alias)."""
    from kpspark.biencoder.workflow import run_train_bi_encoder as train

    return train(cfg, spark)


def run_bi_encoder_ablation(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Train click / click+search / click+search+distill and log the recall-per-dim table."""
    from kpspark.biencoder.workflow import run_bi_encoder_ablation as ablation

    out = ablation(cfg, spark)
    return {"run_id": out["run_id"], "table": out["table"],
            "versions": {r["recipe"]: r["version"] for r in out["results"]}}


def run_embed(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Embed items and keyphrases with ``models:/<bi_encoder>@<serving alias>`` into the embeddings tables."""
    from kpspark.biencoder.workflow import run_embed as embed

    return embed(cfg, spark)


def run_recommend(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Full batch: de-duplicate keyphrases, build the sharded index, run embed -> retrieve -> score ->
    filter over every item and overwrite ``recommendations`` (prints a few items)."""
    from kpspark.retrieval.workflow import run_recommend as recommend

    return recommend(cfg, spark, show=3)


def run_full_batch(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Every item -> ``recommendations`` (atomic overwrite, champion models from the registry) and the
    processed table versions into ``pipeline_state`` (the daily diff's starting point)."""
    from kpspark.production.diff import run_full_batch as full

    return full(cfg, spark, show=3)


def run_daily_diff(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Only what changed in ``items`` / ``keyphrases`` since the last run (Delta Change Data Feed), MERGEd
    into ``recommendations`` in one commit; then the processed versions advance."""
    from kpspark.production.diff import run_daily_diff as diff

    return diff(cfg, spark)


def run_streaming(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """Near-real-time: item create/revise/delete events from ``items``' Change Data Feed -> the same
    pipeline -> an idempotent MERGE into ``recommendations`` per micro-batch (``streaming.trigger``:
    ``availableNow`` drains and returns, ``processingTime`` runs until stopped)."""
    from kpspark.production.streaming import run_streaming as stream

    return stream(cfg, spark)


def run_calibrate_evaluate(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """The offline evaluation report (the paper's Table 1 for every recipe, agreement, debiasing,
    retrieval, plots; HTML under ``evaluation.output_dir`` and in MLflow), then the promotion gate:
    ``challenger`` replaces ``champion`` only if no gate metric regresses."""
    from kpspark.crossencoder.workflow import train_missing_recipes
    from kpspark.evaluation.report import run_evaluate, run_gate

    skipped = train_missing_recipes(cfg, spark) if cfg.evaluation.train_missing else {}
    out = run_evaluate(cfg, spark, skipped=skipped)
    out["gate"] = run_gate(cfg, spark, promote=True)
    return out


def run_demo(cfg: Config, spark: "SparkSession") -> dict[str, Any]:
    """The end-to-end demo on the sample marketplace: generate the lakehouse, register the Jaccard
    baseline, fine-tune the LLM judge on the human labels of training items (when ``llm.model: finetuned``, as
    in ``conf/local.yaml``), label a sample of pairs with the LLM teacher and report
    its agreement, train + export + register the cross-encoder, score the candidate pairs with it,
    train the multi-task bi-encoder student on clicks + search + the cross-encoder's scores, embed
    items and keyphrases, recommend keyphrases per item (de-duplicate, ANN, CE filter) and write the
    offline evaluation report. Returns what each step did."""
    steps: list[tuple[str, Any]] = [
        ("sample", run_generate_sample), ("baseline", run_baseline),
        *([("judge", run_train_judge)] if cfg.llm.model == "finetuned" else []), ("labels", run_label_pairs),
        ("cross_encoder", run_train_cross_encoder), ("scores", run_score_pairs),
        ("bi_encoder", run_train_bi_encoder), ("embeddings", run_embed),
        ("recommendations", run_full_batch),  # also the daily diff's starting point
        *([("evaluation", run_calibrate_evaluate)] if cfg.evaluation.recipes else [])]
    out: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for i, (name, step) in enumerate(steps, 1):
        logger.info("demo step %d/%d: %s", i, len(steps), name)
        t0 = time.time()
        out[name] = step(cfg, spark)
        seconds[name] = round(time.time() - t0, 1)
        logger.info("demo step %d/%d: %s done in %.1fs", i, len(steps), name, seconds[name])
    out["step_seconds"] = seconds
    return out
