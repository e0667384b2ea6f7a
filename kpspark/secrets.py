"""The LLM API key: from an environment variable (backend option ``api_key_env``, set on every node) or from a
Databricks secret scope (``api_key_secret: "<scope>/<key>"``), read with ``dbutils.secrets.get`` on the driver.

A scope's key reaches the executors inside the judge's task closure only: never in a stage Param, the Spark or
kpspark config, an MLflow param or a log line. Outside Databricks (tests, a notebook run locally) hand a
stand-in with ``secrets.get(scope=..., key=...)`` to :func:`set_dbutils`.
"""
from __future__ import annotations

from typing import Any

from kpspark.errors import KPSparkError

_DBUTILS: list[Any] = []


def set_dbutils(dbutils: Any | None) -> None:
    """Use ``dbutils`` (anything with ``secrets.get(scope=, key=)``) for secret scopes; None forgets it."""
    _DBUTILS[:] = [dbutils] if dbutils is not None else []


def _dbutils(spark: Any = None) -> Any:
    if _DBUTILS:
        return _DBUTILS[0]
    try:  # a Databricks runtime
        from pyspark.dbutils import DBUtils  # type: ignore[import-not-found]

        return DBUtils(spark)
    except ImportError:
        pass
    try:  # a notebook kernel that defines dbutils
        from IPython import get_ipython  # type: ignore[import-not-found]

        ns = getattr(get_ipython(), "user_ns", {}) or {}
        if "dbutils" in ns:
            return ns["dbutils"]
    except ImportError:
        pass
    raise KPSparkError("api_key_secret names a Databricks secret scope, but there is no dbutils here: run on "
                       "Databricks, call kpspark.secrets.set_dbutils(...), or use api_key_env (an environment "
                       "variable set on every node)")


def read_secret(ref: str, spark: Any = None) -> str:
    """The secret ``"<scope>/<key>"`` (on the driver)."""
    scope, _, key = ref.partition("/")
    if not scope or not key:
        raise ValueError(f"api_key_secret must be '<scope>/<key>', got {ref!r}")
    value = _dbutils(spark).secrets.get(scope=scope, key=key)
    if not value:
        raise KPSparkError(f"the secret {ref} is empty")
    return str(value)
