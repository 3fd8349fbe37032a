"""The brax.training comparisons (sac_speed, ppo_speed) end to end at tiny sizes: both sides
train, rounds are interleaved and timed, ratios and returns are reported consistently."""

import math

import pytest

pytestmark = pytest.mark.slow


def test_sac_speed_tiny_reports_both_sides(monkeypatch):
    from benchmarks import sac_speed

    tiny = sac_speed.Preset(num_envs=4, batch_size=16, hidden=(8, 8), steps_per_round=16,
                            rounds=2)
    monkeypatch.setitem(sac_speed.PRESETS, "quick", tiny)
    result = sac_speed.run("quick")
    timing = result["timing"]
    assert timing["rounds"] >= 1 and timing["order"] == ["ours", "brax"]
    ratios = timing["ratios"]["ours"]["values"]
    for i, r in enumerate(ratios):  # brax seconds / ours seconds, round by round
        assert r == pytest.approx(timing["brax"]["values"][i] / timing["ours"]["values"][i])
    for side in ("ours", "brax"):
        assert all(math.isfinite(v) and v > 0 for v in timing[side]["units_per_s"]["values"])
    assert len(result["dropped_rounds"]) + timing["rounds"] == 2 + sac_speed.BRAX_COMPILE_EPOCHS
    assert result["headline"][0]["ratio"] == timing["ratios"]["ours"]
    assert "Ours / brax per round" in sac_speed.markdown(result)


def test_ppo_speed_tiny_times_both_sides_and_evaluates_equal_steps(monkeypatch):
    from benchmarks import ppo_speed

    # One seed (brax compiles its whole pipeline again per seed); the CI over seeds is
    # metarl_jax.stats.mean_ci95's, tested in test_stats.
    tiny = ppo_speed.Preset(env_counts=(8,), num_steps=8, num_epochs=1, num_minibatches=2,
                            hidden=(8,), updates_per_round=1, rounds=1, seeds=1, eval_envs=4)
    cell = ppo_speed.bench_env_count(tiny, 8)
    epochs = 1 + ppo_speed.BRAX_COMPILE_EPOCHS  # timed + compile epochs
    assert cell["rounds_dropped_for_compiles"] >= 1  # at least brax's first epoch
    assert cell["timing"]["rounds"] == epochs - cell["rounds_dropped_for_compiles"] >= 1
    assert cell["env_steps_per_seed"] == (1 + ppo_speed.BRAX_COMPILE_EPOCHS) * 8 * 8
    for side in ("ours", "brax"):
        per_seed = cell["return"][side]["per_seed"]
        assert len(per_seed) == 1 and all(-3300 < r <= 0 for r in per_seed)  # 200 steps >= -16.3
        assert cell["return"][side]["mean"] == per_seed[0]
        assert math.isnan(cell["return"][side]["ci95"])  # no CI from one seed
    assert cell["return_ci_overlap"] is None  # ... and no tie/apart verdict
    ratios = cell["timing"]["ratios"]["ours"]["values"]
    assert ratios and all(math.isfinite(r) and r > 0 for r in ratios)
    result = {"settings": ppo_speed.dataclasses.asdict(tiny), "cells": [cell], "shim": "s"}
    md = ppo_speed.markdown(result)
    assert "| 8 |" in md and "one seed, no CI: no verdict" in md
