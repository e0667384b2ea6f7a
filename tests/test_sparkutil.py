"""kpspark.sparkutil: freeze (computed once, kept in the session's checkpoint directory, not on executors) and
scratch_dir (folders that go away with their process)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes)


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

    cfg = load_config(overrides=[f"lakehouse.root={tmp_path / 'lake'}"])
    assert checkpoint_dir(cfg) == f"{tmp_path / 'lake'}/_checkpoints/spark"
    cfg = load_config(overrides=["spark.checkpoint_dir=s3://bucket/ckpt"])
    assert checkpoint_dir(cfg) == "s3://bucket/ckpt"


def test_scratch_dir_is_removed_when_the_driver_process_exits(tmp_path):
    code = ("from kpspark.sparkutil import scratch_dir; d = scratch_dir('kpspark-t-'); "
            "open(d + '/model.onnx', 'w').write('x'); print(d)")
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}  # no SPARK_LOCAL_DIRS: a driver / plain Python
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    d = Path(out.stdout.strip())
    assert d.parent == tmp_path and d.name.startswith("kpspark-t-")
    assert not d.exists(), "the scratch folder outlived its process"


def test_scratch_dir_in_a_python_worker_lies_in_the_application_local_dir(spark):
    """Python workers end with os._exit (no exit hooks): their scratch folders (model downloads) must lie in the
    block-manager folder Spark deletes when the executor stops, not in /tmp where they piled up."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def where(s: pd.Series) -> pd.Series:
        import os

        from kpspark.sparkutil import scratch_dir

        return s.map(lambda _: scratch_dir("kpspark-t-") + "|" + os.environ.get("SPARK_LOCAL_DIRS", ""))

    rows = [r[0].split("|") for r in spark.range(2, numPartitions=2).select(where("id")).collect()]
    for path, local_dirs in rows:
        assert local_dirs, "Spark sets SPARK_LOCAL_DIRS for its Python workers"
        assert Path(path).parent == Path(local_dirs.split(",")[0]) and Path(path).is_dir()
        assert Path(path).parent.name.startswith("blockmgr-")


def test_a_classic_session_is_not_connect_and_streams_with_processing_time_by_default(spark):
    from kpspark.production.streaming import resolve_trigger
    from kpspark.sparkutil import is_connect

    assert not is_connect(spark)
    assert resolve_trigger("auto", spark) == "processingTime"  # over Connect: availableNow (tests/test_connect.py)
    assert resolve_trigger("availableNow", spark) == "availableNow"
    with pytest.raises(ValueError, match="streaming.trigger"):
        resolve_trigger("continuous", spark)
