"""What a cross-encoder's shape costs to serve: trained model folders exported and timed on the same pairs.

Each named Hugging Face cross-encoder folder (e.g. the Home Depot run's distilled bert-tiny, a distilled minilm2 and
their minilm6 teacher) is exported to ONNX fp32 + int8 with the library's parity gate (``export_with_parity``), then
scores the same pairs single-threaded with the library's scorer (``OnnxPairScorer``: the Rust tokenizer, length-sorted
micro-batches; one ORT thread = one core, as a Spark worker runs it). The first model is the baseline: every row
carries its pairs/s/core and the ratio to the baseline's, so a wider init's cost and what distillation into the
serving shape buys back are read in one run on one machine. The pairs are Home Depot's (search term, product title)
from ``../shared`` (the script exits 0 with a message without them). Writes ``bench/results/ce_shapes.json``.

    python bench/bench_ce_shapes.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--pairs 8000] [--auc-from FILE ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import HERE, homedepot_absent, machine_info, write_result


def pairs(n: int):
    """(keyphrases, second segments) of ``n`` Home Depot (search term, product title) pairs."""
    import pandas as pd

    from kpspark.crossencoder.text import pair_texts
    from kpspark.data import loaders

    df = pd.read_csv(loaders.HOMEDEPOT_SHARED, encoding="latin-1", usecols=["search_term", "product_title"])
    df = df.sample(n, random_state=0)
    return pair_texts(df["search_term"], [None] * len(df), df["product_title"])


def timed(scorer, a, b, repeats: int = 2) -> float:
    """Best pairs/s of ``repeats`` passes over the pairs (after one warm-up batch)."""
    scorer.logits(a[:64], b[:64])
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        scorer.logits(a, b)
        best = max(best, len(a) / (time.perf_counter() - t0))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+",
                    help="NAME=MODEL_DIR (a trained HF cross-encoder folder); the first is the baseline")
    ap.add_argument("--pairs", type=int, default=8000)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--auc-from", nargs="*", default=[], metavar="NAME=RESULT_JSON",
                    help="copy the held-out AUCs of a model from an eval_homedepot.py result")
    ap.add_argument("--out", default=str(HERE / "results" / "ce_shapes.json"))
    args = ap.parse_args()
    if homedepot_absent():
        return 0

    from transformers import AutoConfig

    from kpspark.artifacts import META_FILE, model_file
    from kpspark.crossencoder.export import export_with_parity
    from kpspark.crossencoder.onnx_scorer import OnnxPairScorer

    a, b = pairs(args.pairs)
    aucs = {}
    for spec in args.auc_from:
        name, path = spec.split("=", 1)
        ce = json.loads(Path(path).read_text())["cross_encoder"]
        aucs[name] = {k: round(v, 4) for k, v in ce.items() if k.startswith("val_auc_human") and "groups" not in k}
    rows = []
    with tempfile.TemporaryDirectory(prefix="kpspark-ce-shapes-") as tmp:
        for spec in args.models:
            name, folder = spec.split("=", 1)
            cfg = AutoConfig.from_pretrained(folder)
            out, parity = export_with_parity(folder, Path(tmp) / name, a[:1000], b[:1000], args.max_length)
            meta = json.loads((out / META_FILE).read_text())
            row = {"model": name, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
                   "int8_kept": parity.int8_ok, "int8_pearson": round(parity.int8_pearson, 5),
                   "int8_decision_agreement": round(parity.int8_decision_agreement, 5),
                   **({} if parity.int8_ok else {"int8_problems": parity.int8_problems[:300]}), **aucs.get(name, {})}
            for precision in ("fp32", "int8"):
                if precision in meta.get("files", {}):
                    scorer = OnnxPairScorer(model_file(out, meta, precision), out, args.max_length, threads=1)
                    row[f"{precision}_pairs_per_s_per_core"] = round(timed(scorer, a, b), 1)
            rows.append(row)
            print(row, flush=True)
    base = rows[0]
    for r in rows:
        for p in ("fp32", "int8"):
            k = f"{p}_pairs_per_s_per_core"
            if k in r and k in base:
                r[f"{p}_ratio_to_{base['model']}"] = round(r[k] / base[k], 3)
    write_result(args.out, {
        "benchmark": "cross_encoder_shapes", "pairs": len(a), "pairs_from": "Home Depot search terms x product titles",
        "max_length": args.max_length,
        "baseline": base["model"], "how": "single-process ORT, 1 thread (one core), the library's scorer, best of 2",
        "target_int8_per_core": 3000, "rows": rows, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
