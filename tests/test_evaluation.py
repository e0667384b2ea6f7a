"""Offline evaluation: the pure Table 1 core on synthetic numbers, then the report and the promotion
gate on the session's demo pipeline (real models, real MLflow store)."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from kpspark.data import tables
from kpspark.evaluation import offline
from kpspark.registry import models
from kpspark.sparkutil import validation_items
from tests.conftest import lake_copy, use_store


def _synthetic(noise: float, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Truth drives clicks (seen only where search passes) and search; a model's score is truth + noise."""
    rng = np.random.default_rng(seed)
    n = 4000
    truth = (rng.random(n) < 0.4).astype(int)
    search = np.where(rng.random(n) < 0.8, truth, 1 - truth)
    clicked = ((truth == 1) & (search == 1) & (rng.random(n) < 0.5)).astype(int)
    score = np.clip(truth * 0.6 + 0.2 + rng.normal(0, noise, n), 0, 1)
    seg = pd.DataFrame({"score": score, "search_pass": search, "truth": truth.astype(float),
                        "human": np.nan, "clicked": clicked})
    c = seg[seg["clicked"] == 1]
    clicks = pd.DataFrame({"score": c["score"].to_numpy(), "clicks": rng.integers(1, 5, len(c)).astype(float),
                           "sales": rng.random(len(c)) * 50})
    return clicks, seg


def test_table1_rows_are_relative_to_the_baseline_and_better_models_score_better():
    rows = {}
    for name, noise in (("noisy", 0.45), ("good", 0.1)):
        clicks, seg = _synthetic(noise)
        rows[name] = offline.evaluate_variant(clicks, seg, target=0.95)
        assert rows[name]["clicks_kept"] >= 0.95
    table = offline.relative_table(rows, "noisy").set_index("variant")
    assert (table.loc["noisy", ["d_keyphrases", "d_sales", "d_search_pass_rate"]] == 0).all()
    good, noisy = rows["good"], rows["noisy"]
    # a sharper model needs a higher threshold for the same clicks, so it keeps fewer keyphrases,
    # more of them pass search, it agrees more with the truth and keeps fewer irrelevant pairs
    assert table.loc["good", "d_keyphrases"] < 0 < table.loc["good", "d_search_pass_rate"]
    assert good["auc_truth"] > noisy["auc_truth"] and good["kappa_truth"] > noisy["kappa_truth"]
    assert good["irrelevant_kept"] < noisy["irrelevant_kept"]
    assert good["unclicked_relevant_kept"] > 0.8  # relevance the click log never saw is recovered
    with pytest.raises(ValueError, match="baseline"):
        offline.relative_table(rows, "jaccard")


