"""The one place that builds (or checks) a SparkSession with Delta Lake.

``get_spark(cfg)``:

* **an active session exists** (notebook, Databricks, Spark Connect, a test fixture): it is
  returned after checking that Delta's SQL extension and catalog are configured;
* **under spark-submit**: the master and jars come from spark-submit (``--jars``, or the
  properties file); Delta's extension/catalog are added when missing;
* **plain Python**: ``local[*]`` (or ``spark.master`` of the config) with the cached Delta jars
  on ``spark.jars`` (see :mod:`kpspark.jars`), Arrow on, the UI off.

A session it builds gets ``spark.checkpoint.dir`` (see :func:`checkpoint_dir`), so the frames that
jobs compute once and read several times are reliable checkpoints that survive a lost executor
(:func:`kpspark.sparkutil.freeze`).

Library stages never call this; jobs, notebooks and tests do.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from kpspark import jars
from kpspark.config import Config, load_config
from kpspark.errors import JarsMissingError, KPSparkError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
#: Spark's default ``(?i)secret|password|token|access[.]key`` plus API keys and credentials
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|api[._-]?key|credential|[._]key$"
#: only for local masters (also under spark-submit, set on the session): few snapshot partitions keep small Delta
#: logs quick on one machine (a new table's first snapshot: ~3 s in Delta's default 50 tasks); a cluster keeps
#: Delta's default (its tables' logs are larger, and the setting would serialize their reconstruction)
LOCAL_ONLY = {"spark.databricks.delta.snapshotPartitions": "2"}

_DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.databricks.delta.retentionDurationCheck.enabled": "false",
    # Spark's default pattern misses API keys handed to executors (spark.executorEnv.OPENAI_API_KEY):
    # with this they are masked in the UI, the event log and the environment listing
    "spark.redaction.regex": REDACTION_REGEX,
    # reliable checkpoints (sparkutil.freeze) are deleted once their frame is garbage
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
}


def delta_configured(spark: "SparkSession") -> bool:
    """True when the session has Delta's SQL extension and catalog."""
    ext = spark.conf.get("spark.sql.extensions", "") or ""
    cat = spark.conf.get("spark.sql.catalog.spark_catalog", "") or ""
    return DELTA_EXTENSION in ext and DELTA_CATALOG in cat


def checkpoint_dir(cfg: Config) -> str:
    """Where a new session keeps reliable checkpoints: ``spark.checkpoint_dir``, or a folder next to the
    tables (on a cluster that is shared storage, which a checkpoint needs)."""
    from kpspark.data.tables import lakehouse_root

    return cfg.spark.checkpoint_dir or f"{lakehouse_root(cfg)}/_checkpoints/spark"


def _warn_local_tracking(cfg: Config, master: str) -> None:
    """On a cluster, an MLflow store that is a file of the driver (sqlite, ./mlruns) is out of the executors'
    reach unless it sits on shared storage: say so before a job hands its URI to them."""
    from kpspark.registry.tracking import tracking_uri

    uri = tracking_uri(cfg)
    if not master.startswith("local") and (uri.startswith(("sqlite:", "file:")) or "://" not in uri):
        logger.warning("MLflow tracking URI %s is a file on the driver: executors download models and index "
                       "shards through it, so on a cluster it must be on storage every node reads — or use a "
                       "tracking server (mlflow.tracking_uri=http://...)", uri)


