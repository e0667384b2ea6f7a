"""Exceptions raised by kpspark."""
from __future__ import annotations


class KPSparkError(Exception):
    """Base class of kpspark's own errors."""


class SchemaError(KPSparkError, ValueError):
    """A DataFrame or file does not have the columns/types a table or stage needs."""


class ConfigError(KPSparkError, ValueError):
    """A configuration file or ``--set`` override is invalid."""


class JarsMissingError(KPSparkError, RuntimeError):
    """A JVM jar (Delta Lake, Spark NLP) is not in the local cache; the message names the fetch command."""


class BackendUnavailableError(KPSparkError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ParityError(KPSparkError):
    """An exported model does not reproduce the source model within tolerance."""


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`BackendUnavailableError` naming ``pip install kpspark[extra]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"{module} is not installed; install it with: pip install 'kpspark[{extra}]'"
        ) from e
