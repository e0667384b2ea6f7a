"""Small helpers shared by the Spark stages: input-column checks, task slots and parallelism, frames computed once,
scratch folders that go away with their process."""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from kpspark.errors import SchemaError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)


def check_input_cols(stage: str, dataset: "DataFrame", roles: Mapping[str, str], outputs: Iterable[str] = (),
                     dtype: str = "string", optional: Iterable[str] = ()) -> None:
    """Raise :class:`SchemaError` when a role's column is missing or not ``dtype``, or an output exists.

    ``roles`` maps a role ("title") to its column name; roles listed in ``optional`` may map to ``""``.
    """
    types = dict(dataset.dtypes)
    opt = set(optional)
    for role, c in roles.items():
        if not c and role in opt:
            continue
        if c not in types:
            raise SchemaError(f"{stage}: input lacks the {role} column {c!r}; found {dataset.columns}")
        if types[c] != dtype:
            raise SchemaError(f"{stage}: column {c!r} must be {dtype}, found {types[c]}")
    clash = [c for c in outputs if c in types]
    if clash:
        raise SchemaError(f"{stage}: output column(s) {clash} already exist in the input")


def find_stage(pipeline: Any, kind: type) -> Any:
    """The one stage of ``pipeline`` (a ``PipelineModel``) that is a ``kind``; a clear error when absent."""
    found = [s for s in pipeline.stages if isinstance(s, kind)]
    if len(found) != 1:
        raise ValueError(f"the pipeline has {len(found)} {kind.__name__} stages, expected one: "
                         f"{[type(s).__name__ for s in pipeline.stages]}")
    return found[0]


def scratch_dir(prefix: str) -> str:
    """A new private folder for files a process needs only while it lives (a model downloaded from MLflow, an
    index or a training output already logged there), removed with the process:

    * in a Spark Python worker it lies under the application's block-manager dir (``SPARK_LOCAL_DIRS``, which
      Spark sets for its Python workers and deletes when the executor stops) — workers end with ``os._exit``,
      so an exit hook alone would never run there;
    * everywhere, an exit hook removes it when the process ends normally (the driver, plain Python).
    """
    local = [d for d in os.environ.get("SPARK_LOCAL_DIRS", "").split(",") if d and os.path.isdir(d)]
    path = tempfile.mkdtemp(prefix=prefix, dir=local[0] if local else None)
    atexit.register(shutil.rmtree, path, True)
    return path


def freeze(dataset: "DataFrame") -> "DataFrame":
    """Compute ``dataset`` now, once, for several later reads — and keep it where a lost executor
    cannot take it.

    With a checkpoint directory on the SparkContext (sessions built by :func:`kpspark.session.get_spark`
    have one) this is a reliable ``checkpoint``: the rows are written to that directory and read back
    from it, so nondeterministic steps (model UDFs, sampling) are never recomputed. Without one the
    frame is persisted (memory and disk) and counted: a lost block is recomputed from its lineage.
    ``localCheckpoint`` is never used: its blocks live only on executors and a lost one fails the job.
    Over Spark Connect the frame is checkpointed on the server (its ``spark.checkpoint.dir``; sessions started
    by :func:`kpspark.session.get_spark` set one), with a warning and the persisted frame if the server refuses.
    Callers that freeze in a loop should ``unpersist()`` what they no longer read.
    """
    from pyspark import StorageLevel

    if is_connect(dataset.sparkSession):  # no SparkContext on the client: the server's checkpoint dir decides
        try:
            return dataset.checkpoint(eager=True)
        except Exception as e:  # noqa: BLE001 (a server without a checkpoint dir, or a Connect without checkpoints)
            logger.warning("freeze over Spark Connect: checkpoint failed (%s); the frame is persisted instead, and a "
                           "lost block is recomputed from its lineage", str(e).splitlines()[0][:300])
    elif dataset.sparkSession.sparkContext.getCheckpointDir():
        return dataset.checkpoint(eager=True)
    frozen = dataset.persist(StorageLevel.MEMORY_AND_DISK)
    frozen.count()
    return frozen


