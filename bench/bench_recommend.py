"""Benchmark: retrieve + cross-encoder score + filter in Spark, items/s/core as the keyphrase corpus grows.

Reuses the embeddings ``bench/bench_retrieval.py`` cached (MiniLM-L6 int8, dim 128 prefix) and the
cross-encoder ``bench/bench_cross_encoder.py`` registered. For each corpus size (a prefix of the
sample generator's keyphrases): fit :class:`KeyphraseRetriever` (one faiss shard per category, kind
chosen by shard size), then time ``KeyphraseRetrieverModel -> OnnxCrossEncoderModel (int8) ->
ThresholdModel`` (the filter) over the same items (their embeddings precomputed) in ``local[N]``, counting
the kept rows. Writes ``bench/results/recommend.json``.
Run: ``.venv/bin/python bench/bench_recommend.py``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from _common import HERE, REPO, machine_info, write_result  # noqa: E402


def _parquet(path: Path, cols: dict, emb: np.ndarray) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(emb, dtype="float32").reshape(-1))
    lists = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]).cast(pa.list_(pa.float32()))
    pq.write_table(pa.table({**{k: pa.array(v) for k, v in cols.items()}, "embedding": lists}), path)
    return str(path)


def main() -> int:
    from bench_retrieval import frames_for  # noqa: E402  (same folder)

    from kpspark.biencoder.onnx_embedder import truncate_normalize
    from kpspark.config import load_config
    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel, find_export_dir
    from kpspark.evaluation.calibration import ThresholdModel
    from kpspark.retrieval.retriever import KeyphraseRetriever
    from kpspark.session import get_spark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--requested", type=int, default=1_000_000, help="--keyphrases bench_retrieval.py ran with")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--work", default=str(REPO / ".cache" / "bench-rec"))
    ap.add_argument("--out", default=str(HERE / "results" / "recommend.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ret = REPO / ".cache" / "bench-ret"
    item_npy = sorted(ret.glob("items_*.npy"))[0]
    kp_npy = sorted(ret.glob("kps_*.npy"))[0]
    n_items_all, n_kps_all = int(item_npy.stem.split("_")[1]), int(kp_npy.stem.split("_")[1])
    items, kps = frames_for(n_items_all, args.requested)  # the same call bench_retrieval made
    if len(kps) != n_kps_all:
        raise SystemExit(f"{kp_npy} has {n_kps_all} rows but the generator gave {len(kps)}: pass --requested")
    q = truncate_normalize(np.load(item_npy)[:args.items], args.dim)
    x = truncate_normalize(np.load(kp_npy), args.dim)
    ce_export = find_export_dir(REPO / ".cache" / "bench-ce" / "art")
    cores = os.cpu_count() or 2
    cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
        f"spark.master=local[{cores}]", f"spark.conf.spark.sql.shuffle.partitions={cores * 2}",
        "spark.conf.spark.driver.memory=8g", f"spark.jars_dir={REPO / '.cache' / 'jars'}"])
    spark = get_spark(cfg)
    it = items.head(args.items)
    items_df = spark.read.parquet(_parquet(work / "items.parquet", {
        "item_id": np.arange(len(it), dtype="int64"), "title": it["title"].tolist(),
        "category": it["category"].tolist()}, q)).cache()
    items_df.count()
    runs = []
    for n in [min(int(s), len(x)) for s in args.sizes.split(",")]:
        kp_df = spark.read.parquet(_parquet(work / f"kps_{n}.parquet", {
            "keyphrase_id": np.arange(n, dtype="int64"), "text": kps["text"].head(n).tolist(),
            "category": kps["category"].head(n).tolist()}, x[:n]))
        t0 = time.perf_counter()
        model = KeyphraseRetriever(indexDir=str(work / f"index_{n}"), k=args.k).fit(kp_df)
        t_build = time.perf_counter() - t0
        kinds = sorted({s["kind"] for s in model.manifest()["shards"]})
        pipe = [model, OnnxCrossEncoderModel(keyphraseCol="keyphrase", outputCol="ce_score",
                                             modelUri=str(ce_export), precision="int8"),
                ThresholdModel(scoreCol="ce_score", threshold=args.threshold, filterRows=True)]

        def run(df):
            for stage in pipe:
                df = stage.transform(df)
            return df.count()

        run(items_df.limit(50))  # warm-up: loads shards and the model in the workers
        t0 = time.perf_counter()
        kept = run(items_df)
        dt = time.perf_counter() - t0
        runs.append({"keyphrases": n, "shards": len(model.manifest()["shards"]), "index_kinds": kinds,
                     "build_s": round(t_build, 1), "items": args.items, "candidates": args.items * args.k,
                     "kept": kept, "seconds": round(dt, 1), "items_per_s": round(args.items / dt, 1),
                     "items_per_s_per_core": round(args.items / dt / cores, 1),
                     "pairs_scored_per_s_per_core": round(args.items * args.k / dt / cores, 1)})
        print(runs[-1], flush=True)
    spark.stop()
    result = {"benchmark": "retrieve_score_filter", "machine": {"cores": cores, **machine_info()},
        "pipeline": "items (precomputed dim-128 embeddings) -> KeyphraseRetrieverModel (per-category faiss) -> "
                    "OnnxCrossEncoderModel int8 -> ThresholdModel (filter) -> count", "k": args.k,
        "threshold": args.threshold, "runs": runs}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
