"""The paper's whole chain on real data: fine-tuned LLM judge -> cross-encoder assistant -> bi-encoder student, on
Home Depot, every link measured against the human ratings of the same held-out items.

Three item folds, none shared by two links' training:

* **fold A** (training items): the fine-tuned judge's training pairs (``judge.max_pairs`` human-rated pairs,
  ``kpspark train-judge``). ``--judge-work`` reuses the judge registered by ``bench/eval_homedepot_judge.py`` (its
  lakehouse and registry are copied into this run's work folder; the adapter stays where that run logged it);
  without it the judge is trained here.
* **fold B** (the other training items): ``--label-pairs`` rated pairs, labeled by the judge (``kpspark
  label-pairs``, strategy ``all``). The cross-encoder recipes ``llm`` (the judge's labels) and ``human`` (the human
  labels of **the same pairs**) train on them, each a MiniLM-L6 teacher distilled into the served bert-tiny shape.
  The best of the two by held-out within-item AUC scores every rated pair (``kpspark score-pairs``), and the student
  (MiniLM-L6, recipe click_search_distill; click and search stand-ins from fold B's human ratings: there is no
  click log) learns from those scores.
* **held-out items** (the estimators' 20% fold): every rated pair scores each link (the served int8 ONNX files,
  the student's cosine at dim 128, Jaccard, zero-shot all-MiniLM-L6-v2 cosine); the judge — 6 pairs/s on 2 CPU
  cores — answers on ``--label-eval-pairs`` pairs of whole held-out items (the estimators' validation rows of the
  ``llm`` recipe need its labels there), where every link is measured again beside it.

Pooled AUC, mean AUC within a search term and within a product; recall@k of human-relevant search terms among all
search terms (exact search) for the student and the zero-shot model. Writes ``bench/results/homedepot_chain.json``;
exits 0 with a message when the data is absent. About 30 minutes on 2 cores with ``--judge-work`` (labeling ~10,
two cross-encoders ~8, scoring ~2, the student ~6).

    python bench/eval_homedepot_chain.py --judge-work .cache/eval-homedepot/homedepot_judge [--label-pairs 3000]
        [--label-eval-pairs 600] [--student-pairs 3000] [--result homedepot_chain.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _common import REPO, bench_cfg, homedepot_absent, homedepot_data, homedepot_work, machine_info, write_result
from eval_homedepot_student import human_figures

VIEWS = ("auc_human", "auc_human_within_keyphrase", "auc_human_within_item")


def _hash_order(df, cols, seed):
    """A deterministic shuffle of a pandas frame by a hash of ``cols``."""
    import pandas as pd

    return df.assign(_h=pd.util.hash_pandas_object(df[cols].assign(_s=seed), index=False).to_numpy()) \
        .sort_values("_h").drop(columns="_h")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="", help="default: .cache/eval-homedepot/<result name>")
    ap.add_argument("--judge-work", default="", help="the work folder of eval_homedepot_judge.py (its registered "
                    "judge); empty: train the judge here on --judge-pairs")
    ap.add_argument("--judge-pairs", type=int, default=3000, help="the judge's training pairs (as it was trained)")
    ap.add_argument("--label-pairs", type=int, default=3000, help="fold B pairs the judge labels")
    ap.add_argument("--label-eval-pairs", type=int, default=600, help="held-out pairs the judge labels")
    ap.add_argument("--ce-epochs", type=float, default=6.0)
    ap.add_argument("--ce-teacher", default="minilm6")
    ap.add_argument("--ce-teacher-epochs", type=float, default=2.0)
    ap.add_argument("--ce-teacher-lr", type=float, default=3e-5)
    ap.add_argument("--student-pairs", type=int, default=3000)
    ap.add_argument("--student-epochs", type=float, default=1.0)
    ap.add_argument("--click-at", type=float, default=2.67, help="rating of a click stand-in")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--result", default="homedepot_chain.json", help="file name under bench/results")
    args = ap.parse_args()
    if homedepot_absent():
        return 0
    import numpy as np
    import pandas as pd
    import torch
    from pyspark.sql import functions as F

    from kpspark import workflows
    from kpspark.artifacts import META_FILE, model_file
    from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder, truncate_normalize
    from kpspark.biencoder.text import item_texts, keyphrase_texts
    from kpspark.biencoder.train import load_base
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer
    from kpspark.crossencoder.text import pair_texts
    from kpspark.crossencoder.workflow import model_name_for, run_score_pairs, run_train_cross_encoder
    from kpspark.data import tables
    from kpspark.evaluation.baselines import jaccard_scores
    from kpspark.evaluation.metrics import cohen_kappa, frame_aucs
    from kpspark.labeling.workflow import judge_training_pairs
    from kpspark.session import get_spark
    from kpspark.sparkutil import validation_items

    work = homedepot_work(args.work, args.result)
    if args.judge_work:  # the judge's registry and lakehouse (already loaded); its artifacts stay where they are
        src = Path(args.judge_work)
        if not (src / "mlflow.db").exists():
            raise SystemExit(f"{src} has no registry: run bench/eval_homedepot_judge.py first")
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "mlflow.db", work / "mlflow.db")
        shutil.copytree(src / "lakehouse", work / "lakehouse")
    cfg = bench_cfg(work, args.cores, [
        "llm.model=finetuned", "llm.prompt_version=v2", "llm.strategy=all", "llm.sample_size=0",
        "llm.chunk_pairs=500", f"judge.max_pairs={args.judge_pairs}",
        "cross_encoder.init=bert-tiny", f"cross_encoder.epochs={args.ce_epochs}",
        f"cross_encoder.teacher={args.ce_teacher}", f"cross_encoder.teacher_epochs={args.ce_teacher_epochs}",
        f"cross_encoder.teacher_lr={args.ce_teacher_lr}", "cross_encoder.max_train_pairs=100000",
        "click_positive.min_impressions=0", "bi_encoder.recipe=click_search_distill", "bi_encoder.init=minilm6",
        f"bi_encoder.max_pairs_per_task={args.student_pairs}", f"bi_encoder.epochs={args.student_epochs}",
        "bi_encoder.eval_steps=50"])
    spark = get_spark(cfg, app_name="kpspark-eval-homedepot-chain")
    torch.set_num_threads(args.cores)
    t0, seconds = time.time(), {}

    def lap(name: str) -> None:
        seconds[name] = round(time.time() - t0 - sum(seconds.values()), 1)
        print(f"== {name}: {seconds[name]} s", flush=True)

    if args.judge_work:
        judge_run = None
    else:
        workflows.run_load_homedepot(cfg, spark)
        judge_run = workflows.run_train_judge(cfg, spark)
    lap("judge")

    # every rated pair, with its fold; fold A = the items of the judge's training pairs
    fold = validation_items(seed=cfg.sample.seed)
    human = tables.read_table(spark, cfg, "human_labels").where(F.col("source") == "homedepot")
    rated = human.select("item_id", "keyphrase_id", "rating", "label", fold.alias("held_out")).toPandas()
    judge_train, _, _ = judge_training_pairs(spark, cfg)
    fold_a = set(judge_train["item_id"].astype(int))
    train = rated[~rated["held_out"]]
    fold_b = _hash_order(train[~train["item_id"].isin(fold_a)], ["item_id", "keyphrase_id"], 1).head(args.label_pairs)
    held = rated[rated["held_out"]]
    order = _hash_order(held[["item_id"]].drop_duplicates(), ["item_id"], 2)["item_id"]
    sizes = held.groupby("item_id").size().reindex(order)
    held_items = set(sizes.index[(sizes.cumsum() <= args.label_eval_pairs).to_numpy()])
    held_sample = held[held["item_id"].isin(held_items)]
    chosen = pd.concat([fold_b, held_sample])
    print(f"fold A (judge) {len(fold_a)} items; fold B {len(fold_b)} pairs of {fold_b['item_id'].nunique()} items; "
          f"held out {len(held)} pairs of {held['item_id'].nunique()} items, the judge's sample {len(held_sample)}",
          flush=True)

    # the chain's tables: the pairs to label; the human labels of the same pairs (recipe `human`, the estimators'
    # validation rows); the student's click and search stand-ins from fold B's ratings
    keys = spark.createDataFrame(chosen[["item_id", "keyphrase_id", "rating", "label"]].astype(
        {"item_id": "int64", "keyphrase_id": "int64", "rating": "float64", "label": "int32"}))
    tables.write_table(spark, cfg, "pairs", keys.select("item_id", "keyphrase_id", F.lit("chain").alias("source")),
                       mode="overwrite")
    tables.write_table(spark, cfg, "human_labels", keys.select(
        "item_id", "keyphrase_id", "rating", "label", F.lit("homedepot").alias("source"),
        F.lit("chain sample").alias("mapping")), mode="overwrite")
    tables.write_table(spark, cfg, "search_relevance", keys.select(
        "item_id", "keyphrase_id", F.col("rating").alias("score"), "label"), mode="overwrite")
    tables.write_table(spark, cfg, "clicks", keys.where(F.col("rating") >= args.click_at).select(
        "item_id", "keyphrase_id", F.lit(1).cast("long").alias("impressions"), F.lit(1).cast("long").alias("clicks"),
        F.lit(None).cast("double").alias("sales"), F.lit("homedepot-rating-proxy").alias("window")), mode="overwrite")
    lap("tables")

    labeled = workflows.run_label_pairs(cfg, spark)
    lap("labels")
    judge_model = labeled["judge_model"]
    llm = tables.read_table(spark, cfg, "llm_labels").where(F.col("judge_model") == judge_model) \
        .select("item_id", "keyphrase_id", "p_yes", "label").toPandas()

    ces = {}
    for recipe in ("human", "llm"):
        ces[recipe] = run_train_cross_encoder(cfg, spark, recipe=recipe, output_dir=str(work / f"ce-{recipe}"))
        lap(f"cross_encoder_{recipe}")

    # the held-out pairs' texts
    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category").toPandas()
    kps = tables.read_table(spark, cfg, "keyphrases").select("keyphrase_id", "text").orderBy("keyphrase_id").toPandas()
    ev = held.merge(items, on="item_id").merge(kps.rename(columns={"text": "keyphrase"}), on="keyphrase_id")
    scores: dict[str, np.ndarray] = {"Jaccard": jaccard_scores(ev["keyphrase"], ev["title"])}
    zs = load_base("minilm6", cfg.bi_encoder.max_length)

    def cosine(enc, dim=None):
        q = truncate_normalize(enc(item_texts(ev["title"], ev["category"])), dim)
        return (q * truncate_normalize(enc(keyphrase_texts(ev["keyphrase"])), dim)).sum(axis=1)

    zs_enc = lambda t: zs.encode(list(t), batch_size=64, convert_to_numpy=True)  # noqa: E731
    scores["zero-shot all-MiniLM-L6-v2 cosine"] = cosine(zs_enc)
    a, b = pair_texts(ev["keyphrase"], ev["category"], ev["title"])
    for recipe, out in ces.items():
        d = Path(out["output_dir"]) / "export"  # where the estimator exports (with its parity check)
        meta = json.loads((d / META_FILE).read_text())
        scorer = OnnxPairScorer(model_file(d, meta, cfg.cross_encoder.precision), d, meta["max_length"], threads=0)
        scores[f"cross-encoder `{recipe}` (served int8)"] = scorer.scores(a, b)

    def views(frame, s):
        return {k: round(float(v), 4) for k, v in frame_aucs(frame, "label", s, "auc_human").items()}

    table = {name: views(ev, s) for name, s in scores.items()}
    ce_rows = [n for n in table if n.startswith("cross-encoder")]
    best_row = max(ce_rows, key=lambda n: table[n]["auc_human_within_item"])
    best = best_row.split("`")[1]
    lap("evaluate_cross_encoders")

    # the student: CE scores of every rated pair (the assistant's job: scoring pairs no one labeled)
    all_pairs = spark.createDataFrame(rated[["item_id", "keyphrase_id"]].astype("int64"))
    scored = run_score_pairs(cfg, spark, pairs=all_pairs, recipe=best)
    lap("score_pairs")
    teacher = model_name_for(cfg, best)
    import dataclasses

    scfg = dataclasses.replace(cfg, bi_encoder=dataclasses.replace(cfg.bi_encoder, teacher=teacher))
    student = workflows.run_train_bi_encoder(scfg, spark)
    lap("student")
    meta = json.loads((Path(student["export_dir"]) / META_FILE).read_text())
    emb = OnnxTextEmbedder(Path(student["export_dir"]) / meta["files"]["int8"], student["export_dir"],
                           meta["max_length"], threads=0)
    dim = 128
    scores[f"student (MiniLM-L6, distilled from `{best}`, int8, dim {dim})"] = cosine(emb.embed, dim)
    table = {name: views(ev, s) for name, s in scores.items()}

    # the judge's held-out sample: every link again beside it
    js = ev.merge(llm.rename(columns={"label": "judge_label"}), on=["item_id", "keyphrase_id"])
    pos = ev.reset_index(drop=True).reset_index().merge(js[["item_id", "keyphrase_id"]], on=["item_id", "keyphrase_id"])
    sample_table = {"fine-tuned SmolLM2 judge P(yes)": views(js, js["p_yes"].to_numpy())}
    sample_table["fine-tuned SmolLM2 judge P(yes)"]["kappa_at_0.5"] = round(float(cohen_kappa(
        js["label"], js["judge_label"])), 4)
    for name, s in scores.items():
        sample_table[name] = views(js, s[pos["index"].to_numpy()])

    # recall of human-relevant search terms per held-out item among all search terms (student vs zero-shot)
    held_items_df = items[items["item_id"].isin(set(held["item_id"]))].sort_values("item_id")
    i_txt, k_txt = item_texts(held_items_df["title"], held_items_df["category"]), keyphrase_texts(kps["text"])
    dims = [dim]
    recall = {"zero-shot all-MiniLM-L6-v2": human_figures(zs_enc(i_txt), zs_enc(k_txt), held_items_df, kps, held,
                                                          dims, [10, 100])[0],
              "student": human_figures(emb.embed(i_txt), emb.embed(k_txt), held_items_df, kps, held, dims,
                                       [10, 100])[0]}
    lap("evaluate")

    def md(tab, extra=()):
        head = "| link | pooled AUC | within a search term | within a product |" + "".join(f" {e} |" for e in extra)
        lines = [head, "|" + "---|" * (4 + len(extra))]
        for name, r in tab.items():
            lines.append(f"| {name} | {r['auc_human']:.3f} | {r['auc_human_within_keyphrase']:.3f} | "
                         f"{r['auc_human_within_item']:.3f} |" + "".join(
                             f" {r.get(e, float('nan')):.3f} |" for e in extra))
        return "\n".join(lines)

    zs_row = table["zero-shot all-MiniLM-L6-v2 cosine"]
    ce_best, st = table[best_row], table[next(n for n in table if n.startswith("student"))]
    targets = {
        "ce_within_item_ge_zero_shot_plus_0.05": ce_best["auc_human_within_item"] >= zs_row["auc_human_within_item"] + 0.05,
        "ce_within_keyphrase_ge_zero_shot": ce_best["auc_human_within_keyphrase"] >= zs_row["auc_human_within_keyphrase"],
        "ce_pooled_ge_0.73": ce_best["auc_human"] >= 0.73,
        "student_ge_ce_minus_0.02": all(st[v] >= ce_best[v] - 0.02 for v in VIEWS),
        "student_recall@100_ge_0.93_at_dim128": recall["student"]["recall@100_human"] >= 0.93,
    }
    write_result(REPO / "bench" / "results" / args.result, {
        "data": homedepot_data(),
        "folds": {"judge_items": len(fold_a), "judge_pairs": len(judge_train), "label_pairs": len(fold_b),
                  "label_items": int(fold_b["item_id"].nunique()), "held_out_pairs": len(held),
                  "held_out_items": int(held["item_id"].nunique()), "judge_held_out_pairs": len(js),
                  "rule": "held out = the estimators' 20% item fold; fold A = items of the judge's training pairs; "
                          "fold B = other training items"},
        "judge": {"model": judge_model, "labeled": labeled["labeled"], "pairs_per_s": labeled["pairs_per_s"],
                  "errors": labeled["errors"], **({"trained_here": {k: judge_run[k] for k in (
                      "train_pairs", "train_seconds", "finetuned_kappa", "finetuned_auc")}} if judge_run else {})},
        "cross_encoders": {r: {"train_rows": o["ce_train_rows"], "validation_rows": o["ce_validation_rows"],
                               "seconds": o["seconds"], "version": o.get("version"), "run_id": o["run_id"],
                               # the teacher's and the served student's AUCs on the estimator's validation rows
                               **{k[3:]: round(v, 4) for k, v in o.items() if k.startswith(("ce_teacher_val_auc",
                                                                                            "ce_val_auc"))}}
                           for r, o in ces.items()},
        "best_cross_encoder": best, "pairs_scored": scored["rows_written"],
        "student": {"init": "minilm6", "recipe": "click_search_distill", "teacher": teacher, "rows": student["rows"],
                    "seconds": student["seconds"]},
        "held_out": table, "held_out_table": md(table),
        "judge_sample": sample_table, "judge_sample_table": md(sample_table, ("kappa_at_0.5",)),
        "recall_human_relevant": recall, "targets": targets,
        "config": {k: v for k, v in vars(args).items() if k not in ("work",)},
        "seconds": {**seconds, "total": round(time.time() - t0, 1)}, "machine": machine_info()})
    print(md(table))
    print(md(sample_table, ("kappa_at_0.5",)))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
