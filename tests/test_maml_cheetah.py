"""MAML on the MJX HalfCheetah tasks: the quick preset end to end, and the --task option."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import maml_cheetah
from metarl_jax.io.cli import cli
from metarl_jax.io.config import ConfigError
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import METRICS_FILE

pytestmark = pytest.mark.slow


@pytest.mark.mjx_e2e
def test_quick_preset_writes_returns_before_and_after_adaptation(tmp_path):
    out = tmp_path / "run"
    code = cli(maml_cheetah.NAME, maml_cheetah.main, maml_cheetah.Config, maml_cheetah.PRESETS,
               argv=maml_cheetah.task_flag_to_override(
                   ["--preset", "quick", "--task", "vel", "--out", str(out)]))
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    config = maml_cheetah.PRESETS["quick"]
    assert results["task"] == "vel"
    for method in maml_cheetah.METHODS:
        returns = results["returns_by_steps"][method]
        assert len(returns) == config.eval_steps + 1
        # -|v - v*| - 0.05 |a|^2 per step: negative, and bounded by a cheetah's speeds.
        assert all(-30.0 * config.episode_steps < r < 0 for r in returns), (method, returns)
        assert all(c > 0 for c in results["returns_ci95"][method])
        assert len(results["velocity_error_by_steps"][method]) == config.eval_steps + 1
        per_task = np.asarray(results["returns_per_task"][method])
        assert per_task.shape == (config.eval_tasks, config.eval_steps + 1)
        np.testing.assert_allclose(per_task.mean(0), returns, rtol=1e-6)
    gain = results["paired_over_tasks"]["maml_1_minus_pretrained_1"]
    assert gain["paired_verdict"] in ("better", "worse", "tie")
    lines = read_metrics(out / METRICS_FILE)
    for method in maml_cheetah.METHODS:
        updates = [line["update"] for line in lines if line["phase"] == method]
        assert updates == list(range(1, getattr(config, f"{method}_iterations") + 1))
        assert all(np.isfinite(line["return_post"]) for line in lines if line["phase"] == method)
    # Zero inner steps: the baseline's pre- and post-adaptation policies are one policy.
    final = results["final_train"]["pretrained"]
    assert final["return_pre"] == final["return_post"]
    for png in ("adaptation.png", "curves.png"):
        assert (out / png).stat().st_size > 10_000
    assert json.loads((out / "config.json").read_text())["config"]["task"] == "vel"


def test_paired_gains_cancel_the_task_spread():
    """Tasks whose returns differ by far more than the methods do: the unpaired CIs overlap, the
    paired differences are exact and their verdicts see the gain."""
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.0, 50.0, size=(40, 1))  # the target's spread, shared by methods
    noise = rng.normal(0.0, 0.5, size=(40, 3))
    maml = difficulty + noise + np.array([0.0, 4.0, 5.0])
    pretrained = difficulty + rng.normal(0.0, 0.5, size=(40, 3)) + np.array([0.0, 1.0, 1.0])
    gains = maml_cheetah.paired_gains({"maml": maml, "pretrained": pretrained})
    assert sorted(gains) == ["maml_1_minus_maml_0", "maml_1_minus_pretrained_0",
                             "maml_1_minus_pretrained_1", "maml_2_minus_maml_0",
                             "maml_2_minus_pretrained_0", "maml_2_minus_pretrained_2"]
    one = gains["maml_1_minus_pretrained_1"]
    np.testing.assert_allclose(one["per_seed"], maml[:, 1] - pretrained[:, 1])
    assert abs(one["mean"] - 3.0) < 0.5
    assert one["paired_verdict"] == "better" and one["ci_verdict"] == "tie"
    assert gains["maml_2_minus_maml_0"]["paired_verdict"] == "better"
    reversed_gain = maml_cheetah.paired_gains({"maml": pretrained, "pretrained": maml})
    assert reversed_gain["maml_1_minus_pretrained_1"]["paired_verdict"] == "worse"


def test_task_flag_and_bad_task():
    assert maml_cheetah.task_flag_to_override(["--task", "dir", "--preset", "cpu"]) == [
        "task=dir", "--preset", "cpu"]
    assert maml_cheetah.task_flag_to_override(["--task=vel"]) == ["task=vel"]
    with pytest.raises((ValueError, ConfigError)):
        maml_cheetah.Config(task="sideways")
    env = maml_cheetah.make_env(maml_cheetah.Config(task="dir", episode_steps=10))
    tasks = env.task_space().sample(jax.random.PRNGKey(0), (64,))
    directions = maml_cheetah.task_values(tasks, "dir")
    assert set(np.unique(directions)) == {-1.0, 1.0}
    assert env.max_steps == 10


def test_cpu_preset_is_the_measured_promp_setting():
    """docs/maml.md's cpu-preset numbers come from ProMP + LVC for both methods, 600 iterations
    each on 200 held-out tasks; the paper's accel preset stays MAML-TRPO."""
    cpu, accel = maml_cheetah.PRESETS["cpu"], maml_cheetah.PRESETS["accel"]
    for method in maml_cheetah.METHODS:
        assert getattr(cpu, method).outer == "promp"
        assert getattr(cpu, method).estimator == "lvc"
        assert getattr(cpu, f"{method}_iterations") == 600
        assert getattr(accel, method).outer == "trpo"
    assert cpu.eval_tasks == 200 and cpu.maml.num_inner_steps == 1


