"""Each model runs once per row: in a full batch, the rows seen by the embedding, the index search and the
cross-encoder scoring functions (counted inside the Python workers) equal their input rows. A plan executed
twice (``df.rdd.getNumPartitions()`` under adaptive execution, a DataFrame read twice without a checkpoint, a
UDF copied into a pushed-down filter) shows here as a ratio above 1.0."""
from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest
from pyspark.ml import PipelineModel

from tests.conftest import lake_copy

pytestmark = pytest.mark.slow


def _counting(factory, out_dir: str, kind: str):
    """``factory``'s UDF body, wrapped to append what each batch held to a file per Python worker."""

    def make(*args, **kwargs):
        inner = factory(*args, **kwargs)

        def counted(batches):
            def tap():
                for b in batches:
                    if kind == "search":
                        keys = [f"{i}|{s}" for i, s in zip(b["item_id"], b["sid"])]
                    elif kind == "score":
                        keys = [f"{k}|{t}" for k, _, t in zip(*b)]
                    else:
                        keys = [f"{t}" for t in b[0]]
                    with open(os.path.join(out_dir, f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:6]}"), "w") as f:
                        json.dump(keys, f)
                    yield b

            return inner(tap())

        return counted

    return make


def _seen(out_dir: Path, kind: str) -> list[str]:
    rows: list[str] = []
    for p in out_dir.glob(f"{kind}-*"):
        rows += json.loads(p.read_text())
    return rows


def test_each_model_runs_once_per_row_in_a_full_batch(spark, pipeline, tmp_path, monkeypatch):
    from pyspark import cloudpickle

    from kpspark.biencoder import embedder
    from kpspark.crossencoder import scorer
    from kpspark.data import tables
    from kpspark.retrieval import retriever
    from kpspark.retrieval.workflow import build_recommendation_pipeline, run_recommend

    cfg = lake_copy(pipeline, tmp_path / "lake", monkeypatch)
    counts = tmp_path / "counts"
    counts.mkdir()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the wrappers travel by value to the workers
    try:
        for mod, name, kind in ((embedder, "make_embed_fn", "embed"), (retriever, "make_search_fn", "search"),
                                (scorer, "make_score_fn", "score")):
            monkeypatch.setattr(mod, name, _counting(getattr(mod, name), str(counts), kind))
        res = run_recommend(cfg, spark, threshold=0.0)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    monkeypatch.undo()
    cfg = lake_copy(pipeline, tmp_path / "lake2", monkeypatch)

    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    n_items = items.count()
    embed, search, score = (_seen(counts, k) for k in ("embed", "search", "score"))
    # the expected inputs, computed apart (uncounted): every item is embedded, searched per routed shard,
    # and each retrieved candidate is scored
    pipe = build_recommendation_pipeline(cfg, res["index_uri"], threshold=0.0)
    candidates = PipelineModel(stages=pipe.stages[:2]).transform(items).count()
    ratios = {"embed": len(embed) / n_items, "search": len(search) / len(set(search)),
              "score": len(score) / candidates}
    assert res["items_in"] == n_items and len({i.split("|")[0] for i in search}) == n_items
    assert ratios == {"embed": 1.0, "search": 1.0, "score": 1.0}, ratios
