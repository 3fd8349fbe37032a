"""RL^2: the Trial wrapper, hidden-state resets, truncated BPTT gradients, recurrent PPO
(compiles once, deterministic, checkpoint round trip, NaN guard, learns), task suites, and the
quick presets of rl2_mdp and rl2_nav end to end (run folder contract, exact resume, exit 3)."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarl_jax
from envs.bandits import (
    BernoulliBandit,
    DependentBandit,
    bernoulli_task_space,
    dependent_task_space,
)
from envs.tabular_mdp import (
    TabularMDP,
    optimal_episode_return,
    random_episode_return,
    tabular_mdp_task_space,
)
from experiments import rl2_mdp, rl2_nav
from metarl_jax.algos.rl2 import RL2, RL2Config, trial_advantages
from metarl_jax.core.trial import Trial
from metarl_jax.io.checkpoint import Checkpointer
from metarl_jax.nets.recurrent import RecurrentActorCritic, RecurrentInput, unroll
from metarl_jax.randomization.param_space import fixed_space
from tests.experiment_contract import check_run_folder, resume_matches, run_quick

SMALL = RL2Config(num_envs=8, num_steps=12, total_steps=8 * 12 * 6, num_epochs=2,
                  num_minibatches=2, hidden_size=16)


def _trial_bandit(pulls=2, episodes=3):
    """A 3-armed bandit with ``pulls``-step episodes, ``episodes`` per trial."""
    return BernoulliBandit(num_arms=3, max_steps=pulls), bernoulli_task_space(3), episodes


# ----------------------------------------------------------------------------------- Trial wrapper
def test_trial_runs_episodes_of_one_task_then_draws_a_fresh_task():
    env, space, episodes = _trial_bandit(pulls=2, episodes=3)
    trial = Trial(env, episodes)
    assert trial.max_steps == 6
    state, _ = trial.reset(jax.random.PRNGKey(0), space)
    tasks, dones, episode_dones, indices = [], [], [], []
    step = jax.jit(trial.step)
    for t in range(12):
        tasks.append(np.asarray(state.params.probs))
        state, _, _, done, info = step(jax.random.PRNGKey(t + 1), state, jnp.int32(t % 3), space)
        dones.append(bool(done))
        episode_dones.append(bool(info["episode_done"]))
        indices.append(int(info["episode_index"]))
    assert dones == [t in (5, 11) for t in range(12)]
    assert episode_dones == [t % 2 == 1 for t in range(12)]
    assert indices == [0, 0, 1, 1, 2, 2] * 2
    for t in range(1, 12):  # the task changes exactly at trial boundaries
        assert np.array_equal(tasks[t], tasks[t - 1]) == (t != 6)


def test_trial_step_batch_is_bit_identical_to_vmapped_step():
    env = TabularMDP(num_states=4, num_actions=2, max_steps=3)
    space = tabular_mdp_task_space(4, 2)
    trial = Trial(env, episodes_per_trial=2)
    n = 5
    state, _ = jax.vmap(trial.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n),
                                                        space)
    # Desynchronize the envs so that only some trials end on a given step.
    state = state.replace(episode=jnp.array([0, 1, 0, 1, 1], jnp.int32))
    a, b = state, state
    vstep = jax.jit(jax.vmap(trial.step, in_axes=(0, 0, 0, None)))
    bstep = jax.jit(trial.step_batch)
    for t in range(8):
        keys = jax.random.split(jax.random.PRNGKey(t + 10), n)
        action = jnp.arange(n, dtype=jnp.int32) % 2
        a, *out_a = vstep(keys, a, action, space)
        b, *out_b = bstep(keys, b, action, space)
        chex.assert_trees_all_equal((a, out_a), (b, out_b))


# ----------------------------------------------------------------------------------- hidden state
@pytest.fixture(scope="module")
def bandit_rollout():
    env, space, episodes = _trial_bandit(pulls=2, episodes=2)
    rl2 = RL2(env, episodes)
    state = rl2.init(jax.random.PRNGKey(0), SMALL, space)
    net = rl2.network(SMALL)
    carry, traj = jax.jit(lambda s: rl2._rollout(net, s.params, s.carry, s.key, s.space, 12))(
        state)
    return rl2, net, state, carry, traj


def test_hidden_state_resets_between_trials_not_between_episodes(bandit_rollout):
    """2-pull episodes, 2 episodes per trial: episodes end every 2 steps, trials every 4. The
    hidden state before a step is zero exactly at the start of a trial; everywhere else --
    across the episode boundary inside a trial too -- it is the GRU's output of the step before
    (the memory is carried, not reset), and the policy is told an episode ended."""
    _, net, state, _, traj = bandit_rollout
    hidden = np.asarray(traj.hidden)  # [T, N, H], the state *before* each step
    first = np.asarray(traj.first)
    episode_done, trial_done = np.asarray(traj.episode_done), np.asarray(traj.done)
    T = hidden.shape[0]
    assert np.array_equal(episode_done, np.tile((np.arange(T) % 2 == 1)[:, None], (1, 8)))
    assert np.array_equal(trial_done, np.tile((np.arange(T) % 4 == 3)[:, None], (1, 8)))
    assert first[0].all() and np.all(hidden[0] == 0)
    step = jax.jit(lambda h, x: net.apply(state.params, h, x)[0])
    for t in range(1, T):
        new_trial = trial_done[t - 1]
        assert np.array_equal(first[t], new_trial)
        assert np.all(hidden[t][new_trial] == 0)
        carried = np.asarray(step(traj.hidden[t - 1], jax.tree.map(lambda x: x[t - 1],
                                                                   traj.inputs)))
        np.testing.assert_allclose(hidden[t][~new_trial], carried[~new_trial], rtol=1e-5,
                                   atol=1e-6)
        assert np.all(np.abs(carried).sum(-1) > 1e-3)  # a reset would be visible
        # After an episode ends inside a trial, the policy is told (prev_done = 1); after a
        # trial ends, its input starts afresh (no previous action, reward or done).
        kept = episode_done[t - 1] & ~new_trial
        assert np.array_equal(np.asarray(traj.inputs.prev_done[t]) == 1.0, kept)
        for x in (traj.inputs.prev_done, traj.inputs.prev_reward, traj.inputs.prev_action):
            assert np.all(np.asarray(x[t])[new_trial] == 0)


def test_recurrent_policy_replays_the_training_rollout_step_by_step(bandit_rollout):
    """``make_recurrent_policy`` fed the rollout's observations, rewards and done flags, one
    env and one step at a time, gives the rollout's actions (sampled with the same keys is
    not possible, so compare the deterministic mode with the rollout's distribution mode and the
    carried hidden states)."""
    rl2, net, state, _, traj = bandit_rollout
    policy = rl2.make_recurrent_policy(state, SMALL, deterministic=True)
    act, observe = jax.jit(policy.act), jax.jit(policy.observe)
    env_index = 3
    memory = policy.initial(())
    for t in range(traj.hidden.shape[0]):
        np.testing.assert_allclose(np.asarray(memory.hidden), np.asarray(traj.hidden[t, env_index]),
                                   rtol=1e-5, atol=1e-6)
        x = jax.tree.map(lambda v: v[t, env_index], traj.inputs)
        for mine, theirs in zip(memory[1:], (x.prev_action, x.prev_reward, x.prev_done)):
            np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
        action, memory = act(jax.random.PRNGKey(t), memory, x.obs)
        _, dist, _ = net.apply(state.params, traj.hidden[t, env_index], x)
        assert int(action) == int(net.head.mode(dist))
        # Teacher forcing: the rollout's own action, reward and flags drive the memory on.
        memory = memory._replace(prev_action=traj.action[t, env_index])
        memory = observe(memory, traj.reward[t, env_index], traj.episode_done[t, env_index],
                         traj.done[t, env_index])


def test_unroll_from_stored_chunk_starts_reproduces_the_rollout(bandit_rollout):
    """Truncated BPTT re-runs chunks from stored hidden states; across trial resets it must give
    the very values the rollout computed."""
    _, net, state, _, traj = bandit_rollout
    run = jax.jit(lambda *args: unroll(net, *args))
    for seq_len in (12, 4, 3):
        for start in range(0, 12, seq_len):
            sl = slice(start, start + seq_len)
            inputs = jax.tree.map(lambda x: x[sl], traj.inputs)
            _, dist, value = run(state.params, traj.hidden[start], inputs, traj.first[sl])
            np.testing.assert_allclose(value, traj.value[sl], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(net.head.log_prob(dist, traj.action[sl]),
                                       traj.log_prob[sl], rtol=1e-5, atol=1e-6)


def test_value_targets_are_the_trial_return_across_episode_ends(bandit_rollout):
    """RL²'s objective is the return of the whole trial (Duan et al. 2016): with lambda = 1 the
    value target of step t is the (scaled, discounted) sum of the rewards from t to the end of
    its *trial*, running on across the episode end inside it and stopping at the trial's end
    (the rollout's 12 steps are 3 whole trials of 2 episodes of 2 pulls, nothing bootstrapped)."""
    _, _, _, _, traj = bandit_rollout
    reward, done = np.asarray(traj.reward, np.float64), np.asarray(traj.done)
    assert done[-1].all() and np.asarray(traj.episode_done).sum() == 2 * done.sum()
    last_value = jnp.full(reward.shape[1:], 1e3)  # would show if anything bootstrapped past a trial
    for gamma in (1.0, 0.5):
        config = SMALL.replace(gamma=gamma, gae_lambda=1.0, reward_scale=0.1)
        _, targets = trial_advantages(traj, last_value, config)
        expected, running = np.zeros_like(reward), np.zeros(reward.shape[1])
        for t in reversed(range(reward.shape[0])):
            running = 0.1 * reward[t] + gamma * np.where(done[t], 0.0, running)
            expected[t] = running
        np.testing.assert_allclose(targets, expected, rtol=1e-5, atol=1e-5)


def test_gradients_flow_through_the_whole_sequence_and_stop_at_resets():
    net = RecurrentActorCritic(action_size=3, discrete=True, hidden_size=8)
    L, B = 6, 2
    params = net.init(jax.random.PRNGKey(0), net.initial_hidden((B,)),
                      net.dummy_input(2, (B,)))
    inputs = RecurrentInput(
        obs=jax.random.normal(jax.random.PRNGKey(1), (L, B, 2)),
        prev_action=jnp.zeros((L, B), jnp.int32),
        prev_reward=jax.random.normal(jax.random.PRNGKey(2), (L, B)),
        prev_done=jnp.zeros((L, B)))

    def last_value(obs, resets):
        _, _, value = unroll(net, params, net.initial_hidden((B,)), inputs._replace(obs=obs),
                             resets)
        return value[-1].sum()

    grad_fn = jax.jit(jax.grad(last_value))
    no_reset = jnp.zeros((L, B), bool)
    grad = grad_fn(inputs.obs, no_reset)
    assert float(jnp.abs(grad[0]).sum()) > 1e-6  # loss at t = L-1 reaches the input at t = 0
    reset_at_3 = no_reset.at[3].set(True)
    grad = grad_fn(inputs.obs, reset_at_3)
    assert float(jnp.abs(grad[:3]).sum()) == 0.0  # nothing crosses a trial boundary
    assert float(jnp.abs(grad[3]).sum()) > 1e-6


# ----------------------------------------------------------------------------------- recurrent PPO
def test_update_compiles_once_is_deterministic_and_a_rate_change_does_not_recompile():
    env, space, episodes = _trial_bandit(pulls=3, episodes=2)
    rl2 = RL2(env, episodes)
    config = SMALL.replace(seq_len=4)
    state = rl2.init(jax.random.PRNGKey(0), config, space)
    s1, m1 = rl2.train_chunk(state, config, 3)
    s2, m2 = rl2.train_chunk(state, config, 3)
    chex.assert_trees_all_equal((s1, m1), (s2, m2))
    assert all(np.isfinite(np.asarray(v)).all() for v in m1.values())
    rl2.train_chunk(s1, config.replace(learning_rate=3e-4, ent_coef=0.0, gamma=0.9), 3)
    assert rl2.traces["train_chunk"] == 1
    assert int(s1.update_step) == 3


@pytest.mark.parametrize("changes, message", [
    (dict(seq_len=5), "must divide"),
    (dict(num_minibatches=3), "not divisible"),
    (dict(total_steps=10), "less than one update"),
    (dict(gamma=0.0), "gamma"),
    (dict(learning_rate=0.0), "learning_rate"),
])
def test_config_validation_names_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        SMALL.replace(**changes).validate()


def test_train_state_checkpoints_whole(tmp_path):
    """Network, optimizer, carry (env state incl. current tasks, hidden state), task space and
    key survive an orbax round trip: training continues identically."""
    env = TabularMDP(num_states=4, num_actions=2, max_steps=3)
    space = tabular_mdp_task_space(4, 2)
    rl2 = RL2(env, episodes_per_trial=2)
    config = SMALL.replace(num_steps=6, total_steps=8 * 6 * 4)
    state, _ = rl2.train_chunk(rl2.init(jax.random.PRNGKey(0), config, space), config, 2)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(2, state)
        ckpt.wait()
        restored, _ = ckpt.restore(2, like=jax.eval_shape(lambda: state))
    chex.assert_trees_all_equal(rl2.train_chunk(state, config, 2),
                                rl2.train_chunk(restored, config, 2))


def test_rl2_learns_the_dependent_bandit():
    """One pull of the two-armed dependent bandit (arms p, 1 - p) informs about both arms."""
    env = DependentBandit(max_steps=10)
    space = dependent_task_space()
    rl2 = RL2(env, episodes_per_trial=1)
    config = RL2Config(num_envs=64, num_steps=10, total_steps=64 * 10 * 150, num_epochs=4,
                       num_minibatches=4, hidden_size=32, encoder_sizes=(32,), gamma=1.0,
                       reward_scale=0.5)
    state, metrics = rl2.train(jax.random.PRNGKey(0), config, space)
    tasks = space.sample(jax.random.PRNGKey(2), (1000,))
    tasks = tasks.replace(p=jnp.tile(jnp.array([0.1, 0.9]), 500))
    before = rl2.evaluate(rl2.init(jax.random.PRNGKey(0), config, space).params, config, tasks,
                          jax.random.PRNGKey(1))["trial_return"].mean()
    after = rl2.evaluate(state.params, config, tasks, jax.random.PRNGKey(1))["trial_return"].mean()
    assert abs(float(before) - 5.0) < 0.3  # untrained: about random
    assert float(after) > 7.5  # a fixed arm earns 5; stay-or-switch after one pull ~8.1


# ----------------------------------------------------------------------------------- task suites
def test_tabular_mdp_task_distribution_and_exact_references():
    space = tabular_mdp_task_space()
    tasks = space.sample(jax.random.PRNGKey(0), (400,))
    assert tasks.transitions.shape == (400, 10, 5, 10)
    np.testing.assert_allclose(tasks.transitions.sum(-1), 1.0, rtol=1e-5)
    # Dirichlet(1) over 10 states: each entry has mean 1/10 and variance 9 / (100 * 11).
    assert abs(float(tasks.transitions.mean()) - 0.1) < 1e-6
    assert abs(float(tasks.transitions.var()) - 9 / 1100) < 5e-4
    assert abs(float(tasks.reward_mean.mean()) - 1.0) < 0.03
    assert abs(float(tasks.reward_mean.std()) - 1.0) < 0.03
    random = jax.vmap(lambda p: random_episode_return(p, 10))(tasks)
    oracle = jax.vmap(lambda p: optimal_episode_return(p, 10))(tasks)
    assert abs(float(random.mean()) - 10.0) < 0.3  # E[mean reward] = 1 per step
    assert bool(jnp.all(oracle > random))
    # Monte Carlo of uniformly random actions on one task matches its exact value.
    env, params = TabularMDP(), jax.tree.map(lambda x: x[0], tasks)

    def episode(key):
        k0, key = jax.random.split(key)
        state, _ = env.reset(k0, params)

        def step(carry, k):
            s, total = carry
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (), 0, 5)
            s, _, r, _, _ = env.step(ks, s, a, params)
            return (s, total + r), None

        (_, total), _ = jax.lax.scan(step, (state, 0.0), jax.random.split(key, 10))
        return total

    totals = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(1), 20000))
    se = float(totals.std()) / np.sqrt(20000)
    assert abs(float(totals.mean()) - float(random[0])) < 4 * se


