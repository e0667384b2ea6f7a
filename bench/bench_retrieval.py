"""Benchmark: ANN keyphrase retrieval vs exact brute force, recall@100 and queries/s, same embeddings.

Keyphrases come from the sample generator's keyphrase universe (``keyphrase_universe``), items from
its item generator (title [SEP] category); both are embedded once with the bi-encoder export that
``bench/bench_bi_encoder.py`` prepares (all-MiniLM-L6-v2, int8, Matryoshka prefix ``--dim``) and
cached under the work folder. Then, in this process:

* exact: faiss ``IndexFlatIP`` brute force over all keyphrases (the baseline; its top-k is the truth);
* IVF (``IndexIVFFlat``, inner product) at several ``nprobe`` and HNSW (``IndexHNSWFlat``) at
  several ``efSearch``: build time, queries/s, recall@k against the exact top-k.

One index over the whole corpus (the retriever's worst case: per-category shards are smaller).
faiss uses all cores for every method. Writes ``bench/results/retrieval.json``.
Run: ``.venv/bin/python bench/bench_retrieval.py [--items 100000 --keyphrases 1000000]``.
"""
from __future__ import annotations

import argparse
import os
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from _common import HERE, REPO, machine_info, write_result  # noqa: E402
_EMB = None


def _init(export: str, max_length: int) -> None:
    global _EMB
    os.environ["OMP_NUM_THREADS"] = "1"
    from kpspark.biencoder.onnx_embedder import OnnxTextEmbedder

    _EMB = OnnxTextEmbedder(Path(export) / "model.int8.onnx", export, max_length, threads=1, batch_size=64)


def _embed(chunk: list[str]) -> np.ndarray:
    return _EMB.embed(chunk)  # type: ignore[union-attr]


def embed_all(texts: list[str], export: Path, cache: Path, dim: int, procs: int) -> tuple[np.ndarray, float]:
    """Full-dim embeddings of ``texts`` (cached), returned truncated to ``dim``; and the seconds spent."""
    from kpspark.biencoder.onnx_embedder import truncate_normalize

    if cache.exists():
        full = np.load(cache)
        return truncate_normalize(full, dim), 0.0
    t0 = time.perf_counter()
    chunks = [texts[i:i + 4096] for i in range(0, len(texts), 4096)]
    with get_context("spawn").Pool(procs, initializer=_init, initargs=(str(export), 64)) as pool:
        parts = []
        for i, p in enumerate(pool.imap(_embed, chunks)):
            parts.append(p.astype("float16"))
            if i % 25 == 0:
                print(f"  embedded {min((i + 1) * 4096, len(texts)):,}/{len(texts):,} ({cache.name})", flush=True)
    full = np.concatenate(parts).astype("float32")
    np.save(cache, full)
    return truncate_normalize(full, dim), time.perf_counter() - t0


def frames_for(n_items: int, n_kps: int, seed: int = 42) -> tuple[Any, Any]:
    """(items with title/category, unique keyphrases with text/category) from the sample generator."""
    from kpspark.sample.marketplace import items_chunk, keyphrase_universe, resolve_size

    models = 1
    kp = keyphrase_universe(models, seed)
    while len(kp) < n_kps:  # the universe has some repeated texts: fewer unique ones than rows
        models = max(models + 1, int(models * n_kps / max(len(kp), 1) * 1.05))
        kp = keyphrase_universe(models, seed)
    kps = kp.drop_duplicates("text").head(n_kps).reset_index(drop=True)
    return items_chunk(seed, resolve_size(n_items), 0, n_items), kps


def texts_for(n_items: int, n_kps: int, seed: int = 42) -> tuple[list[str], list[str]]:
    """Item texts (title [SEP] category) and keyphrase texts from the sample generator."""
    from kpspark.biencoder.text import item_texts

    items, kps = frames_for(n_items, n_kps, seed)
    return item_texts(items["title"], items["category"]), kps["text"].tolist()


