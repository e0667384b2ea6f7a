"""Benchmark: the daily diff's wall time against the full batch's on the same tables (issue: diff cost).

Builds once (under ``.cache/bench-diff/<size>``) a sample lakehouse with quickly trained models (bert-tiny
cross-encoder on clicks + search negatives, the 2-layer MiniLM student on clicks + search) and the
embeddings; then in one process: times ``run_full_batch`` over every item (the baseline), revises
``--revised`` of the items' titles (1% by default, a MERGE into ``items``), restarts the SparkContext (so
the diff pays the same cold start as a separately scheduled job: model downloads and loads, Python
workers) and times ``run_daily_diff``; then times a diff of a single revised item (the fixed cost).
Writes ``bench/results/diff_<size>.json``: both times, the ratio (target <= 5%), the diff's step
times, the fixed cost and the marginal cost per revised item; the model invocations per input row of the full
batch (counted in the Python workers, target 1.0); and the full batch's cross-encoder pairs/s/core against the
cross-encoder alone on pairs of the same lakehouse in the same run (target >= 0.9).

    python bench/bench_diff.py [--size medium|large] [--revised 0.01]
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import sys

from _common import REPO, bench_cfg, machine_info, write_result

sys.path.insert(0, str(REPO))
from tests.invocations import counting, rows_seen  # noqa: E402


class PeakMemory:
    """Peak resident memory of this process and all its children (the JVM, Python workers), sampled
    every ``interval`` seconds in a thread; ``reset()`` starts a new phase."""

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._t.start()

    def _run(self, interval: float) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(interval):
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def reset(self) -> float:
        """The peak since the last reset, in GiB."""
        gib, self.peak = self.peak / 2**30, 0
        return round(gib, 2)


def ce_only_rate(spark, cfg, work: Path, n: int, cores: int) -> dict:
    """The baseline of the same run: the serving cross-encoder alone scoring ``n`` (item, keyphrase) pairs of
    the lakehouse (the same stage and batch size as the full batch's, inputs read from parquet, output to
    Spark's no-op sink), after a warm-up that loads the model in every Python worker."""
    from pyspark.sql import functions as F

    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.data import tables
    from kpspark.registry import models, tracking

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = tables.read_table(spark, cfg, "keyphrases").select("keyphrase_id", F.col("text").alias("keyphrase"))
    per_item = 50  # as many keyphrases per item as the full batch scores at k = 50
    pairs = items.orderBy(F.xxhash64("item_id")).limit(n // per_item + 1) \
        .crossJoin(kps.orderBy(F.xxhash64("keyphrase_id")).limit(per_item)).limit(n)
    path = str(work / "ce-only-pairs")
    pairs.write.mode("overwrite").parquet(path)
    src = spark.read.parquet(path)
    n = src.count()
    scorer = OnnxCrossEncoderModel(modelUri=models.model_uri(cfg.models.cross_encoder, cfg.models.serving_alias),
                                   precision=cfg.cross_encoder.precision, batchSize=cfg.batch.cross_encoder,
                                   trackingUri=tracking.tracking_uri(cfg), outputCol="ce_score")
    scorer.transform(src.limit(4000)).write.format("noop").mode("overwrite").save()
    t0 = time.time()
    scorer.transform(src).write.format("noop").mode("overwrite").save()
    secs = time.time() - t0
    return {"pairs": n, "seconds": round(secs, 1), "pairs_per_s_per_core": round(n / secs / cores, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(REPO / ".cache" / "bench-diff"))
    ap.add_argument("--size", default="medium")
    ap.add_argument("--revised", type=float, default=0.01)
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from kpspark import workflows
    from kpspark.data import tables
    from kpspark.production.diff import run_daily_diff, run_full_batch
    from kpspark.session import get_spark

    work = Path(args.work) / args.size
    cores = os.cpu_count() or 2
    cfg = bench_cfg(work, cores, [
        f"sample.size={args.size}", "cross_encoder.recipe=click_search", "cross_encoder.epochs=1",
        "cross_encoder.max_train_pairs=20000", "bi_encoder.init=minilm2", "bi_encoder.max_pairs_per_task=2000",
        "bi_encoder.recipe=click_search",
        "bi_encoder.dims=[384,128]", "bi_encoder.dim=128", "retrieval.calibrate=false"])
    spark = get_spark(cfg, app_name="kpspark-bench-diff")
    ready = work / "READY"
    if not ready.exists():  # build the lakehouse and models once
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        workflows.run_generate_sample(cfg, spark)
        workflows.run_train_cross_encoder(cfg, spark)
        workflows.run_train_bi_encoder(cfg, spark)
        workflows.run_embed(cfg, spark)
        ready.write_text("ok")
    n_items = tables.read_table(spark, cfg, "items").count()
    n_kps = tables.read_table(spark, cfg, "keyphrases").count()

    mem = PeakMemory()
    mem.reset()
    counts = work / "invocations"
    shutil.rmtree(counts, ignore_errors=True)
    with counting(counts, keys=False):  # rows each model function saw in the Python workers
        t0 = time.time()
        full = run_full_batch(cfg, spark)
        t_full = time.time() - t0
    peak_full = mem.reset()
    seen = {k: rows_seen(counts, k) for k in ("embed", "search", "search_out", "score")}
    ce_only = ce_only_rate(spark, cfg, work, min(seen["score"], 400_000), cores)
    full_ce_rate = seen["score"] / t_full / cores

    def revise(share: float, salt: int) -> int:
        items = tables.read_table(spark, cfg, "items")
        pick = F.pmod(F.xxhash64("item_id", F.lit(salt)), F.lit(1_000_000)) < int(share * 1_000_000)
        return tables.upsert(spark, cfg, "items", items.where(pick).withColumn(
            "title", F.concat(F.col("title"), F.lit(f" (revised {salt})")))).rows_written

    def cold() -> "object":  # a fresh SparkContext: new Python workers, no model loaded yet
        spark.stop()
        return get_spark(cfg, app_name="kpspark-bench-diff")

    n_rev = revise(args.revised, 7)
    spark = cold()
    t0 = time.time()
    diff = run_daily_diff(cfg, spark)
    t_diff = time.time() - t0
    peak_diff = mem.reset()
    items = tables.read_table(spark, cfg, "items")
    one = items.orderBy("item_id").limit(1).withColumn("title", F.concat(F.col("title"), F.lit(" (one)")))
    tables.upsert(spark, cfg, "items", one)
    spark = cold()
    t0 = time.time()
    diff1 = run_daily_diff(cfg, spark)
    t_one = time.time() - t0
    per_item = (t_diff - t_one) / max(n_rev - 1, 1)
    full_per_item = t_full / n_items
    write_result(REPO / "bench" / "results" / f"diff_{args.size}.json", {
        "benchmark": "daily diff vs full batch on the same tables (each cold: own SparkContext, models not loaded)",
        "size": args.size, "items": n_items, "keyphrases": n_kps, "revised_items": n_rev,
        "revised_share": round(n_rev / n_items, 5),
        "full_batch_s": round(t_full, 1), "full_batch_recommendations": full["recommendations"],
        "diff_s": round(t_diff, 1), "diff_rows_upserted": diff["rows_upserted"], "diff_rows_deleted": diff["rows_deleted"],
        "diff_step_s": diff["step_seconds"], "diff_rows_s": diff["rows_s"], "diff_merge_s": diff["merge_s"],
        "diff_to_full_ratio": round(t_diff / t_full, 4), "target_ratio": 0.05,
        "diff_one_item_s": round(t_one, 1), "diff_one_item_step_s": diff1["step_seconds"],
        "diff_marginal_s_per_item": round(per_item, 4), "full_s_per_item": round(full_per_item, 4),
        # where the ratio falls under the target: fixed + 1% x N x marginal <= 5% x N x full-per-item
        "items_where_1pct_diff_is_5pct": (round(t_one / (0.05 * full_per_item - 0.01 * per_item))
                                          if 0.05 * full_per_item > 0.01 * per_item else None),
        "full_items_per_s_per_core": round(n_items / t_full / cores, 1),
        "retrieval_k": cfg.retrieval.k,
        # model invocations per input row (target 1.0): the embedding saw every item once, the search every
        # routed item once, the scorer every candidate the search returned once (one shard per item here)
        "invocations_per_row": {"embed": round(seen["embed"] / n_items, 4),
                                "search": round(seen["search"] / n_items, 4),
                                "score": round(seen["score"] / max(seen["search_out"], 1), 4)},
        "rows_seen": seen,
        "full_batch_ce_pairs_per_s_per_core": round(full_ce_rate, 1),
        "ce_only_pairs_per_s_per_core": ce_only,
        "full_batch_to_ce_only_ratio": round(full_ce_rate / ce_only["pairs_per_s_per_core"], 3),
        "target_full_batch_to_ce_only": 0.9,
        "peak_rss_gib_full_batch": peak_full, "peak_rss_gib_diff": peak_diff,
        "memory_gib_machine": round(__import__("psutil").virtual_memory().total / 2**30, 1),
        "cores": cores, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
