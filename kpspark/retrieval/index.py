"""Sharded faiss indexes of keyphrase embeddings (pure Python; the Spark stages are thin shells).

One shard per category (or per hash bucket). The index kind follows the shard size: exact
inner-product search (``flat``) up to ``exact_max`` keyphrases, IVF above (``bench/bench_retrieval.py``
on 0.93M sample keyphrases, dim 128, top-100: IVF nprobe 16 kept recall 0.99 at 25x exact, HNSW M=32
only 0.77-0.83 at the same speed). ``kind="hnsw"`` is still available.
Each shard is two files, ``<sid>.faiss`` (the index, faiss ids = row numbers) and ``<sid>.parquet``
(keyphrase_id, keyphrase text per row); ``manifest.json`` lists the shards. Embeddings are
L2-normalized, so inner product = cosine.

Where an index lives (its *location*) is either a folder (every node must read it: shared storage) or an
MLflow artifact URI. On a cluster the index is built into ``runs:/<run id>/index``: each executor builds its
shards and uploads them to the run itself, the driver adds the manifest, and each executor that searches
downloads just the shard files it needs from the tracking server, into its own scratch folder, kept in a
bounded per-process cache. No file of one node is read by another.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kpspark.artifacts import META_FILE, download, is_artifact_uri
from kpspark.cache import ProcessCache
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


def _folder(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def run_artifact_dest(location: str) -> tuple[str, str]:
    """(run id, artifact path) of a ``runs:/<run id>/<path>`` location, the only URI an index is built into."""
    if not location.startswith("runs:/"):
        raise ValueError(f"an index is built into a folder or a runs:/<run id>/<path> URI, got {location!r}")
    run_id, _, path = location[len("runs:/"):].strip("/").partition("/")
    if not run_id:
        raise ValueError(f"no run id in {location!r}")
    return run_id, path


def _client(tracking_uri: str | None) -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri or None, registry_uri=tracking_uri or None)


def _upload(location: str, tracking_uri: str | None, folder: str | os.PathLike[str]) -> None:
    """Log every file of ``folder`` to the run of a ``runs:/<run id>/<path>`` location."""
    run_id, path = run_artifact_dest(location)
    _client(tracking_uri).log_artifacts(run_id, str(folder), path or None)


def _in_scratch(location: str, tracking_uri: str | None, build: Any) -> Any:
    """``build(folder)`` into a folder of ``location`` itself, or — for a run location — into a scratch folder
    uploaded to the run (each executor uploads what it built: no disk of one node is read by another)."""
    if not is_artifact_uri(location):
        out = _folder(location)
        out.mkdir(parents=True, exist_ok=True)
        return build(out)
    import shutil

    from kpspark.sparkutil import scratch_dir

    tmp = scratch_dir("kpspark-index-upload-")
    try:
        result = build(Path(tmp))
        _upload(location, tracking_uri, tmp)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_shard(location: str, tracking_uri: str | None, key: str, ids: np.ndarray, texts: list[str],
                  emb: np.ndarray, params: IndexParams) -> dict[str, Any]:
    """Build one shard and put it at ``location`` (see :func:`_in_scratch`); returns its manifest entry."""
    return _in_scratch(location, tracking_uri,  # type: ignore[no-any-return]
                       lambda out: write_shard(out, key, ids, texts, emb, params))


def write_manifest(location: str | os.PathLike[str], shards: list[dict[str, Any]], shard_by: str,
                   params: IndexParams, tracking_uri: str | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` (+ the :data:`~kpspark.artifacts.META_FILE` marker so registry downloads find the folder)
    at ``location``; returns the manifest."""
    dims = {s["dim"] for s in shards}
    if len(dims) > 1:
        raise KPSparkError(f"shards disagree on the embedding dim: {sorted(dims)}")
    manifest = {"shard_by": shard_by, "params": asdict(params), "dim": dims.pop() if dims else 0,
                "shards": sorted(shards, key=lambda s: s["key"])}
    def write(out: Path) -> None:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        (out / META_FILE).write_text(json.dumps({"kind": "keyphrase_index", "manifest": MANIFEST}))

    _in_scratch(str(location), tracking_uri, write)
    return manifest


def _fetch(location: str, tracking_uri: str | None, name: str) -> Path:
    """A local copy of one file of an index location (folders are read in place)."""
    if not is_artifact_uri(location):
        return _folder(location) / name
    try:
        return download(f"{location.rstrip('/')}/{name}", tracking_uri, "kpspark-shard-")
    except Exception as e:
        raise KPSparkError(f"cannot download {name} of the keyphrase index {location}: {e}") from e


