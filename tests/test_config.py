"""Tests for metarl_jax.io.config: typed ``name=value`` overrides and the JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from metarl_jax.io import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    parse_args,
    read_json,
    write_json,
)
from tests.example_config import PRESETS, ExpConfig, PPOConfig


def test_parse_args_applies_typed_and_nested_overrides():
    args = parse_args(ExpConfig, PRESETS, [
        "--preset", "quick", "--seed", "7", "--out", "some/dir",
        "ppo.learning_rate=1e-3", "ppo.epochs=10", "num_envs=16", "total_steps=2e6",
        "hidden=32,32,16", "mass_range=0.8, 1.2", "normalize_obs=no", "env_name=cheetah",
        "eval_every=500",
    ])
    cfg = args.config
    assert (args.preset, args.seed, args.out, args.resume) == ("quick", 7, Path("some/dir"), None)
    assert cfg.ppo == PPOConfig(learning_rate=1e-3, epochs=10, clip=0.2)
    assert cfg.num_envs == 16 and type(cfg.num_envs) is int
    assert cfg.total_steps == 2_000_000 and type(cfg.total_steps) is int
    assert cfg.hidden == (32, 32, 16) and all(type(h) is int for h in cfg.hidden)
    assert cfg.mass_range == (0.8, 1.2)
    assert cfg.normalize_obs is False
    assert cfg.env_name == "cheetah" and cfg.eval_every == 500
    # Fields that were not overridden keep the preset's values.
    assert parse_args(ExpConfig, PRESETS, ["--preset", "accel"]).config == PRESETS["accel"]


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("1", True), ("yes", True), ("False", False), ("0", False), ("no", False),
])
def test_bool_override_spellings(text, expected):
    cfg = parse_args(ExpConfig, PRESETS, [f"normalize_obs={text}"]).config
    assert cfg.normalize_obs is expected


def test_unknown_field_suggests_closest_and_lists_valid():
    with pytest.raises(ConfigError) as e:
        parse_args(ExpConfig, PRESETS, ["ppo.learnig_rate=1e-3"])
    msg = str(e.value)
    assert "ppo.learnig_rate" in msg and "Did you mean 'ppo.learning_rate'" in msg
    assert "num_envs" in msg and "ppo.clip" in msg  # valid fields are listed


@pytest.mark.parametrize("override, words", [
    ("num_envs=many", ["num_envs", "int", "many"]),
    ("total_steps=1.5", ["total_steps", "int", "1.5"]),
    ("ppo.clip=wide", ["ppo.clip", "float", "wide"]),
    ("normalize_obs=maybe", ["normalize_obs", "bool", "maybe"]),
    ("mass_range=1,2,3", ["mass_range", "tuple[float, float]", "1,2,3"]),
    ("hidden=64,x", ["hidden", "tuple[int, ...]", "64,x"]),
])
def test_bad_value_names_field_type_and_text(override, words):
    with pytest.raises(ConfigError) as e:
        parse_args(ExpConfig, PRESETS, [override])
    for word in words:
        assert word in str(e.value)


def test_malformed_override_group_override_and_post_init_are_config_errors():
    with pytest.raises(ConfigError, match="name=value"):
        parse_args(ExpConfig, PRESETS, ["num_envs"])
    with pytest.raises(ConfigError, match="group of fields.*ppo.epochs"):
        parse_args(ExpConfig, PRESETS, ["ppo=3"])
    with pytest.raises(ConfigError, match="num_envs must be positive"):
        parse_args(ExpConfig, PRESETS, ["num_envs=0"])


def test_config_dict_round_trip_through_json(tmp_path):
    cfg = parse_args(ExpConfig, PRESETS, ["--preset", "accel", "ppo.clip=0.1", "hidden=8"]).config
    d = config_to_dict(cfg)
    assert d["ppo"] == {"learning_rate": 3e-4, "epochs": 4, "clip": 0.1}
    assert d["hidden"] == [8] and d["mass_range"] == [0.5, 1.5]
    write_json(tmp_path / "config.json", cfg)
    back = config_from_dict(ExpConfig, read_json(tmp_path / "config.json"))
    assert back == cfg and isinstance(back.ppo, PPOConfig) and back.hidden == (8,)


def test_config_from_dict_rejects_unknown_and_mistyped_fields():
    d = config_to_dict(ExpConfig())
    with pytest.raises(ConfigError, match="ppo.momentum"):
        config_from_dict(ExpConfig, {**d, "ppo": {**d["ppo"], "momentum": 0.9}})
    with pytest.raises(ConfigError, match="num_envs"):
        config_from_dict(ExpConfig, {**d, "num_envs": "8"})
    assert config_from_dict(ExpConfig, {"num_envs": 3}) == ExpConfig(num_envs=3)
