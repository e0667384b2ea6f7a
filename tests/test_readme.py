"""The README is short and true: its Python blocks run as written on the demo's lakehouse, its job entry point
works without an activated virtual environment (Spark's log at WARN), and the generated reference pages are up to
date with their sources."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_is_short_and_the_reference_pages_are_rendered():
    assert len(README.splitlines()) <= 250
    sys.path.insert(0, str(REPO / "docs"))
    import render

    assert render.main(["--check"]) == 0, "docs are stale: run .venv/bin/python docs/render.py"
    for page in ("guide.md", "config.md", "tables.md", "benchmarks.md"):
        assert f"docs/{page}" in README and (REPO / "docs" / page).exists()


def test_the_readme_python_blocks_run_on_the_demo_lakehouse(spark, pipeline, tmp_path, monkeypatch):
    cfg, _, ptmp = pipeline
    assert len(BLOCKS) == 2
    (tmp_path / "conf").mkdir()
    shutil.copy(REPO / "conf" / "local.yaml", tmp_path / "conf" / "local.yaml")
    (tmp_path / "lakehouse").symlink_to(cfg.lakehouse.root)  # where conf/local.yaml puts it, relative
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ptmp / 'mlflow.db'}")
    out = Path("/tmp/kpspark-quickstart-pipeline")
    try:
        scope: dict = {}
        exec(compile(BLOCKS[0], "README quickstart", "exec"), scope)  # noqa: S102 - the README's own code
        recs = scope["recs"].toPandas()
        assert len(recs) > 0 and recs["ce_score"].notna().all()
        relevance = scope["relevance"]
        need = recs["category"].map(relevance.thresholds()).fillna(relevance.getThreshold())
        assert (recs["ce_score"] >= need).all()
        assert (out / "stages").exists()
        scope = {}
        exec(compile(BLOCKS[1], "README configuration", "exec"), scope)  # noqa: S102
        assert scope["cfg"].cross_encoder.lr == 5e-5
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree("/tmp/kpspark-quickstart-index", ignore_errors=True)


def test_kpspark_submit_runs_a_job_without_an_activated_venv(tmp_path):
    """The load job as its docstring shows it (`kpspark submit ... jobs/load_data.py --conf conf/local.yaml --conf
    my_data.yaml`), on a small CSV of rated pairs: spark-submit from the venv's pyspark with the Delta jars, no
    activated venv, Spark's log at WARN."""
    (tmp_path / "ratings.csv").write_text("sku,product name,dept,search term,stars\n"
                                          "A1,DeWalt 20V Cordless Drill,Tools,cordless drill,5\n"
                                          "A1,DeWalt 20V Cordless Drill,Tools,garden hose,1\n"
                                          "B2,Flexzilla 50 ft. Garden Hose,Garden,garden hose,4\n")
    (tmp_path / "my_data.yaml").write_text(
        "load:\n  rated_pairs:\n    path: " + str(tmp_path / "ratings.csv") + "\n"
        "    columns: {item_id: sku, title: product name, category: dept, query: search term, rating: stars}\n"
        "    hash_ids: true\n    relevant_at: 4\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    cmd = [str(REPO / ".venv" / "bin" / "kpspark"), "submit", "--properties-file", "conf/spark-local.properties",
           "jobs/load_data.py", "--conf", "conf/local.yaml", "--conf", str(tmp_path / "my_data.yaml"),
           "--set", f"lakehouse.root={tmp_path / 'lake'}", "--set", "spark.conf.spark.driver.memory=1g"]
    if not Path(cmd[0]).exists():
        pytest.skip("no .venv/bin/kpspark (the package is not installed into .venv here)")
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert '"rated_pairs"' in p.stdout and (tmp_path / "lake" / "human_labels" / "_delta_log").exists(), p.stdout
    assert not [ln for ln in p.stderr.splitlines() if " INFO " in ln], p.stderr[:2000]  # Spark's log at WARN
