"""Helpers for the Databricks-style notebooks under ``jobs/notebooks/``.

Each notebook declares two widgets, ``conf`` (config files, comma-separated) and ``set`` (overrides,
``key=value`` separated by ``;`` or new lines), builds the config with :func:`config` and calls one
function of :mod:`kpspark.workflows`. On Databricks ``spark`` and ``dbutils`` exist; anywhere else
(plain ``python jobs/notebooks/05_full_batch.py``, a test, Jupyter) :func:`local_context` provides a
local SparkSession with Delta and a small stand-in for ``dbutils.widgets`` whose values come from
``KPSPARK_WIDGET_<NAME>`` environment variables or the dict it is given.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Mapping

from kpspark.config import Config, load_config

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession


class LocalWidgets:
    """``dbutils.widgets`` outside Databricks: declared defaults, overridden by given values or env."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        self._defaults: dict[str, str] = {}

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:  # noqa: N803 (dbutils API)
        self._defaults[name] = defaultValue

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        if defaultValue not in choices:
            raise ValueError(f"widget {name}: default {defaultValue!r} is not one of {choices}")
        self._defaults[name] = defaultValue

    def get(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        env = os.environ.get(f"KPSPARK_WIDGET_{name.upper()}")
        if env is not None:
            return env
        if name not in self._defaults:
            raise KeyError(f"no widget named {name!r} was declared")
        return self._defaults[name]

    def getAll(self) -> dict[str, str]:  # noqa: N802 (dbutils API)
        return {n: self.get(n) for n in self._defaults}

    def removeAll(self) -> None:  # noqa: N802 (dbutils API)
        self._defaults.clear()


class LocalDbutils:
    """The part of ``dbutils`` the notebooks use."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.widgets = LocalWidgets(values)


def config(conf: str, overrides: str = "") -> Config:
    """Config from the ``conf`` widget (comma-separated YAML files over the defaults; a relative path is
    looked up from the working folder upwards, so ``conf/local.yaml`` works from a notebook folder inside the
    repository) and the ``set`` widget (``key=value`` items separated by ``;`` or new lines)."""
    from pathlib import Path

    paths = [p.strip() for p in conf.split(",") if p.strip()]
    resolved = []
    for p in paths:
        path = Path(p)
        if not path.is_absolute() and not path.exists():
            path = next((d / path for d in Path.cwd().parents if (d / path).exists()), path)
        resolved.append(str(path))
    items = [s.strip() for chunk in overrides.splitlines() for s in chunk.split(";") if s.strip()]
    return load_config(*resolved, overrides=items)


def local_context(values: Mapping[str, str] | None = None) -> tuple["SparkSession", LocalDbutils]:
    """``(spark, dbutils)`` for running a notebook outside Databricks. The session is built from the
    ``conf``/``set`` widget values (given or from the environment) when no session is active."""
    from kpspark.session import get_spark

    dbutils = LocalDbutils(values)
    conf = dbutils.widgets._values.get("conf") or os.environ.get("KPSPARK_WIDGET_CONF") or "conf/local.yaml"
    sets = dbutils.widgets._values.get("set") or os.environ.get("KPSPARK_WIDGET_SET") or ""
    return get_spark(config(conf, sets), app_name="kpspark-notebook"), dbutils


def show(result: Mapping[str, Any]) -> None:
    """Print a workflow's result as JSON (the notebook's output cell)."""
    print(json.dumps(result, indent=2, default=str))
