"""Benchmark: bi-encoder (MiniLM-L6) item embedding in Spark local mode, Delta -> Delta, texts/s per core.

Same run, same texts, same MiniLM-L6 weights (the packaged all-MiniLM-L6-v2, the student's
starting point: throughput does not depend on fine-tuning):

* ``ours_int8`` / ``ours_fp32``: :class:`TextEmbedder` on the registered ONNX export (length-sorted
  micro-batches, one single-threaded ONNX Runtime session per Python worker), Matryoshka dim 128;
* ``mlflow_st_spark_udf``: the baseline, ``mlflow.pyfunc.spark_udf`` on the same weights logged with
  MLflow's ``sentence_transformers`` flavor;
* ``ours_int8`` on 1 core vs 2 cores (scaling).

Also records the export's parity (int8 vs fp32 cosine on real titles and keyphrases). Each
configuration runs in its own process after a warm-up. Writes ``bench/results/bi_encoder.json``.
Run: ``.venv/bin/python bench/bench_bi_encoder.py``.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from _common import HERE, REPO, bench_cfg, isolated_bench, machine_info, run_isolated, timed_delta_job, write_result  # noqa: E402


def prepare(work: Path, size: str) -> dict:
    """Sample lakehouse + the MiniLM-L6 export (parity-checked) registered as a pyfunc, and the same
    weights logged with MLflow's sentence_transformers flavor (once per work folder)."""
    import mlflow
    import pyarrow.dataset as ds
    from sentence_transformers import SentenceTransformer

    from kpspark.biencoder.export import export_with_parity
    from kpspark.biencoder.text import item_texts
    from kpspark.crossencoder.train import minilm_dir
    from kpspark.registry import models, tracking
    from kpspark.registry.pyfunc import log_bi_encoder
    from kpspark.session import get_spark
    from kpspark.workflows import run_generate_sample

    marker = work / "prepared.json"
    if marker.exists():
        return json.loads(marker.read_text())
    cfg = bench_cfg(work, os.cpu_count() or 2, [f"sample.size={size}"])
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    spark = get_spark(cfg)
    run_generate_sample(cfg, spark)
    spark.stop()
    items = ds.dataset(str(work / "lakehouse" / "items")).to_table().to_pandas().head(500)
    kps = ds.dataset(str(work / "lakehouse" / "keyphrases")).to_table().to_pandas().head(500)
    texts = item_texts(items["title"], items["category"]) + kps["text"].tolist()
    export_dir, parity = export_with_parity(minilm_dir(), work / "export", texts, 64, (384, 256, 128, 64))
    with tracking.start_run(cfg, "bench-bi-encoder-models") as run:
        ours = log_bi_encoder(str(export_dir))
        base = SentenceTransformer(str(minilm_dir()), device="cpu")
        base.max_seq_length = 64
        st = mlflow.sentence_transformers.log_model(base, name="st_model",  # type: ignore[attr-defined]
                                                    pip_requirements=["sentence-transformers", "torch"])
    v = models.register(cfg, ours.model_uri, cfg.models.bi_encoder, alias="champion")
    info = {"model_uri": f"models:/{cfg.models.bi_encoder}/{v}", "st_uri": st.model_uri, "run_id": run.info.run_id,
            "parity": parity.__dict__}
    marker.write_text(json.dumps(info))
    return info


def run_one(work: Path, cores: int, mode: str, info: dict, limit: int) -> dict:
    """One configuration in this process: warm-up, then the timed Delta -> Delta embedding job."""
    import mlflow
    from pyspark.sql import functions as F

    from kpspark.biencoder.embedder import TextEmbedder
    from kpspark.data import tables
    from kpspark.session import get_spark
    from kpspark.sparkutil import ensure_parallelism

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    cfg = bench_cfg(work, cores)
    spark = get_spark(cfg)
    items = tables.read_table(spark, cfg, "items").select("item_id", "title", "category")
    if items.count() > limit:
        items = items.orderBy(F.xxhash64("item_id")).limit(limit)

    def job(src, out):
        df = ensure_parallelism(src)  # the same partitioning for every mode: one task per core
        if mode == "mlflow_st_spark_udf":
            udf = mlflow.pyfunc.spark_udf(spark, info["st_uri"], result_type="array<float>", env_manager="local")
            text = F.concat_ws(" [SEP] ", "title", "category")
            emb = df.withColumn("embedding", udf(text))
        else:
            emb = TextEmbedder(inputCol="title", categoryCol="category", modelUri=info["model_uri"], dim=128,
                               precision="fp32" if mode == "ours_fp32" else "int8").transform(df)
        emb.select("item_id", "embedding").write.format("delta").mode("overwrite").save(str(out))

    return timed_delta_job(spark, job, items, work, mode, cores, warm=200, unit="texts")


def mean_tokens(work: Path, info: dict, n: int = 2000) -> float:
    import pyarrow.dataset as ds

    from kpspark.biencoder.embedder import load_embedder
    from kpspark.biencoder.text import item_texts

    items = ds.dataset(str(work / "lakehouse" / "items")).to_table().to_pandas().head(n)
    emb = load_embedder(info["model_uri"], "int8", f"sqlite:///{work / 'mlflow.db'}")
    encs = emb.tokenizer.encode_batch(item_texts(items["title"], items["category"]))
    return float(sum(len(e.ids) for e in encs) / len(encs))


def main() -> int:
    parsed = isolated_bench(__doc__.splitlines()[0], str(REPO / ".cache" / "bench-be"), 12_000,
                            str(HERE / "results" / "bi_encoder.json"), prepare, run_one,
                            size_help="sample size to generate (items are the texts)",
                            limit_help="item texts embedded per run")
    if parsed is None:
        return 0
    args, work, info = parsed
    cores = os.cpu_count() or 2
    runs = run_isolated(__file__, work, args.limit, [(cores, "ours_int8"), (cores, "ours_fp32"),
                                                           (cores, "mlflow_st_spark_udf"), (1, "ours_int8")])
    by = {(r["mode"], r["cores"]): r for r in runs}
    int8 = by[("ours_int8", cores)]
    result = {
        "benchmark": "bi_encoder_embedding", "machine": {"cores": cores, "platform": platform.platform(),
                                                         **machine_info()},
        "pipeline": "Delta items -> TextEmbedder (title [SEP] category, dim 128) -> Delta",
        "model": "all-MiniLM-L6-v2 (6 layers, hidden 384), max_length 64",
        "parity": info["parity"], "mean_tokens_per_text": round(mean_tokens(work, info), 1), "runs": runs,
        "int8_texts_per_s_per_core": int8["texts_per_s_per_core"],
        "fp32_texts_per_s_per_core": by[("ours_fp32", cores)]["texts_per_s_per_core"],
        "ratio_int8_to_mlflow_st_spark_udf": round(int8["texts_per_s"] / by[("mlflow_st_spark_udf", cores)]["texts_per_s"], 2),
        "scaling_2_cores_vs_1": round(int8["texts_per_s"] / by[("ours_int8", 1)]["texts_per_s"], 2),
        "targets": {"int8_texts_per_s_per_core": 250, "int8_vs_fp32_mean_cosine": 0.99},
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
