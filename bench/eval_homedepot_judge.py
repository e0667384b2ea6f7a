"""The fine-tuned judge on real data: SmolLM2-135M (LoRA) fine-tuned on Home Depot's human ratings, against the
general SmolLM2 judge, on held-out items.

Loads the file into a fresh lakehouse under ``.cache/eval-homedepot/<result>`` (``jobs/load_homedepot.py``) and runs
the ``train_judge`` job (:func:`kpspark.workflows.run_train_judge`): the judge trains on a sample of the human-rated
pairs of the training items and is compared with the general judge on pairs of the held-out items (the offline
evaluation's 20% item fold), both with the same prompt. κ and accuracy at P(yes) >= 0.5 (the labeling threshold),
pooled AUC, the share called relevant. Writes ``bench/results/homedepot_judge.json``; exits 0 with a message when
the data is absent. About 6 minutes per 2,000 training pairs and 2 minutes per 400 held-out pairs on 2 cores.

    python bench/eval_homedepot_judge.py [--train-pairs 2000] [--eval-pairs 400] [--epochs 1] [--lr 1e-3]
        [--lora-layers 0] [--prompt v2] [--result homedepot_judge.json]
"""
from __future__ import annotations

import argparse
import sys
import time

from _common import REPO, bench_cfg, homedepot_absent, homedepot_data, homedepot_work, machine_info, write_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="", help="default: .cache/eval-homedepot/<result name>")
    ap.add_argument("--train-pairs", type=int, default=2000)
    ap.add_argument("--eval-pairs", type=int, default=400)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lora-layers", type=int, default=0)
    ap.add_argument("--prompt", default="v2")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--result", default="homedepot_judge.json", help="file name under bench/results")
    args = ap.parse_args()
    if homedepot_absent():
        return 0
    import torch

    from kpspark import workflows
    from kpspark.session import get_spark

    work = homedepot_work(args.work, args.result)
    cfg = bench_cfg(work, args.cores, [
        f"llm.prompt_version={args.prompt}", f"judge.max_pairs={args.train_pairs}",
        f"judge.eval_pairs={args.eval_pairs}", f"judge.epochs={args.epochs}", f"judge.lr={args.lr}",
        f"judge.lora_layers={args.lora_layers}"])
    spark = get_spark(cfg, app_name="kpspark-eval-homedepot-judge")
    torch.set_num_threads(args.cores)  # the judge trains on the driver
    t0 = time.time()
    loaded = workflows.run_load_homedepot(cfg, spark)
    out = workflows.run_train_judge(cfg, spark)
    keep = ("train_pairs", "eval_pairs", "train_positive_rate", "steps", "first_loss", "last_loss", "train_seconds")
    write_result(REPO / "bench" / "results" / args.result, {
        "data": homedepot_data(),
        "labels_written": loaded["labels_written"],
        "judge": {"base": cfg.judge.base, "prompt": args.prompt, "epochs": args.epochs, "lr": args.lr,
                  "lora_r": cfg.judge.lora_r, "lora_layers": args.lora_layers, "batch_size": cfg.judge.batch_size,
                  **{k: out[k] for k in keep}},
        "evaluated_on": "pairs of the held-out items (the evaluation's 20% item fold); label = P(yes) >= 0.5",
        "rows": {v: {k: round(out[f"{v}_{k}"], 4) for k in ("kappa", "accuracy", "auc", "auc_within_keyphrase",
                                                        "auc_within_item", "yes_rate")}
                 for v in ("general", "finetuned")},
        "paper_kappa": {"general": 0.258, "finetuned": 0.724, "model": "Mixtral 8x7B"}, "target_kappa": 0.30,
        "seconds": round(time.time() - t0, 1), "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
