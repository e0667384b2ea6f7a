"""Pieces the benchmark scripts share: the per-run config, the one-process-per-configuration runner,
the machine record and the result writer. Scripts run as ``python bench/<name>.py``, so this module
is importable as ``_common``."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def bench_cfg(work: Path, cores: int, extra: Iterable[str] = ()) -> Any:
    """The local config of one benchmark run: lakehouse and MLflow store under ``work``, ``local[cores]``."""
    from kpspark.config import load_config

    return load_config(REPO / "conf" / "local.yaml", overrides=[
        f"lakehouse.root={work / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
        f"mlflow.artifact_root={work / 'art'}", f"spark.master=local[{cores}]",
        f"spark.conf.spark.sql.shuffle.partitions={cores * 2}", "spark.conf.spark.driver.memory=6g",
        f"spark.jars_dir={REPO / '.cache' / 'jars'}", *extra])


def homedepot_work(given: str, result: str) -> Path:
    """The work folder of a Home Depot run: ``given``, else ``.cache/eval-homedepot/<result stem>`` — one lakehouse
    and registry per result file (a second run in one registry would evaluate the first run's serving model)."""
    work = Path(given or REPO / ".cache" / "eval-homedepot" / Path(result).stem)
    if (work / "mlflow.db").exists():
        raise SystemExit(f"{work} holds an earlier run's registry: remove it or pass another --work")
    return work


def run_isolated(script: str, work: Path, limit: int, plan: Iterable[tuple[int, str]]) -> list[dict]:
    """Run ``script --one CORES MODE`` once per configuration, each in its own process (its own
    ``local[N]`` Spark), and collect the ``RESULT {json}`` line each prints."""
    runs = []
    for cores, mode in plan:
        proc = subprocess.run([sys.executable, script, "--work", str(work), "--limit", str(limit),
                               "--one", str(cores), mode], capture_output=True, text=True, check=False)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            raise RuntimeError(f"{mode} on {cores} cores failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(line[0][len("RESULT "):]))
        print(runs[-1], flush=True)
    return runs


def isolated_bench(description: str, work: str, limit: int, out: str, prepare: Callable[[Path, str], dict],
                   run_one: Callable[[Path, int, str, dict, int], dict], size_help: str = "sample size (medium: "
                   "240k pairs)", limit_help: str = "rows per run") -> tuple[argparse.Namespace, Path, dict] | None:
    """The command line every one-process-per-configuration benchmark shares (``--work --size --limit --out``,
    ``--prepare-only``, and the hidden ``--one CORES MODE`` that :func:`run_isolated` calls): runs ``--one`` or
    ``--prepare-only`` itself and returns None; else returns (args, work folder, ``prepare``'s info)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--work", default=work)
    ap.add_argument("--size", default="medium", help=size_help)
    ap.add_argument("--limit", type=int, default=limit, help=limit_help)
    ap.add_argument("--prepare-only", action="store_true", help="only build the lakehouse and the model(s)")
    ap.add_argument("--one", nargs=2, metavar=("CORES", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=out)
    args = ap.parse_args()
    path = Path(args.work)
    path.mkdir(parents=True, exist_ok=True)
    if args.one:
        info = json.loads((path / "prepared.json").read_text())
        print("RESULT " + json.dumps(run_one(path, int(args.one[0]), args.one[1], info, args.limit)))
        return None
    info = prepare(path, args.size)
    if args.prepare_only:
        print(json.dumps(info, indent=2))
        return None
    return args, path, info


def timed_delta_job(spark: Any, job: Callable[[Any, Path], None], rows: Any, work: Path, mode: str, cores: int,
                    warm: int, unit: str = "pairs", keep: Path | None = None) -> dict:
    """Run ``job(rows, folder)`` (it writes a Delta table there) once on ``warm`` rows, which loads the model in every
    worker, then time it on all ``rows``; stops ``spark``. Returns the run's record: mode, cores, rows, rows written,
    seconds, ``<unit>_per_s`` and ``<unit>_per_s_per_core``. ``keep``: a parquet file the written rows are copied to
    (after the timing), for comparing outputs across runs."""
    job(rows.limit(warm), work / f"warm_{mode}_{cores}")
    n = rows.count()
    t0 = time.perf_counter()
    job(rows, work / f"out_{mode}_{cores}")
    wall = time.perf_counter() - t0
    out = spark.read.format("delta").load(str(work / f"out_{mode}_{cores}"))
    written = out.count()
    nulls = out.where(out[out.columns[-1]].isNull()).count()
    if keep is not None:
        out.toPandas().to_parquet(keep)
    spark.stop()
    return {"mode": mode, "cores": cores, unit: n, "written": written, "null_outputs": nulls, "seconds": round(wall, 2),
            f"{unit}_per_s": round(n / wall, 1), f"{unit}_per_s_per_core": round(n / wall / cores, 1)}


def homedepot_absent() -> bool:
    """True (after saying so) when the Home Depot evaluation data is not in ``../shared``: the
    real-data scripts then exit 0 without a result."""
    from kpspark.data import loaders

    if Path(loaders.HOMEDEPOT_SHARED).exists():
        return False
    print(f"skipped: {loaders.HOMEDEPOT_SHARED} is not present (internal evaluation data)")
    return True


def homedepot_data() -> str:
    """The ``data`` line of every Home Depot result: the set and its relevance rule."""
    from kpspark.data import loaders

    return (f"Home Depot product search relevance (74,067 rated pairs; relevance >= {loaders.HOMEDEPOT_RELEVANT_AT:g} "
            "-> relevant)")


def machine_info() -> dict:
    """``bench/results/machine.json`` (CPU, SIMD, GEMM rate) when ``bench/machine.py`` has written it."""
    p = HERE / "results" / "machine.json"
    return json.loads(p.read_text()) if p.exists() else {}


def write_result(out: str | Path, result: dict) -> None:
    """Write a benchmark result as JSON and print it."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
