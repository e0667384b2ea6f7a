"""Benchmark of the LLM judge backends runnable here, with their baselines in the same run.

* ``transformers`` (SmolLM2-135M-Instruct, CPU): pairs/s at batch size 16 vs batch size 1 (baseline).
* ``openai`` against a real llama.cpp server on 127.0.0.1 serving the same model:
  - the server's own max throughput, measured with its own load (raw HTTP requests from a thread
    pool at several concurrency levels, no kpspark code);
  - kpspark's client sequential (concurrency 1, the baseline) and concurrent;
  - ratios: concurrent / sequential, and concurrent / server max (target >= 0.9: the server, not
    the client, is the bottleneck).
* prompt-injection flip rates per backend, for the hardened template (v1) and the naive one (v0).

Writes ``bench/results/llm_judge.json``. Run: ``.venv/bin/python bench/bench_llm_judge.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
from _common import machine_info, write_result  # noqa: E402


def sample_pairs(n: int) -> list[tuple[str, str, str]]:
    from kpspark.sample import generate_pandas

    t = generate_pandas("tiny", seed=3)
    df = (t["pairs"].merge(t["items"], on="item_id").merge(t["keyphrases"][["keyphrase_id", "text"]], on="keyphrase_id")
          .merge(t["ground_truth"], on=["item_id", "keyphrase_id"]))
    df = df.sample(n=min(n, len(df)), random_state=0)
    return list(zip(df["text"], df["category"], df["title"]))


def prompts(pairs, version="v1"):
    from kpspark.labeling.backends import PairPrompt
    from kpspark.labeling.prompts import load_template, render

    t = load_template(version)
    return [PairPrompt(k, c, ti, render(t, k, c, ti)) for k, c, ti in pairs]


def rate(fn, n):
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench_transformers(pairs, threads):
    from kpspark.labeling.backends import load_backend
    from kpspark.labeling.injection import flip_rate
    from kpspark.labeling.prompts import load_template

    t0 = time.perf_counter()
    be = load_backend("transformers", "smollm2", torch_threads=threads)
    load_s = time.perf_counter() - t0
    ps = prompts(pairs)
    be.judge(ps[:4])  # warm-up
    batched = rate(lambda: [be.judge(ps[i:i + 16]) for i in range(0, len(ps), 16)], len(ps))
    single = rate(lambda: [be.judge([p]) for p in ps[:16]], 16)
    inj = {v: vars(flip_rate(be, pairs[:8], load_template(v))) for v in ("v1", "v0")}
    return {"model": be.model_id, "load_s": round(load_s, 1), "threads": threads,
            "pairs_per_s_batch16": round(batched, 2), "pairs_per_s_batch1": round(single, 2),
            "ratio_batch16_to_batch1": round(batched / single, 2), "injection": inj}


def raw_server_max(base, ps, levels=(1, 2, 4)):
    """The server's own max throughput: plain concurrent HTTP requests, no kpspark client."""
    def one(p):
        body = json.dumps({"model": "smollm2", "messages": p.messages, "max_tokens": 1, "temperature": 0.0,
                           "logprobs": True, "top_logprobs": 20}).encode()
        req = urllib.request.Request(base + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()

    out = {}
    for c in levels:
        with ThreadPoolExecutor(c) as pool:
            out[c] = rate(lambda: list(pool.map(one, ps)), len(ps))
    return out


def bench_openai(pairs, threads):
    from kpspark.labeling.backends import load_backend
    from kpspark.labeling.injection import flip_rate
    from tests.tools.local_server import llama_server
    from kpspark.labeling.prompts import load_template

    ps = prompts(pairs)
    with llama_server("smollm2", n_threads=threads) as base:
        seq = load_backend("openai", "smollm2", base_url=base, concurrency=1)
        con = load_backend("openai", "smollm2", base_url=base, concurrency=4)
        seq.judge(ps[:4])  # warm-up
        server = raw_server_max(base, ps)
        r_seq = rate(lambda: seq.judge(ps), len(ps))
        r_con = rate(lambda: con.judge(ps), len(ps))
        errors = sum(r.error is not None for r in con.judge(ps[:16]))
        inj = {v: vars(flip_rate(con, pairs[:8], load_template(v))) for v in ("v1", "v0")}
    best = max(server.values())
    return {"server": "llama.cpp (llama-cpp-python server)", "server_max_pairs_per_s": round(best, 2),
            "server_pairs_per_s_by_concurrency": {str(k): round(v, 2) for k, v in server.items()},
            "client_sequential_pairs_per_s": round(r_seq, 2), "client_concurrent_pairs_per_s": round(r_con, 2),
            "ratio_concurrent_to_sequential": round(r_con / r_seq, 2),
            "ratio_client_to_server_max": round(r_con / best, 3), "errors_in_16": errors,
            "retries": con.retries, "injection": inj}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--out", default=str(HERE / "results" / "llm_judge.json"))
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    pairs = sample_pairs(args.pairs)
    result = {"benchmark": "llm_judge", "machine": {"cores": cores, **machine_info(),
                                                   "python": sys.version.split()[0]},
              "pairs": len(pairs), "backends": {}}
    result["backends"]["transformers"] = bench_transformers(pairs, cores)
    from tests.tools.local_server import available

    if available():
        result["backends"]["openai"] = bench_openai(pairs, cores)
    else:
        result["backends"]["openai"] = {"skipped": "llama-cpp-python[server] not installed"}
    result["backends"]["vllm"] = {"skipped": "needs a GPU; none on this machine"}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
