"""Small helpers shared by the Spark stages: input-column checks and CPU parallelism."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from kpspark.errors import SchemaError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


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


def ensure_parallelism(dataset: "DataFrame", min_partitions: int = 0) -> "DataFrame":
    """Repartition a DataFrame that has fewer partitions than the cluster has task slots.

    Model inference is CPU-bound per row, so a small Delta table read as one file (or anything
    after ``limit``) would otherwise run on one core while the others idle. ``min_partitions``
    defaults to ``spark.sparkContext.defaultParallelism``; ``-1`` disables the check.
    """
    if min_partitions < 0:
        return dataset
    want = min_partitions or dataset.sparkSession.sparkContext.defaultParallelism
    if dataset.rdd.getNumPartitions() < want:
        return dataset.repartition(want)
    return dataset
