from __future__ import annotations

import json

import pytest

from kpspark import jars
from kpspark.errors import JarsMissingError


def test_missing_jar_error_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KPSPARK_JARS_DIR", str(tmp_path))
    with pytest.raises(JarsMissingError, match="make jars"):
        jars.jar_paths(["delta"])


def test_manifest_with_deleted_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("KPSPARK_JARS_DIR", str(tmp_path))
    (tmp_path / "manifest.json").write_text(json.dumps({"jars": {"delta": [str(tmp_path / "gone.jar")]}}))
    with pytest.raises(JarsMissingError, match="gone.jar"):
        jars.jar_paths(["delta"])
    (tmp_path / "gone.jar").write_bytes(b"PK")
    assert jars.jar_paths(["delta"]) == [str(tmp_path / "gone.jar")]


def test_unknown_jar_name():
    with pytest.raises(ValueError, match="must be one of"):
        jars.jar_paths(["nope"])


@pytest.mark.parametrize("name, ivy, artifact", [
    ("io.delta_delta-spark_4.1_2.13-4.4.0.jar", True, "delta-spark_4.1_2.13"),
    ("com.fasterxml.jackson.core_jackson-core-2.13.5.jar", True, "jackson-core"),
    ("jackson-core-2.21.2.jar", False, "jackson-core"),
    ("com.github.luben_zstd-jni-1.5.7-3.jar", True, "zstd-jni"),
])
def test_artifact_names(name, ivy, artifact):
    assert jars._artifact(name, ivy=ivy) == artifact


def test_the_real_cache_has_delta():
    """The project's setup fetched Delta; the session fixture depends on it."""
    assert any("delta-spark_4.1_2.13" in p for p in jars.jar_paths(["delta"]))