def is_connect(spark: "Any") -> bool:
    """Whether ``spark`` is a Spark Connect session (no SparkContext, no JVM on the client)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def task_slots(spark: "Any", min_partitions: int = 0) -> int:
    """How many tasks a model stage should run in: ``min_partitions`` when > 0, else the session's default
    parallelism (``spark.default.parallelism``, the cluster's cores), read from the configuration — never by
    executing a plan. Over Spark Connect (no SparkContext on the client) ``spark.sql.shuffle.partitions``."""
    if min_partitions > 0:
        return int(min_partitions)
    conf = spark.conf.get("spark.default.parallelism", None)
    if conf:
        return max(1, int(conf))
    if is_connect(spark):
        return max(1, int(spark.conf.get("spark.sql.shuffle.partitions", "200") or 200))
    return max(1, int(spark.sparkContext.defaultParallelism))


def ensure_parallelism(dataset: "DataFrame", min_partitions: int = 0) -> "DataFrame":
    """Spread a model stage's input over the cluster's task slots (:func:`task_slots`).

    Model inference is CPU-bound per row, so a small Delta table read as one file, anything after
    ``limit``, or a shuffle that adaptive execution coalesced into one partition would otherwise run on one
    core while the others idle. The partition count is not looked up (``df.rdd.getNumPartitions()``
    executes every upstream shuffle stage under adaptive execution, which ran the upstream models twice);
    the input is repartitioned to the slots instead — a user-given count that adaptive execution keeps.
    ``min_partitions``: that many tasks (0 = the slots); ``-1`` leaves the input as it is.
    """
    if min_partitions < 0:
        return dataset
    return dataset.repartition(task_slots(dataset.sparkSession, min_partitions))


def validation_items(fraction: float = 0.2, seed: int = 42) -> Any:
    """Boolean column: is this row's ``item_id`` in the held-out fold? The estimators' validation split
    and the offline evaluation use the same fold, so evaluation never sees a training item."""
    from pyspark.sql import functions as F

    return (F.pmod(F.xxhash64("item_id", F.lit(seed)), F.lit(1000)) / 1000.0) < fraction


def split_by_item(stage: str, dataset: "DataFrame", need: list[str], optional: Iterable[str] = (),
                  fraction: float = 0.2, seed: int = 42) -> tuple[Any, Any]:
    """(train, validation) pandas frames of an estimator's training rows, split by a hash of
    ``item_id`` so no item is in both. ``need`` columns must exist (else :class:`SchemaError`);
    ``optional`` ones are kept when present. Rows without a label, keyphrase or title cannot train
    and are left out, with a warning that counts them."""

    missing = [c for c in need if c not in dataset.columns]
    if missing:
        raise SchemaError(f"{stage}: input lacks {missing}; found {dataset.columns}")
    cols = list(need) + [c for c in optional if c in dataset.columns]
    pdf = dataset.select(*cols).withColumn("_val", validation_items(fraction, seed)).toPandas()
    usable = pdf[["label", "keyphrase", "title"]].notna().all(axis=1)
    if not usable.all():
        logger.warning("%s: %d of %d rows have no label, keyphrase or title and are not used for training",
                       stage, int((~usable).sum()), len(pdf))
    pdf = pdf[usable]
    return pdf[~pdf["_val"]].drop(columns="_val"), pdf[pdf["_val"]].drop(columns="_val")


def try_cast(column: str, dtype: Any) -> "Any":
    """``column`` cast to ``dtype`` (a DataType or SQL type name), null where the value does not convert — on every
    Spark line (``Column.try_cast`` is Spark 4 only; the SQL function is there since 3.2)."""
    from pyspark.sql import functions as F

    name = dtype if isinstance(dtype, str) else dtype.simpleString()
    return F.expr(f"try_cast(`{column.replace('`', '``')}` AS {name})")
