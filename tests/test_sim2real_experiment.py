"""``experiments.sim2real_cheetah``: the quick preset writes the contract; bad input exits 2."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import sim2real_cheetah as exp
from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import METRICS_FILE
from metarl_jax.sim2real import load_policy
from metarl_jax.sim2real.deploy import Perturbation, RealWorld
from metarl_jax.sim2real.export import export_ppo

pytestmark = pytest.mark.slow


def _run(*argv):
    return cli(exp.NAME, exp.main, exp.Config, exp.PRESETS, argv=list(argv))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("s2r") / "run"
    assert _run("--preset", "quick", "--seed", "0", "--out", str(out)) == 0
    return out


def test_quick_preset_writes_summary_policies_and_plots(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    config = exp.PRESETS["quick"]
    cells = exp.real_grid(config)
    assert summary["results"]["real_engine"] == "HalfCheetah-v5"
    assert len(summary["grid"]["cells"]) == len(cells) == 7 and summary["grid"]["cells"][0] == {}
    for phase in ("nominal", "dr"):
        r = summary["results"][phase]
        for key in ("sim_return", "real_nominal", "real_mean", "real_worst"):
            assert np.isfinite(r[key]), (phase, key)
        assert len(r["cell_returns"]) == len(cells)
        assert r["real_worst"] == pytest.approx(min(r["cell_returns"]))
        assert r["real_worst"] <= r["real_mean"] and r["real_nominal"] == r["cell_returns"][0]
        (one_seed,) = r["per_seed"]  # one seed: its cells are the phase's cells
        assert one_seed["cell_returns"] == pytest.approx(r["cell_returns"])
        over = summary["results"]["over_seeds"][phase]["real_worst"]
        assert over["per_seed"] == [one_seed["real_worst"]] and over["ci95"] is None
        policy = load_policy(quick_run / "policies" / phase)
        assert policy.spec["metadata"]["real_env"] == "HalfCheetah-v5"
        assert policy.obs_size == 17 and policy.action_size == 6
    # The two phases trained different policies from the same seed.
    assert summary["results"]["nominal"]["cell_returns"] != summary["results"]["dr"]["cell_returns"]
    lines = read_metrics(quick_run / METRICS_FILE)
    updates = [m["update"] for m in lines if m["phase"] == "dr"]
    assert updates == list(range(1, config.ppo.num_updates + 1))
    for png in ("sim2real.png", "curves.png"):
        assert (quick_run / png).stat().st_size > 5000


def test_the_reported_nominal_cell_is_what_the_policy_file_does_in_mujoco_c(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    config = exp.PRESETS["quick"]
    world = RealWorld("HalfCheetah-v5", max_episode_steps=config.max_steps)
    policy = load_policy(quick_run / "policies" / "dr")
    again = world.evaluate(policy, [Perturbation()], config.eval_episodes, seed=0).mean()
    assert again == pytest.approx(summary["results"]["dr"]["real_nominal"], rel=1e-9)


@pytest.mark.parametrize("argv, message", [
    (["env=walker"], "env must be one of halfcheetah, hopper"),
    (["mass_scale=1.5,0.5"], "0 <= low <= high"),
    (["delay_steps=0,3"], "must be <= max_delay=2"),
    (["privileged_critic=true", "per_element_physics=true"], "privileged_critic needs"),
    (["eval_mass_scales=0,1"], "eval_mass_scales are scales of a physical quantity and must be "
                               "> 0, got [0.0, 1.0]"),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_hopper_variant_wires_the_hopper_robot_into_export_and_the_real_engine(tmp_path):
    """``env=hopper``: the same code path as the cheetah's quick run (which trains end to end)
    with Hopper's MJX robot, its obs/action sizes in the exported file and Hopper-v5 as the real
    engine. No training here: an initial PPO state is exported, which costs one reset compile
    instead of a second MJX training program (~2.5 min of CI)."""
    config = exp.Config(**{**exp.PRESETS["quick"].__dict__, "env": "hopper"})
    robot = exp.make_robot(config)
    assert robot.gym_id == "Hopper-v5"
    ppo, ppo_config, (space,) = exp.policies(config, robot)["dr"]
    assert ppo.env.observation_size == 11 and ppo.env.action_size == 3
    state = ppo.init(jax.random.PRNGKey(0), ppo_config, space)
    export_ppo(tmp_path / "dr", state, ppo_config, robot.action_space,
               obs_layout=robot.observation_structure, metadata={"real_env": robot.gym_id})
    policy = load_policy(tmp_path / "dr")
    assert policy.obs_size == 11 and policy.action_size == 3
    world = RealWorld(robot.gym_id, max_episode_steps=config.max_steps)
    assert world.obs_size == policy.obs_size and world.action_size == policy.action_size
    returns = world.evaluate(policy, exp.real_grid(config)[:2], episodes=1, seed=0)
    assert returns.shape == (2, 1) and np.all(np.isfinite(returns))
    # The exported file acts as the JAX policy it came from.
    obs = np.linspace(-1.0, 1.0, 11, dtype=np.float32)
    jax_action = ppo.make_policy(state, ppo_config, deterministic=True)(
        jax.random.PRNGKey(1), jax.numpy.asarray(obs))
    np.testing.assert_allclose(policy(obs), np.asarray(jax_action), rtol=1e-5, atol=1e-6)


def test_privileged_critic_sees_the_episode_physics_and_the_exported_actor_does_not(tmp_path):
    """``privileged_critic=True``: both phases share one env whose observation ends with the
    episode's 6 randomized factors in [-1, 1] (critic only); the exported actor takes the
    robot's 17 entries and acts as the JAX policy does on the whole observation."""
    config = exp.Config(**{**exp.PRESETS["quick"].__dict__, "privileged_critic": True})
    robot = exp.make_robot(config)
    trained = exp.policies(config, robot)
    ppo, ppo_config, (space,) = trained["dr"]
    assert trained["nominal"][0] is ppo and ppo.actor_obs_size == 17
    assert ppo.env.observation_size == 17 + 6
    state = ppo.init(jax.random.PRNGKey(0), ppo_config, space)
    # [N, 6]: mass, friction, damping, gear, delay, noise
    privileged = np.asarray(state.obs)[:, 17:]
    assert np.all(np.abs(privileged) <= 1.0) and np.all(privileged.std(0) > 0.05)
    drawn = state.env_state.inner.params  # EpisodeStats(AutoReset(...)): the episodes' params
    np.testing.assert_allclose(privileged[:, 0], 2 * (np.asarray(drawn.body_mass_scale) - 0.6)
                               / 0.9 - 1, atol=1e-5)
    export_ppo(tmp_path / "dr", state, ppo_config, robot.action_space,
               obs_layout=robot.observation_structure)
    policy = load_policy(tmp_path / "dr")
    assert policy.obs_size == 17
    obs = np.asarray(state.obs)
    act = ppo.make_policy(state, ppo_config, deterministic=True)
    jax_action = act(None, jax.numpy.asarray(obs))
    np.testing.assert_allclose(policy(obs[:, :17]), np.clip(np.asarray(jax_action), -1, 1),
                               rtol=1e-5, atol=1e-5)


