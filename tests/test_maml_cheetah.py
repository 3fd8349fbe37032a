"""MAML on the MJX HalfCheetah tasks: the quick preset end to end, and the --task option."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import maml_cheetah
from metarl_jax import stats
from metarl_jax.io.cli import cli
from metarl_jax.io.config import ConfigError, apply_overrides
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
    assert sorted(gains) == ["maml_1_minus_best_pretrained", "maml_1_minus_maml_0",
                             "maml_1_minus_pretrained_0", "maml_1_minus_pretrained_1",
                             "maml_2_minus_best_pretrained", "maml_2_minus_maml_0",
                             "maml_2_minus_pretrained_0", "maml_2_minus_pretrained_2"]
    assert gains["maml_2_minus_best_pretrained"]["baseline"] == "pretrained_2"
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
    """docs/maml.md's cpu-preset numbers (#19 parts J and K) come from ProMP + LVC with the
    paper's 2x100 ReLU network and GAE lambda 0.95 for both methods, 600 iterations each on 200
    held-out tasks; the paper's accel preset stays MAML-TRPO."""
    cpu, accel = maml_cheetah.PRESETS["cpu"], maml_cheetah.PRESETS["accel"]
    for method in maml_cheetah.METHODS:
        config = getattr(cpu, method)
        assert (config.outer, config.estimator) == ("promp", "lvc")
        assert (config.hidden_sizes, config.activation) == ((100, 100), "relu")
        assert config.gae_lambda == 0.95 and config.inner_lr == 0.1
        assert getattr(cpu, f"{method}_iterations") == 600
        assert getattr(accel, method).outer == "trpo"
        assert getattr(accel, method).hidden_sizes == (100, 100)
    assert cpu.eval_tasks == 200 and cpu.maml.num_inner_steps == 1
    assert cpu.pretrained_eval_rates == (0.025, 0.05, 0.2)


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
                   f"{maml_cheetah.AT_MAML_RATE}_{s}", maml_cheetah.BEST_PRETRAINED)])


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
    # the best pretrained evaluation is the one with the highest mean return: here the 0.2 step
    best = gains["maml_1_minus_best_pretrained"]
    assert best["mean"] == -3.0 and best["baseline"] == "pretrained_at_lr_0p2_1"
    per_task["pretrained"][:, 0] = 5.0  # now the un-adapted policy is best
    best = maml_cheetah.paired_gains(per_task)["maml_1_minus_best_pretrained"]
    assert best["mean"] == -5.0 and best["baseline"] == "pretrained_0"
    for bad in ((0.1, 0.1), (0.0,), (float("nan"),), (-0.05,)):
        with pytest.raises(ValueError, match="pretrained_eval_rates"):
            dataclasses.replace(quick, pretrained_eval_rates=bad)


def test_vel_target_range_sets_the_tasks_and_bad_ranges_are_refused():
    """``vel_target_range=0,3`` (ProMP's HalfCheetahRandVel) draws training and held-out targets
    from U[0, 3]; the default stays MAML's U[0, 2]; maml_ant's config has no such field."""
    from experiments import maml_ant
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


def _seed_results(maml, pretrained, at_lr):
    """One seed's ``evaluate_methods``-like results from per-task returns ``[G, 2]``."""
    per_task = {"maml": maml, "pretrained": pretrained, "pretrained_at_lr_0p05": at_lr}
    return {"task": "vel", "returns_by_steps": {n: r.mean(0).tolist() for n, r in per_task.items()},
            "paired_over_tasks": maml_cheetah.paired_gains(per_task)}