def test_learned_rates_add_the_pretrained_policy_adapted_with_them():
    """Meta-SGD MAML is compared with the pretrained policy adapted at the fixed initial rate
    and at MAML's learned rates; a fixed-rate MAML adds nothing (one compiled evaluation)."""
    from types import SimpleNamespace

    from metarl_jax.algos.maml import MetaParams

    pre_params, maml_params = {"w": np.zeros(3)}, {"w": np.ones(3)}
    learned = {"w": np.array([0.1, 0.3, -0.2])}
    fixed = maml_cheetah.PRESETS["quick"]
    states = {"maml": SimpleNamespace(meta=MetaParams(maml_params, ())),
              "pretrained": SimpleNamespace(meta=MetaParams(pre_params, ()))}
    assert set(maml_cheetah.evaluated_policies(fixed, states)) == set(maml_cheetah.METHODS)
    meta_sgd = fixed.__class__(**{**fixed.__dict__,
                                  "maml": fixed.maml.replace(inner_lr_mode="per_param")})
    states["maml"] = SimpleNamespace(meta=MetaParams(maml_params, learned))
    policies = maml_cheetah.evaluated_policies(meta_sgd, states)
    assert list(policies) == [*maml_cheetah.METHODS, maml_cheetah.AT_MAML_RATE]
    meta, config = policies[maml_cheetah.AT_MAML_RATE]
    assert meta.params is pre_params and meta.inner_lr is learned
    assert config == meta_sgd.maml
    _, pretrained_config = policies["pretrained"]
    assert pretrained_config.inner_lr_mode == "fixed"
    assert pretrained_config.inner_lr == meta_sgd.maml.inner_lr
    rng = np.random.default_rng(1)
    per_task = {name: rng.normal(size=(20, 3)) for name in policies}
    assert sorted(maml_cheetah.paired_gains(per_task)) == sorted(
        [f"maml_{s}_minus_{b}" for s in (1, 2)
         for b in ("maml_0", "pretrained_0", f"pretrained_{s}",
                   f"{maml_cheetah.AT_MAML_RATE}_{s}")])


def test_extra_rates_adapt_the_pretrained_policy_at_each_fixed_rate():
    """``pretrained_eval_rates`` adds the pretrained policy adapted at each fixed rate (same
    params, MAML's fixed-rate adaptation config with only ``inner_lr`` changed), with paired
    gains against each; bad rates are refused by name."""
    from types import SimpleNamespace

    from metarl_jax.algos.maml import MetaParams

    quick = maml_cheetah.PRESETS["quick"]
    tuned = dataclasses.replace(quick, pretrained_eval_rates=(0.025, 0.2))
    pre_params = {"w": np.zeros(3)}
    states = {"maml": SimpleNamespace(meta=MetaParams({"w": np.ones(3)}, ())),
              "pretrained": SimpleNamespace(meta=MetaParams(pre_params, ()))}
    policies = maml_cheetah.evaluated_policies(tuned, states)
    assert list(policies) == [*maml_cheetah.METHODS, "pretrained_at_lr_0p025",
                              "pretrained_at_lr_0p2"]
    for name, rate in (("pretrained_at_lr_0p025", 0.025), ("pretrained_at_lr_0p2", 0.2)):
        meta, config = policies[name]
        assert meta.params is pre_params
        assert config == quick.maml.replace(inner_lr=rate)
    per_task = {name: np.full((5, 2), i, np.float64) for i, name in enumerate(policies)}
    gains = maml_cheetah.paired_gains(per_task)
    assert gains["maml_1_minus_pretrained_at_lr_0p2_1"]["mean"] == -3.0
    assert gains["maml_1_minus_pretrained_0"]["mean"] == -1.0
    for bad in ((0.1, 0.1), (0.0,), (float("nan"),), (-0.05,)):
        with pytest.raises(ValueError, match="pretrained_eval_rates"):
            dataclasses.replace(quick, pretrained_eval_rates=bad)


def test_vel_target_range_sets_the_tasks_and_bad_ranges_are_refused():
    """``vel_target_range=0,3`` (ProMP's HalfCheetahRandVel) draws training and held-out targets
    from U[0, 3]; the default stays MAML's U[0, 2]; maml_ant's config has no such field."""
    from experiments import maml_ant
    from metarl_jax.io.config import apply_overrides

    assert maml_cheetah.PRESETS["cpu"].vel_target_range == (0.0, 2.0)
    wide = apply_overrides(maml_cheetah.PRESETS["quick"], ["vel_target_range=0,3"])
    assert wide.vel_target_range == (0.0, 3.0)
    env = maml_cheetah.make_env(wide)
    targets = maml_cheetah.task_values(env.task_space().sample(jax.random.PRNGKey(0), (2000,)),
                                       "vel")
    assert 0.0 <= targets.min() < 0.05 and 2.95 < targets.max() <= 3.0
    for bad in ((1.0, 1.0), (2.0, 0.0), (0.0, float("inf")), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="vel_target_range"):
            dataclasses.replace(wide, vel_target_range=bad)
    assert not hasattr(maml_ant.PRESETS["cpu"], "vel_target_range")
