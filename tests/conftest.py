"""Shared fixtures: one local[2] SparkSession with Delta for the whole run, a config whose
lakehouse and MLflow store live in a per-test tmp folder."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from kpspark.config import load_config
    from kpspark.session import get_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
        "spark.master=local[2]", "spark.app_name=kpspark-tests",
        f"spark.jars_dir={REPO / '.cache' / 'jars'}",
        "spark.conf.spark.sql.shuffle.partitions=2",
        "spark.conf.spark.task.maxFailures=1",
        "spark.conf.spark.driver.host=127.0.0.1",
        "spark.conf.spark.driver.bindAddress=127.0.0.1",
        "spark.conf.spark.sql.pyspark.jvmStacktrace.enabled=false",
        "spark.conf.spark.driver.memory=3g",
        "spark.conf.spark.default.parallelism=2",
        # on the suite's tiny tables Spark's run-time machinery is only overhead: adaptive execution re-plans every
        # shuffle (the demo pipeline: 670 -> 473 Spark jobs), and generating + compiling Java code for each new plan
        # costs more than interpreting a few thousand rows (the pipeline: 138-143 s -> 130 s without whole-stage
        # code generation, 118 s without any). Same results either way (Spark's own suites run both modes); the
        # jobs themselves, spark-submit runs and the cluster tests keep Spark's defaults
        "spark.conf.spark.sql.adaptive.enabled=false",
        "spark.conf.spark.sql.codegen.wholeStage=false",
        "spark.conf.spark.sql.codegen.factoryMode=NO_CODEGEN",
        f"spark.checkpoint_dir={tmp_path_factory.mktemp('spark-checkpoints')}",
    ])
    session = get_spark(cfg)
    yield session
    session.stop()


@pytest.fixture()
def cfg(tmp_path):
    from kpspark.config import load_config

    return load_config(REPO / "conf" / "local.yaml", overrides=[
        f"lakehouse.root={tmp_path / 'lakehouse'}",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"mlflow.artifact_root={tmp_path / 'mlartifacts'}",
        "sample.size=tiny",
    ])


@pytest.fixture(scope="session")
def _empty_mlflow_store(tmp_path_factory) -> Path:
    """A sqlite MLflow store with its schema, made once per session: each test's store starts as a copy of it
    (creating the schema runs MLflow's 68 migrations: ~0.9 s in every test that touches MLflow)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-empty") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch, _empty_mlflow_store):
    """Every test gets its own sqlite MLflow store (a copy of an empty one) unless it configures one itself: URIs
    an earlier test set in MLflow's process-wide state (``mlflow.set_tracking_uri`` / ``set_registry_uri``, which
    outrank the environment) are cleared first."""
    import shutil

    shutil.copy(_empty_mlflow_store, tmp_path / "mlflow.db")
    if "mlflow" in sys.modules:  # never imported: nothing set
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # set_registry_uri also exports it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("KPSPARK_JARS_DIR", raising=False)


# KPSPARK_TEST_PIPELINE=lean (make test-lanes, make cluster: their tests read the tables and models, not the
# report): the pipeline fixture stops after the full batch, without the evaluation step (~80 s of each run)
LEAN = os.environ.get("KPSPARK_TEST_PIPELINE", "") == "lean"
# KPSPARK_TEST_PIPELINE_CACHE=<folder> (the Makefile sets .cache/test-pipeline; .ci/run empties it first): the
# pipeline fixture's product (lakehouse, MLflow store and artifacts) is kept there under a key — the Delta release
# and a digest of the package, its config, the lane pins and this file — and a later test session with the same
# key (the Spark lanes on the same Delta release, make cluster) starts from a copy of it instead of running the
# demo again. Each session still runs its own jobs (full batch, diff, stream, the cluster's) on its own Spark.
CACHE = os.environ.get("KPSPARK_TEST_PIPELINE_CACHE", "")


def _pipeline_key() -> str:
    import hashlib

    from kpspark import jars

    h = hashlib.sha256()
    files = [*(REPO / "kpspark").rglob("*.py"), *(REPO / "kpspark").rglob("*.yaml"), *(REPO / "conf").rglob("*"),
             REPO / "setup.cfg", Path(__file__)]
    for f in sorted(p for p in files if p.is_file()):
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    delta = jars.coordinate("delta").rsplit(":", 1)[1]
    return f"delta-{delta}-{h.hexdigest()[:16]}"


def _pipeline_cfg(tmp: Path):
    import dataclasses

    from kpspark.config import load_config

    cfg = load_config(REPO / "conf" / "local.yaml", overrides=[
        f"lakehouse.root={tmp / 'lakehouse'}", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        f"mlflow.artifact_root={tmp / 'mlartifacts'}", "sample.size=tiny"])
    return dataclasses.replace(
        # the fine-tuned judge as the demo trains it, on 64 pairs with 4 adapted layers; then two chunks of labels
        cfg, llm=dataclasses.replace(cfg.llm, sample_size=12, chunk_pairs=6),
        judge=dataclasses.replace(cfg.judge, max_pairs=64, eval_pairs=16, lora_layers=4),
        cross_encoder=dataclasses.replace(cfg.cross_encoder, epochs=8.0, batch_size=32, eval_steps=20, patience=4),
        # the 2-layer student keeps the suite short; `make demo` trains MiniLM-L6
        bi_encoder=dataclasses.replace(cfg.bi_encoder, init="minilm2", dims=(384, 128, 64), dim=64,
                                       max_pairs_per_task=400, epochs=2.0, lr=1e-4, eval_steps=10,
                                       recall_k=(10, 50)),
        # tiny has ~70 click positives: categories with 5 get their own threshold
        retrieval=dataclasses.replace(cfg.retrieval, k=20, top_n=10, min_category_positives=5),
        # the report: the demo's recipe, and the llm recipe (12 CPU-teacher labels: trained or skipped with a
        # reason), relative to the Jaccard baseline (`make report` adds the search row and the other recipes)
        evaluation=dataclasses.replace(cfg.evaluation, recipes=() if LEAN else ("click_search", "llm"),
                                       baseline="jaccard", judge_sample=6, output_dir=str(tmp / "reports")))


def _run_pipeline(spark, work: Path) -> dict:
    from kpspark import workflows

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    try:
        out = workflows.run_demo(_pipeline_cfg(work), spark)
    finally:
        mp.undo()
    (work / "step_seconds.json").write_text(json.dumps(out["step_seconds"]))  # where the suite's minutes go
    return out


@pytest.fixture(scope="session")
def pipeline(spark, tmp_path_factory):
    """The whole demo pipeline, run once per test session on the tiny sample marketplace with
    test-sized training (the fine-tuned CPU judge, the bert-tiny cross-encoder, the 2-layer student).
    Yields (cfg, run_demo's result, tmp folder); modules that inspect its models use its MLflow store.
    With ``KPSPARK_TEST_PIPELINE_CACHE`` the session works on a copy of a cached run (see above)."""
    import shutil

    tmp = tmp_path_factory.mktemp("pipeline")
    if not CACHE:
        return _pipeline_cfg(tmp), _run_pipeline(spark, tmp), tmp
    base = Path(CACHE).resolve() / _pipeline_key()
    kinds = ("full", "lean") if LEAN else ("full",)
    done = next((base / k for k in kinds if (base / k / "done.json").exists()), None)
    if done is None:  # run it where it stays: the MLflow store records its artifacts' absolute paths
        done = base / ("lean" if LEAN else "full")
        shutil.rmtree(done, ignore_errors=True)
        done.mkdir(parents=True)
        out = _run_pipeline(spark, done)
        (done / "done.json").write_text(json.dumps(out, default=str))
    else:
        out = json.loads((done / "done.json").read_text())
    # a copy of the tables and the store; the artifacts stay in the cache (runs a test logs into the copy add theirs
    # there too, under their own run ids: nothing of the cached run is overwritten)
    shutil.copytree(done / "lakehouse", tmp / "lakehouse")
    shutil.copy(done / "mlflow.db", tmp / "mlflow.db")
    shutil.copy(done / "step_seconds.json", tmp / "step_seconds.json")
    return _pipeline_cfg(tmp), out, tmp


def use_store(monkeypatch, tmp) -> None:
    """Point MLflow (env and client) at a fixture's sqlite store."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")


from tests.clusterutil import cluster  # noqa: E402,F401 (the loopback standalone cluster fixture, session-wide)


def lake_copy(pipeline, dst: Path, monkeypatch=None):
    """A config on a copy of the session pipeline's lakehouse and MLflow store under ``dst`` (jobs that
    register runs, rebuild indexes or move aliases there leave the session's store alone). With
    ``monkeypatch``, MLflow is pointed at the copy for the rest of the test."""
    import dataclasses
    import shutil

    cfg, _, ptmp = pipeline
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(ptmp / "mlflow.db", dst / "mlflow.db")
    shutil.copytree(cfg.lakehouse.root, dst / "lakehouse")
    if monkeypatch is not None:
        use_store(monkeypatch, dst)
    return dataclasses.replace(
        cfg, lakehouse=dataclasses.replace(cfg.lakehouse, root=str(dst / "lakehouse")),
        mlflow=dataclasses.replace(cfg.mlflow, tracking_uri=f"sqlite:///{dst / 'mlflow.db'}",
                                   artifact_root=str(dst / "mlartifacts")))


NOTEBOOKS = sorted((REPO / "jobs" / "notebooks").glob("*.py"))


def notebook_settings(pipeline, lake_root: Path, tracking_uri: str, *extra: str) -> list[str]:
    """The ``set`` widget of a notebook run on a copy of the session pipeline's lakehouse: where the copy lives,
    and the pipeline's serving settings (retrieval, the bi-encoder's dimensions) over ``conf/local.yaml``."""
    cfg = pipeline[0]
    r, be = cfg.retrieval, cfg.bi_encoder
    return [f"lakehouse.root={lake_root}", f"mlflow.tracking_uri={tracking_uri}",
            f"mlflow.artifact_root={cfg.mlflow.artifact_root}", "sample.size=tiny", f"retrieval.k={r.k}",
            f"retrieval.top_n={r.top_n}", f"retrieval.min_category_positives={r.min_category_positives}",
            f"bi_encoder.dim={be.dim}", f"bi_encoder.dims=[{','.join(map(str, be.dims))}]",
            f"bi_encoder.init={be.init}", *extra]


def run_notebook(spark, name: str, settings: list[str]) -> dict:
    """Execute the notebook under jobs/notebooks/ whose name ends with ``name`` as plain Python on this Spark
    session (``spark`` and a local ``dbutils`` handed in, as Databricks would; widgets ``conf=conf/local.yaml``
    and ``set=settings``) and return its ``result``. The production tests run their jobs this way, so each
    notebook runs once, as the test of what it does."""
    import runpy

    from kpspark.notebook import LocalDbutils

    path = next(p for p in NOTEBOOKS if p.stem.endswith(name))
    out = runpy.run_path(str(path), init_globals={
        "spark": spark, "dbutils": LocalDbutils({"conf": "conf/local.yaml", "set": ";".join(settings)})})
    return out["result"]
