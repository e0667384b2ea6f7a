"""Evaluation run on real data: the bi-encoder student's three-task ablation on the Home Depot pairs.

The Home Depot file (``../shared``) has human ratings of (search term, product title) pairs and nothing
else, so the student's three tasks get these stand-ins (all written as ordinary lakehouse tables, so the
library's training path runs unchanged):

* **click** positives: pairs rated >= ``--click-at`` (default 2.67, the top ratings) — there is no click log;
* **search** relevance: the human label (rating >= 2.5 -> 1, else 0);
* **distill**: the scores of a cross-encoder trained here on the human labels of the training items
  (recipe ``human``, bert-tiny), written to ``pair_scores`` by the scoring job.

Then ``run_bi_encoder_ablation`` trains click / click_search / click_search_distill (MiniLM-L6, the
estimator holds out 20% of the items) and logs its recall table to MLflow. On the held-out items this
script adds the figures that need no stand-in: recall@k of the **human-relevant** search terms (exact
search over all search terms) and the AUC of the student's cosine against the human labels, per
Matryoshka dim — and the same for the untrained all-MiniLM-L6-v2 (zero-shot row). Writes
``bench/results/homedepot_student.json``; exits 0 with a message when the data is absent.

    python bench/eval_homedepot_student.py [--pairs-per-task 3000] [--ce-epochs 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import REPO, bench_cfg, homedepot_absent, homedepot_data, machine_info, write_result


def human_figures(item_emb, kp_emb, items, kps, rated, dims, ks):
    """Per dim: AUC of cosine vs the human label on the rated held-out pairs (pooled, within a search term, within
    a product), recall@k of human-relevant search terms among all search terms."""
    import numpy as np

    from kpspark.evaluation.metrics import ranking_aucs

    from kpspark.biencoder.onnx_embedder import truncate_normalize
    from kpspark.evaluation.retrieval import exact_topk, recall_at_k

    ipos = {int(k): i for i, k in enumerate(items["item_id"])}
    kpos = {int(k): i for i, k in enumerate(kps["keyphrase_id"])}
    r = rated[rated["item_id"].isin(ipos) & rated["keyphrase_id"].isin(kpos)]
    ii = np.array([ipos[int(x)] for x in r["item_id"]])
    kk = np.array([kpos[int(x)] for x in r["keyphrase_id"]])
    relevant = [set() for _ in range(len(items))]
    for i, k, lab in zip(ii, kk, r["label"]):
        if lab == 1:
            relevant[i].add(int(k))
    rows = []
    for d in dims:
        q, c = truncate_normalize(item_emb, d), truncate_normalize(kp_emb, d)
        cos = (q[ii] * c[kk]).sum(axis=1)
        _, top = exact_topk(q, c, max(ks))
        rec = recall_at_k(top, relevant, ks)
        aucs = ranking_aucs(r["label"].to_numpy(), cos, item=r["item_id"].to_numpy(),
                            keyphrase=r["keyphrase_id"].to_numpy(), prefix="auc_human")
        rows.append({"dim": int(d), **{k: round(v, 4) for k, v in aucs.items()}, "rated_pairs": len(r),
                     **{f"recall@{k}_human": round(v, 4) for k, v in rec.items()}})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / ".cache" / "eval-homedepot-student"))
    ap.add_argument("--pairs-per-task", type=int, default=3000)
    ap.add_argument("--epochs", type=float, default=1.0, help="student epochs")
    ap.add_argument("--ce-epochs", type=float, default=2.0)
    ap.add_argument("--click-at", type=float, default=2.67)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--retrain", action="store_true", help="train again even when --work holds trained models")
    args = ap.parse_args()

    if homedepot_absent():
        return 0
    from pyspark.sql import functions as F

    from kpspark import workflows
    from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder
    from kpspark.biencoder.text import item_texts, keyphrase_texts
    from kpspark.biencoder.train import load_base
    from kpspark.biencoder.workflow import run_bi_encoder_ablation
    from kpspark.data import tables
    from kpspark.session import get_spark
    from kpspark.sparkutil import validation_items

    work = Path(args.work)
    cfg = bench_cfg(work, args.cores, [
        "cross_encoder.recipe=human", "cross_encoder.max_train_pairs=30000", f"cross_encoder.epochs={args.ce_epochs}",
        f"bi_encoder.max_pairs_per_task={args.pairs_per_task}", f"bi_encoder.epochs={args.epochs}",
        "bi_encoder.eval_steps=50", "bi_encoder.init=minilm6"])
    spark = get_spark(cfg, app_name="kpspark-eval-homedepot-student")
    t0 = time.time()
    loaded = workflows.run_load_homedepot(cfg, spark)
    human = tables.read_table(spark, cfg, "human_labels").where(F.col("source") == "homedepot")
    # the stand-in tables of the two label tasks
    clicks = human.where(F.col("rating") >= args.click_at).select(
        "item_id", "keyphrase_id", F.lit(None).cast("long").alias("impressions"), F.lit(1).cast("long").alias("clicks"),
        F.lit(None).cast("double").alias("sales"), F.lit("homedepot-rating-proxy").alias("window"))
    tables.upsert(spark, cfg, "clicks", clicks)
    tables.upsert(spark, cfg, "search_relevance", human.select(
        "item_id", "keyphrase_id", F.col("rating").alias("score"), "label"))
    t_load = time.time() - t0
    done = work / "trained.json"  # the trained models, so a rerun can redo only the held-out figures
    trained = json.loads(done.read_text()) if done.exists() and not args.retrain else None
    if trained and all(Path(r["export_dir"]).exists() for r in trained["ablation"]["results"]):
        ce, scored, abl, t_ce, t_be = (trained[k] for k in ("ce", "scored", "ablation", "t_ce", "t_be"))
    else:
        ce = workflows.run_train_cross_encoder(cfg, spark)
        scored = workflows.run_score_pairs(cfg, spark)
        t_ce = time.time() - t0 - t_load
        abl = run_bi_encoder_ablation(cfg, spark, output_root=str(work / "students"))  # kept for reruns
        t_be = time.time() - t0 - t_load - t_ce
        done.write_text(json.dumps({"ce": ce, "scored": scored, "ablation": abl, "t_ce": t_ce, "t_be": t_be},
                                   default=str))

    # held-out items (the estimator's validation fold) with their rated pairs; all search terms
    fold = validation_items()
    rated = human.where(fold).select("item_id", "keyphrase_id", "label").toPandas()
    items = (tables.read_table(spark, cfg, "items").where(fold).select("item_id", "title", "category")
             .orderBy("item_id").toPandas())
    kps = tables.read_table(spark, cfg, "keyphrases").select("keyphrase_id", "text").orderBy("keyphrase_id") \
        .toPandas()
    dims = sorted({int(d) for d in cfg.bi_encoder.dims}, reverse=True)
    ks = [10, 100]
    i_txt, k_txt = item_texts(items["title"], items["category"]), keyphrase_texts(kps["text"])
    base = load_base("minilm6", cfg.bi_encoder.max_length)
    enc = lambda t: base.encode(t, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)  # noqa: E731
    by_model = {"zero-shot all-MiniLM-L6-v2": human_figures(enc(i_txt), enc(k_txt), items, kps, rated, dims, ks)}
    for res in abl["results"]:
        meta = json.loads((Path(res["export_dir"]) / "kpspark_model.json").read_text())
        emb = OnnxTextEmbedder(Path(res["export_dir"]) / meta["files"]["int8"], res["export_dir"],
                               meta["max_length"], threads=0)
        by_model[res["recipe"]] = human_figures(emb.embed(i_txt), emb.embed(k_txt), items, kps, rated, dims, ks)
    lines = ["| student | dim | AUC vs human | recall@10 human-relevant | recall@100 human-relevant |",
             "|---|---|---|---|---|"]
    for name, rows in by_model.items():
        for r in rows:
            lines.append(f"| {name} | {r['dim']} | {r['auc_human']:.3f} | {r['recall@10_human']:.3f} | "
                         f"{r['recall@100_human']:.3f} |")
    human_table = "\n".join(lines)
    print(human_table)
    print(abl["table"])
    write_result(REPO / "bench" / "results" / "homedepot_student.json", {
        "data": homedepot_data(),
        "file_rows": loaded["file_rows"], "quarantined": loaded["quarantined"],
        "stand_ins": {"click": f"rating >= {args.click_at}", "search": "human label (rating >= 2.5)",
                      "distill": "cross-encoder (recipe human, bert-tiny) scores of every pair"},
        "cross_encoder": {"epochs": args.ce_epochs, "train_rows": ce["ce_train_rows"],
                          **{k[3:]: v for k, v in ce.items() if k.startswith("ce_val_auc_human")},
                          "pairs_scored": scored.get("rows_written", scored.get("scored"))},
        "student": {"init": "minilm6", "pairs_per_task": args.pairs_per_task, "epochs": args.epochs,
                    "rows": {r["recipe"]: r["rows"] for r in abl["results"]},
                    "train_seconds": {r["recipe"]: r["seconds"] for r in abl["results"]}},
        "held_out": {"items": len(items), "rated_pairs": int(len(rated)), "search_terms": len(kps),
                     "rule": "the estimator's validation fold (20% of items by hash)"},
        "human": by_model, "human_table": human_table,
        "ablation": {r["recipe"]: r["recall"] for r in abl["results"]}, "ablation_table": abl["table"],
        "mlflow_ablation_run": abl["run_id"],
        "seconds": {"load": round(t_load, 1), "cross_encoder": round(t_ce, 1), "students": round(t_be, 1),
                    "total": round(time.time() - t0, 1)},
        "machine": machine_info()})
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