def _conf(cfg: Config) -> dict[str, str]:
    """``spark.conf`` of the config, as strings (booleans lower-case)."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in cfg.spark.conf.items()}


def _settings(cfg: Config, local: bool, jvm_here: bool) -> dict[str, str]:
    """The confs of a session whose Spark this process starts (classic, or a local Connect server): the defaults,
    the configured ``spark.conf``, the checkpoint dir and Delta's extension. ``local``: a local master
    (:data:`LOCAL_ONLY` under the configured values); ``jvm_here``: not under spark-submit, so executors run this
    interpreter and the cached jars go on ``spark.jars`` (spark-submit brings its own)."""
    settings = {**_DEFAULTS, **_conf(cfg)}
    if "spark.checkpoint.dir" not in settings and cfg.spark.checkpoint_dir != "none":
        settings["spark.checkpoint.dir"] = checkpoint_dir(cfg)
    if not cfg.spark.delta_provided:
        settings["spark.sql.extensions"] = DELTA_EXTENSION
        settings["spark.sql.catalog.spark_catalog"] = DELTA_CATALOG
    if not jvm_here:
        return settings
    # pyspark reads PYSPARK_PYTHON when it starts the context; the conf key is for spark-submit
    if not os.environ.get("PYSPARK_PYTHON"):
        os.environ["PYSPARK_PYTHON"] = settings.get("spark.pyspark.python", sys.executable)
    if local:
        settings = {**LOCAL_ONLY, **settings}
    if not cfg.spark.delta_provided:
        names = list(jars.REQUIRED) + (["nlp"] if cfg.spark.with_nlp else [])
        extra = jars.jar_paths(names, cfg.spark.jars_dir)
        settings["spark.jars"] = ",".join(filter(None, [settings.get("spark.jars", ""), *extra]))
    return settings


def _connect(cfg: Config, app_name: str | None) -> "SparkSession":
    """A Spark Connect session (``spark.remote``). ``local[N]`` starts a local Connect server with the cached
    Delta jars and every setting of a classic session (a server's static confs are set when it starts); a
    ``sc://`` server is the cluster's: only the configured ``spark.conf`` values are set, as session confs."""
    from pyspark.sql import SparkSession

    remote = cfg.spark.remote
    builder = SparkSession.builder.remote(remote).appName(app_name or cfg.spark.app_name)
    settings = _settings(cfg, local=True, jvm_here=True) if remote.startswith("local") else _conf(cfg)
    for k, v in settings.items():
        builder = builder.config(k, v)
    import warnings

    with warnings.catch_warnings():  # the local server has the static confs; the client re-setting them warns
        warnings.filterwarnings("ignore", message="Failed to set spark", category=UserWarning)
        spark = builder.getOrCreate()
    if not cfg.spark.delta_provided and not delta_configured(spark):
        raise KPSparkError(f"the Spark Connect server at {remote} has no Delta Lake: start it with "
                           f"spark.sql.extensions={DELTA_EXTENSION} and the Delta jars (or set spark.delta_provided)")
    logger.info("Spark Connect session %s ready (%s)", spark.version, remote)
    return spark


def get_spark(cfg: Config | None = None, app_name: str | None = None) -> "SparkSession":
    """Return a SparkSession with Delta Lake for ``cfg`` (default: ``load_config()``).

    Raises :class:`~kpspark.errors.JarsMissingError` (naming ``make jars``) when the Delta jars
    are not in the local cache, and :class:`KPSparkError` when an existing session lacks Delta.
    """
    from pyspark.sql import SparkSession

    cfg = cfg or load_config()
    if cfg.spark.remote:
        return _connect(cfg, app_name)
    active = SparkSession.getActiveSession()
    if active is not None:
        if not cfg.spark.delta_provided and not delta_configured(active):
            raise KPSparkError(
                "the active SparkSession has no Delta Lake: set spark.sql.extensions="
                f"{DELTA_EXTENSION} and spark.sql.catalog.spark_catalog={DELTA_CATALOG} "
                "(and put the Delta jars on the classpath) before creating it"
            )
        return active

    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # set by spark-submit for the driver
    builder = SparkSession.builder.appName(app_name or cfg.spark.app_name)
    settings = _settings(cfg, local=cfg.spark.master.startswith("local"), jvm_here=not under_submit)
    if not under_submit and cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    for k, v in settings.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    if settings.get("spark.checkpoint.dir") and not spark.sparkContext.getCheckpointDir():
        spark.sparkContext.setCheckpointDir(settings["spark.checkpoint.dir"])  # Spark 3.5 does not read the conf
    if under_submit and not cfg.spark.delta_provided:
        submitted = (spark.conf.get("spark.jars", "") or "") + (spark.conf.get("spark.jars.packages", "") or "")
        if "delta-spark" not in submitted:
            raise JarsMissingError(
                "spark-submit was given no Delta jar: pass --jars \"$(python -m kpspark.jars classpath)\" "
                f"(fetch the jars once with: {jars.FETCH_COMMAND}), or set spark.delta_provided=true "
                "on a cluster that ships Delta"
            )
    master = spark.conf.get("spark.master", "local") or "local"
    if under_submit and master.startswith("local"):  # spark-submit started the JVM: LOCAL_ONLY as session confs
        for k, v in LOCAL_ONLY.items():
            if spark.conf.get(k, None) is None:  # a value given to spark-submit stays
                spark.conf.set(k, v)
    _warn_local_tracking(cfg, master)
    logger.info("SparkSession %s ready (master=%s)", spark.version, spark.conf.get("spark.master", "?"))
    return spark
