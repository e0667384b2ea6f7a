from __future__ import annotations

import dataclasses

import pytest

from kpspark.config import Config, load_config, parse_job_args
from kpspark.errors import ConfigError


def test_defaults_merge_base_and_local():
    cfg = load_config()
    assert cfg.spark.master == "local[*]"
    assert cfg.lakehouse.tables["items"] == "items"
    assert cfg.spark.conf["spark.ui.enabled"] == "false"  # from local.yaml, merged into base's conf
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"  # kept from base.yaml


def test_overrides_are_typed_and_nested():
    cfg = load_config(overrides=["sample.seed=7", "spark.conf.spark.sql.shuffle.partitions=3",
                                 "quality.max_title_chars=10", "sample.size=1000"])
    assert cfg.sample.seed == 7
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == 3
    assert cfg.quality.max_title_chars == 10
    assert cfg.sample.size == "1000"
    assert load_config(overrides={"sample.seed": 9}).sample.seed == 9


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sample = None  # type: ignore[misc]


@pytest.mark.parametrize("bad, match", [
    (["nope.key=1"], "unknown config key"),
    (["sample.seed=abc"], "sample.seed must be an integer"),
    (["spark.delta_provided=maybe"], "must be true/false"),
    (["sample.seed"], "key.sub=value"),
])
def test_bad_overrides_name_the_key(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=bad)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_parse_job_args_with_conf_and_set(tmp_path):
    f = tmp_path / "env.yaml"
    f.write_text("sample:\n  seed: 5\n")
    cfg, args = parse_job_args(["--conf", str(f), "--set", "sample.size=tiny"])
    assert isinstance(cfg, Config) and cfg.sample.seed == 5 and cfg.sample.size == "tiny"
    assert args.overrides == ["sample.size=tiny"]


def test_flat_is_string_valued():
    flat = load_config().flat()
    assert flat["models.serving_alias"] == "champion"
    assert all(isinstance(v, str) for v in flat.values())
