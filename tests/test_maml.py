"""MAML's meta-gradients against central finite differences (float64), remat's memory, TRPO's
conjugate gradient and Fisher products, and the compiled meta-RL update."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from envs import sinusoid
from envs.point_nav import PointNav2D
from metarl_jax.algos import maml
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig, Samples, gaussian_kl, linear_baseline
from metarl_jax.algos.trpo import conjugate_gradient, gauss_newton_fvp, hvp, trpo_step
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space


def _f64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def central_differences(f, x, eps=1e-5):
    """``[D]`` gradient of ``f: [D] -> []`` by central differences."""
    basis = jnp.eye(x.shape[0], dtype=x.dtype)
    return jax.vmap(lambda e: (f(x + eps * e) - f(x - eps * e)) / (2 * eps))(basis)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# --------------------------------------------------------------------------- supervised MAML
NET = MLP((6, 6), 1)  # tanh: smooth, so finite differences are accurate


def _loss(params, points):
    return jnp.mean((NET.apply(params, points.x) - points.y) ** 2)


def _task_batch(num_tasks=3, shots=5, cast=_f64):
    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(1), (num_tasks,))
    return (cast(sinusoid.sample_points(jax.random.PRNGKey(2), tasks, shots)),
            cast(sinusoid.sample_points(jax.random.PRNGKey(3), tasks, shots)))


@pytest.mark.parametrize("mode", ["fixed", "scalar", "per_param"])
def test_second_order_meta_gradient_equals_finite_differences(mode):
    with jax.enable_x64(True):
        support, query = _task_batch()
        config = maml.MAMLConfig(num_inner_steps=3, inner_lr_mode=mode, inner_lr=0.05)
        meta = _f64(maml.init_meta_params(NET.init(jax.random.PRNGKey(0), jnp.zeros((1, 1))),
                                          config))
        x0, unravel = ravel_pytree(meta)
        f = jax.jit(lambda x: maml.meta_batch_loss(_loss, unravel(x), config, support, query))
        exact = jax.grad(f)(x0)
        numeric = central_differences(f, x0)
        assert _rel(exact, numeric) < 1e-6

        first = maml.MAMLConfig(num_inner_steps=3, inner_lr_mode=mode, inner_lr=0.05,
                                first_order=True)
        fo = jax.grad(lambda x: maml.meta_batch_loss(_loss, unravel(x), first, support, query))(x0)
        assert _rel(fo, numeric) > 1e-3  # FOMAML drops the Hessian terms: it must differ

        no_remat = config.replace(remat=False)
        plain = jax.grad(lambda x: maml.meta_batch_loss(_loss, unravel(x), no_remat, support,
                                                        query))(x0)
        np.testing.assert_allclose(plain, exact, rtol=1e-10, atol=1e-12)


def test_first_order_equals_outer_gradient_at_adapted_params_for_one_step():
    support, query = jax.tree.map(lambda x: x[0], _task_batch(num_tasks=1, cast=lambda t: t))
    config = maml.MAMLConfig(num_inner_steps=1, first_order=True, inner_lr=0.05)
    meta = maml.init_meta_params(NET.init(jax.random.PRNGKey(0), jnp.zeros((1, 1))), config)
    fo = jax.grad(lambda m: maml.task_meta_loss(_loss, m, config, support, query))(meta).params
    adapted = maml.sgd_step(_loss, meta.params, 0.05, support)
    expected = jax.grad(_loss)(adapted, query)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), fo, expected)


def test_remat_keeps_memory_nearly_flat_in_the_number_of_inner_steps():
    net = MLP((40, 40), 1)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(1), (25,))
    support = sinusoid.sample_points(jax.random.PRNGKey(2), tasks, 100)
    query = sinusoid.sample_points(jax.random.PRNGKey(3), tasks, 100)
    loss = lambda p, pts: jnp.mean((net.apply(p, pts.x) - pts.y) ** 2)

    def temp_bytes(k, remat):
        config = maml.MAMLConfig(num_inner_steps=k, remat=remat)
        grad = jax.jit(jax.grad(lambda p: maml.meta_batch_loss(
            loss, maml.MetaParams(p), config, support, query)))
        return grad.lower(params).compile().memory_analysis().temp_size_in_bytes

    growth = {r: (temp_bytes(12, r) - temp_bytes(2, r)) / 10 for r in (False, True)}
    # With remat each extra step stores one copy of the parameters per task, nothing more.
    param_bytes = 25 * ravel_pytree(params)[0].size * 4
    assert growth[True] <= 1.5 * param_bytes
    assert growth[True] < 0.3 * growth[False]


def test_supervised_update_compiles_once_and_learns():
    net = MLP((40, 40), 1)
    loss = lambda p, pts: jnp.mean((net.apply(p, pts.x) - pts.y) ** 2)

    def sample_batch(key, batch_size):
        tasks = sinusoid.sample_tasks(key, (batch_size,))
        return (sinusoid.sample_points(jax.random.fold_in(key, 1), tasks, 5),
                sinusoid.sample_points(jax.random.fold_in(key, 2), tasks, 5))

    learner = maml.SupervisedMAML(loss, lambda k: net.init(k, jnp.zeros((1, 1))), sample_batch)
    config = maml.MAMLConfig(meta_batch_size=10, inner_lr_mode="scalar")
    state = learner.init(jax.random.PRNGKey(0), config)
    state, first = learner.update(state, config)
    state, _ = learner.update(state, config.replace(outer_lr=5e-4))  # a rate is data
    assert learner.traces["update"] == 1
    state, metrics = learner.train_chunk(state, config, 10, log_every=50)
    assert metrics["post_loss"].shape == (10,)
    assert float(metrics["post_loss"][-1]) < 0.8 * float(metrics["post_loss"][0])
    assert float(state.meta.inner_lr) != pytest.approx(0.01)  # the scalar rate is learned


# --------------------------------------------------------------------------- MAML for RL
def _fixed_chain(learner, config, meta, key, steps=2, horizon=6, episodes=4):
    """Synthetic samples ``[steps, T, N, ...]``; old outputs are the sampling policies'."""
    keys = jax.random.split(key, 6)
    shape = (steps, horizon, episodes)
    obs = jax.random.normal(keys[0], shape + (2,))
    action = 0.5 * jax.random.normal(keys[1], shape + (2,))
    adv = jax.random.normal(keys[2], shape)
    reward = jax.random.normal(keys[3], shape)
    baseline = jax.random.normal(keys[4], shape)
    params, outputs = meta.params, []
    for i in range(steps):  # old policies: theta_0 and its adaptation on step 0's samples
        outputs.append(learner.policy(config).apply(params, obs[i]))
        sample = Samples(obs[i], action[i], reward[i], baseline[i], adv[i], adv[i],
                         *outputs[-1], jnp.zeros(episodes))
        params = maml.sgd_step(learner.inner_loss(config), params, config.inner_lr, sample)
    mean, log_std = (jnp.stack(x) for x in zip(*outputs))
    return Samples(obs, action, reward, baseline, adv, adv, mean, log_std,
                   jnp.zeros((steps, episodes)))


