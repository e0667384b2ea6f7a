"""Benchmark: cross-encoder scoring in Spark local mode, Delta -> Delta, pairs/s per core.

Same run, same registered model, same pairs:

* ``ours_int8`` / ``ours_fp32``: :class:`OnnxCrossEncoderModel` (length-sorted micro-batches, one
  single-threaded ONNX Runtime session per Python worker);
* ``mlflow_spark_udf``: the baseline, ``mlflow.pyfunc.spark_udf`` on the same registered pyfunc;
* ``ours_int8`` on 1 core vs 2 cores (scaling);
* ``ours_int8_static``: the same trained weights exported with ``quantization: static`` (calibrated activation
  ranges: a pair's score does not depend on its batch-mates), against the registered dynamic int8.

Each configuration runs in its own process (its own ``local[N]`` Spark), after a warm-up on a
slice, timing read pairs + join texts + score + write Delta. Writes
``bench/results/cross_encoder.json``. Run: ``.venv/bin/python bench/bench_cross_encoder.py``.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from _common import HERE, REPO, bench_cfg, isolated_bench, machine_info, run_isolated, timed_delta_job, write_result  # noqa: E402


def prepare(work: Path, size: str) -> dict:
    """Generate the sample lakehouse and train + register a small model (once per work folder)."""
    from kpspark.crossencoder.workflow import run_train_cross_encoder
    from kpspark.registry import models
    from kpspark.session import get_spark
    from kpspark.workflows import run_generate_sample

    marker = work / "prepared.json"
    if marker.exists():
        return json.loads(marker.read_text())
    cfg = bench_cfg(work, os.cpu_count() or 2, [f"sample.size={size}", "cross_encoder.recipe=search",
                                           "cross_encoder.max_train_pairs=20000", "cross_encoder.epochs=4",
                                           "cross_encoder.batch_size=64",
                                           "cross_encoder.eval_steps=50"])
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    spark = get_spark(cfg)
    run_generate_sample(cfg, spark)
    res = run_train_cross_encoder(cfg, spark)
    models.set_alias(cfg, res["model"], "champion", res["version"])
    info = {"model_uri": f"models:/{res['model']}/{res['version']}", "train": {k: res[k] for k in (
        "ce_val_auc_truth", "ce_parity_int8_pearson", "ce_parity_int8_decision_agreement") if k in res}}
    info["static"] = static_export(work, Path(res["output_dir"]) / "model")
    spark.stop()
    marker.write_text(json.dumps(info))
    return info


def _pairs(work: Path, n: int) -> tuple[list[str], list[str]]:
    """(sentence A, sentence B) of the first ``n`` candidate pairs, read from the lakehouse without Spark."""
    import pyarrow.dataset as ds

    from kpspark.crossencoder.text import pair_texts

    items = ds.dataset(str(work / "lakehouse" / "items")).to_table().to_pandas()
    kps = ds.dataset(str(work / "lakehouse" / "keyphrases")).to_table().to_pandas()
    pairs = ds.dataset(str(work / "lakehouse" / "pairs")).to_table().to_pandas().head(n)
    df = pairs.merge(items, on="item_id").merge(kps[["keyphrase_id", "text"]], on="keyphrase_id")
    return pair_texts(df["text"], df["category"], df["title"])


def static_export(work: Path, model_dir: Path) -> dict:
    """The trained weights exported again with static int8, into ``work/static_export`` (scored from that folder)."""
    from kpspark.crossencoder.export import export_with_parity

    a, b = _pairs(work, 2000)
    from kpspark.artifacts import META_FILE

    out, parity = export_with_parity(model_dir, work / "static_export", a, b, 64, quantization="static")
    kept = json.loads((out / META_FILE).read_text()).get("quantization", "none (fp32 only)")
    if kept != "static":  # the export fell back: a row scored from it would not be static int8
        raise SystemExit(f"static int8 missed parity on this model ({parity.int8_problems}); kept: {kept}")
    return {"uri": str(out), "int8_pearson": round(parity.int8_pearson, 5),
            "int8_decision_agreement": round(parity.int8_decision_agreement, 4)}


def run_one(work: Path, cores: int, mode: str, model_uri: str, limit: int) -> dict:
    """One configuration in this process: warm-up, then the timed Delta -> Delta scoring job."""
    import mlflow
    from pyspark.sql import functions as F

    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.data import tables
    from kpspark.session import get_spark
    from kpspark.sparkutil import ensure_parallelism

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    cfg = bench_cfg(work, cores)
    spark = get_spark(cfg)
    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    kps = tables.read_table(spark, cfg, "keyphrases").select("keyphrase_id", F.col("text").alias("keyphrase"))
    pairs = tables.read_table(spark, cfg, "pairs").select("item_id", "keyphrase_id")
    if pairs.count() > limit:
        pairs = pairs.limit(limit)

    def job(src, out):
        # the same partitioning for every mode: one task per core (a small Delta table is one file)
        df = ensure_parallelism(src.join(items, "item_id").join(kps, "keyphrase_id"))
        if mode == "mlflow_spark_udf":
            udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="double", env_manager="local")
            scored = df.withColumn("score", udf("keyphrase", "category", "title"))
        else:
            scored = OnnxCrossEncoderModel(modelUri=model_uri, precision="fp32" if mode == "ours_fp32" else "int8",
                                           batchSize=16).transform(df)
        scored.select("item_id", "keyphrase_id", "score").write.format("delta").mode("overwrite").save(str(out))

    return timed_delta_job(spark, job, pairs, work, mode, cores, warm=2000)


def mean_tokens(work: Path, model_uri: str, n: int = 5000) -> float:
    from kpspark.crossencoder.scorer import load_scorer

    sc = load_scorer(model_uri, "int8", f"sqlite:///{work / 'mlflow.db'}")
    a, b = _pairs(work, n)
    return float(sum(len(e.ids) for e in sc.tokenizer.encode_batch(list(zip(a, b)))) / len(a))


def _run_mode(work: Path, cores: int, mode: str, info: dict, limit: int) -> dict:
    uri = info["static"]["uri"] if mode == "ours_int8_static" else info["model_uri"]
    return run_one(work, cores, mode, uri, limit)


def main() -> int:
    parsed = isolated_bench(__doc__.splitlines()[0], str(REPO / ".cache" / "bench-ce"), 240_000,
                            str(HERE / "results" / "cross_encoder.json"), prepare, _run_mode,
                            limit_help="pairs scored per run")
    if parsed is None:
        return 0
    args, work, info = parsed
    cores = os.cpu_count() or 2
    runs = run_isolated(__file__, work, args.limit, [(cores, "ours_int8"), (cores, "ours_fp32"), (cores, "mlflow_spark_udf"),
                                                           (1, "ours_int8"), (cores, "ours_int8_static")])
    by = {(r["mode"], r["cores"]): r for r in runs}
    int8 = by[("ours_int8", cores)]
    result = {
        "benchmark": "cross_encoder_scoring", "machine": {"cores": cores, "platform": platform.platform(), **machine_info()},
        "pipeline": "Delta pairs -> join items/keyphrases -> score -> Delta", "model": info,
        "mean_tokens_per_pair": round(mean_tokens(work, info["model_uri"]), 1), "runs": runs,
        "int8_pairs_per_s_per_core": int8["pairs_per_s_per_core"],
        "fp32_pairs_per_s_per_core": by[("ours_fp32", cores)]["pairs_per_s_per_core"],
        "static_int8_pairs_per_s_per_core": by[("ours_int8_static", cores)]["pairs_per_s_per_core"],
        "ratio_static_int8_to_dynamic_int8": round(by[("ours_int8_static", cores)]["pairs_per_s"] / int8["pairs_per_s"], 3),
        "ratio_int8_to_mlflow_spark_udf": round(int8["pairs_per_s"] / by[("mlflow_spark_udf", cores)]["pairs_per_s"], 2),
        "scaling_2_cores_vs_1": round(int8["pairs_per_s"] / by[("ours_int8", 1)]["pairs_per_s"], 2),
        "paper_pairs_per_s_per_core": 324, "targets": {"int8_per_core": 3000, "fp32_per_core": 2200,
                                                       "ratio_to_mlflow": 3.5, "scaling": 1.8},
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