# ----------------------------------------------------------------------------------- experiments
@pytest.fixture(scope="module", params=[rl2_mdp, rl2_nav], ids=["rl2_mdp", "rl2_nav"])
def quick_run(request, tmp_path_factory):
    module = request.param
    out = tmp_path_factory.mktemp(module.NAME) / "run"
    assert run_quick(module, out) == 0
    return module, out


@pytest.mark.slow
def test_quick_preset_reports_returns_per_episode_of_a_trial(quick_run):
    module, out = quick_run
    config = module.PRESETS["quick"]
    check_run_folder(out, {"rl2": config.rl2.num_updates}, ("per_episode.png", "curves.png"))
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    per_episode = results["per_episode"]
    for name, values in per_episode.items():
        assert len(values) == config.episodes_per_trial and all(np.isfinite(values)), name
    assert per_episode["oracle"][0] > max(per_episode["rl2"])  # the task-aware bound
    assert results["trial_return"]["rl2"] == pytest.approx(sum(per_episode["rl2"]), rel=1e-5)
    assert summary["eval_tasks"] == config.eval_tasks
    if module is rl2_mdp:  # PSRL on the same held-out MDPs (metarl_jax.baselines.psrl)
        psrl = results["psrl"]
        assert per_episode["psrl"] == psrl["per_episode"]
        assert psrl["trial_return"] == pytest.approx(sum(psrl["per_episode"]), rel=1e-5)
        # Posterior sampling learns the MDP: its last episode beats random actions (CI clear of
        # the exact random value) and its first, and stays below the known-MDP value.
        last, last_ci = psrl["per_episode"][-1], psrl["per_episode_ci95"][-1]
        assert per_episode["random"][-1] < last - last_ci
        assert psrl["per_episode"][0] < last < per_episode["oracle"][-1]
        diff = psrl["rl2_minus_psrl"]
        tie = abs(diff["mean_episode_return"]) <= diff["ci95"]
        assert diff["verdict"] == ("tie" if tie else "rl2 ahead" if diff["mean_episode_return"] > 0
                                   else "psrl ahead")


