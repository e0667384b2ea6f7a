"""Ship the package to executors: ``python -m kpspark.package [OUT_DIR]`` writes
``dist/kpspark-<version>.zip`` (the ``kpspark`` package with its templates and data files) for
``spark-submit --py-files``. Executors still need the package's third-party dependencies (onnxruntime,
tokenizers, faiss, mlflow ...) in their Python: a cluster image or ``spark.pyspark.python`` pointing at
an environment with ``pip install "kpspark[onnx,ann,mlflow]"``.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from kpspark._version import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def build_zip(out_dir: str | Path = "dist") -> Path:
    """Write ``<out_dir>/kpspark-<version>.zip`` (importable from ``sys.path``) and return its path."""
    out = Path(out_dir) / f"kpspark-{__version__}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(PACKAGE_DIR.rglob("*")):
            rel = f.relative_to(PACKAGE_DIR.parent)
            if f.is_dir() or _SKIP_DIRS & set(rel.parts) or f.suffix in _SKIP_SUFFIXES:
                continue
            zf.write(f, rel.as_posix())
    tmp.replace(out)  # never a half-written zip under the final name
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(build_zip(args[0] if args else "dist"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