@pytest.mark.parametrize("estimator", ["pg", "dice"])
def test_rl_meta_gradient_on_fixed_samples_equals_finite_differences(estimator):
    with jax.enable_x64(True):
        learner = MAMLRL(PointNav2D())
        config = MAMLRLConfig(hidden_sizes=(5,), estimator=estimator, inner_lr=0.5,
                              init_log_std=-0.5)
        meta = _f64(learner.init(jax.random.PRNGKey(0), config, _nav_space()).meta)
        chain = _f64(_fixed_chain(learner, config, meta, jax.random.PRNGKey(1)))
        x0, unravel = ravel_pytree(meta)
        # DiCE's autodiff derivatives are estimators, not derivatives of the sample function;
        # its plain twin (same value, same gradient) is what finite differences measure.
        plain = estimator == "dice"
        f = jax.jit(lambda x: learner.surrogate(unravel(x), config, chain, plain)[0])
        numeric = central_differences(f, x0)
        assert _rel(jax.grad(f)(x0), numeric) < 1e-6
        fo = config.replace(first_order=True)
        fo_grad = jax.grad(lambda x: learner.surrogate(unravel(x), fo, chain, plain)[0])(x0)
        assert _rel(fo_grad, numeric) > 1e-3
        if estimator == "dice":  # the estimator's extra curvature changes the meta-gradient
            g = jax.grad(lambda x: learner.surrogate(unravel(x), config, chain)[0])(x0)
            assert _rel(g, numeric) > 1e-3