def test_several_seeds_combine_into_ci_over_seeds_and_the_best_pretrained_gain():
    """No compile: ``combine_seeds`` averages each seed's mean return and puts a t-CI over seeds
    on it; ``maml_1_minus_best_pretrained`` is, per seed, MAML's 1-step return minus the best of
    the pretrained policy's evaluations (un-adapted, adapted at 0.1, adapted at 0.05)."""
    rng = np.random.default_rng(1)
    per_seed, best = [], []
    for pre0, pre1, lr1 in ((-50.0, -60.0, -45.0), (-40.0, -70.0, -55.0), (-52.0, -48.0, -65.0)):
        g = 30
        maml = np.stack([rng.normal(-60, 3, g), rng.normal(-44, 3, g)], axis=1)
        pretrained = np.stack([rng.normal(pre0, 3, g), rng.normal(pre1, 3, g)], axis=1)
        at_lr = np.stack([pretrained[:, 0], rng.normal(lr1, 3, g)], axis=1)
        per_seed.append(_seed_results(maml, pretrained, at_lr))
        best.append(min(maml[:, 1].mean() - pretrained[:, 0].mean(),
                        maml[:, 1].mean() - pretrained[:, 1].mean(),
                        maml[:, 1].mean() - at_lr[:, 1].mean()))
    results = maml_cheetah.combine_seeds(per_seed, [7, 8, 9])
    assert results["num_seeds"] == 3 and results["seeds"] == [7, 8, 9]
    assert results["per_seed"] is per_seed
    means = np.array([s["returns_by_steps"]["maml"] for s in per_seed])  # [3 seeds, 2 steps]
    np.testing.assert_allclose(results["returns_by_steps"]["maml"], means.mean(0))
    np.testing.assert_allclose(results["returns_ci95"]["maml"],
                               stats.t_quantile(3) * means.std(0, ddof=1) / np.sqrt(3))
    gains = results["over_seeds"]
    strict = gains["maml_1_minus_best_pretrained"]
    np.testing.assert_allclose(strict["per_seed"], best)
    # seed 0's best baseline is the step at 0.05, seed 1's the un-adapted policy, seed 2's 0.1
    assert strict["mean"] < gains["maml_1_minus_pretrained_1"]["mean"]
    own = gains["maml_1_minus_maml_0"]
    assert own["verdict_vs_0"] == "better" and own["ci95"] > 0
    np.testing.assert_allclose(
        own["per_seed"], [s["paired_over_tasks"]["maml_1_minus_maml_0"]["mean"] for s in per_seed])
    table = maml_cheetah.summary_table(results)
    assert "maml_1_minus_best_pretrained" in table and "gain over seeds" in table
    # one seed: the same headline gains, paired over its held-out tasks, naming the best baseline
    one = maml_cheetah.summary_table(per_seed[0])
    assert "gain paired over tasks" in one
    assert "maml_1_minus_best_pretrained (pretrained_at_lr_0p05_1)" in one
    np.testing.assert_allclose(per_seed[0]["paired_over_tasks"]["maml_1_minus_best_pretrained"]
                               ["mean"], best[0])


def test_seed_keys_are_the_separate_runs_keys_and_seeds_do_not_shard():
    from types import SimpleNamespace

    from metarl_jax.io.cli import UsageError
    from metarl_jax.transfer.few_shot import seed_keys

    keys = seed_keys(3, 2)
    np.testing.assert_array_equal(keys, np.stack([jax.random.PRNGKey(3),
                                                  jax.random.PRNGKey(4)]))
    with pytest.raises(ValueError, match="num_seeds must be >= 1"):
        seed_keys(0, 0)
    with pytest.raises(ConfigError, match="num_seeds"):
        apply_overrides(maml_cheetah.PRESETS["quick"], ["num_seeds=0"])
    two = dataclasses.replace(maml_cheetah.PRESETS["quick"], num_seeds=2)
    maml_cheetah.check_seeds_on_mesh(two, None)  # one device: fine
    maml_cheetah.check_seeds_on_mesh(maml_cheetah.PRESETS["quick"], SimpleNamespace(size=2))
    with pytest.raises(UsageError, match="num_seeds=2"):
        maml_cheetah.check_seeds_on_mesh(two, SimpleNamespace(size=2))


@pytest.mark.mjx_e2e
def test_several_seeds_in_one_run(tmp_path):
    """``num_seeds=2``: both seeds trained in one program, each evaluated on its own held-out
    tasks; the summary has per-seed results and CIs over seeds; ``load_run`` restores both seeds
    and ``adapt_sweep --seed-index 1`` reproduces seed 1's evaluation."""
    import metarl_jax
    from metarl_jax.transfer import adapt_sweep

    out = tmp_path / "two"
    code = cli(maml_cheetah.NAME, maml_cheetah.main, maml_cheetah.Config, maml_cheetah.PRESETS,
               argv=["--preset", "quick", "--seed", "3", "--out", str(out), "num_seeds=2",
                     "pretrained_eval_rates=0.05"])
    assert code == 0
    results = json.loads((out / "summary.json").read_text())["results"]
    assert results["num_seeds"] == 2 and results["seeds"] == [3, 4]
    per_seed = results["per_seed"]
    assert len(per_seed) == 2
    maml = np.array([s["returns_by_steps"]["maml"] for s in per_seed])
    np.testing.assert_allclose(results["returns_by_steps"]["maml"], maml.mean(0), rtol=1e-6)
    assert not np.allclose(maml[0], maml[1])  # different seeds, different held-out tasks
    for seed in per_seed:
        assert len(seed["velocity_error_by_steps"]["maml"]) == 2
        assert set(seed["final_train"]) == set(maml_cheetah.METHODS)
    assert {"maml_1_minus_maml_0", "maml_1_minus_best_pretrained"} <= set(results["over_seeds"])
    lines = read_metrics(out / METRICS_FILE)
    first = [line for line in lines if line["phase"] == "maml"][0]
    assert len(first["return_pre_per_seed"]) == 2

    run = metarl_jax.load_run(out)
    assert all(trained.num_seeds == 2 for trained in run.policies.values())
    swept = adapt_sweep.sweep(out, seed_index=1)
    assert swept["seed"] == 4
    row = {r["method"]: r for r in swept["rows"]}
    np.testing.assert_allclose(row["maml"]["returns_by_steps"],
                               per_seed[1]["returns_by_steps"]["maml"], rtol=1e-5)
    with pytest.raises(ValueError, match="seed_index"):
        adapt_sweep.sweep(out, seed_index=2)