def read_manifest(location: str | os.PathLike[str], tracking_uri: str | None = None) -> dict[str, Any]:
    """The manifest of an index (a folder or an artifact URI; clear error when it is not one)."""
    location = str(location)
    try:
        p = _fetch(location, tracking_uri, MANIFEST)
    except KPSparkError as e:
        hint = "fit a KeyphraseRetriever first"
        if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():  # a lakehouse from another store
            hint = ("the run is not on this tracking server (a lakehouse whose pipeline_state came from another "
                    "store?): a full batch here builds and logs the index again")
        raise KPSparkError(f"{location} is not a keyphrase index ({e}); {hint}") from e
    if not p.exists():
        raise KPSparkError(f"{location} is not a keyphrase index (no {MANIFEST}); fit a KeyphraseRetriever first")
    return json.loads(p.read_text())  # type: ignore[no-any-return]


def check_shards(location: str, manifest: dict[str, Any], tracking_uri: str | None = None) -> None:
    """Raise :class:`KPSparkError` naming the shard files the manifest lists but the location lacks (checked
    on the driver, before any task runs). A ``models:/`` location is not listed (its files are checked when
    an executor downloads them)."""
    want = {f"{s['sid']}.{ext}" for s in manifest["shards"] for ext in ("faiss", "parquet")}
    if not is_artifact_uri(location):
        have = set(os.listdir(_folder(location))) if _folder(location).is_dir() else set()
    elif location.startswith("runs:/"):
        run_id, path = run_artifact_dest(location)
        have = {Path(f.path).name for f in _client(tracking_uri).list_artifacts(run_id, path or None)}
    else:
        return
    missing = sorted(want - have)
    if missing:
        raise KPSparkError(f"the keyphrase index {location} lacks {len(missing)} shard file(s) its manifest "
                           f"lists: {missing[:6]}{' ...' if len(missing) > 6 else ''}")


class Shard:
    """A loaded shard: ``search(queries, k)`` -> (scores, row numbers); ``ids``/``texts`` per row."""

    def __init__(self, index_dir: str | os.PathLike[str], sid: str, ef_search: int, nprobe: int,
                 tracking_uri: str | None = None) -> None:
        faiss = require("faiss", "ann")
        location = str(index_dir)
        self.local_files: list[Path] = []
        try:
            index_file, meta_file = (_fetch(location, tracking_uri, f"{sid}.{ext}") for ext in ("faiss", "parquet"))
            self.index = faiss.read_index(str(index_file))  # type: ignore[attr-defined]
        except Exception as e:
            raise KPSparkError(f"cannot read shard {sid} of {location}: {e}") from e
        if is_artifact_uri(location):
            self.local_files = [index_file, meta_file]
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe
        meta = pd.read_parquet(meta_file)
        self.ids = meta["keyphrase_id"].to_numpy()
        self.texts = meta["keyphrase"].to_numpy(dtype=object)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row numbers), -1 rows where the shard has fewer than k keyphrases."""
        q = np.ascontiguousarray(queries, dtype="float32")
        return self.index.search(q, min(k, max(1, self.index.ntotal)))  # type: ignore[no-any-return]

    def release(self) -> None:
        """Drop the downloaded files (the shard was evicted from the cache)."""
        import shutil

        for f in self.local_files:
            shutil.rmtree(f.parent, ignore_errors=True)


#: shards one Python worker keeps loaded at once (least recently used evicted first); rows are routed so a
#: task sees few shards, and a worker that ends up with more than this reloads instead of holding every shard
SHARD_CACHE_SIZE = int(os.environ.get("KPSPARK_SHARD_CACHE", "8"))
SHARDS = ProcessCache("index shards", SHARD_CACHE_SIZE, on_evict=lambda shard: shard.release())


def get_shard(index_dir: str, sid: str, ef_search: int, nprobe: int, tracking_uri: str | None = None,
              cache_size: int | None = None) -> Shard:
    """A loaded shard from this Python worker's bounded LRU cache (faiss single-threaded: Spark already runs
    one task per core). ``index_dir``: a folder or an artifact URI; an executor downloads only the shard
    files it searches."""
    def load() -> Shard:
        faiss = require("faiss", "ann")
        faiss.omp_set_num_threads(1)  # type: ignore[attr-defined]
        return Shard(index_dir, sid, ef_search, nprobe, tracking_uri)

    return SHARDS.get((tracking_uri or "", index_dir, sid, ef_search, nprobe), load,  # type: ignore[no-any-return]
                      size=cache_size or None)
