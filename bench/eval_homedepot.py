"""Evaluation run on real data: the Home Depot search-relevance pairs (human ratings) from ``../shared``.

Loads the file into a fresh lakehouse under ``.cache/eval-homedepot/<result>`` (``jobs/load_homedepot.py``),
trains the cross-encoder on the human labels of the training items (recipe ``human``; the estimator holds out 20%
of the items), and runs the offline evaluation (``jobs/calibrate_evaluate.py``) on those held-out items
with the Jaccard baseline as the reference row. There is no click log or search engine in this data, so
the report has the agreement columns only (AUC, and kappa/accuracy at each variant's best-F1 threshold).
Writes ``bench/results/homedepot_eval.json`` (``--result``); exits 0 with a message when the data is absent.

    python bench/eval_homedepot.py [--max-train-pairs 30000] [--epochs 4] [--init bert-tiny] [--lr 0]
        [--teacher minilm6 --teacher-epochs 1 --teacher-lr 3e-5] [--result homedepot_eval.json]

With ``--teacher`` the served cross-encoder (``--init``) is distilled from a teacher trained on the same
labels (``--teacher-epochs 0``: a trained cross-encoder folder, e.g. the previous run's
``<work>/ce/teacher/model``, distilled from as it is); the teacher's held-out AUCs are recorded beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from _common import REPO, bench_cfg, homedepot_absent, homedepot_data, homedepot_work, machine_info, write_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="", help="default: .cache/eval-homedepot/<result name>, one lakehouse and "
                    "registry per result (a second run in one registry would evaluate the first run's serving model)")
    ap.add_argument("--max-train-pairs", type=int, default=30000)
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--init", default="bert-tiny")
    ap.add_argument("--lr", type=float, default=0.0, help="0 = the init's default")
    ap.add_argument("--teacher", default="")
    ap.add_argument("--teacher-epochs", type=float, default=1.0)
    ap.add_argument("--teacher-lr", type=float, default=0.0)
    ap.add_argument("--result", default="homedepot_eval.json", help="file name under bench/results")
    args = ap.parse_args()

    if homedepot_absent():
        return 0
    from kpspark import workflows
    from kpspark.crossencoder.workflow import run_train_cross_encoder
    from kpspark.evaluation.report import run_evaluate
    from kpspark.session import get_spark

    work = homedepot_work(args.work, args.result)
    cfg = bench_cfg(work, args.cores, [
        "cross_encoder.recipe=human", f"cross_encoder.max_train_pairs={args.max_train_pairs}",
        f"cross_encoder.epochs={args.epochs}", f"cross_encoder.init={args.init}", f"cross_encoder.lr={args.lr}",
        *([f"cross_encoder.teacher={args.teacher}", f"cross_encoder.teacher_epochs={args.teacher_epochs}",
           f"cross_encoder.teacher_lr={args.teacher_lr}"] if args.teacher else []),
        "evaluation.recipes=[human]", "evaluation.baseline=jaccard",
        "evaluation.max_pairs=100000", f"evaluation.output_dir={work / 'report'}"])
    spark = get_spark(cfg, app_name="kpspark-eval-homedepot")
    t0 = time.time()
    loaded = workflows.run_load_homedepot(cfg, spark)
    ce = run_train_cross_encoder(cfg, spark, output_dir=str(work / "ce"))
    ev = run_evaluate(cfg, spark)
    rows = {v: {k: r[k] for k in ("threshold", "threshold_rule", "auc_human", "auc_human_within_keyphrase",
                                  "auc_human_within_item", "kappa_human", "accuracy_human", "human_pairs",
                                  "keyphrases_kept_share") if k in r}
            for v, r in ev["rows"].items()}
    write_result(REPO / "bench" / "results" / args.result, {
        "data": homedepot_data(),
        "file_rows": loaded["file_rows"], "labels_written": loaded["labels_written"],
        "quarantined": loaded["quarantined"],
        "cross_encoder": {"recipe": "human", "init": cfg.cross_encoder.init, "epochs": args.epochs,
                          "lr": cfg.cross_encoder.lr, "train_rows": ce["ce_train_rows"],
                          "validation_rows": ce["ce_validation_rows"], "train_seconds": ce["seconds"],
                          **{k[3:]: v for k, v in ce.items() if k.startswith("ce_val_auc_human")}},
        **({"teacher": {"init": args.teacher, "epochs": args.teacher_epochs, "lr": args.teacher_lr,
                        **{k[11:]: v for k, v in ce.items() if k.startswith("ce_teacher_")}}} if args.teacher else {}),
        "evaluated_on": "the estimator's held-out items (20% by item hash)", "rows": rows,
        "seconds": round(time.time() - t0, 1), "machine": machine_info()})
    print(json.dumps({"report": ev["report"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
