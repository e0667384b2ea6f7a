"""Sharded faiss indexes of keyphrase embeddings (pure Python; the Spark stages are thin shells).

One shard per category (or per hash bucket). The index kind follows the shard size: exact
inner-product search (``flat``) up to ``exact_max`` keyphrases, IVF above (``bench/bench_retrieval.py``
on 0.93M sample keyphrases, dim 128, top-100: IVF nprobe 16 kept recall 0.99 at 25x exact, HNSW M=32
only 0.77-0.83 at the same speed). ``kind="hnsw"`` is still available.
Each shard is two files, ``<sid>.faiss`` (the index, faiss ids = row numbers) and ``<sid>.parquet``
(keyphrase_id, keyphrase text per row); ``manifest.json`` lists the shards. Embeddings are
L2-normalized, so inner product = cosine.
"""
from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kpspark.errors import KPSparkError, require

MANIFEST = "manifest.json"
KINDS = ("auto", "flat", "hnsw", "ivf")


@dataclass(frozen=True)
class IndexParams:
    """Index choice and search-time knobs."""

    kind: str = "auto"  # auto (flat up to exact_max, ivf above) | flat | hnsw | ivf
    exact_max: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    ivf_nprobe: int = 16

    def kind_for(self, n: int) -> str:
        """The index kind for a shard of ``n`` keyphrases."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.exact_max else "ivf"


def shard_id(key: str) -> str:
    """A file-name-safe, stable id for a shard key (a category name or a hash bucket)."""
    import hashlib

    return "s" + hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def build_index(emb: np.ndarray, kind: str, params: IndexParams) -> Any:
    """A faiss index over the rows of ``emb`` (float32, normalized); ids are row numbers."""
    faiss = require("faiss", "ann")
    d = emb.shape[1]
    emb = np.ascontiguousarray(emb, dtype="float32")
    if kind == "flat":
        index = faiss.IndexFlatIP(d)  # type: ignore[attr-defined]
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)  # type: ignore[attr-defined]
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(len(emb))), len(emb) // 39))
        quant = faiss.IndexFlatIP(d)  # type: ignore[attr-defined]
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)  # type: ignore[attr-defined]
        index.train(emb)
        index.nprobe = params.ivf_nprobe
    else:
        raise ValueError(f"index kind must be one of {list(KINDS[1:])}, got {kind!r}")
    index.add(emb)
    return index


def write_shard(out_dir: str | os.PathLike[str], key: str, ids: np.ndarray, texts: list[str], emb: np.ndarray,
                params: IndexParams) -> dict[str, Any]:
    """Build and save one shard; returns its manifest entry."""
    faiss = require("faiss", "ann")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sid = shard_id(key)
    kind = params.kind_for(len(ids))
    index = build_index(emb, kind, params)
    faiss.write_index(index, str(out / f"{sid}.faiss"))  # type: ignore[attr-defined]
    pd.DataFrame({"keyphrase_id": np.asarray(ids, dtype="int64"), "keyphrase": texts}).to_parquet(
        out / f"{sid}.parquet", index=False)
    return {"key": key, "sid": sid, "n": int(len(ids)), "kind": kind, "dim": int(emb.shape[1])}


def write_manifest(out_dir: str | os.PathLike[str], shards: list[dict[str, Any]], shard_by: str,
                   params: IndexParams) -> Path:
    """Write ``manifest.json`` (+ the ``kpspark_model.json`` marker so registry downloads find the folder)."""
    out = Path(out_dir)
    dims = {s["dim"] for s in shards}
    if len(dims) > 1:
        raise KPSparkError(f"shards disagree on the embedding dim: {sorted(dims)}")
    manifest = {"shard_by": shard_by, "params": asdict(params), "dim": dims.pop() if dims else 0,
                "shards": sorted(shards, key=lambda s: s["key"])}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "kpspark_model.json").write_text(json.dumps({"kind": "keyphrase_index", "manifest": MANIFEST}))
    return out / MANIFEST


def read_manifest(index_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an index folder (clear error when it is not one)."""
    p = Path(index_dir) / MANIFEST
    if not p.exists():
        raise KPSparkError(f"{index_dir} is not a keyphrase index (no {MANIFEST}); fit a KeyphraseRetriever first")
    return json.loads(p.read_text())  # type: ignore[no-any-return]


class Shard:
    """A loaded shard: ``search(queries, k)`` -> list per query of (keyphrase_ids, texts, scores)."""

    def __init__(self, index_dir: str | os.PathLike[str], sid: str, ef_search: int, nprobe: int) -> None:
        faiss = require("faiss", "ann")
        d = Path(index_dir)
        try:
            self.index = faiss.read_index(str(d / f"{sid}.faiss"))  # type: ignore[attr-defined]
        except Exception as e:
            raise KPSparkError(f"cannot read shard {sid} of {index_dir}: {e}") from e
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe
        meta = pd.read_parquet(d / f"{sid}.parquet")
        self.ids = meta["keyphrase_id"].to_numpy()
        self.texts = meta["keyphrase"].to_numpy(dtype=object)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row numbers), -1 rows where the shard has fewer than k keyphrases."""
        q = np.ascontiguousarray(queries, dtype="float32")
        return self.index.search(q, min(k, max(1, self.index.ntotal)))  # type: ignore[no-any-return]


_SHARDS: dict[str, Shard] = {}
_LOCK = threading.Lock()


def get_shard(index_dir: str, sid: str, ef_search: int, nprobe: int) -> Shard:
    """One loaded shard per Python worker (faiss single-threaded: Spark already runs one task per core)."""
    key = f"{index_dir}|{sid}|{ef_search}|{nprobe}"
    with _LOCK:
        if key not in _SHARDS:
            faiss = require("faiss", "ann")
            faiss.omp_set_num_threads(1)  # type: ignore[attr-defined]
            _SHARDS[key] = Shard(index_dir, sid, ef_search, nprobe)
        return _SHARDS[key]
