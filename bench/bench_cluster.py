"""Labeling on the isolated loopback cluster (``tests/clusterutil.py``: nodes share only the lakehouse folder and
an MLflow tracking server), one worker (the baseline) against two, in the same run.

Each worker has a llama.cpp server beside it (SmolLM2-135M, one thread for generation and for prompt processing,
whose default is every core) and its executor talks to that one
(``base_url=http://127.0.0.1:${KPSPARK_LLM_PORT}/v1``, the variable set per worker, as a node-local sidecar
would be). ``jobs/label_pairs.py`` goes through ``spark-submit`` with the openai backend on the same pending
pairs of the same lakehouse. From the job's result and Spark's event log: pairs/s end to end and over the
judge stage alone, tasks, the executors that ran judge tasks vs the task slots, and each executor's busy time.
Target: two workers >= 1.8x one.

Writes ``bench/results/cluster.json``. Run: ``.venv/bin/python bench/bench_cluster.py [--pairs 240]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _common import machine_info, write_result  # noqa: E402


def run(workers: int, lake_src: Path, pairs: int) -> dict:
    from kpspark.config import load_config
    from tests.tools.local_server import free_port, llama_server
    from kpspark.package import build_zip
    from tests.clusterutil import REPO, Cluster, busiest_stage, submit

    ports = [free_port() for _ in range(workers)]
    with contextlib.ExitStack() as stack:
        for p in ports:
            stack.enter_context(llama_server("smollm2", port=p, n_threads=1))
        c = Cluster(workers, worker_env=[{"KPSPARK_LLM_PORT": str(p)} for p in ports])
        stack.callback(c.stop)
        lake = c.shared / "lakehouse"
        shutil.copytree(lake_src, lake)
        events = c.shared / "events"
        events.mkdir()
        cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
            f"lakehouse.root={lake}", f"mlflow.tracking_uri={c.tracking_uri}", "mlflow.artifact_root="])
        opts = json.dumps({"base_url": "http://127.0.0.1:${KPSPARK_LLM_PORT}/v1", "concurrency": 1, "timeout": 60})
        t0 = time.time()
        res = submit(c, "label_pairs", cfg, build_zip(c.client / "dist"), c.base / "job",
                     extra_conf={"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
                                 "spark.eventLog.compress": "false",
                                 "spark.default.parallelism": "2"},
                     sets={"llm.backend": "openai", "llm.model": "smollm2", "llm.options": opts,
                           "llm.strategy": "uniform", "llm.sample_size": pairs, "llm.chunk_pairs": pairs})
        job_s = time.time() - t0
        stage = busiest_stage(events)
    assert res["errors"] == 0 and res["labeled"] == pairs, res
    return {"workers": workers, "task_slots": workers, "llm_servers": workers, "pairs": res["labeled"],
            "errors": res["errors"], "labeling_s": res["seconds"], "submit_s": round(job_s, 1),
            "pairs_per_s": res["pairs_per_s"], "judge_stage": stage,
            "judge_stage_pairs_per_s": round(res["labeled"] / stage["wall_s"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=240)
    args = ap.parse_args()
    from kpspark.config import load_config
    from kpspark.session import get_spark
    from kpspark.workflows import run_generate_sample
    from tests.clusterutil import REPO, isolation_available

    if not isolation_available():
        sys.exit("needs `unshare --mount` (root on Linux)")
    work = Path(tempfile.mkdtemp(prefix="kpspark-bench-cluster-", dir="/var/tmp"))
    try:
        cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
            f"lakehouse.root={work / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
            "sample.size=small", "spark.master=local[2]", f"spark.jars_dir={REPO / '.cache' / 'jars'}",
            "spark.checkpoint_dir=none"])
        spark = get_spark(cfg)
        run_generate_sample(cfg, spark)
        spark.stop()
        runs = [run(n, work / "lakehouse", args.pairs) for n in (1, 2)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = runs
    result = {
        "what": "jobs/label_pairs.py through spark-submit on the isolated loopback cluster, openai backend, one "
                "llama.cpp server (SmolLM2-135M, 1 thread) beside each worker, same pending pairs",
        "runs": runs,
        "speedup_two_vs_one_workers": round(two["pairs_per_s"] / one["pairs_per_s"], 3),
        "speedup_judge_stage": round(two["judge_stage_pairs_per_s"] / one["judge_stage_pairs_per_s"], 3),
        "target": ">= 1.8x", "machine": machine_info(),
    }
    write_result(HERE / "results" / "cluster.json", result)


if __name__ == "__main__":
    main()
