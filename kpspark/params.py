"""Spark ML Params declared from a hyperparameter dataclass, so that a hyperparameter is declared once.

A model family's training hyperparameters are one frozen dataclass in :mod:`kpspark.config` (its config section
extends it). :func:`hyperparams_mixin` turns that dataclass into a ``Params`` mixin: one ``Param`` per field,
named in camelCase (``max_length`` -> ``maxLength``), typed from the field's annotation, defaulting to the
field's default. The estimator gets ``hyperparams()`` (the dataclass back, from its params) and the workflow
``hyperparam_kwargs(section, cls)`` (the params of a config section).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class H:
...     max_length: int = 64
...     dims: tuple[int, ...] = (8, 4)
>>> HP = hyperparams_mixin(H)
>>> class Stage(HP):
...     def __init__(self, **kw):
...         super().__init__()
...         self._setDefault(**HP.hyperparam_defaults())
...         self._set(**kw)
>>> s = Stage(maxLength=32)
>>> s.hyperparams()
H(max_length=32, dims=(8, 4))
>>> hyperparam_kwargs(H(max_length=16), H)
{'maxLength': 16, 'dims': [8, 4]}
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

_SCALARS = {int: TypeConverters.toInt, float: TypeConverters.toFloat, bool: TypeConverters.toBoolean,
            str: TypeConverters.toString}
_LISTS = {int: TypeConverters.toListInt, float: TypeConverters.toListFloat, str: TypeConverters.toListString}


def camel(name: str) -> str:
    """``max_length`` -> ``maxLength``."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _converter(hint: Any, where: str) -> Any:
    if hint in _SCALARS:
        return _SCALARS[hint]
    if typing.get_origin(hint) is tuple:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if len(set(args)) == 1 and args[0] in _LISTS:
            return _LISTS[args[0]]
    raise TypeError(f"{where}: a Spark ML param needs a scalar or a tuple of scalars, got {hint}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def hyperparams_mixin(cls: type) -> type[Params]:
    """A ``Params`` subclass with one ``Param`` per field of the dataclass ``cls`` (see the module doc)."""
    hints = typing.get_type_hints(cls)
    names = {f.name: camel(f.name) for f in dataclasses.fields(cls)}
    attrs: dict[str, Any] = {
        p: Param(Params._dummy(), p, f"{cls.__name__}.{f}: see docs/config.md", _converter(hints[f], f"{cls.__name__}.{f}"))
        for f, p in names.items()}

    def hyperparams(self: Params) -> Any:
        """The hyperparameters these params hold, as the dataclass."""
        g = self.getOrDefault
        return cls(**{f: tuple(g(p)) if isinstance(g(p), list) else g(p) for f, p in names.items()})

    def hyperparam_defaults() -> dict[str, Any]:
        """``{param name: the dataclass default}``."""
        d = cls()
        return {p: _plain(getattr(d, f)) for f, p in names.items()}

    attrs.update(hyperparams=hyperparams, hyperparam_defaults=staticmethod(hyperparam_defaults),
                 _hyperparam_fields=names, __doc__=f"Params declared from :class:`{cls.__name__}`.")
    return type(f"{cls.__name__}Params", (Params,), attrs)


def hyperparam_kwargs(section: Any, cls: type) -> dict[str, Any]:
    """The params (camelCase -> value) of the ``cls`` fields of ``section`` (a ``cls`` or a config section
    extending it)."""
    return {camel(f.name): _plain(getattr(section, f.name)) for f in dataclasses.fields(cls)}


class TrainingParams(Params):
    """The params every training estimator shares: where it writes, whether it logs the export to the active
    MLflow run, and the by-item validation split."""

    outputDir: Param[str] = Param(Params._dummy(), "outputDir", "folder for checkpoints and the export",
                                  TypeConverters.toString)
    logToRun: Param[bool] = Param(Params._dummy(), "logToRun", "log the export to the active MLflow run, so the "
                                  "fitted model loads on every node (runs:/<id>/export)", TypeConverters.toBoolean)
    validationFraction: Param[float] = Param(Params._dummy(), "validationFraction", "share of items held out",
                                             TypeConverters.toFloat)
    seed: Param[int] = Param(Params._dummy(), "seed", "random seed (also of the by-item split)",
                             TypeConverters.toInt)

    def _training_defaults(self) -> None:
        self._setDefault(outputDir="", logToRun=True, validationFraction=0.2, seed=42)


def set_params(stage: Params, params: dict[str, Any]) -> Any:
    """``stage._set(**params)`` with a clear error for a name the stage has no param for."""
    unknown = sorted(k for k in params if not stage.hasParam(k))
    if unknown:
        raise TypeError(f"{type(stage).__name__} has no param {unknown}; its params: "
                        f"{sorted(p.name for p in stage.params)}")
    return stage._set(**params)


@dataclasses.dataclass
class TrainingSummary:
    """What a training estimator's ``fit`` did, on the model it returns (``model.summary``): the export folder,
    the trainer's figures (``train_loss``, ``eval_loss``, ``steps`` ...), the export's parity figures, the row
    counts and the validation fold itself (the held-out items' rows, as pandas), so callers evaluate on exactly
    the rows the model never trained on without splitting again."""

    export_dir: str
    figures: dict[str, Any]
    parity: dict[str, Any]
    train_rows: int
    validation: Any = dataclasses.field(repr=False)  # pandas.DataFrame

    @property
    def validation_rows(self) -> int:
        return len(self.validation)
