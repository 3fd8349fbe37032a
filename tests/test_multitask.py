"""Multi-task PPO: PCGrad and gradient cosines on hand-built gradients, per-task normalization,
task conditioning, and the experiment's quick preset end to end.

No ``--resume`` test here: it costs about as much as a third of the quick run and the CI budget
is spent (the generic resume machinery is tested with other experiments; this experiment's
resume passed ``tests.experiment_contract.resume_matches`` when the file was written).
"""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarl_jax
from envs.point_nav import PointNav2D
from experiments import multitask as experiment
from metarl_jax.algos.multitask import (
    MultiTaskConfig,
    MultiTaskPPO,
    TaskConditioned,
    by_task,
    discounted_returns,
    normalize_task_advantages,
    per_task_reward_scale,
    task_batch,
)
from metarl_jax.algos.pcgrad import pcgrad, task_cosines
from metarl_jax.core import normalization
from metarl_jax.io.metrics import read_metrics
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow
KEY = jax.random.PRNGKey(0)


# ------------------------------------------------------------------------------ PCGrad
def test_pcgrad_projects_two_conflicting_gradients_exactly():
    # g1 . g2 = -1 < 0:  g1' = g1 - (-1 / |g2|^2 = 2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
    #                    g2' = g2 - (-1 / |g1|^2 = 1) g1 = (-1, 1) + (1, 0)     = (0, 1)
    grads = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    out = jax.jit(pcgrad)(grads, KEY)
    np.testing.assert_allclose(np.asarray(out), [[0.5, 0.5], [0.0, 1.0]], atol=1e-7)
    # Each projected gradient no longer conflicts with the other task's original gradient.
    assert float(out[0] @ grads[1]) == pytest.approx(0.0, abs=1e-7)
    assert float(out[1] @ grads[0]) == pytest.approx(0.0, abs=1e-7)


def test_pcgrad_leaves_non_conflicting_gradients_untouched():
    grads = jnp.array([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0], [0.0, 1.0, 1.0]])  # all dots >= 0
    np.testing.assert_array_equal(np.asarray(pcgrad(grads, KEY)), np.asarray(grads))