def test_seed_comparison_gives_over_seed_cis_paired_differences_and_verdicts():
    """``summary.json``'s ``over_seeds`` / ``dr_minus_nominal`` / ``dr_vs_nominal`` from the
    per-seed results (no training: numbers chosen so the CIs separate on one metric only)."""
    def phase(sim, worst, mean):
        return {"per_seed": [dict(sim_return=s, real_nominal=s, real_mean=m, real_worst=w)
                             for s, w, m in zip(sim, worst, mean)]}
    results = {"nominal": phase([4000, 4200, 4400], [-200, -250, -300], [3000, 3100, 3200]),
               "dr": phase([3000, 3600, 4200], [500, 600, 700], [2700, 3000, 3300])}
    out = exp.seed_comparison(results)
    worst = out["over_seeds"]["dr"]["real_worst"]
    assert worst["mean"] == pytest.approx(600) and worst["per_seed"] == [500, 600, 700]
    assert worst["ci95"] == pytest.approx(4.302653 * 100 / np.sqrt(3), rel=1e-6)
    assert out["dr_minus_nominal"]["real_worst"]["per_seed"] == [700, 850, 1000]
    assert out["dr_minus_nominal"]["sim_return"]["mean"] == pytest.approx(-600)
    verdict = out["dr_vs_nominal"]["verdict"]
    assert verdict["real_worst"] == "better" and verdict["real_mean"] == "tie"
    assert out["dr_vs_nominal"]["real_mean_ratio"] == pytest.approx(3000 / 3100)
    one = exp.seed_comparison({p: {"per_seed": r["per_seed"][:1]} for p, r in results.items()})
    assert one["over_seeds"]["dr"]["real_worst"]["ci95"] is None
    assert one["dr_vs_nominal"]["verdict"]["real_worst"] is None


def test_whole_robot_physics_scales_draw_one_factor_per_quantity():
    """``per_element_physics=False``: mass, damping and strength are scalars in both phases'
    params (one program), drawn once per episode for the whole robot; the default draws one
    factor per body / dof / actuator."""
    config = exp.Config(**{**exp.PRESETS["quick"].__dict__, "per_element_physics": False,
                           "strength_scale": (0.5, 1.3)})
    robot = exp.make_robot(config)
    spaces = {p: space for p, (_, _, (space,)) in exp.policies(config, robot).items()}
    params = spaces["dr"].sample(jax.random.PRNGKey(0), (64,))
    for name in ("body_mass_scale", "damping_scale", "gear_scale"):
        assert getattr(params, name).shape == (64,), name
        assert jax.tree.structure(spaces["nominal"].nominal) == jax.tree.structure(
            spaces["dr"].nominal)
    assert 0.5 <= float(params.gear_scale.min()) and float(params.gear_scale.max()) <= 1.3
    assert float(params.gear_scale.std()) > 0.1
    nominal = spaces["nominal"].sample(jax.random.PRNGKey(0), (4,))
    np.testing.assert_array_equal(np.asarray(nominal.gear_scale), np.ones(4))
    per_element = exp.policies(dataclasses.replace(config, per_element_physics=True), robot
                               )["dr"][2][0].sample(jax.random.PRNGKey(0), (4,))
    assert per_element.body_mass_scale.shape == (4, 8) and per_element.gear_scale.shape == (4, 6)