def test_within_group_aucs_cannot_be_won_by_priors():
    """A score that knows only which keyphrases tend to be relevant (a prior per keyphrase) wins pooled AUC and
    is at chance within a keyphrase; one that ranks the products of each query well is not."""
    from kpspark.evaluation import metrics

    rng = np.random.default_rng(0)
    kp = np.repeat(np.arange(200), 20)
    item = np.tile(np.arange(20), 200) + 1000 * (kp % 7)
    base_rate = rng.uniform(0.05, 0.95, 200)[kp]
    truth = (rng.random(len(kp)) < base_rate).astype(float)
    prior = base_rate + rng.normal(0, 1e-3, len(kp))  # no look at the pair itself
    ranker = truth * 0.3 + rng.normal(0, 0.2, len(kp))
    p, r = (metrics.ranking_aucs(truth, s, item=item, keyphrase=kp) for s in (prior, ranker))
    assert p["auc"] > 0.8 and abs(p["auc_within_keyphrase"] - 0.5) < 0.05
    assert r["auc_within_keyphrase"] > 0.8 and r["auc_within_keyphrase_groups"] == p["auc_within_keyphrase_groups"]
    # groups with one class only are not counted; none at all gives NaN
    assert metrics.grouped_auc([1, 1, 0], [0.2, 0.3, 0.1], ["a", "a", "b"]) == (pytest.approx(float("nan"),
                                                                                          nan_ok=True), 0)
    # the offline row reports the three views wherever the frames carry the ids
    clicks, seg = _synthetic(0.1)
    seg = seg.assign(item_id=np.arange(len(seg)) // 10, keyphrase_id=np.arange(len(seg)) % 40)
    row = offline.evaluate_variant(clicks, seg, target=0.95)
    assert 0.8 < row["auc_truth_within_item"] <= 1 and 0.8 < row["auc_truth_within_keyphrase"] <= 1
    assert row["auc_truth_within_item_groups"] > 300


def test_gate_refuses_regressions_and_uncomparable_metrics():
    champ = {"auc_truth": 0.80, "sales_kept": 0.90}
    assert offline.gate({"auc_truth": 0.795, "sales_kept": 0.95}, champ, {"auc_truth": 0.01, "sales_kept": 0.0})[0]
    ok, why = offline.gate({"auc_truth": 0.70, "sales_kept": 0.95}, champ, {"auc_truth": 0.01, "sales_kept": 0.0})
    assert not ok and why[0].startswith("auc_truth")
    ok, why = offline.gate({"x": 1.0}, champ, {"auc_truth": 0.01})
    assert not ok and "no gate metric" in why[-1]


@pytest.fixture
def evaluated(pipeline, monkeypatch):
    use_store(monkeypatch, pipeline[2])
    cfg, out, tmp = pipeline
    return cfg, out["evaluation"], tmp


def test_report_reproduces_table1_for_every_recipe_and_renders(spark, evaluated):
    cfg, ev, _ = evaluated
    assert ev["baseline"] == "jaccard" and {"jaccard", "click_search"} <= set(ev["rows"])
    # every configured recipe is either a row or skipped with its reason
    assert set(ev["rows"]) | set(ev["skipped"]) == {"jaccard", "click_search", "llm"}
    assert all(ev["skipped"].values())
    for name, row in ev["rows"].items():
        assert row["clicks_kept"] >= cfg.retrieval.click_retention - 1e-9, name
        assert 0 < row["keyphrases_kept"] <= row["segment_pairs"]
        assert 0.0 <= row["search_pass_rate"] <= 1.0 and 0.0 <= row["auc_truth"] <= 1.0
        assert row["auc_truth_within_item_groups"] > 0 and 0.0 <= row["auc_truth_within_item"] <= 1.0
    table = pd.read_csv(Path(ev["report"]).parent / "table.csv").set_index("variant")
    assert (table.loc["jaccard", ["d_keyphrases", "d_sales", "d_search_pass_rate"]] == 0).all()
    # only the estimators' held-out items are evaluated: none of them trained a model
    held_out = tables.read_table(spark, cfg, "pairs").where(validation_items(seed=cfg.sample.seed)).count()
    assert all(r["segment_pairs"] == min(held_out, cfg.evaluation.max_pairs) for r in ev["rows"].values())
    page = Path(ev["report"]).read_text()
    assert "Table 1" in page and "click_search" in page and "<img src='threshold_curves.png'>" in page
    for png in ev["plots"]:
        data = Path(png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a rendered figure, not an empty canvas
    # retrieval figures from the final recommendations
    r = ev["retrieval"]
    assert 0 <= r["recall_clicks_in_recommendations"] <= 1 and 0 < r["keyphrase_coverage"] <= 1
    assert any(k.startswith("be_recall_click") for k in r["bi_encoder_recall"])
    # the LLM judged a sample of the recommendations and as many random candidates, with a different prompt
    assert r["judge_prompt"] == "v0" and r["llm_judged_recommendations"] + r["llm_errors_recommendations"] == 6
    assert 0.0 <= r["llm_precision_recommendations"] <= 1.0
    assert r["judge"] == "transformers:smollm2"  # the general model, not the fine-tuned judge that made the labels
    # the paper's judge comparison: the general and the fine-tuned judge on held-out items, from the judge's run
    judges = {j["judge"].split(" ")[0]: j for j in ev["judges"]}
    assert set(judges) == {"general", "finetuned"} and "LLM judge: general vs fine-tuned" in page
    mc = models.client(cfg)
    judge_run = mc.get_run(mc.get_model_version(cfg.models.judge, "1").tags["run_id"])
    assert judges["finetuned"]["kappa"] == pytest.approx(judge_run.data.metrics["finetuned_kappa"])
    assert all(0 <= j["click_concordance"] <= 1 and j["held_out_pairs"] > 0 for j in judges.values())
    # everything is in MLflow
    run = mlflow.get_run(ev["run_id"])
    assert run.data.metrics["click_search.threshold"] == pytest.approx(ev["rows"]["click_search"]["threshold"])
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(ev["run_id"], "report")}
    assert {"report/report.html", "report/threshold_curves.png", "report/table.csv"} <= arts
    assert json.loads((Path(ev["report"]).parent / "report.json").read_text())["baseline"] == "jaccard"


def _inverted_export(src: Path, dst: Path) -> Path:
    """A copy of a cross-encoder export whose ONNX graphs negate the logit: a deliberately worse model
    (it ranks pairs backwards) that still passes every load-time check."""
    import shutil

    import onnx
    from onnx import helper

    shutil.copytree(src, dst)
    for f in dst.glob("*.onnx"):
        m = onnx.load(str(f))
        out = m.graph.output[0].name
        for node in m.graph.node:
            node.output[:] = [o + "_raw" if o == out else o for o in node.output]
        m.graph.node.append(helper.make_node("Neg", [out + "_raw"], [out]))
        onnx.save(m, str(f))
    # re-recorded checksums: a valid export of a worse model, not a corrupted one (which a load refuses)
    from kpspark.artifacts import META_FILE, write_export_meta

    write_export_meta(dst, {k: v for k, v in json.loads((dst / META_FILE).read_text()).items() if k != "sha256"})
    return dst


def test_gate_refuses_a_worse_challenger_and_promotion_honours_it(spark, pipeline, tmp_path, monkeypatch):
    from kpspark.artifacts import local_model_dir
    from kpspark.registry import tracking
    from kpspark.registry.pyfunc import log_cross_encoder

    # on a copy of the demo's lakehouse and store: the versions and aliases moved here never reach other tests
    cfg = lake_copy(pipeline, tmp_path / "lake", monkeypatch)
    name = cfg.models.cross_encoder
    champion = models.get_version(cfg, name, "champion")
    # the demo's champion ranks held-out pairs better than chance, so the same model ranking backwards is worse
    assert pipeline[1]["cross_encoder"]["ce_val_auc_truth"] > 0.55
    worse = _inverted_export(local_model_dir(f"models:/{name}/{champion}"), tmp_path / "worse")
    with tracking.start_run(cfg, "worse-challenger", tags={"kind": "cross_encoder"}):
        info = log_cross_encoder(str(worse))
    version = models.register(cfg, info.model_uri, name, alias="challenger", tags={"recipe": "inverted"})
    _refused_then_forced(cfg, spark, name, champion, version, tmp_path / "lake")


def _refused_then_forced(cfg, spark, name, champion, worse_version, tmp):
    from kpspark.cli import main
    from kpspark.evaluation.report import run_gate

    res = {"version": worse_version}
    assert models.get_version(cfg, name, "challenger") == res["version"] != champion
    decision = run_gate(cfg, spark, promote=True)
    assert decision["decision"] == "refused" and decision["reasons"]
    assert decision["rows"]["challenger"]["auc_truth"] < decision["rows"]["champion"]["auc_truth"]
    assert models.get_version(cfg, name, "champion") == champion  # unchanged
    assert models.client(cfg).get_model_version(name, res["version"]).tags["gate"] == "failed"
    with pytest.raises(models.PromotionRefused, match="failed the evaluation gate"):
        models.promote(cfg, name)
    args = ["--set", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}"]
    assert main(["promote", *args]) == 1
    assert models.get_version(cfg, name, "champion") == champion
    # an explicit override is possible, and rollback restores the champion
    assert main(["promote", "--force", *args]) == 0 and models.get_version(cfg, name, "champion") == res["version"]
    assert main(["rollback", *args]) == 0 and models.get_version(cfg, name, "champion") == champion
