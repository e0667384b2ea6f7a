"""Score the same pairs with kpspark's ONNX stage and the Spark NLP stage in one Spark 3.5 session started with
the Spark NLP jars (the test suite's own session has none): ``python -m tests.tools.sparknlp_parity EXPORT PAIRS
PRECISION OUT`` writes ``{"ours": [...], "nlp": [...]}`` (scores in ``id`` order) to OUT. One precision per process:
Spark NLP ships each model to executors as ``model.onnx``, so one application scores with one model."""
from __future__ import annotations

import json
import sys

from tests.conftest import REPO


def main(export: str, pairs: str, precision: str, out: str) -> int:
    from kpspark.config import load_config
    from kpspark.crossencoder.scorer import OnnxCrossEncoderModel
    from kpspark.crossencoder.sparknlp import SparkNlpCrossEncoderModel
    from kpspark.session import get_spark

    cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
        "spark.master=local[2]", "spark.with_nlp=true", f"spark.jars_dir={REPO / '.cache' / 'jars'}",
        "spark.conf.spark.driver.memory=2g", "spark.conf.spark.sql.shuffle.partitions=2"])
    spark = get_spark(cfg, app_name="kpspark-sparknlp-parity")
    df = spark.read.parquet(pairs)

    def scores(stage):
        return [r.score for r in stage.transform(df).select("id", "score").orderBy("id").collect()]

    nlp = SparkNlpCrossEncoderModel(modelUri=export, precision=precision)
    sc = spark.sparkContext  # the Spark jobs its transform runs (a lazy stage runs none: they come with an action)
    sc.setJobGroup("transform", "transform")
    nlp.transform(df)
    jobs = len(sc.statusTracker().getJobIdsForGroup("transform"))
    sc.setJobGroup("", "")
    result = {"ours": scores(OnnxCrossEncoderModel(modelUri=export, precision=precision)), "nlp": scores(nlp),
              "transform_jobs": jobs}
    with open(out, "w") as fh:
        json.dump(result, fh)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
