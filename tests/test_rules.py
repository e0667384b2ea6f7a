"""The domain rules (kpspark.rules), and that every stage reads the one definition: the same click positives in
the cross-encoder recipes, the bi-encoder's click task, calibration and evaluation; the same normalized text in
the loader, the sample and de-duplication; one top-n order."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from kpspark import rules
from kpspark.config import ClickPositiveConfig
from kpspark.data import tables


def test_threshold_search_keeps_the_target_share_and_is_the_largest_such():
    rng = np.random.default_rng(0)
    s, w = rng.random(5000), rng.integers(1, 20, 5000).astype(float)
    for weights in (w, None):
        ww = np.ones_like(s) if weights is None else weights
        for target in (0.5, 0.9, 0.95, 1.0):
            t = rules.retention_threshold(s, weights, target)
            assert ww[s >= t].sum() >= target * ww.sum() - 1e-6
            above = s[s > t]  # the next higher score would keep too little
            if len(above):
                assert ww[s >= above.min()].sum() < target * ww.sum()
    # unweighted: the (1 - target) lower quantile; NaN scores and zero weights are ignored
    assert rules.retention_threshold(s, target=0.95) == pytest.approx(np.sort(s)[int(0.05 * len(s))])
    assert rules.retention_threshold([0.2, 0.4, np.nan], target=1.0) == 0.2
    assert rules.retention_threshold([0.9, 0.1], [1.0, 0.0], target=1.0) == 0.9
    with pytest.raises(ValueError, match="no scored positives"):
        rules.retention_threshold([np.nan])
    with pytest.raises(ValueError, match="target"):
        rules.retention_threshold([0.3], target=0.0)


HOSTILE = ["  USB-C  Cables!! ", "Ｆｕｌｌ　Width", "STRASSE straße", "iphone case\t\n", "", "!!!", "a.b-c_d",
           "café  CAFE\u0301", None]


def test_one_normalizer_in_loader_sample_and_dedupe(spark):
    from pyspark.sql import functions as F

    from kpspark.sample.marketplace import keyphrase_universe

    # the loader's Spark column is the Python rule, row for row (nulls normalize to '')
    df = spark.createDataFrame([(t,) for t in HOSTILE], "q string")
    got = [r[0] for r in df.select(rules.normalize_text_col(F.col("q"))).collect()]
    assert got == [rules.normalize_text(t) for t in HOSTILE]
    assert rules.normalize_text("Ｆｕｌｌ　Width") == "full width" and rules.normalize_text("STRASSE straße") == \
        "strasse strasse"
    # the sample's normalized column is the same rule
    kp = keyphrase_universe(1, 42)
    assert (kp["normalized"] == kp["text"].map(rules.normalize_text)).all()
    # the de-duplication key is built on it: normalizing first changes nothing
    for t in HOSTILE + kp["text"].head(500).tolist():
        assert rules.group_key(t) == rules.group_key(rules.normalize_text(t))
    assert rules.group_key("Cases, iPhone") == rules.group_key("iphone case") == "case iphone"
    assert rules.group_key("usb-c") == "c usb"
    assert rules.group_key("usb-c", rules.NormalizeOptions(punctuation=False, word_order=False)) == "usb-c"


def test_click_positive_rule_on_a_log(spark):
    log = spark.createDataFrame([
        (1, 10, 20, 1, 0.0), (1, 10, 15, 0, 5.0),  # summed over the window: 35 impressions, 1 click -> positive
        (2, 20, 29, 5, 0.0),  # too few impressions
        (3, 30, 5000, 1, 0.0),  # CTR 0.02% < 0.1%
        (4, 40, 1000, 1, 1.0),  # CTR exactly 0.1%
        (5, 50, 100, 0, 0.0),  # no click
    ], "item_id long, keyphrase_id long, impressions long, clicks long, sales double")
    got = rules.click_positives(log, ClickPositiveConfig()).toPandas().sort_values("item_id")
    assert got["item_id"].tolist() == [1, 4]
    assert got["impressions"].tolist() == [35, 1000] and got["clicks"].tolist() == [1.0, 1.0]
    assert got["sales"].tolist() == [5.0, 1.0]
    loose = rules.click_positives(log, ClickPositiveConfig(min_impressions=1, min_clicks=1, min_ctr=0.0))
    assert sorted(r.item_id for r in loose.collect()) == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def sample_lake(spark, tmp_path_factory):
    from kpspark.config import load_config
    from kpspark.workflows import run_generate_sample
    from tests.conftest import REPO

    tmp = tmp_path_factory.mktemp("rules")
    cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
        f"lakehouse.root={tmp / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        "sample.size=tiny"])
    run_generate_sample(cfg, spark)
    return cfg


def test_every_stage_reads_the_same_click_positives(spark, sample_lake):
    from kpspark.biencoder.workflow import task_rows
    from kpspark.crossencoder.recipes import recipe_pairs
    from kpspark.evaluation.report import eval_frames

    cfg = sample_lake
    want = {(r.item_id, r.keyphrase_id) for r in
            rules.click_positives(tables.read_table(spark, cfg, "clicks"), cfg.click_positive).collect()}
    clicked = {(r.item_id, r.keyphrase_id) for r in
               tables.read_table(spark, cfg, "clicks").where("clicks > 0").collect()}
    assert want and want < clicked  # the rule is stricter than "any click" on the sample
    ce = recipe_pairs(spark, cfg, "click_search").where("source = 'click'").collect()
    assert {(r.item_id, r.keyphrase_id) for r in ce} == want
    be = task_rows(spark, dataclasses.replace(cfg, bi_encoder=dataclasses.replace(cfg.bi_encoder,
                                                                                 max_pairs_per_task=10**6)),
                   ("click",)).collect()
    assert {(r.item_id, r.keyphrase_id) for r in be} <= want and len(be) > 0.9 * len(want)  # minus unknown texts
    ev = dataclasses.replace(cfg, evaluation=dataclasses.replace(cfg.evaluation, holdout=False, max_pairs=0))
    clicks, segment = eval_frames(spark, ev)
    assert {(r.item_id, r.keyphrase_id) for r in clicks.collect()} <= want
    seg = segment.toPandas()
    assert set(map(tuple, seg.loc[seg["clicked"] == 1, ["item_id", "keyphrase_id"]].to_numpy())) <= want


def test_top_n_order_and_version_stamp(spark):
    from pyspark.ml import PipelineModel

    from kpspark.biencoder.embedder import TextEmbedder
    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel

    df = spark.createDataFrame([(1, 7, 0.9, 0.5), (1, 3, 0.9, 0.5), (1, 5, 0.9, 0.6), (1, 9, 0.95, 0.1),
                                (2, 1, 0.1, 0.1)], "item_id long, keyphrase_id long, ce_score double, "
                               "retriever_score double")
    got = rules.top_n(df, 3).toPandas().sort_values(["item_id", "rank"])
    # CE score first, then retriever score, then keyphrase id
    assert got["keyphrase_id"].tolist() == [9, 5, 3, 1] and got["rank"].tolist() == [1, 2, 3, 1]
    pipe = PipelineModel(stages=[TextEmbedder(modelUri="models:/be/3"), OnnxCrossEncoderModel(modelUri="models:/ce/7")])
    assert rules.version_stamp(pipe) == {"retriever_version": "be/3", "ce_version": "ce/7"}
    with pytest.raises(ValueError, match="OnnxCrossEncoderModel"):
        rules.version_stamp(PipelineModel(stages=[pipe.stages[0]]))


def test_keyphrase_text_column(spark):
    kps = spark.createDataFrame(pd.DataFrame({"keyphrase_id": [1], "text": ["usb cable"], "category": ["x"]}))
    got = rules.keyphrase_texts(kps, "category")
    assert got.columns == ["keyphrase_id", rules.KEYPHRASE, "category"] and got.first()[rules.KEYPHRASE] == "usb cable"


def test_the_cross_encoder_text_is_the_same_built_in_python_or_in_spark(spark):
    """`category [SEP] title` built in Spark (the Spark NLP path, the benchmark's mlflow peer) is the Python rule's
    text, for blank, missing and padded categories and titles."""
    from pyspark.sql import functions as F

    from kpspark.crossencoder.sparknlp import SEP_STANDIN, pair_text
    from kpspark.crossencoder.text import pair_texts, second_segment, second_segment_column

    rows = [("Phones", "Red case"), (" Phones ", "  Red case "), ("", "Red case"), ("  ", "Red case"), (None, "Red case"),
            ("Phones", None), (None, None)]
    df = spark.createDataFrame(rows, "category string, title string").withColumn("kp", F.lit(" red case "))
    got = df.select(second_segment_column(F.col("category"), F.col("title")).alias("b"),
                    second_segment_column(None, F.col("title")).alias("no_cat"),
                    pair_text(F.col("kp"), F.col("category"), F.col("title")).alias("nlp")).collect()
    a, b = pair_texts(["red case"] * len(rows), [c for c, _ in rows], [t for _, t in rows])
    assert [r["b"] for r in got] == b == [second_segment(c, t) for c, t in rows]
    assert [r["no_cat"] for r in got] == [second_segment(None, t) for _, t in rows]
    assert [r["nlp"] for r in got] == [f"{x} [SEP] {y}".replace("[SEP]", SEP_STANDIN) for x, y in zip(a, b)]
