"""The jobs on a cluster whose nodes share nothing but the lakehouse storage and the MLflow tracking server
(``tests/clusterutil.py``): the driver, each worker and the MLflow server have a private ``/tmp``. Every job goes
through ``spark-submit`` with the package shipped as a zip (``--py-files``): the model chain (label with the openai
backend against a llama.cpp server, train the cross-encoder, score, train the bi-encoder, embed, evaluate) and
production (full batch, the daily diff of revised and deleted items and new keyphrases, streaming).

While the jobs run, a watcher records what the executors downloaded into their own block-manager folders: the
cross-encoder and bi-encoder exports, and the keyphrase index's shards (from the run artifacts on the tracking
server: each executor fetched the shards it searched). Nothing the driver wrote to its disk can reach them.
Once the application ends, the downloads are gone."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.production import diff
from tests.clusterutil import busiest_stage, shared_lake, submit

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def test_full_batch_and_daily_diff_on_a_cluster_that_shares_only_storage_and_the_tracking_server(
        spark, pipeline, cluster, tmp_path):
    from kpspark.package import build_zip

    lake = shared_lake(cluster, pipeline, "jobs")
    pyfiles = build_zip(cluster.client / "dist")
    roots = [cluster.node_tmp(i) for i in range(len(cluster.workers))]

    with _Watch(roots) as seen:
        full = submit(cluster, "full_batch", lake, pyfiles, tmp_path / "full")
    recs = tables.read_table(spark, lake, "recommendations")
    assert full["recommendations"] == recs.count() > 0
    assert recs.where(F.col("run_id") != full["run_id"]).count() == 0  # one atomic overwrite by that run
    state = diff.read_state(spark, lake)[diff.ITEMS_STATE]
    assert state["run_id"] == full["run_id"] and state["index_uri"].startswith("runs:/")

    # the executors fetched both models and the index shards themselves, into their block-manager folders ...
    assert len(seen.models) >= 2, f"expected the cross-encoder and bi-encoder exports, got {seen.models}"
    assert seen.shards, "no executor downloaded an index shard"
    assert all(any(part.startswith("blockmgr-") for part in p.parts) for p in seen.models | seen.shards)
    # ... which Spark deleted when the application ended: nothing piles up on the workers
    assert _gone(roots), f"downloads left behind: {_leftovers(roots)}"

    # revise two items, delete one, add two keyphrases: the diff applies exactly that (the new keyphrases'
    # index goes to the diff run's artifacts, searched by the executors from there)
    ids = [r.item_id for r in recs.select("item_id").distinct().orderBy("item_id").limit(3).collect()]
    items = tables.read_table(spark, lake, "items")
    tables.upsert(spark, lake, "items", items.where(F.col("item_id").isin(ids[:2]))
                  .withColumn("title", F.concat(F.lit("Used "), F.col("title"))))
    tables.delete_keys(spark, lake, "items", items.where(F.col("item_id") == ids[2]).select("item_id"))
    kps = tables.read_table(spark, lake, "keyphrases")
    top = kps.agg(F.max("keyphrase_id")).first()[0]
    new = kps.orderBy("keyphrase_id").limit(2).withColumn("keyphrase_id", F.col("keyphrase_id") + top + 1) \
        .withColumn("text", F.concat(F.col("text"), F.lit(" pro max")))
    tables.upsert(spark, lake, "keyphrases", new)
    with _Watch(roots) as seen:
        res = submit(cluster, "daily_diff", lake, pyfiles, tmp_path / "diff")
    assert res["changed"] and res["items_upserted"] == 2 and res["items_deleted"] == 1
    assert res["keyphrases_upserted"] == 2
    assert seen.shards, "the diff's executors searched no downloaded shard"
    after = tables.read_table(spark, lake, "recommendations")
    assert after.where(F.col("item_id") == ids[2]).count() == 0
    assert diff.read_state(spark, lake)[diff.ITEMS_STATE]["version"] == res["items_version"]

    # near-real-time: one more revision, picked up by the streaming job (checkpoint on the shared storage)
    tables.upsert(spark, lake, "items", items.where(F.col("item_id") == ids[0])
                  .withColumn("title", F.concat(F.lit("Refurbished "), F.col("title"))))
    stream = submit(cluster, "streaming", lake, pyfiles, tmp_path / "stream",
                    sets={"streaming.trigger": "availableNow"})
    assert stream["batches"] >= 1 and stream["items_upserted"] == 1, stream
    assert tables.read_table(spark, lake, "recommendations").where(
        (F.col("item_id") == ids[0]) & (F.col("run_id") == stream["run_id"])).count() > 0


#: test-sized training, as the session pipeline's (``tests/conftest.py``), under model names of their own so that
#: the chain's first versions become the serving ones
CHAIN = {"models.cross_encoder": "kpchain-ce", "models.bi_encoder": "kpchain-be",
         "cross_encoder.epochs": 8.0, "cross_encoder.batch_size": 32, "cross_encoder.eval_steps": 20,
         "cross_encoder.patience": 4,
         "bi_encoder.init": "minilm2", "bi_encoder.dims": "[384,128,64]", "bi_encoder.max_pairs_per_task": 400,
         "bi_encoder.epochs": 2.0, "bi_encoder.lr": 1e-4, "bi_encoder.eval_steps": 10, "bi_encoder.recall_k": "[10,50]"}


def test_the_model_chain_label_train_score_embed_evaluate_on_a_cluster_that_shares_only_storage_and_tracking(
        spark, pipeline, cluster, tmp_path):
    """Each job of the chain reads only what the one before left in the lakehouse or on the tracking server:
    the trainers run on the driver (its /tmp is private) and log the exports to the server, from which the
    executors of the next job download them."""
    import json

    import mlflow

    from kpspark.package import build_zip
    from tests.tools.local_server import available, llama_server

    if not available():
        pytest.skip("llama.cpp's server is not installed (the dev extra)")
    lake = shared_lake(cluster, pipeline, "chain")
    pyfiles = build_zip(cluster.client / "dist")
    roots = [cluster.node_tmp(i) for i in range(len(cluster.workers))]
    events = cluster.shared / "chain-events"
    events.mkdir()
    n_pairs = 24

    # label: the openai backend against an OpenAI-compatible server (a service every node reaches), on both slots
    labels_before = tables.read_table(spark, lake, "llm_labels").count()
    with llama_server("smollm2", n_threads=1) as base:
        opts = json.dumps({"base_url": base, "concurrency": 1, "timeout": 60})
        lab = submit(cluster, "label_pairs", lake, pyfiles, tmp_path / "label",
                     extra_conf={"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
                                 "spark.eventLog.compress": "false", "spark.default.parallelism": "2"},
                     sets={**CHAIN, "llm.backend": "openai", "llm.model": "smollm2", "llm.options": opts,
                           "llm.strategy": "uniform", "llm.sample_size": n_pairs, "llm.chunk_pairs": n_pairs})
    assert lab["labeled"] == n_pairs and lab["errors"] == 0, lab
    assert tables.read_table(spark, lake, "llm_labels").count() == labels_before + n_pairs
    judged = busiest_stage(events)
    assert judged["tasks"] == 2 and judged["executors_used"] == 2, judged  # the work list spread over both slots

    # train the cross-encoder on the driver: the export reaches the executors only through the tracking server
    ce = submit(cluster, "train_cross_encoder", lake, pyfiles, tmp_path / "ce", sets=CHAIN)
    assert ce["model"] == "kpchain-ce" and ce["promoted"], ce
    with _Watch(roots) as seen:
        sc = submit(cluster, "score_pairs", lake, pyfiles, tmp_path / "score", sets=CHAIN)
    n = tables.read_table(spark, lake, "pairs").count()
    assert (sc["version"], sc["rows_in"], sc["rows_written"], sc["rows_quarantined"]) == (ce["version"], n, n, 0)
    scores = tables.read_table(spark, lake, "pair_scores").where(F.col("model_name") == "kpchain-ce")
    assert scores.where(F.col("score").between(0, 1)).count() == n
    assert seen.models, "no executor downloaded the cross-encoder"

    # the student distils the scores just written; embedding downloads it on the executors
    be = submit(cluster, "train_bi_encoder", lake, pyfiles, tmp_path / "be", sets=CHAIN)
    assert be["model"] == "kpchain-be" and be["promoted"], be
    with _Watch(roots) as seen:
        em = submit(cluster, "embed", lake, pyfiles, tmp_path / "embed", sets=CHAIN)
    n_items = tables.read_table(spark, lake, "items").count()
    n_kps = tables.read_table(spark, lake, "keyphrases").count()
    assert (em["version"], em["items_written"], em["keyphrases_written"]) == (be["version"], n_items, n_kps)
    for t in ("item_embeddings", "keyphrase_embeddings"):
        assert tables.read_table(spark, lake, t).where(
            (F.col("model_name") == "kpchain-be") & (F.size("embedding") == 64)).count() == (
            n_items if t == "item_embeddings" else n_kps)
    assert seen.models, "no executor downloaded the bi-encoder"

    # evaluate: the report is written on the driver's private disk and logged to the server, where it is read back
    ev = submit(cluster, "calibrate_evaluate", lake, pyfiles, tmp_path / "evaluate",
                sets={**CHAIN, "evaluation.recipes": "[click_search]", "evaluation.baseline": "jaccard",
                      "evaluation.judge_sample": 0, "evaluation.output_dir": "/tmp/reports"})
    assert {"jaccard", "click_search"} <= set(ev["rows"]) and ev["models"]["click_search"] == (
        f"models:/kpchain-ce/{ce['version']}")
    logged = {Path(a.path).name for a in mlflow.MlflowClient(cluster.tracking_uri).list_artifacts(
        ev["run_id"], "report")}
    assert {"report.html", "report.json", "table.csv"} <= logged, logged


def _leftovers(roots: list[Path]) -> list[Path]:
    found = []
    for r in roots:
        try:
            found += list(r.rglob("kpspark-model-*")) + list(r.rglob("kpspark-shard-*"))
        except OSError:  # a folder deleted while we walk, or the worker's namespace gone
            pass
    return found


def _gone(roots: list[Path], timeout: float = 60) -> bool:
    """The worker deletes an application's folders asynchronously once it has finished."""
    deadline = time.time() + timeout
    while _leftovers(roots):
        if time.time() > deadline:
            return False
        time.sleep(0.5)
    return True


class _Watch:
    """Records, while a job runs, the model exports (``kpspark_model.json``) and index shards (``*.faiss``) in
    the executors' scratch folders under the workers' private /tmp: they are deleted with the application, so
    looking afterwards shows nothing."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots, self.models, self.shards = roots, set(), set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for d in _leftovers(self.roots):
                try:
                    if d.name.startswith("kpspark-model-"):
                        self.models.update(d.rglob("kpspark_model.json"))
                    else:
                        self.shards.update(d.rglob("*.faiss"))
                except OSError:
                    pass
            self._stop.wait(0.2)

    def __enter__(self) -> "_Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