def test_pcgrad_on_a_pytree_of_params_matches_the_flattened_projection():
    # Two tasks' gradients of a {"w": [2, 2], "b": [1]} network: flattened (w, b) they are
    # g1 = (1, 2, 0, 1, 3), g2 = (-2, 0, 1, 1, -1): g1 . g2 = -2 + 1 - 3 = -4, |g1|^2 = 15,
    # |g2|^2 = 7, so g1' = g1 + 4/7 g2 and g2' = g2 + 4/15 g1.
    g1, g2 = np.array([1.0, 2, 0, 1, 3]), np.array([-2.0, 0, 1, 1, -1])
    flat = np.stack([g1, g2])
    grads = {"w": jnp.asarray(flat[:, :4].reshape(2, 2, 2)), "b": jnp.asarray(flat[:, 4:])}
    out = pcgrad(grads, KEY)
    assert jax.tree.map(jnp.shape, out) == jax.tree.map(jnp.shape, grads)
    expected = np.stack([g1 + 4 / 7 * g2, g2 + 4 / 15 * g1])
    got = np.concatenate([np.asarray(out["w"]).reshape(2, 4), np.asarray(out["b"])], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_pcgrad_with_three_tasks_removes_every_conflict_of_a_two_task_pair_only():
    # Task 2 conflicts with nobody: it stays; tasks 0 and 1 conflict only with each other.
    grads = jnp.array([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    out = np.asarray(pcgrad(grads, jax.random.PRNGKey(3)))
    np.testing.assert_allclose(out, [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0]],
                               atol=1e-7)


def test_task_cosines_on_hand_built_gradients():
    # Spread over two leaves: g0 = (1, 0 | 0), g1 = (0, 1 | 0), g2 = (-1, 1 | 0), g3 = 0.
    grads = {"a": jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [0.0, 0.0]]),
             "b": jnp.zeros((4, 1))}
    r = 1 / np.sqrt(2)
    expected = [[1, 0, -r, 0], [0, 1, r, 0], [-r, r, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(np.asarray(jax.jit(task_cosines)(grads)), expected, atol=1e-6)


# ------------------------------------------------------------------------------ normalization
def test_per_task_advantage_normalization_is_invariant_to_each_tasks_scale():
    adv = jax.random.normal(KEY, (3, 50)) + jnp.array([[1.0], [-2.0], [0.5]])
    scaled = adv * jnp.array([[1.0], [100.0], [0.01]])  # reward scales 1, 100, 0.01
    within = normalize_task_advantages(scaled, True)
    np.testing.assert_allclose(np.asarray(within.mean(1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(within.std(1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(within), np.asarray(normalize_task_advantages(adv, True)),
                               atol=1e-4)
    # Over the whole batch the 100x task dominates: the 0.01x task's advantages become one
    # constant (their spread, the only signal a policy gradient gets from them, is ~1e-4).
    over_all = np.asarray(normalize_task_advantages(scaled, False))
    assert over_all[2].std() < 1e-3 < 0.5 < over_all[1].std()
    assert over_all.mean() == pytest.approx(0.0, abs=1e-5)
    assert over_all.std() == pytest.approx(1.0, abs=1e-4)


def test_discounted_returns_restart_after_each_episode():
    # gamma = 0.5; env 0: rewards 1, 2 (done), 3; env 1: 4, 4, 4 (no done), carried acc = 2.
    reward = jnp.array([[1.0, 4.0], [2.0, 4.0], [3.0, 4.0]])
    done = jnp.array([[False, False], [True, False], [False, False]])
    acc, returns = discounted_returns(reward, done, jnp.array([0.0, 2.0]), 0.5)
    # env 0: 1, 0.5 + 2 = 2.5 (then reset), 3;  env 1: 1 + 4 = 5, 2.5 + 4 = 6.5, 3.25 + 4
    np.testing.assert_allclose(np.asarray(returns), [[1.0, 5.0], [2.5, 6.5], [3.0, 7.25]])
    np.testing.assert_allclose(np.asarray(acc), [3.0, 7.25])


def test_per_task_return_normalization_equalizes_reward_scales():
    # Two tasks x two envs each; task 1's rewards are task 0's times 0.01.
    base = jax.random.uniform(KEY, (200, 2), minval=-1.0, maxval=0.0)
    reward = jnp.concatenate([base, 0.01 * base], 1)  # [T, N = 4]: envs 0, 1 -> task 0
    _, disc = discounted_returns(reward, jnp.zeros_like(reward, bool), jnp.zeros(4), 0.9)
    stats = normalization.update(normalization.init(2), by_task(disc, 2).T)
    scale = np.asarray(per_task_reward_scale(stats))
    per_task = np.asarray(disc).reshape(200, 2, 2).transpose(1, 0, 2).reshape(2, -1)  # [K, T*M]
    # Each task's variance is its own samples' (plus normalization.init's prior of variance 1
    # at weight 1e-4, i.e. ~2.5e-7 here: 0.2% of task 1's ~1e-4 variance, nothing for task 0).
    np.testing.assert_allclose(np.asarray(stats.var), np.var(per_task, 1) + [0, 2.5e-7],
                               rtol=2e-3)
    assert scale[1] / scale[0] == pytest.approx(100.0, rel=2e-3)


def test_by_task_puts_env_i_in_task_i_div_m():
    x = jnp.arange(3 * 6).reshape(3, 6)  # [T = 3, N = 6], K = 2 -> M = 3
    out = np.asarray(by_task(x, 2))
    assert out.shape == (2, 9)
    np.testing.assert_array_equal(out[0], [0, 1, 2, 6, 7, 8, 12, 13, 14])
    np.testing.assert_array_equal(out[1], [3, 4, 5, 9, 10, 11, 15, 16, 17])


def test_task_conditioned_env_appends_the_task_and_scales_the_reward():
    env = PointNav2D()
    base = jax.tree.map(lambda x: jnp.stack([x, x]), env.default_params())
    tasks = task_batch(base.replace(goal=jnp.array([[1.0, 0.0], [-1.0, 0.0]])), (1.0, 0.01))
    wrapped = TaskConditioned(env, 2)
    assert wrapped.observation_size == 4
    task1 = jax.tree.map(lambda x: x[1], tasks)
    state, obs = wrapped.reset(KEY, task1)
    np.testing.assert_array_equal(np.asarray(obs), [0.0, 0.0, 0.0, 1.0])
    _, obs, reward, _, _ = wrapped.step(KEY, state, jnp.array([-0.1, 0.0]), task1)
    np.testing.assert_allclose(np.asarray(obs), [-0.1, 0.0, 0.0, 1.0], atol=1e-7)
    assert float(reward) == pytest.approx(-0.01 * 0.9)
    with pytest.raises(ValueError, match="reward_scales"):
        task_batch(base, (1.0, -1.0))


def test_learner_refuses_a_task_count_or_env_split_that_does_not_fit():
    env = PointNav2D()
    base = jax.tree.map(lambda x: jnp.stack([x, x]), env.default_params())
    tasks = task_batch(base)  # 2 tasks
    config = MultiTaskConfig(num_envs=4, num_steps=8, total_steps=64, num_minibatches=2)
    with pytest.raises(ValueError, match="built for 3 tasks, got 2"):
        MultiTaskPPO(env, 3).init(KEY, config, tasks)
    with pytest.raises(ValueError, match="multiple of the number of tasks"):
        MultiTaskPPO(env, 2).init(KEY, config.replace(num_envs=5), tasks)


# ------------------------------------------------------------------------------ experiment
@pytest.fixture(scope="module")
def quick_run_and_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("multitask") / "run"
    log = io.StringIO()
    with contextlib.redirect_stderr(log):  # the progress lines
        assert run_quick(experiment, out, "--seed", "0") == 0
    return out, log.getvalue()


@pytest.fixture(scope="module")
def quick_run(quick_run_and_log):
    return quick_run_and_log[0]


def test_the_four_multitask_variants_share_one_compiled_program(quick_run_and_log):
    # The progress line announces "compiling…" when JAX traces before a phase's first update:
    # only the first phase of each learner may (the mitigations are config leaves, not static).
    log = quick_run_and_log[1]
    compiled = {line.split()[0] for line in log.splitlines() if "compiling" in line}
    assert compiled == {"single_task", "multitask"}, log


def test_quick_preset_writes_the_contract(quick_run):
    config = experiment.PRESETS["quick"]
    k, lines = config.num_tasks, config.ppo.num_updates // config.log_every
    check_run_folder(quick_run, {m: lines for m in config.methods},
                     ("task_curves.png", "grad_cosine.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    assert set(results) == set(config.methods) | {"mitigation_vs_multitask"}
    for method in config.methods:
        r = results[method]
        per_seed = np.array([r["per_task"][f"task_{t}"]["per_seed"] for t in range(k)]).T
        assert per_seed.shape == (config.num_seeds, k)
        assert r["worst_task"]["per_seed"] == pytest.approx(per_seed.min(1).tolist())
        assert r["worst_task"]["mean"] == pytest.approx(per_seed.min(1).mean())
        # PointNav2D's reward is minus a distance: returns are negative and bounded by the
        # horizon times the farthest a policy can get (start distance + horizon * speed).
        assert np.all(per_seed < 0) and np.all(per_seed > -config.horizon * 3.0)
        if method != "single_task":
            cos = r["grad_cos"]
            assert {f"grad_cos_{i}_{j}" for i in range(k) for j in range(i + 1, k)} <= set(cos)
            assert all(-1.0 <= v <= 1.0 for n, v in cos.items() if n.startswith("grad_cos_"))
    for method, diff in results["mitigation_vs_multitask"].items():
        expected = "better" if diff["mean"] - diff["ci95"] > 0 else (
            "worse" if diff["mean"] + diff["ci95"] < 0 else "tie")
        assert diff["verdict"] == expected, method


def test_interference_is_visible_and_normalization_removes_the_scale_imbalance(quick_run):
    # Tasks 0 and 1 have reward scales 1 and 0.01. In plain multi-task PPO task 0's loss
    # gradient (policy and value) is several times task 1's (~10x in the quick and cpu runs:
    # the value error scales with the reward); per-task normalization makes them comparable.
    lines = read_metrics(quick_run / "metrics.jsonl")

    def ratio(phase):
        mine = [line for line in lines if line["phase"] == phase]
        return np.mean([line["grad_norm_task_0"] / line["grad_norm_task_1"] for line in mine])

    assert ratio("multitask") > 4.0
    assert 0.5 < ratio("multitask_normalization") < 2.0
    plain = [line for line in lines if line["phase"] == "multitask"]
    assert all(-1.0 <= line["grad_cos_0_1"] <= 1.0 and 0.0 <= line["grad_conflict_frac"] <= 1.0
               for line in plain)


def test_load_run_rebuilds_every_method(quick_run):
    config = experiment.PRESETS["quick"]
    run = metarl_jax.load_run(quick_run)
    assert set(run.policies) == set(config.methods) and run.finished
    assert all(run[m].complete for m in config.methods)
    k, s = config.num_tasks, config.num_seeds
    assert jax.tree.leaves(run["single_task"].state)[0].shape[0] == k * s  # task-major
    assert jax.tree.leaves(run["multitask_both"].state)[0].shape[0] == s
    obs = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0], np.float32)  # at the start, task 1
    action = run["multitask_both"].act(obs, seed=1)
    assert action.shape == (2,) and np.all(np.isfinite(action))


@pytest.mark.parametrize("override, message", [
    ("reward_scales=1,2", "one reward scale per goal angle"),
    ("methods=multitask,mtl", "subset"),
    ("ppo.num_envs=6", "multiple of the 4 tasks"),
])
def test_bad_config_exits_2(tmp_path, override, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(experiment, tmp_path / "bad", override)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
