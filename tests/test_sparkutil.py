"""kpspark.sparkutil.freeze: computed once, kept in the session's checkpoint directory (not on executors)."""
from __future__ import annotations

from pathlib import Path


def test_session_has_a_reliable_checkpoint_dir(spark):
    d = spark.sparkContext.getCheckpointDir()
    assert d, "get_spark must give a new session spark.checkpoint.dir"
    assert "spark-checkpoints" in d  # the fixture's folder, not the repo's lakehouse


def test_freeze_computes_once_and_cuts_the_lineage(spark):
    from pyspark.sql import functions as F

    from kpspark.sparkutil import freeze

    df = spark.range(200, numPartitions=2).withColumn("r", F.rand())
    frozen = freeze(df)
    first = frozen.orderBy("id").toPandas()
    second = frozen.orderBy("id").toPandas()
    assert first.equals(second)  # rand() is not evaluated again
    plan = frozen._jdf.queryExecution().analyzed().toString()
    assert "rand(" not in plan.lower()  # read back from the checkpoint, not recomputed
    files = [p for p in Path(spark.sparkContext.getCheckpointDir().replace("file:", "")).rglob("part-*")]
    assert files, "the frame was written to the checkpoint directory"


def test_get_spark_defaults_the_checkpoint_dir_next_to_the_tables(tmp_path):
    from kpspark.config import load_config
    from kpspark.session import checkpoint_dir

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "conf" / "base.yaml", overrides=[f"lakehouse.root={tmp_path / 'lake'}"])
    assert checkpoint_dir(cfg) == f"{tmp_path / 'lake'}/_checkpoints/spark"
    cfg = load_config(repo / "conf" / "base.yaml", overrides=["spark.checkpoint_dir=s3://bucket/ckpt"])
    assert checkpoint_dir(cfg) == "s3://bucket/ckpt"
