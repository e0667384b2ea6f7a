from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kpspark.config import Config, load_config, parse_job_args
from kpspark.errors import ConfigError


REPO = Path(__file__).resolve().parents[1]


def test_files_merge_over_the_defaults():
    assert load_config() == Config()  # no file: the dataclasses' defaults
    cfg = load_config(REPO / "conf" / "local.yaml")
    assert cfg.spark.master == "local[*]"
    assert cfg.spark.conf["spark.ui.enabled"] == "false"  # from local.yaml, merged into the default conf
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"  # kept from the defaults
    assert cfg.cross_encoder.recipe == "click_search" and cfg.cross_encoder.lr == Config().cross_encoder.lr


def test_numbers_in_any_yaml_spelling():
    """YAML 1.1 reads 5e-5 as a string; the typed loader takes it as the float it is."""
    cfg = load_config(overrides=["cross_encoder.lr=5e-5", "bi_encoder.lr=1.0e-4", "cross_encoder.epochs=3"])
    assert cfg.cross_encoder.lr == 5e-5 and cfg.bi_encoder.lr == 1e-4
    assert cfg.cross_encoder.epochs == 3.0 and isinstance(cfg.cross_encoder.epochs, float)
    assert load_config(overrides=["bi_encoder.dims=[256, 64]"]).bi_encoder.dims == (256, 64)
    conf = load_config(overrides=["spark.conf.spark.ui.enabled=false", "spark.conf.spark.sql.shuffle.partitions=8"])
    assert conf.spark.conf["spark.ui.enabled"] == "false" and conf.spark.conf["spark.sql.shuffle.partitions"] == "8"


def test_overrides_are_typed_and_nested():
    cfg = load_config(overrides=["sample.seed=7", "spark.conf.spark.sql.shuffle.partitions=3",
                                 "quality.max_title_chars=10", "sample.size=1000"])
    assert cfg.sample.seed == 7
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "3"  # Spark conf values are strings
    assert cfg.quality.max_title_chars == 10
    assert cfg.sample.size == "1000"
    assert load_config(overrides={"sample.seed": 9}).sample.seed == 9


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sample = None  # type: ignore[misc]


@pytest.mark.parametrize("bad, match", [
    (["nope.key=1"], "unknown config key"),
    (["sample.seed=abc"], "sample.seed: Input should be a valid integer"),
    (["spark.delta_provided=maybe"], "spark.delta_provided: Input should be a valid boolean"),
    (["sample.nope=1"], "unknown config key 'sample.nope'; known there: .*'seed'"),
    (["bi_encoder.dims=[1, x]"], "bi_encoder.dims.1"),
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