def recall(truth: np.ndarray, got: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth.tolist(), got.tolist())]))


def main() -> int:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--keyphrases", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--work", default=str(REPO / ".cache" / "bench-ret"))
    ap.add_argument("--export", default=str(REPO / ".cache" / "bench-be" / "export"),
                    help="bi-encoder export folder (bench/bench_bi_encoder.py --prepare-only makes it)")
    ap.add_argument("--nprobe", default="16,32,64,128")
    ap.add_argument("--ef", default="128,256")
    ap.add_argument("--out", default=str(HERE / "results" / "retrieval.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 2
    items, kps = texts_for(args.items, args.keyphrases)
    print(f"{len(items):,} items, {len(kps):,} keyphrases", flush=True)
    q, t_items = embed_all(items, Path(args.export), work / f"items_{len(items)}.npy", args.dim, cores)
    x, t_kps = embed_all(kps, Path(args.export), work / f"kps_{len(kps)}.npy", args.dim, cores)
    faiss.omp_set_num_threads(cores)
    k = args.k

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    t0 = time.perf_counter()
    _, truth = flat.search(q, k)
    t_exact = time.perf_counter() - t0
    exact_qps = len(q) / t_exact
    print(f"exact: {exact_qps:,.0f} queries/s", flush=True)
    runs = []

    nlist = int(4 * np.sqrt(len(x)))
    quant = faiss.IndexFlatIP(args.dim)
    ivf = faiss.IndexIVFFlat(quant, args.dim, nlist, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    ivf.train(x[rng.choice(len(x), min(len(x), 64 * nlist), replace=False)])
    ivf.add(x)
    t_build = time.perf_counter() - t0
    for nprobe in [int(v) for v in args.nprobe.split(",")]:
        ivf.nprobe = nprobe
        t0 = time.perf_counter()
        _, got = ivf.search(q, k)
        dt = time.perf_counter() - t0
        runs.append({"index": "ivf_flat", "nlist": nlist, "nprobe": nprobe, "build_s": round(t_build, 1),
                     "queries_per_s": round(len(q) / dt, 1), "speedup_vs_exact": round(t_exact / dt, 2),
                     f"recall@{k}": round(recall(truth, got), 4)})
        print(runs[-1], flush=True)

    hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    t0 = time.perf_counter()
    hnsw.add(x)
    t_build = time.perf_counter() - t0
    for ef in [int(v) for v in args.ef.split(",")]:
        hnsw.hnsw.efSearch = ef
        t0 = time.perf_counter()
        _, got = hnsw.search(q, k)
        dt = time.perf_counter() - t0
        runs.append({"index": "hnsw_flat", "M": 32, "efSearch": ef, "build_s": round(t_build, 1),
                     "queries_per_s": round(len(q) / dt, 1), "speedup_vs_exact": round(t_exact / dt, 2),
                     f"recall@{k}": round(recall(truth, got), 4)})
        print(runs[-1], flush=True)

    ok = [r for r in runs if r[f"recall@{k}"] >= 0.95]
    best = max(ok, key=lambda r: r["speedup_vs_exact"]) if ok else None
    result = {
        "benchmark": "ann_retrieval", "machine": {"cores": cores, **machine_info()},
        "items": len(q), "keyphrases": len(x), "dim": args.dim, "k": k,
        "embedding": {"model": "all-MiniLM-L6-v2 export, int8, Matryoshka prefix", "export": args.export,
                      "seconds_items": round(t_items, 1), "seconds_keyphrases": round(t_kps, 1)},
        "exact": {"index": "flat_ip", "seconds": round(t_exact, 1), "queries_per_s": round(exact_qps, 1),
                  "queries_per_s_per_core": round(exact_qps / cores, 1)},
        "runs": runs, "best_meeting_recall_0_95": best,
        "targets": {f"recall@{k}": 0.95, "speedup_vs_exact": 10},
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
