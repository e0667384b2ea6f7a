"""MLflow tracking: one place that points MLflow at the configured store and opens runs that
carry the flattened config (params), the git sha and the Delta table versions (tags).

Local default: a ``sqlite:///`` store and an artifact folder under the project's working
folder; ``MLFLOW_TRACKING_URI`` in the environment wins over the config.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from kpspark._version import __version__
from kpspark.config import Config
from kpspark.errors import require

if TYPE_CHECKING:  # pragma: no cover
    import mlflow
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)
MAX_PARAM_CHARS = 6000


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = Path(uri[len(prefix):]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def tracking_uri(cfg: Config) -> str:
    """The tracking/registry URI in force (``MLFLOW_TRACKING_URI`` > ``cfg.mlflow.tracking_uri``)."""
    return _absolute_sqlite(os.environ.get("MLFLOW_TRACKING_URI") or cfg.mlflow.tracking_uri)


def registry_uri(cfg: Config) -> str:
    """The model registry in force: ``cfg.mlflow.registry_uri``, else the tracking URI. (Not the environment's
    ``MLFLOW_REGISTRY_URI``: ``mlflow.set_registry_uri`` writes that variable itself, so it would carry the last
    configured store into the next config.)"""
    return _absolute_sqlite(cfg.mlflow.registry_uri) if cfg.mlflow.registry_uri else tracking_uri(cfg)


def artifact_location(cfg: Config) -> str | None:
    """Artifact root for new experiments (a local folder becomes an absolute ``file:`` URI)."""
    root = cfg.mlflow.artifact_root
    if not root:
        return None
    if "://" in root or root.startswith(("dbfs:", "file:")):
        return root
    path = Path(root).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def configure(cfg: Config) -> "mlflow":  # type: ignore[valid-type]
    """Point MLflow's tracking and registry at the configured stores; return the ``mlflow`` module."""
    mlflow = require("mlflow", "mlflow")
    mlflow.set_tracking_uri(tracking_uri(cfg))  # type: ignore[attr-defined]
    mlflow.set_registry_uri(registry_uri(cfg))  # type: ignore[attr-defined]
    return mlflow


def ensure_experiment(cfg: Config, name: str | None = None) -> str:
    """Create (with the configured artifact root) or fetch an experiment; return its id."""
    mlflow = configure(cfg)
    name = name or cfg.mlflow.experiment
    exp = mlflow.get_experiment_by_name(name)  # type: ignore[attr-defined]
    if exp is not None:
        return str(exp.experiment_id)
    return str(mlflow.create_experiment(name, artifact_location=artifact_location(cfg)))  # type: ignore[attr-defined]


def git_sha(cwd: str | os.PathLike[str] | None = None) -> str:
    """The current commit of the working folder, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=cwd or os.getcwd(), timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def table_versions(spark: "SparkSession", cfg: Config, names: Sequence[str]) -> dict[str, int]:
    """Latest Delta version of each logical table (tables that do not exist are skipped)."""
    from kpspark.data import tables

    out: dict[str, int] = {}
    for n in names:
        if tables.exists(spark, cfg, n):
            out[n] = tables.version(spark, cfg, n)
    return out


@contextlib.contextmanager
def start_run(cfg: Config, run_name: str, spark: "SparkSession | None" = None, tables: Sequence[str] = (),
              tags: dict[str, str] | None = None, experiment: str | None = None) -> Iterator[Any]:
    """Open an MLflow run with the config as params and lineage tags.

    Tags: ``git_sha``, ``kpspark_version``, ``delta.<table>.version`` for each of ``tables``.
    """
    mlflow = configure(cfg)
    exp_id = ensure_experiment(cfg, experiment)
    all_tags = {"git_sha": git_sha(), "kpspark_version": __version__, **(tags or {})}
    if spark is not None and tables:
        all_tags.update({f"delta.{k}.version": str(v) for k, v in table_versions(spark, cfg, tables).items()})
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags) as run:  # type: ignore[attr-defined]
        params = {k: v[:MAX_PARAM_CHARS] for k, v in cfg.flat().items()}
        mlflow.log_params(params)  # type: ignore[attr-defined]
        logger.info("MLflow run %s (%s) in %s", run.info.run_id, run_name, tracking_uri(cfg))
        yield run


def shareable_export(export_dir: str, artifact_path: str = "export") -> tuple[str, str]:
    """(model URI, tracking URI) a fitted model's executors load ``export_dir`` from on any node: with an active
    MLflow run the export is logged to it and the URI is ``runs:/<run id>/<artifact_path>``; without one it
    is the folder itself, which on a cluster must be storage every node reads (a warning says so when the
    session's master is not local)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        try:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            master = active.conf.get("spark.master", "local") if active is not None else "local"
        except Exception:  # noqa: BLE001 (no session: nothing to warn about)
            master = "local"
        if not str(master).startswith("local"):
            logger.warning("no active MLflow run: the fitted model points at %s, which every executor must be "
                           "able to read (shared storage); start a run before fit() to log it there", export_dir)
        return str(export_dir), ""
    mlflow.log_artifacts(str(export_dir), artifact_path)
    return f"runs:/{run.info.run_id}/{artifact_path}", mlflow.get_tracking_uri()
