"""The fine-tuned judge: a causal LM taught the yes/no answer on human labels (the paper's second judge variant).

The paper's general LLM judge agrees with humans at κ 0.258 and its judge fine-tuned on human labels at 0.724; on a
CPU the packaged SmolLM2-135M as a general judge answers "no" to nearly everything. :func:`train_judge` trains LoRA
adapters (``peft``) on the top ``lora_layers`` decoder layers with a binary cross-entropy on the judge's own score
— ``log P(yes) - log P(no)`` of the next token after the prompt (:func:`~kpspark.labeling.backends.hf.yes_no_margin`),
so P(yes) keeps its meaning and every backend reads it the same way. The prompt is the labeling job's template
(its text is recorded in the export: a judge labels with the template it learned).

The export is small — the adapter (a few MB) and ``kpspark_model.json`` (kind ``judge``, the base model and a
fingerprint of its weights, the template, the metrics) — and the ``transformers`` backend loads it over the base
model every node already has (the ``llm`` extra). Pure core: pandas in, a folder and metrics out; no Spark.

Examples
--------
>>> from kpspark.config import JudgeConfig
>>> metrics = train_judge(train_pdf, val_pdf, "out/judge", JudgeConfig(max_pairs=500), load_template("v2"))  # doctest: +SKIP
>>> metrics["finetuned_kappa"] > metrics["general_kappa"]                                                     # doctest: +SKIP
True
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kpspark.errors import require

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from kpspark.config import JudgeConfig
    from kpspark.labeling.prompts import PromptTemplate

logger = logging.getLogger(__name__)
ADAPTER_DIR = "adapter"
NEED = ("keyphrase", "title", "label")


def _prompts(tokenizer: Any, pdf: "pd.DataFrame", template: "PromptTemplate") -> list[str]:
    from kpspark.labeling.backends.hf import chat_text
    from kpspark.labeling.prompts import render

    cats = pdf["category"] if "category" in pdf else [None] * len(pdf)
    return [chat_text(tokenizer, render(template, kp, cat if isinstance(cat, str) else None, title))
            for kp, cat, title in zip(pdf["keyphrase"], cats, pdf["title"])]


def p_yes(model: Any, tokenizer: Any, texts: list[str], yes: list[int], no: list[int], batch_size: int = 16,
          progress: Callable[[int], None] | None = None) -> list[float]:
    """P(yes) of each prompt text, as the ``transformers`` backend computes it (batches sorted by length)."""
    import torch

    from kpspark.labeling.backends.hf import next_token_logits, yes_no_margin

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = [math.nan] * len(texts)
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            for i, p in zip(idx, torch.sigmoid(yes_no_margin(next_token_logits(model, enc), yes, no)).tolist()):
                out[i] = float(p)
            if progress:
                progress(len(idx))
    return out


def judge_metrics(pairs: "pd.DataFrame", scores: list[float], threshold: float = 0.5) -> dict[str, float]:
    """Against the human ``label`` of ``pairs``: κ and accuracy of ``p_yes >= threshold``, the AUC of P(yes) pooled
    and within a keyphrase / an item (groups with both classes; :func:`~kpspark.evaluation.metrics.frame_aucs`), and
    the share of pairs called relevant (a judge that says "no" to everything has κ 0 and a low share)."""
    import numpy as np

    from kpspark.evaluation import metrics

    y = pairs["label"].to_numpy(dtype=int)
    s = np.asarray(scores, dtype=float)
    pred = (s >= threshold).astype(int)
    return {"kappa": metrics.cohen_kappa(y, pred), "accuracy": metrics.accuracy(y, pred),
            **metrics.frame_aucs(pairs.assign(label=y), "label", s, "auc"),
            "yes_rate": float(pred.mean()) if len(pred) else math.nan}


def train_judge(train: "pd.DataFrame", val: "pd.DataFrame", out: str | Path, cfg: "JudgeConfig",
                template: "PromptTemplate", threshold: float = 0.5,
                clicked: "pd.DataFrame | None" = None) -> dict[str, Any]:
    """Fine-tune ``cfg.base`` on ``train`` (columns keyphrase, title, label 0/1, optional category), compare the
    general and the fine-tuned judge on ``val`` (human-rated pairs of held-out items) and on ``clicked`` (clicked
    pairs of held-out items, when given), write the export to ``out``. Returns metrics: ``general_*`` /
    ``finetuned_*`` (kappa, accuracy, auc, yes_rate vs human; click_concordance: the share of clicked pairs called
    relevant, the paper's second agreement figure), losses, pairs and seconds."""
    torch = require("torch", "llm")
    peft = require("peft", "llm")
    transformers = require("transformers", "llm")
    from kpspark.artifacts import file_digests
    from kpspark.labeling.backends.hf import (JUDGE_KIND, base_digest, load_causal_lm, next_token_logits,
                                              yes_no_ids, yes_no_margin)
    from kpspark.labeling.prompts import render

    for name, df in (("training", train), ("held-out", val)):
        missing = [c for c in NEED if c not in df.columns]
        if missing:
            raise ValueError(f"judge {name} pairs lack {missing}; found {list(df.columns)}")
    if len(train) == 0 or train["label"].nunique() < 2:
        raise ValueError(f"the judge needs human-labeled training pairs of both classes; got {len(train)} pairs "
                         f"with labels {sorted(train['label'].unique().tolist())}")
    transformers.set_seed(cfg.seed)  # type: ignore[attr-defined]
    t0 = time.time()
    tokenizer, model, model_id = load_causal_lm(cfg.base)
    yes, no = yes_no_ids(tokenizer)
    if not yes or not no:
        raise ValueError(f"{model_id}: no Yes/No tokens in the vocabulary")
    texts, vtexts = _prompts(tokenizer, train, template), _prompts(tokenizer, val, template)
    y = torch.tensor(train["label"].astype(float).to_numpy(), dtype=torch.float32)  # type: ignore[attr-defined]
    ctexts = _prompts(tokenizer, clicked, template) if clicked is not None else []
    out_m: dict[str, Any] = {"base": cfg.base, "train_pairs": len(train), "eval_pairs": len(val),
                             "eval_clicked_pairs": len(ctexts), "train_positive_rate": float(y.mean())}

    def compare(name: str) -> None:  # the judge as it is now, on the held-out pairs
        if len(val):
            scores = p_yes(model, tokenizer, vtexts, yes, no, cfg.batch_size)
            out_m.update({f"{name}_{k}": v for k, v in judge_metrics(val, scores, threshold).items()})
        if ctexts:
            scores = p_yes(model, tokenizer, ctexts, yes, no, cfg.batch_size)
            out_m[f"{name}_click_concordance"] = sum(p >= threshold for p in scores) / len(scores)

    compare("general")

    n_layers = int(model.config.num_hidden_layers)
    layers = list(range(max(0, n_layers - cfg.lora_layers), n_layers)) if cfg.lora_layers > 0 else None
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,  # type: ignore[attr-defined]
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"], layers_to_transform=layers)
    model = peft.get_peft_model(model, lora)  # type: ignore[attr-defined]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)  # type: ignore[attr-defined]
    bs = max(1, cfg.batch_size)
    steps_per_epoch = math.ceil(len(texts) / bs)
    total = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    sched = transformers.get_linear_schedule_with_warmup(opt, max(1, total // 10), total)  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(cfg.seed)  # type: ignore[attr-defined]
    model.train()
    losses: list[float] = []
    step, t_train = 0, time.time()
    while step < total:
        perm = torch.randperm(len(texts), generator=gen).tolist()  # type: ignore[attr-defined]
        for s in range(0, len(perm), bs):
            if step >= total:
                break
            idx = perm[s:s + bs]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):  # type: ignore[attr-defined]
                logits = next_token_logits(model, enc)
            margin = yes_no_margin(logits.float(), yes, no)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(margin, y[idx])  # type: ignore[attr-defined]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)  # type: ignore[attr-defined]
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
            if step % 10 == 0 or step == total:
                rate = step * bs / max(1e-9, time.time() - t_train)
                logger.info("judge fine-tuning: step %d/%d, loss %.4f (mean of last 10), %.1f pairs/s, ETA %.0fs",
                            step, total, sum(losses[-10:]) / len(losses[-10:]), rate, (total - step) * bs / rate)
    q = max(1, total // 4)  # the mean loss of the first and the last quarter of the steps
    out_m.update({"train_seconds": round(time.time() - t_train, 1), "steps": total,
                  "first_loss": round(sum(losses[:q]) / q, 4), "last_loss": round(sum(losses[-q:]) / q, 4)})
    compare("finetuned")

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(d / ADAPTER_DIR))
    adapter_files = sorted(str(p.relative_to(d)) for p in (d / ADAPTER_DIR).iterdir() if p.is_file())
    example = render(template, "cordless drill", "Power Tools", "DeWalt 20V MAX Cordless Drill Driver Kit")
    meta = {"kind": JUDGE_KIND, "base": cfg.base, "base_model_id": model_id, "base_digest": base_digest(cfg.base),
            "files": {"adapter": ADAPTER_DIR}, "sha256": file_digests(d, adapter_files),
            "prompt_version": template.version, "prompt_system": template.system, "prompt_user": template.user,
            "example_prompt": example, "threshold": threshold,
            "training": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "metrics": {k: v for k, v in out_m.items() if isinstance(v, (int, float, str))}}
    from kpspark.artifacts import META_FILE

    (d / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    out_m["seconds"] = round(time.time() - t0, 1)
    return out_m


def check_template(meta: dict[str, Any], template: "PromptTemplate", model: str) -> None:
    """A fine-tuned judge labels with the template it was trained on: ValueError naming both otherwise."""
    if (meta.get("prompt_system", ""), meta.get("prompt_user", "")) != (template.system, template.user):
        raise ValueError(f"{model} was fine-tuned on prompt {meta.get('prompt_version')!r}, and this job's prompt is "
                         f"{template.version!r} (another text): set llm.prompt_version: {meta.get('prompt_version')} "
                         "(and no llm.prompt_path), or fine-tune the judge on this prompt")
