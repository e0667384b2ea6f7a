from __future__ import annotations

import json

import pytest

from kpspark import jars
from kpspark.errors import JarsMissingError

pytestmark = pytest.mark.compat  # the Spark-lane subset (make test-lanes)


def test_missing_jar_error_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KPSPARK_JARS_DIR", str(tmp_path))
    with pytest.raises(JarsMissingError, match="make jars"):
        jars.jar_paths(["delta"])


def test_manifest_with_deleted_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("KPSPARK_JARS_DIR", str(tmp_path))
    cache = tmp_path / f"spark-{jars.lane()}"  # each Spark line has its own cache
    cache.mkdir()
    (cache / "manifest.json").write_text(json.dumps({"jars": {"delta": [str(cache / "gone.jar")]}}))
    with pytest.raises(JarsMissingError, match="gone.jar"):
        jars.jar_paths(["delta"])
    (cache / "gone.jar").write_bytes(b"PK")
    assert jars.jar_paths(["delta"]) == [str(cache / "gone.jar")]


def test_jars_resolved_from_another_coordinate_are_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KPSPARK_JARS_DIR", str(tmp_path))
    cache = tmp_path / f"spark-{jars.lane()}"
    cache.mkdir()
    (cache / "old.jar").write_bytes(b"PK")
    manifest = {"jars": {"delta": [str(cache / "old.jar")]}, "resolved": {"delta": "io.delta:delta-spark:0.1"}}
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JarsMissingError, match="the cache holds io.delta:delta-spark:0.1.*make jars"):
        jars.jar_paths(["delta"])
    assert not jars.available("delta")
    manifest["resolved"]["delta"] = jars.coordinate("delta")
    (cache / "manifest.json").write_text(json.dumps(manifest))
    assert jars.available("delta")


@pytest.mark.parametrize("version, delta", [
    ("3.5.8", "io.delta:delta-spark_2.12:3.3.2"), ("4.0.5", "io.delta:delta-spark_4.0_2.13:4.4.0"),
    ("4.1.4", "io.delta:delta-spark_4.1_2.13:4.4.0"), ("4.2.0", "io.delta:delta-spark_4.2_2.13:4.4.0"),
])
def test_each_spark_line_has_its_own_delta_artifact_and_cache(version, delta, tmp_path):
    line = jars.lane(version)
    assert jars.coordinate("delta", line) == delta
    assert jars.jars_dir(str(tmp_path), line) == tmp_path.resolve() / f"spark-{line}"


def test_spark_nlp_off_the_3_5_line_and_unknown_lines_are_clear_errors():
    assert jars.coordinate("nlp", "3.5").split(",")[0] == "com.johnsnowlabs.nlp:spark-nlp_2.12:5.5.3"
    with pytest.raises(JarsMissingError, match="no Scala 2.13 artifact"):
        jars.coordinate("nlp", "4.1")
    with pytest.raises(JarsMissingError, match="not a supported Spark line.*3.5, 4.0, 4.1, 4.2"):
        jars.lane("3.4.4")


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


def test_the_real_cache_has_delta_for_the_installed_spark():
    """The project's setup fetched Delta for this lane; the session fixture depends on it."""
    artifact = jars.coordinate("delta").split(":")[1]
    assert any(f"io.delta_{artifact}-" in p for p in jars.jar_paths(["delta"]))
