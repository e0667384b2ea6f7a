"""Each model runs once per row: in a full batch, the rows seen by the embedding, the index search and the
cross-encoder scoring functions (counted inside the Python workers, ``tests/invocations.py``) equal their input
rows. A plan executed twice (``df.rdd.getNumPartitions()`` under adaptive execution, a DataFrame read twice
without a checkpoint, a UDF copied into a pushed-down filter) shows here as a ratio above 1.0."""
from __future__ import annotations

import pytest

from tests.conftest import lake_copy
from tests.invocations import counting

pytestmark = pytest.mark.slow


def test_each_model_runs_once_per_row_in_a_full_batch(spark, pipeline, tmp_path, monkeypatch):
    from kpspark.data import tables
    from kpspark.retrieval.workflow import run_recommend

    cfg = lake_copy(pipeline, tmp_path / "lake", monkeypatch)
    with counting(tmp_path / "counts") as seen:
        res = run_recommend(cfg, spark, threshold=0.0)
    n_items = tables.read_table(spark, cfg, "items").count()
    embed, search, found, score = (seen(k) for k in ("embed", "search", "search_out", "score"))
    # every item embedded once; each (item, shard) searched once; each candidate scored once: the candidates
    # are the top k of the distinct keyphrases the search found per item (several shards for an unseen category)
    per_item: dict[str, set] = {}
    for key in found:
        item, kp = key.split("|")
        per_item.setdefault(item, set()).add(kp)
    candidates = sum(min(cfg.retrieval.k, len(kps)) for kps in per_item.values())
    ratios = {"embed": len(embed) / n_items, "search": len(search) / len(set(search)),
              "score": len(score) / candidates}
    assert res["items_in"] == n_items and len({i.split("|")[0] for i in search}) == n_items and candidates > 0
    assert ratios == {"embed": 1.0, "search": 1.0, "score": 1.0}, ratios