def _nav_space():
    env = PointNav2D()
    return make_param_space(env.default_params(), {"goal": uniform(-0.5, 0.5)})


def test_gauss_newton_product_equals_the_kl_hessian_through_adaptation():
    learner = MAMLRL(PointNav2D())
    config = MAMLRLConfig(hidden_sizes=(8,), inner_lr=0.3, init_log_std=-0.5)
    meta = learner.init(jax.random.PRNGKey(0), config, _nav_space()).meta
    chain = _fixed_chain(learner, config, meta, jax.random.PRNGKey(1))
    x0, unravel = ravel_pytree(meta)
    v = jax.random.normal(jax.random.PRNGKey(2), x0.shape)
    kl = lambda x: learner.post_kl(unravel(x), config, chain)

    def outputs(x):
        return learner._post(unravel(x), config, chain, True)[1:]

    def metric(y):
        count = y[0].size // y[0].shape[-1]
        return jnp.exp(-2 * y[1]) / count, jnp.full_like(y[1], 2.0 / count)

    assert float(kl(x0)) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(gauss_newton_fvp(outputs, x0, metric)(v), hvp(kl, x0, v),
                               rtol=2e-3, atol=1e-6)


def test_conjugate_gradient_solves_a_positive_definite_system():
    a = np.random.default_rng(0).normal(size=(12, 12))
    a = a @ a.T + 0.5 * np.eye(12)
    b = np.arange(12.0)
    x = conjugate_gradient(lambda v: jnp.asarray(a, jnp.float32) @ v, jnp.asarray(b, jnp.float32),
                           iters=40)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-3, atol=1e-3)


def test_trpo_step_improves_and_respects_the_trust_region():
    target = jnp.array([3.0, -1.0])
    objective = lambda p: -jnp.sum((p["w"] - target) ** 2)
    kl = lambda p: 0.5 * jnp.sum(p["w"] ** 2)  # divergence from the old parameters (zero)
    new, stats = trpo_step(objective, kl, {"w": jnp.zeros(2)}, max_kl=0.02)
    assert float(stats["surrogate_after"]) > float(stats["surrogate_before"])
    assert float(kl(new)) <= 0.02 + 1e-6 and int(stats["backtracks"]) >= 0


