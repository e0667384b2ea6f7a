"""LLM server faults: the labeling job against the real llama.cpp server (SmolLM2) on 127.0.0.1 through
a proxy that injects 429s, 500s, timeouts, dropped connections and truncated bodies. Every pair ends
labeled or carries its error and is retried by the next run; the figures are pairs lost (0) and the
time overhead against a clean run over the same pairs."""
from __future__ import annotations

import dataclasses
import time

import pytest

from kpspark.data import tables
from tests.tools.local_server import available, llama_server
from tests.tools.faultproxy import FaultProxy

pytestmark = [pytest.mark.reliability, pytest.mark.slow,
              pytest.mark.skipif(not available(), reason="llama-cpp-python[server] not installed")]

SCHEDULE = ["ok", "429", "ok", "500", "timeout", "ok", "drop", "truncate", "ok", "ok"]


def _with_llm(cfg, base_url, root):
    opts = {"base_url": base_url, "concurrency": 2, "timeout": 5.0, "max_retries": 2, "backoff": 0.1}
    return dataclasses.replace(
        cfg, lakehouse=dataclasses.replace(cfg.lakehouse, root=str(root)),
        # the job's error-rate stop is off: a rerun retries a handful of pairs, and one fault among three would stop
        # it (that stop is tested in tests/labeling/test_judge.py); here every run must write each pair's outcome
        llm=dataclasses.replace(cfg.llm, backend="openai", model="smollm2", options=opts, sample_size=0,
                                chunk_pairs=8, strategy="uniform", max_error_rate=1.0))


def test_labeling_through_a_faulty_proxy_loses_no_pair(spark, cfg, tmp_path, figures):
    import shutil

    from kpspark import workflows

    workflows.run_generate_sample(cfg, spark)
    pairs = tables.read_table(spark, cfg, "pairs").orderBy("item_id", "keyphrase_id").limit(24).localCheckpoint()
    tables.write_table(spark, cfg, "pairs", pairs, mode="overwrite")
    total = tables.read_table(spark, cfg, "pairs").count()
    shutil.copytree(cfg.lakehouse.root, tmp_path / "faulty")
    with llama_server("smollm2", n_threads=1) as base:
        clean = _with_llm(cfg, base, cfg.lakehouse.root)
        t0 = time.time()
        res = workflows.run_label_pairs(clean, spark)
        t_clean = time.time() - t0
        assert res["labeled"] == total and res["errors"] == 0

        runs = []
        proxy = FaultProxy(base, SCHEDULE, hold_s=6.0)
        with proxy as url:
            faulty = _with_llm(cfg, url, tmp_path / "faulty")
            t0 = time.time()
            for _ in range(4):  # rerun until nothing is pending
                r = workflows.run_label_pairs(faulty, spark)
                runs.append({k: r[k] for k in ("pending", "labeled", "errors", "seconds")})
                if r["pending"] == 0 or (r["errors"] == 0 and r["labeled"] == r["pending"]):
                    break
            t_faulty = time.time() - t0
        counts = dict(proxy.counts)
    assert sum(v for k, v in counts.items() if k != "ok") >= 5  # the faults were really served
    labels = tables.read_table(spark, faulty, "llm_labels")
    good = labels.where("error IS NULL AND p_yes IS NOT NULL").count()
    assert good == total, runs
    assert labels.select("item_id", "keyphrase_id").distinct().count() == total  # one row per pair
    assert runs[0]["labeled"] == total  # every pair got a row in the first run: a label or its error
    figures["llm_server_faults"] = {
        "pairs": total, "schedule": SCHEDULE, "runs": runs, "pairs_lost": total - good,
        "clean_s": round(t_clean, 1), "faulty_s": round(t_faulty, 1),
        "retry_overhead": round(t_faulty / max(t_clean, 1e-9), 2), "faults_served": counts}