@pytest.mark.slow
def test_load_run_gives_a_recurrent_actor_that_plays_a_trial(quick_run):
    module, out = quick_run
    trained = metarl_jax.load_run(out)["rl2"]
    assert trained.complete and trained.num_seeds == module.PRESETS["quick"].num_seeds
    with pytest.raises(TypeError, match="recurrent"):  # a GRU policy has no stateless act
        trained.act(np.zeros(trained.learner.env.observation_size, np.float32))
    actor = trained.recurrent(seed=0)
    env = trained.learner.trial_env
    space = fixed_space(trained.learner.env.default_params())
    state, obs0 = env.reset(jax.random.PRNGKey(0), space)
    obs, first = obs0, None
    for t in range(4):
        action = actor.act(np.asarray(obs))
        first = action if first is None else first
        state, obs, reward, done, info = env.step(jax.random.PRNGKey(t), state, action, space)
        actor.observe(float(reward), bool(info["episode_done"]), bool(done))
    assert np.abs(np.asarray(actor.memory.hidden)).sum() > 0  # the GRU carried something
    actor.reset()
    np.testing.assert_array_equal(actor.act(np.asarray(obs0)), first)  # a fresh trial


# rl2_nav only: both experiments resume through the same transfer.trials.train_rl2_phase, and
# rl2_mdp's PSRL and evaluation are keyed functions of the trained state, so a second resume
# (~20 s of retrace, checkpoint restore and re-evaluation in CI) would check nothing new.
@pytest.mark.slow
@pytest.mark.parametrize("quick_run", [rl2_nav], indirect=True, ids=["rl2_nav"])
def test_quick_preset_resumes_to_identical_results(quick_run, tmp_path, capsys):
    module, out = quick_run
    resume_matches(module, out, tmp_path, ["rl2"], capsys)


