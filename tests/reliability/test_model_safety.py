"""Model safety: a registered model whose ONNX file is corrupted, or whose tokenizer belongs to another
model, is refused with a clear error when a job resolves it — before any table is written; and
promotion refuses a version that failed the evaluation gate."""
from __future__ import annotations

import json
import shutil

import pytest

from kpspark.data import tables
from kpspark.errors import KPSparkError
from kpspark.production import diff
from kpspark.registry import models
from tests.conftest import lake_copy


@pytest.fixture()
def lake(pipeline, tmp_path, monkeypatch):
    """A copy of the demo lakehouse and MLflow store: the tampered versions become its champions."""
    return lake_copy(pipeline, tmp_path, monkeypatch)


def _tampered_champion(cfg, tmp_path, how: str) -> str:
    """Register a copy of the cross-encoder champion with ``how`` done to it, as the new champion."""
    from kpspark.artifacts import local_model_dir
    from kpspark.registry import tracking
    from kpspark.registry.pyfunc import log_cross_encoder

    name = cfg.models.cross_encoder
    src = local_model_dir(models.model_uri(name, "champion"), tracking.tracking_uri(cfg))
    dst = tmp_path / f"export-{how}"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "kpspark_model.json").read_text())
    if how == "corrupt_onnx":
        f = dst / meta["files"][cfg.cross_encoder.precision]
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2] + bytes(1000))  # a torn upload
    elif how == "foreign_tokenizer":  # another model's tokenizer: a larger vocabulary
        tok = json.loads((dst / "tokenizer.json").read_text())
        vocab = tok["model"]["vocab"]
        for i in range(20_000):
            vocab[f"zzextra{i}"] = len(vocab)
        (dst / "tokenizer.json").write_text(json.dumps(tok))
        meta.pop("sha256", None)  # as if re-exported without checksums: only the probe can tell
        (dst / "kpspark_model.json").write_text(json.dumps(meta))
    with tracking.start_run(cfg, f"tampered-{how}", tags={"kind": "cross_encoder"}):
        info = log_cross_encoder(str(dst))
    return models.register(cfg, info.model_uri, name, alias="champion", tags={"tampered": how})


@pytest.mark.parametrize("how,match", [("corrupt_onnx", "checksum|cannot load ONNX"),
                                       ("foreign_tokenizer", "tokenizer .* does not match")])
def test_a_tampered_model_is_refused_before_any_table_is_written(spark, lake, tmp_path, how, match, figures):
    from kpspark.retrieval.workflow import build_recommendation_pipeline

    _tampered_champion(lake, tmp_path, how)
    state = diff.read_state(spark, lake)[diff.ITEMS_STATE]
    with pytest.raises(KPSparkError, match=match):
        build_recommendation_pipeline(lake, state["index_uri"])
    v = {t: tables.version(spark, lake, t) for t in ("recommendations", "pipeline_state")}
    with pytest.raises(KPSparkError, match=match):
        diff.run_full_batch(lake, spark)
    assert {t: tables.version(spark, lake, t) for t in v} == v  # nothing written
    figures.setdefault("model_safety", {})[how] = "refused before any write"


def test_promotion_refuses_a_version_the_gate_failed(lake):
    from kpspark.registry.models import PromotionRefused

    name = lake.models.cross_encoder
    version = models.get_version(lake, name, "challenger")
    models.client(lake).set_model_version_tag(name, version, "gate", "failed")
    before = models.get_version(lake, name, "champion")
    with pytest.raises(PromotionRefused):
        models.promote(lake, name, "challenger", "champion")
    assert models.get_version(lake, name, "champion") == before
