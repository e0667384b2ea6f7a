"""Model registry helpers: register a logged model, move aliases, resolve ``models:/name@alias``.

Promotion is moving an alias (``challenger`` -> ``champion``); rollback is moving it back to an
earlier version. Jobs always load ``models:/<name>@<alias>``, so they pick the change up on their
next run.
"""
from __future__ import annotations

import logging
from typing import Any

from kpspark.config import Config
from kpspark.registry.tracking import configure

logger = logging.getLogger(__name__)


class PromotionRefused(RuntimeError):
    """The version failed the evaluation gate."""


def model_uri(name: str, alias: str) -> str:
    """``models:/<name>@<alias>``."""
    return f"models:/{name}@{alias}"


def variant_name(base: str, recipe: str, default_recipe: str) -> str:
    """The registered name of ``recipe``'s model: ``base`` for the configured recipe, else ``<base>-<recipe>``, or
    ``<base>_<recipe>`` for a Unity Catalog name (``catalog.schema.model``: letters, digits and underscores)."""
    if recipe == default_recipe:
        return base
    return f"{base}{'_' if base.count('.') == 2 else '-'}{recipe}"


def client(cfg: Config) -> Any:
    mlflow = configure(cfg)
    return mlflow.MlflowClient()  # type: ignore[attr-defined]


def register(cfg: Config, source_uri: str, name: str, alias: str | None = None,
             tags: dict[str, str] | None = None) -> str:
    """Register ``source_uri`` (``runs:/<id>/<path>`` or a logged model URI) as a new version of
    ``name``; point ``alias`` at it when given. Returns the version (a string)."""
    mlflow = configure(cfg)
    mv = mlflow.register_model(source_uri, name, tags=tags)  # type: ignore[attr-defined]
    if alias:
        set_alias(cfg, name, alias, str(mv.version))
    logger.info("registered %s version %s%s", name, mv.version, f" as @{alias}" if alias else "")
    return str(mv.version)


def register_candidate(cfg: Config, source_uri: str, name: str, tags: dict[str, str] | None = None
                       ) -> tuple[str, str | None]:
    """Register a newly trained model as ``name@<candidate alias>``; the first version of a name is also made
    the serving alias (nothing to compare it with yet). Returns (version, the serving alias when it moved)."""
    version = register(cfg, source_uri, name, alias=cfg.models.candidate_alias, tags=tags)
    if get_version(cfg, name, cfg.models.serving_alias) is None:
        set_alias(cfg, name, cfg.models.serving_alias, version)
        return version, cfg.models.serving_alias
    return version, None


def set_alias(cfg: Config, name: str, alias: str, version: str | int) -> None:
    """Point ``name@alias`` at ``version``."""
    client(cfg).set_registered_model_alias(name, alias, str(version))


def get_version(cfg: Config, name: str, alias: str) -> str | None:
    """The version ``name@alias`` points at, or None when the alias is unset."""
    mc = client(cfg)
    try:
        return str(mc.get_model_version_by_alias(name, alias).version)
    except Exception as e:  # MlflowException: RESOURCE_DOES_NOT_EXIST
        if "RESOURCE_DOES_NOT_EXIST" in str(e) or "not found" in str(e).lower():
            return None
        raise


def promote(cfg: Config, name: str, from_alias: str = "challenger", to_alias: str = "champion",
            force: bool = False) -> str:
    """Move ``to_alias`` to the version ``from_alias`` points at; returns that version.

    The previous ``to_alias`` version is kept in the alias ``previous_<to_alias>`` for rollback. A
    version tagged ``gate=failed`` by the evaluation gate is refused unless ``force``.
    """
    version = get_version(cfg, name, from_alias)
    if version is None:
        raise ValueError(f"{name}@{from_alias} is not set; nothing to promote")
    tags = client(cfg).get_model_version(name, version).tags
    if tags.get("gate") == "failed" and not force:
        raise PromotionRefused(f"{name} version {version} failed the evaluation gate "
                               f"({tags.get('gate_reasons', 'no reasons recorded')}); not promoting it to @{to_alias}")
    old = get_version(cfg, name, to_alias)
    if old is not None and old != version:
        set_alias(cfg, name, f"previous_{to_alias}", old)
    set_alias(cfg, name, to_alias, version)
    logger.info("%s@%s -> version %s (was %s)", name, to_alias, version, old)
    return version


def rollback(cfg: Config, name: str, alias: str = "champion") -> str:
    """Point ``alias`` back at ``previous_<alias>``; returns the version now served."""
    prev = get_version(cfg, name, f"previous_{alias}")
    if prev is None:
        raise ValueError(f"{name} has no previous_{alias} to roll back to")
    set_alias(cfg, name, alias, prev)
    return prev


def pin_alias(uri: str, registry_uri: str | None = None) -> str:
    """``models:/name@alias`` -> ``models:/name/<version the alias points at now>``; other URIs unchanged.

    Stages pin on the driver when ``transform`` is called, so every executor of one job loads the
    same version even if the alias moves mid-job.
    """
    if not (uri.startswith("models:/") and "@" in uri):
        return uri
    import mlflow

    name, alias = uri[len("models:/"):].split("@", 1)
    version = mlflow.MlflowClient(registry_uri=registry_uri or None).get_model_version_by_alias(name, alias).version
    return f"models:/{name}/{version}"
