"""Retrieval pieces on real Spark and real faiss, with synthetic embeddings (no model training):
normalization, de-duplication, the sharded index and its search, the relevance filter, save/load.
The full embed -> retrieve -> score -> filter pipeline runs in the demo test."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from kpspark.data import tables
from kpspark.errors import KPSparkError, SchemaError
from kpspark.evaluation.retrieval import exact_topk
from kpspark.retrieval.dedupe import canonical_map, run_dedupe
from kpspark.evaluation.calibration import ThresholdModel
from kpspark.retrieval.index import IndexParams, build_index, read_manifest
from kpspark.rules import NormalizeOptions, group_key as normalize_keyphrase
from kpspark.retrieval.retriever import KeyphraseRetriever, KeyphraseRetrieverModel

faiss = pytest.importorskip("faiss")


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


def _clustered(n, d, centers, rng):
    c = rng.normal(size=(centers, d))
    return _unit(c[rng.integers(0, centers, n)] + 0.35 * rng.normal(size=(n, d)))


@pytest.mark.parametrize("text,key", [
    ("iPhone Cases!", "case iphone"), ("case  iphone", "case iphone"), ("AA Batteries", "aa battery"),
    ("Ｉｐｈｏｎｅ　CASE", "case iphone"), ("glasses", "glass"), ("bus", "bus"), ("!!! ...", ""), (None, ""),
])
def test_normalize_keyphrase(text, key):
    assert normalize_keyphrase(text) == key


def test_normalize_options_keep_variants_apart():
    opts = NormalizeOptions(plural=False, word_order=False)
    assert normalize_keyphrase("iphone cases", opts) != normalize_keyphrase("case iphone", opts)


def test_dedupe_groups_variants_and_quarantines_empty_keys(spark, cfg):
    rows = [(1, "iPhone Case", 10), (2, "iphone cases", 50), (3, "case iphone", None), (4, "cordless drill", 5),
            (5, "!!!", 7), (6, "Cordless  Drills", 1)]
    df = spark.createDataFrame(rows, "keyphrase_id long, text string, search_volume long")
    tables.write_table(spark, cfg, "keyphrases", df.withColumn("normalized", F.lit(None).cast("string"))
                       .withColumn("category", F.lit("c")))
    out = run_dedupe(cfg, spark)
    assert out["keyphrases_in"] == 6 == out["mapped"] + out["quarantined"]
    assert out["quarantined"] == 1 and out["canonical"] == 2 and out["duplicates_removed"] == 3
    m = {r.keyphrase_id: r.canonical_id for r in tables.read_table(spark, cfg, "keyphrase_map").collect()}
    assert m[1] == m[2] == m[3] == 2  # highest search volume wins
    assert m[4] == m[6] == 4
    q = tables.read_table(spark, cfg, "quarantine").where(F.col("source_table") == "keyphrase_map").collect()
    assert [r.reason for r in q] == ["empty_after_normalization"] and '"!!!"' in q[0].record
    mapped, bad = canonical_map(df)
    assert mapped.count() + bad.count() == df.count()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_index_recall_vs_exact(kind):
    rng = np.random.default_rng(0)
    corpus, queries = _clustered(20_000, 32, 200, rng), _clustered(200, 32, 200, rng)
    _, exact = exact_topk(queries, corpus, 20)
    index = build_index(corpus, kind, IndexParams(ef_search=128, ivf_nprobe=16))
    _, got = index.search(queries, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(exact.tolist(), got.tolist())])
    assert recall >= 0.9, recall
    assert IndexParams().kind_for(100) == "flat" and IndexParams().kind_for(50_000) == "ivf"
    assert IndexParams(kind="hnsw").kind_for(100) == "hnsw"


@pytest.fixture()
def indexed(spark, tmp_path):
    rng = np.random.default_rng(1)
    d = 16
    cats = ["phones"] * 300 + ["tools"] * 200 + ["tiny"] * 3  # "tiny" has fewer keyphrases than k
    emb = _clustered(len(cats), d, 20, rng)
    kps = spark.createDataFrame(
        [(i, f"kp {i}", c, emb[i].tolist()) for i, c in enumerate(cats)],
        "keyphrase_id long, text string, category string, embedding array<float>")
    model = KeyphraseRetriever(indexDir=str(tmp_path / "index"), k=10, idCol="item_id").fit(kps)
    return model, emb, np.array(cats), d


def test_retriever_matches_exact_search_per_shard(spark, indexed):
    model, emb, cats, d = indexed
    rng = np.random.default_rng(2)
    q = _clustered(6, d, 3, rng)
    item_cats = ["phones", "tools", "tiny", "unseen", None, "phones"]
    items = spark.createDataFrame(
        [(100 + i, f"title {i}", item_cats[i], q[i].tolist() if i != 5 else None) for i in range(6)],
        "item_id long, title string, category string, embedding array<float>")
    out = model.transform(items)
    assert "embedding" not in out.columns and "title" in out.columns
    got = {}
    for r in out.collect():
        got.setdefault(r.item_id, []).append((r.retriever_rank, r.keyphrase_id))
    # known category: exactly the exact top-k of that shard (flat index, small shards)
    for i, c in [(0, "phones"), (1, "tools")]:
        ids = np.nonzero(cats == c)[0]
        _, top = exact_topk(q[i:i + 1], emb[ids], 10)
        assert [k for _, k in sorted(got[100 + i])] == ids[top[0]].tolist()
    assert len(got[102]) == 3  # the shard has 3 keyphrases < k
    # unseen and missing categories: fallback 'all' searches every shard = global exact top-k
    _, top = exact_topk(q[3:4], emb, 10)
    assert [k for _, k in sorted(got[103])] == top[0].tolist()
    assert 104 in got
    assert 105 not in got  # no embedding: no candidates
    none = model.copy({model.fallback: "none"}).transform(items)
    assert {r.item_id for r in none.select("item_id").distinct().collect()} == {100, 101, 102, 105} - {105}


def test_hash_shards_search_everything(spark, tmp_path, indexed):
    _, emb, _, d = indexed
    kps = spark.createDataFrame([(i, f"kp {i}", None, emb[i].tolist()) for i in range(len(emb))],
                                "keyphrase_id long, text string, category string, embedding array<float>")
    model = KeyphraseRetriever(indexDir=str(tmp_path / "h"), shardBy="hash", numHashShards=3, k=5).fit(kps)
    assert len(read_manifest(tmp_path / "h")["shards"]) == 3
    q = _clustered(2, d, 2, np.random.default_rng(3))
    items = spark.createDataFrame([(1, q[0].tolist(), "x"), (2, q[1].tolist(), None)],
                                  "item_id long, embedding array<float>, category string")
    got = {}
    for r in model.transform(items).collect():
        got.setdefault(r.item_id, []).append((r.retriever_rank, r.keyphrase_id))
    _, top = exact_topk(q, emb, 5)
    assert [k for _, k in sorted(got[1])] == top[0].tolist()
    assert [k for _, k in sorted(got[2])] == top[1].tolist()


def test_retriever_and_filter_save_load_in_a_pipeline(spark, tmp_path, indexed):
    model, emb, _, _ = indexed
    pipe = PipelineModel(stages=[model, ThresholdModel(scoreCol="retriever_score", threshold=0.5, filterRows=True)])
    pipe.write().overwrite().save(str(tmp_path / "pipe"))
    back = PipelineModel.load(str(tmp_path / "pipe"))
    items = spark.createDataFrame([(1, "phones", emb[0].tolist())], "item_id long, category string, "
                                  "embedding array<float>")
    a = sorted((r.keyphrase_id, r.retriever_score) for r in pipe.transform(items).collect())
    b = sorted((r.keyphrase_id, r.retriever_score) for r in back.transform(items).collect())
    assert a == b and a and all(s >= 0.5 for _, s in a)
    assert isinstance(back.stages[0], KeyphraseRetrieverModel) and back.stages[0].getOrDefault("k") == 10


def test_relevance_filter_and_bad_input(spark, tmp_path, indexed):
    model, _, _, _ = indexed
    df = spark.createDataFrame([(1, 0.9), (2, 0.2), (3, None)], "id long, ce_score double")
    assert [r.id for r in ThresholdModel(threshold=0.5, filterRows=True).transform(df).collect()] == [1]
    with pytest.raises(SchemaError, match="score column"):
        ThresholdModel(scoreCol="nope").transform(df)
    with pytest.raises(SchemaError, match="embedding"):
        model.transform(spark.createDataFrame([(1,)], "item_id long"))
    with pytest.raises(KPSparkError, match="not a keyphrase index"):
        KeyphraseRetrieverModel(indexDir=str(tmp_path / "missing")).transform(
            spark.createDataFrame([(1, [0.1])], "item_id long, embedding array<float>"))
    # a run this tracking store does not have (a lakehouse copied from another store): say so, and the way out
    with pytest.raises(KPSparkError, match="not on this tracking server.*full batch"):
        KeyphraseRetrieverModel(indexDir="runs:/0123456789abcdef0123456789abcdef/index").transform(
            spark.createDataFrame([(1, [0.1])], "item_id long, embedding array<float>"))
    with pytest.raises(ValueError, match="shardBy"):
        KeyphraseRetriever(indexDir=str(tmp_path / "x"), shardBy="weird").fit(
            spark.createDataFrame([(1, "a", [0.1])], "keyphrase_id long, text string, embedding array<float>"))


def test_an_index_built_into_a_run_is_uploaded_by_the_executors_and_searched_from_there(spark, tmp_path, indexed):
    """indexDir=runs:/<run>/index: each executor uploads its shards to the run, the driver adds the manifest,
    and the search downloads the shards it needs from the run (not from the folder the fit ran in)."""
    import mlflow

    folder_model, emb, cats, _ = indexed
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("idx", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        kps = spark.createDataFrame(
            [(i, f"kp {i}", c, emb[i].tolist()) for i, c in enumerate(cats)],
            "keyphrase_id long, text string, category string, embedding array<float>")
        model = KeyphraseRetriever(indexDir=f"runs:/{run.info.run_id}/index", k=10, idCol="item_id",
                                   trackingUri=uri).fit(kps)
    logged = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run.info.run_id, "index")}
    manifest = model.manifest()
    assert {f"index/{s['sid']}.{x}" for s in manifest["shards"] for x in ("faiss", "parquet")} <= logged
    assert {"index/manifest.json", "index/kpspark_model.json"} <= logged and len(manifest["shards"]) == 3
    items = spark.createDataFrame([(1, "phones", emb[0].tolist()), (2, "tools", emb[400].tolist())],
                                  "item_id long, category string, embedding array<float>")
    a = sorted((r.item_id, r.keyphrase_id) for r in model.transform(items).collect())
    b = sorted((r.item_id, r.keyphrase_id) for r in folder_model.transform(items).collect())
    assert a == b and len(a) == 20
    # a shard gone from the run's artifacts: the transform refuses on the driver, naming it
    victim = next((tmp_path / "artifacts").rglob("*.faiss"))
    victim.unlink()
    with pytest.raises(KPSparkError, match=f"lacks 1 shard file.*{victim.name}"):
        model.transform(items)
    with pytest.raises(ValueError, match="runs:/<run id>/<path>"):
        KeyphraseRetriever(indexDir="s3://bucket/index").fit(kps)


def test_a_missing_shard_fails_on_the_driver_before_any_task(spark, tmp_path, indexed):
    model, emb, _, _ = indexed
    index = tmp_path / "index"
    victim = sorted(index.glob("*.faiss"))[0]
    victim.unlink()
    items = spark.createDataFrame([(1, "phones", emb[0].tolist())], "item_id long, category string, "
                                  "embedding array<float>")
    with pytest.raises(KPSparkError, match=f"lacks 1 shard file.*{victim.name}"):
        model.transform(items)


def test_the_shard_cache_is_bounded_and_releases_downloads(tmp_path):
    from kpspark.retrieval import index as ix

    rng = np.random.default_rng(4)
    for key in ("a", "b", "c"):
        ix.write_shard(tmp_path, key, np.arange(5), [f"t{i}" for i in range(5)], _unit(rng.normal(size=(5, 4))),
                       IndexParams())
    ix.SHARDS.clear()
    before = ix.SHARDS.loads
    for key in ("a", "b", "a", "c", "a", "b"):
        ix.get_shard(str(tmp_path), ix.shard_id(key), 16, 4, cache_size=2)
    # a, b, (a: hit), c evicts b (least recent), (a: hit), b again: loaded anew, evicting c
    assert len(ix.SHARDS.keys()) == 2 and ix.SHARDS.loads - before == 4
    ix.SHARDS.clear()