@pytest.mark.slow
def test_nonfinite_training_stops_with_exit_3_and_keeps_the_last_good_state(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_quick(rl2_mdp, out, "rl2.reward_scale=1e38") == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at update 1 of phase 'rl2'" in err
    assert not (out / "summary.json").exists()


def test_update_keeps_the_previous_state_on_nonfinite_values():
    env, space, episodes = _trial_bandit(pulls=3, episodes=2)
    rl2 = RL2(env, episodes)
    state = rl2.init(jax.random.PRNGKey(0), SMALL, space)
    new, metrics = rl2.update(state, SMALL)
    assert int(metrics["nonfinite_flags"]) == 0 and int(new.update_step) == 1
    bad, metrics = rl2.update(state, SMALL.replace(learning_rate=jnp.inf))
    assert int(metrics["nonfinite_flags"]) != 0
    chex.assert_trees_all_equal(bad, state)


def test_psrl_summary_pairs_over_tasks_and_gives_a_ci_over_training_seeds():
    rng = np.random.default_rng(0)
    psrl = rng.normal(13.0, 2.0, (50, 4))  # [M tasks, E episodes]
    # Three training seeds, each a constant offset from PSRL on every task and episode.
    rl2 = np.stack([psrl + offset for offset in (0.5, 0.7, 0.9)])  # [S, M, E]
    out = rl2_mdp.psrl_summary(psrl, rl2)
    paired = out["rl2_minus_psrl"]  # seeds averaged first: +0.7 on every task, no spread
    assert paired["mean_episode_return"] == pytest.approx(0.7) and paired["ci95"] < 1e-9
    assert paired["verdict"] == "rl2 ahead"
    over = out["rl2_minus_psrl_over_seeds"]  # t-CI over 3 seeds: 0.7 +- 4.30 * 0.2 / sqrt(3)
    assert over["per_seed"] == pytest.approx([0.5, 0.7, 0.9])
    assert over["ci95"] == pytest.approx(4.303 * 0.2 / np.sqrt(3), rel=1e-3)
    assert over["verdict"] == "rl2 ahead"  # 0.7 > 0.497
    assert "rl2_minus_psrl_over_seeds" not in rl2_mdp.psrl_summary(psrl, rl2[:1])


def test_cpu_preset_is_the_setting_chosen_on_validation_mdps():
    # docs/rl2.md's rl2_mdp numbers come from this setting (gamma picked on validation MDPs by
    # experiments._rl2_mdp_sweep, then one held-out run); a silent change would orphan them.
    config = rl2_mdp.PRESETS["cpu"]
    assert (config.rl2.gamma, config.rl2.num_updates, config.num_seeds) == (0.15, 2000, 3)
    assert (config.episodes_per_trial, config.eval_tasks) == (10, 2000)
