"""Successor features + GPI: tabular SFs against the linear solve, TD convergence, GPI on a
hand-built case, the FeatureNav2D env, the deep learner's compile count, and the experiment."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.feature_nav import FeatureNav2D, features
from metarl_jax.algos import successor_features as sfl
from metarl_jax.algos.sf import Library, SFConfig, SFLearner, regress_w
from metarl_jax.randomization.param_space import fixed_space

pytestmark = pytest.mark.slow


def random_mdp(seed, S=6, A=3, K=2):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), (S, A)).astype(np.float32)
    pi = rng.dirichlet(np.ones(A), S).astype(np.float32)
    phi_sas = rng.normal(size=(S, A, S, K)).astype(np.float32)
    return jnp.asarray(P), jnp.asarray(pi), jnp.asarray(phi_sas)


def test_exact_sf_satisfies_the_bellman_equation_and_matches_the_policy_value():
    P, pi, phi_sas = random_mdp(0)
    gamma = 0.9
    phi = sfl.expected_features(P, phi_sas)
    psi = sfl.exact_sf(P, pi, phi, gamma)
    # psi(s,a) = phi(s,a) + gamma sum_s' P(s'|s,a) sum_a' pi(a'|s') psi(s',a')
    rhs = phi + gamma * jnp.einsum("sat,tb,tbk->sak", P, pi, psi)
    np.testing.assert_allclose(psi, rhs, atol=1e-4)
    # psi . w is Q^pi_w from an independent solve on the state values (S x S system).
    w = jnp.array([0.7, -1.3])
    r = phi @ w  # [S, A]
    P_pi = jnp.einsum("sat,sa->st", P, pi)
    v = jnp.linalg.solve(jnp.eye(6) - gamma * P_pi, jnp.sum(pi * r, axis=1))
    q = r + gamma * jnp.einsum("sat,t->sa", P, v)
    np.testing.assert_allclose(psi @ w, q, atol=1e-4)


def test_td_learned_sfs_converge_to_the_linear_solve():
    P, pi, phi_sas = random_mdp(1, S=4, A=2, K=2)
    gamma = 0.5
    phi = sfl.expected_features(P, phi_sas)
    exact = sfl.exact_sf(P, pi, phi, gamma)
    # Deterministic features so sampled TD sees phi(s, a) exactly; noise only from s', a'.
    td = jax.jit(sfl.td_sf, static_argnums=(5, 6))(jax.random.PRNGKey(2), P, pi, phi, gamma,
                                                   20_000, 64, 0.5)
    err = float(jnp.max(jnp.abs(td - exact)))
    scale = float(jnp.max(jnp.abs(exact)))  # the error of the all-zero start
    print(f"TD error {err:.2e}, scale {scale:.2f}")
    assert err < 0.01 * scale, (err, scale)


def test_gpi_picks_the_max_over_policies_on_a_hand_built_case():
    # Two policies, 2 states, 3 actions, 2 features.
    psi1 = jnp.array([[[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]],
                      [[0.0, 0.0], [3.0, 0.0], [0.0, 0.0]]])
    psi2 = jnp.array([[[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
                      [[0.0, 1.0], [0.0, 0.0], [0.0, 4.0]]])
    psis = jnp.stack([psi1, psi2])
    w = jnp.array([1.0, -0.5])
    # Q1 = [[1, -1, .25], [0, 3, 0]], Q2 = [[2, 0, -.5], [-.5, 0, -2]]; max: [[2, 0, .25],
    # [0, 3, 0]] -> actions 0 (from policy 2) and 1 (from policy 1).
    np.testing.assert_allclose(sfl.gpi_values(psis, w), [[2.0, 0.0, 0.25], [0.0, 3.0, 0.0]])
    np.testing.assert_array_equal(sfl.gpi_action(psis, w), [0, 1])
    # Masking policy 1 out leaves policy 2's greedy actions; w = (0, 1) prefers feature 2.
    np.testing.assert_array_equal(sfl.gpi_action(psis, w, jnp.array([False, True])), [0, 1])
    np.testing.assert_array_equal(sfl.gpi_action(psis, jnp.array([0.0, 1.0])), [1, 2])


def test_gpi_is_no_worse_than_every_policy_on_a_new_task():
    # Barreto et al.'s theorem 1 with exact SFs: Q^{GPI} >= max_i Q^{pi_i} everywhere.
    P, _, phi_sas = random_mdp(3, S=6, A=3, K=3)
    gamma = 0.9
    phi = sfl.expected_features(P, phi_sas)

    @jax.jit
    def optimal_psi(w):  # policy iteration on psi . w: the optimal policy's SFs for task w
        improve = lambda pi, _: (sfl.greedy_policy(sfl.exact_sf(P, pi, phi, gamma), w), None)
        pi, _ = jax.lax.scan(improve, jnp.full((6, 3), 1 / 3), None, length=30)
        return sfl.exact_sf(P, pi, phi, gamma)

    psis = jnp.stack([optimal_psi(w) for w in jnp.eye(3)])  # base tasks e_1, e_2, e_3
    w_new = jnp.array([0.5, -1.0, 0.8])
    pi_gpi = jax.nn.one_hot(sfl.gpi_action(psis, w_new), 3)
    q_gpi = sfl.exact_sf(P, pi_gpi, phi, gamma) @ w_new
    assert bool(jnp.all(q_gpi >= sfl.gpi_values(psis, w_new) - 1e-4))


def test_feature_nav_reward_is_phi_dot_w():
    env = envs.make("FeatureNav2D")
    params = env.default_params().replace(w=jnp.array([2.0, -1.0, 0.5, 0.0]),
                                          start=jnp.array([0.2, 0.05]),
                                          start_noise=jnp.float32(0.0))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_allclose(obs, [0.2, 0.05])
    # +y twice: 0.11 (outside region 0 at (0.2, 0.2) radius 0.15), then 0.17 (inside).
    state, obs, r, done, info = env.step(jax.random.PRNGKey(0), state, jnp.int32(3), params)
    np.testing.assert_allclose(info["features"], [1.0, 0, 0, 0])  # 0.09 < 0.15 already
    assert float(r) == pytest.approx(2.0)
    state, obs, r, done, info = env.step(jax.random.PRNGKey(0), state, jnp.int32(2), params)
    np.testing.assert_allclose(obs, [0.14, 0.11], atol=1e-6)
    np.testing.assert_allclose(info["features"], features(obs, params))
    assert float(r) == pytest.approx(float(features(obs, params) @ params.w))
    for _ in range(3):  # -x clips at the wall
        state, obs, *_ = env.step(jax.random.PRNGKey(0), state, jnp.int32(2), params)
    assert float(obs[0]) == 0.0 and int(state.time) == 5


def test_w_regression_recovers_the_task_weights():
    phi = jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (200, 4)).astype(jnp.float32)
    w = jnp.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(regress_w(phi.T @ phi, phi.T @ (phi @ w), 1e-6), w, atol=1e-4)


def test_learner_compiles_once_and_scratch_shares_the_program():
    env = FeatureNav2D(max_steps=10)
    sf = SFLearner(env, 4)
    config = SFConfig(num_envs=4, total_steps=400, buffer_size=256, batch_size=16,
                      learning_starts=32, hidden_sizes=(16,)).validate()
    state = sf.init(jax.random.PRNGKey(0), config, fixed_space(env.default_params()))
    library = Library(jax.tree.map(lambda x: jnp.stack([x, x]), state.params),
                      jnp.array([True, True]))
    state, m = sf.train_chunk(state, config, 10, library)
    scratch = library._replace(mask=jnp.array([False, False]))
    state, m = sf.train_chunk(state, config, 10, scratch)
    assert sf.traces["train_chunk"] == 1
    assert m["sf_loss"].shape == (10,) and np.all(np.asarray(m["nonfinite_flags"]) == 0)
    assert int(state.buffer.size) == 80
    with pytest.raises(ValueError, match="discrete"):
        SFLearner(envs.make("PointNav2D"), 4)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from experiments import successor_features
    from tests.experiment_contract import run_quick

    out = tmp_path_factory.mktemp("sf") / "run"
    assert run_quick(successor_features, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    import json

    from experiments import successor_features
    from tests.experiment_contract import check_run_folder

    config = successor_features.PRESETS["quick"]
    per_line = config.new.num_envs * config.log_every
    phases = {"base": config.base.num_updates // config.log_every}
    for j in range(len(config.new_tasks)):
        for m in successor_features.METHODS:
            done = 0
            for b in config.budgets:
                phases[f"task{j}_{m}_{b}"] = (b - done) // per_line
                done = b
    check_run_folder(quick_run, phases, ("curves.png",))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    for m in successor_features.METHODS:
        task = results[m]["task0"]
        assert list(task["return_by_budget"]) == ["0", *map(str, config.budgets)]
        assert task["return_at_budget"] == task["return_by_budget"][str(config.budget)]
        assert len(task["zero_shot_given_w"]["per_seed"]) == config.num_seeds
    # A return is at most max_steps * (the largest reward weight), at least max_steps * (the
    # most negative one): one region at a time, one reward per step.
    w = np.asarray(config.new_tasks[0])
    for m in successor_features.METHODS:
        for r in results[m]["task0"]["return_by_budget"].values():
            assert len(r["per_seed"]) == config.num_seeds
            assert all(40 * w.min() <= x <= 40 * w.max() for x in r["per_seed"])
    # w_hat starts at the prior (1 per feature); the error is max |w_hat - w'| per seed.
    err = results["w_regression_error"]["task0"]["per_seed"]
    assert len(err) == config.num_seeds and all(0 <= e <= 1 + np.abs(w).max() for e in err)
