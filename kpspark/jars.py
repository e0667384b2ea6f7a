"""JVM jars that kpspark puts on Spark's classpath (Delta Lake, optionally Spark NLP).

The jars are resolved **once** from Maven Central into a project-local cache by
``python -m kpspark.jars fetch`` (``make jars``), using Spark's own Ivy resolver, so no
extra build tool is needed. Later runs only read ``manifest.json`` in the cache and pass
the files through ``spark.jars``: they never touch the network.

Delta (and Spark NLP) publish one artifact per Spark line (Scala 2.12 for 3.5, one per minor for 4.x),
so the coordinates follow the installed pyspark (:data:`LANES`) and each lane has its own cache:
``<cache>/spark-<major.minor>/``. The cache folder is, in order: the ``KPSPARK_JARS_DIR``
environment variable, the ``spark.jars_dir`` config value, ``./.cache/jars``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from kpspark.errors import JarsMissingError

logger = logging.getLogger(__name__)

#: Maven coordinates by Spark line (pyspark ``major.minor``) and short name: Delta builds one artifact per
#: line; Spark NLP is on Maven Central for Scala 2.12 only (Spark 3.5), nothing for Spark 4.
LANES: dict[str, dict[str, str]] = {
    "3.5": {"delta": "io.delta:delta-spark_2.12:3.3.2",
            # Spark NLP's annotators name TensorFlow's Java types, which Java serialization resolves when Spark
            # ships an annotator to executors even for an ONNX model: the API classes (no native engine) come along
            "nlp": "com.johnsnowlabs.nlp:spark-nlp_2.12:5.5.3,org.tensorflow:tensorflow-core-api:0.4.2"},
    "4.0": {"delta": "io.delta:delta-spark_4.0_2.13:4.4.0"},
    "4.1": {"delta": "io.delta:delta-spark_4.1_2.13:4.4.0"},
    "4.2": {"delta": "io.delta:delta-spark_4.2_2.13:4.4.0"},
}
NAMES = ("delta", "nlp")
#: Transitive artifacts left out: Spark NLP's TensorFlow, llama.cpp and OpenVINO engines live on John Snow Labs'
#: own repository, not Maven Central; its ONNX engine (what kpspark uses) is on Central.
EXCLUDES: dict[str, str] = {"nlp": ",".join(f"com.johnsnowlabs.nlp:{a}_2.12" for a in (
    "tensorflow-cpu", "jsl-llamacpp-cpu", "jsl-openvino-cpu"))}
#: Jars every session needs; the others are optional capabilities.
REQUIRED = ("delta",)
FETCH_COMMAND = "make jars  (or: python -m kpspark.jars fetch)"
MANIFEST = "manifest.json"
_WHY_MISSING = {"nlp": "Spark NLP publishes no Scala 2.13 artifact on Maven Central (only spark-nlp_2.12 5.5.x, "
                       "for Spark 3.5): use the Spark 3.5 lane (pip install 'pyspark>=3.5.3,<3.6') for it"}


def lane(version: str | None = None) -> str:
    """The Spark line (``"3.5"``, ``"4.1"``, ...) of ``version`` (default: the installed pyspark); a clear error
    for a line kpspark has no jars for."""
    if version is None:
        import pyspark

        version = pyspark.__version__
    line = ".".join(version.split(".")[:2])
    if line not in LANES:
        raise JarsMissingError(f"pyspark {version} is not a supported Spark line: kpspark runs on Spark "
                               f"{', '.join(LANES)} (Delta Lake publishes jars for those)")
    return line


def coordinate(name: str, line: str | None = None) -> str:
    """The Maven coordinate of ``name`` for Spark line ``line`` (default: the installed pyspark's)."""
    if name not in NAMES:
        raise ValueError(f"jar name must be one of {sorted(NAMES)}, got {name!r}")
    line = line or lane()
    try:
        return LANES[line][name]
    except KeyError:
        raise JarsMissingError(f"no {name} jar for Spark {line}: {_WHY_MISSING.get(name, 'not published')}") from None


def jars_dir(configured: str | os.PathLike[str] | None = None, line: str | None = None) -> Path:
    """The jar cache of a Spark line: ``<root>/spark-<line>`` (root: env ``KPSPARK_JARS_DIR`` > ``configured``
    > ``./.cache/jars``; line: the installed pyspark's)."""
    env = os.environ.get("KPSPARK_JARS_DIR")
    root = Path(env or configured or Path.cwd() / ".cache" / "jars").expanduser().resolve()
    return root / f"spark-{line or lane()}"


def read_manifest(cache: Path) -> dict[str, list[str]]:
    """Read ``manifest.json`` (short name -> jar paths); empty when nothing was fetched."""
    return _jars(_manifest(cache))


def _jars(data: dict) -> dict[str, list[str]]:
    return {k: list(v) for k, v in data.get("jars", {}).items()}


def _manifest(cache: Path) -> dict:
    path = cache / MANIFEST
    if not path.exists():
        return {}
    with path.open() as fh:
        return json.load(fh)


def jar_paths(names: Iterable[str] = REQUIRED, configured: str | None = None) -> list[str]:
    """Return the local jar files for ``names``; raise :class:`JarsMissingError` if any is absent.

    The error names the command that fetches them.
    """
    cache = jars_dir(configured)
    data = _manifest(cache)
    manifest, resolved = _jars(data), data.get("resolved", {})
    out: list[str] = []
    for name in names:
        coord = coordinate(name)
        files = manifest.get(name) or []
        missing = [f for f in files if not Path(f).exists()]
        stale = resolved.get(name, coord) != coord
        if not files or missing or stale:
            why = ("missing files: " + ", ".join(missing) if missing else
                   f"the cache holds {resolved.get(name)}" if stale else "never fetched")
            raise JarsMissingError(f"{coord} is not in the local jar cache {cache} ({why}). "
                                   f"Fetch it once with: {FETCH_COMMAND}")
        out.extend(files)
    return out


def available(name: str, configured: str | None = None) -> bool:
    """True when the jars of ``name`` are in the cache."""
    try:
        jar_paths([name], configured)
    except JarsMissingError:
        return False
    return True


_RESOLVE_SCRIPT = """
import sys
from pyspark.sql import SparkSession
coord, ivy, excludes = sys.argv[1], sys.argv[2], sys.argv[3]
spark = (SparkSession.builder.master("local[1]").appName("kpspark-fetch-jars")
         .config("spark.jars.packages", coord).config("spark.jars.ivy", ivy).config("spark.jars.excludes", excludes)
         .config("spark.ui.enabled", "false").getOrCreate())
spark.stop()
"""


def _artifact(jar_name: str, ivy: bool = False) -> str:
    """Artifact id of an Ivy (``org_artifact-1.2.3.jar``) or plain (``artifact-1.2.3.jar``) jar name."""
    stem = jar_name[:-4].split("_", 1)[1] if ivy else jar_name[:-4]
    parts = stem.split("-")
    while parts and parts[-1][:1].isdigit():
        parts.pop()
    return "-".join(parts)


def _not_in_spark(jars: list[Path]) -> list[Path]:
    """Drop transitive jars that pyspark already ships (an older copy would shadow Spark's own)."""
    import pyspark

    shipped = {_artifact(j.name) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    return [j for j in jars if _artifact(j.name, ivy=True) not in shipped]


def fetch(names: Iterable[str] = REQUIRED, configured: str | None = None, optional: Iterable[str] = ()) -> dict[str, list[str]]:
    """Resolve the coordinates of ``names`` (and, best effort, ``optional``) into the cache.

    Each coordinate is resolved by Spark's Ivy in a throwaway ``local[1]`` session in a
    subprocess; its jars (with their transitive dependencies) are copied to
    ``<cache>/<name>/`` and listed in ``manifest.json`` (the cache of the installed pyspark's line). Already
    fetched names are skipped; an optional name the line has no artifact for is recorded as unavailable.
    A failure on a required name raises; on an optional name it is logged and recorded.
    """
    cache = jars_dir(configured)
    cache.mkdir(parents=True, exist_ok=True)
    data = _manifest(cache)
    manifest, resolved = _jars(data), dict(data.get("resolved", {}))
    unavailable: dict[str, str] = {}
    wanted = [(n, True) for n in names] + [(n, False) for n in optional if n not in names]
    for name, required in wanted:
        if available(name, configured):
            logger.info("jars for %s already cached", name)
            continue
        try:
            coord = coordinate(name)
        except JarsMissingError as e:
            if required:
                raise
            logger.warning("%s (optional; the features that need it stay off)", e)
            unavailable[name] = str(e)
            continue
        logger.info("resolving %s from Maven Central (once)", coord)
        with tempfile.TemporaryDirectory(prefix="kpspark-ivy-") as ivy:
            proc = subprocess.run(
                [sys.executable, "-c", _RESOLVE_SCRIPT, coord, ivy, EXCLUDES.get(name, "")],
                capture_output=True, text=True, check=False,
            )
            jars = sorted(Path(ivy, "jars").glob("*.jar")) if Path(ivy, "jars").exists() else []
            if proc.returncode != 0 or not jars:
                lines = (proc.stderr + proc.stdout).splitlines()
                reasons = [ln.strip() for ln in lines if "not found" in ln or "unresolved dependency" in ln]
                tail = "\n".join(reasons[:3] or lines[-3:])
                msg = f"could not resolve {coord} from Maven Central:\n{tail}"
                if required:
                    raise JarsMissingError(msg)
                logger.warning("%s (optional; the features that need it stay off)", msg)
                unavailable[name] = tail.splitlines()[-1] if tail else "unresolved"
                continue
            jars = _not_in_spark(jars)
            dest = cache / name
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            manifest[name] = []
            for jar in jars:
                target = dest / jar.name
                shutil.copy2(jar, target)
                manifest[name].append(str(target))
            resolved[name] = coord
    with (cache / MANIFEST).open("w") as fh:  # resolved: the coordinate each name's jars came from
        json.dump({"spark": lane(), "coordinates": LANES[lane()], "resolved": resolved, "jars": manifest,
                   "unavailable": unavailable}, fh, indent=2)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m kpspark.jars fetch [--with-nlp]`` or ``python -m kpspark.jars classpath``."""
    parser = argparse.ArgumentParser(prog="python -m kpspark.jars", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="resolve jars into the local cache (network, once)")
    f.add_argument("--with-nlp", action="store_true", help="also try Spark NLP (optional)")
    c = sub.add_parser("classpath", help="print the cached jars, comma separated (for spark-submit --jars)")
    c.add_argument("--with-nlp", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.cmd == "fetch":
        fetch(REQUIRED, optional=("nlp",) if args.with_nlp else ())
        return 0
    names = list(REQUIRED) + (["nlp"] if args.with_nlp else [])
    print(",".join(jar_paths(names)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