def test_gaussian_kl_is_zero_at_equality_and_matches_closed_form():
    m, s = jnp.array([0.1, -0.3]), jnp.array([-0.2, 0.4])
    assert float(gaussian_kl(m, s, m, s)) == pytest.approx(0.0, abs=1e-7)
    m2, s2 = m + 0.5, s - 0.1
    expected = np.sum(s2 - s + (np.exp(2 * s) + (m - m2) ** 2) / (2 * np.exp(2 * s2)) - 0.5)
    assert float(gaussian_kl(m, s, m2, s2)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("outer, estimator", [("trpo", "pg"), ("promp", "lvc")])
def test_meta_rl_update_runs_compiled_and_adaptation_improves_the_return(outer, estimator):
    learner = MAMLRL(PointNav2D())
    config = MAMLRLConfig(meta_batch_size=4, episodes_per_task=10, hidden_sizes=(32, 32),
                          outer=outer, estimator=estimator, init_log_std=0.0, inner_lr=0.1,
                          cg_iters=4, promp_steps=2)
    state = learner.init(jax.random.PRNGKey(0), config, _nav_space())
    state, metrics = learner.train_chunk(state, config, 2)
    assert metrics["return_pre"].shape == (2,)
    assert np.all(np.isfinite(np.asarray(metrics["return_post"])))
    goals = _nav_space().sample(jax.random.PRNGKey(5), (8,))
    returns, positions = learner.evaluate(state.meta, config, goals, jax.random.PRNGKey(6), 1)
    assert returns.shape == (8, 2) and positions.shape == (8, 2, 100, 10, 2)
    # One inner policy-gradient step toward a hidden goal beats drifting from the origin.
    assert float(returns[:, 1].mean()) > float(returns[:, 0].mean()) + 5


def test_linear_baseline_is_the_ridge_fit_and_survives_identical_straight_paths():
    # A well-posed fit: exactly the closed-form ridge solution (no retry taken).
    key_obs, key_ret = jax.random.split(jax.random.PRNGKey(0))
    obs = jax.random.normal(key_obs, (50, 10, 2))
    returns = jax.random.normal(key_ret, (50, 10))
    t = jnp.broadcast_to((jnp.arange(50) / 50)[:, None, None], (50, 10, 1))
    feats = jnp.concatenate([obs, obs ** 2, t, t ** 2, t ** 3, jnp.ones_like(t)], -1)

    @jax.jit
    def ridge(feats, returns):  # the fit before retries existed, compiled the same way
        x = feats.reshape(-1, 8)
        return feats @ jnp.linalg.solve(x.T @ x + 1e-4 * jnp.eye(8), x.T @ returns.reshape(-1))

    np.testing.assert_array_equal(np.asarray(jax.jit(linear_baseline)(obs, returns)),
                                  np.asarray(ridge(feats, returns)))
    # Every episode the same diagonal run at the speed limit (all actions clipped), as a
    # meta-learned policy produced in unsupervised_meta: position is a function of t, the
    # float32 normal equations are singular and the plain ridge solve is NaN. The fit retries
    # with a larger ridge (rllab's LinearFeatureBaseline) and stays finite and accurate.
    path = 0.1 * jnp.arange(1, 51, dtype=jnp.float32)[:, None, None] * jnp.ones((1, 10, 2))
    to_go = jnp.broadcast_to(-jnp.cumsum(jnp.arange(50.0, 0.0, -1.0))[::-1][:, None], (50, 10))
    path_feats = jnp.concatenate([path, path ** 2, t, t ** 2, t ** 3, jnp.ones_like(t)], -1)
    assert not bool(jnp.all(jnp.isfinite(ridge(path_feats, to_go))))  # the failure guarded
    values = jax.jit(linear_baseline)(path, to_go)
    assert bool(jnp.all(jnp.isfinite(values)))
    np.testing.assert_allclose(np.asarray(values), np.asarray(to_go),
                               atol=0.05 * float(jnp.abs(to_go).max()))


@pytest.mark.parametrize("mode", ["scalar", "per_param"])
def test_meta_rl_logs_the_learned_inner_rate_it_trains(mode):
    """With a learned rate (Meta-SGD) ProMP's outer Adam moves it, and ``inner_lr`` in the
    metrics is the mean of ``state.meta.inner_lr`` after each update; fixed rates log nothing."""
    learner = MAMLRL(PointNav2D())
    config = MAMLRLConfig(meta_batch_size=2, episodes_per_task=4, hidden_sizes=(8,),
                          outer="promp", estimator="lvc", inner_lr=0.1, inner_lr_mode=mode,
                          promp_steps=2, outer_lr=0.01)
    state = learner.init(jax.random.PRNGKey(0), config, _nav_space())
    state, metrics = learner.train_chunk(state, config, 2)
    rates = np.concatenate([np.ravel(r) for r in jax.tree.leaves(state.meta.inner_lr)])
    assert not np.allclose(rates, 0.1)  # learned
    assert float(metrics["inner_lr"][-1]) == pytest.approx(float(rates.mean()), rel=1e-5)
    fixed = config.replace(inner_lr_mode="fixed")
    _, fixed_metrics = learner.train_chunk(learner.init(jax.random.PRNGKey(0), fixed,
                                                        _nav_space()), fixed, 1)
    assert "inner_lr" not in fixed_metrics
