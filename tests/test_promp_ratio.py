"""ProMP's inner objective is the likelihood ratio to the *sampling* policy (Rothfuss et al. 2019,
Algorithm 1): ``J^LR(theta) = mean(pi_theta(a|s) / pi_theta_o(a|s) * A)`` on samples drawn with
``theta_o``. Checked on fixed, hand-made samples against that formula written out here (the
policy's Gaussian log-density computed in the test, not through the learner)."""

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax.algos.maml import init_meta_params
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig, Samples
from metarl_jax.nets.policy_heads import set_log_std

T, N, OBS, ACT = 4, 3, 2, 2


class _Spec:  # the two sizes MAMLRL reads from its env; no dynamics are needed
    observation_size, action_size, max_steps = OBS, ACT, T


def _setup():
    """``(learner, config, theta_o, theta, samples)``; the arrays built in one compiled call (a
    loaded CPU makes op-by-op set-up slower than the checks)."""
    config = MAMLRLConfig(hidden_sizes=(5,), estimator="lvc", outer="promp", init_log_std=-0.5)
    learner = MAMLRL(_Spec())
    net = learner.policy(config)

    @jax.jit
    def build(key):
        k_net, k_obs, k_act, k_adv, k_move = jax.random.split(key, 5)
        theta_o = set_log_std(net.init(k_net, jnp.zeros((1, OBS))), config.init_log_std)
        obs = jax.random.normal(k_obs, (T, N, OBS))
        old_mean, old_log_std = net.apply(theta_o, obs)
        action = old_mean + jnp.exp(old_log_std) * jax.random.normal(k_act, (T, N, ACT))
        advantage = jax.random.normal(k_adv, (T, N))
        zeros = jnp.zeros((T, N))
        samples = Samples(obs, action, zeros, zeros, advantage, advantage, old_mean,
                          old_log_std, jnp.zeros((N,)))
        # theta != theta_o: every leaf moved, by enough that the ratio is far from 1.
        leaves, treedef = jax.tree.flatten(theta_o)
        moves = jax.random.split(k_move, len(leaves))
        theta = treedef.unflatten([x + 0.3 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, moves)])
        return theta_o, theta, samples

    return (learner, config) + build(jax.random.PRNGKey(1))


def _gaussian_logp(learner, config, params, obs, action):
    mean, log_std = learner.policy(config).apply(params, obs)
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_promp_inner_gradient_is_the_likelihood_ratio_form_away_from_the_sampling_policy():
    learner, config, theta_o, theta, s = _setup()

    @jax.jit
    def gradients(theta_o, theta):
        logp_o = _gaussian_logp(learner, config, theta_o, s.obs, s.action)

        def ratio_form(params):
            logp = _gaussian_logp(learner, config, params, s.obs, s.action)
            return jnp.mean(jnp.exp(logp - logp_o) * s.advantage)

        def plain_pg(params):
            return jnp.mean(_gaussian_logp(learner, config, params, s.obs, s.action)
                            * s.advantage)

        inner = jax.grad(lambda p: learner.inner_objective(config, p, s))
        plain_twin = jax.grad(lambda p: learner.inner_objective(config, p, s, plain=True))
        log_ratio = _gaussian_logp(learner, config, theta, s.obs, s.action) - logp_o
        return dict(inner=inner(theta), twin=plain_twin(theta), want=jax.grad(ratio_form)(theta),
                    box=jax.grad(plain_pg)(theta), inner_o=inner(theta_o),
                    pg_o=jax.grad(plain_pg)(theta_o), log_ratio=log_ratio)

    g = {k: _flat(v) for k, v in gradients(theta_o, theta).items()}
    assert np.abs(g["log_ratio"]).max() > 0.5  # the check below is far from theta_o
    np.testing.assert_allclose(g["inner"], g["want"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g["twin"], g["want"], rtol=1e-4, atol=1e-6)
    # The box form (ratio to the current parameters) gives the un-weighted gradient there,
    # which is measurably different: the test above can tell them apart.
    assert np.linalg.norm(g["box"] - g["want"]) > 0.1 * np.linalg.norm(g["want"])
    # At theta = theta_o the ratio is 1 and the gradient is the plain policy gradient.
    np.testing.assert_allclose(g["inner_o"], g["pg_o"], rtol=1e-4, atol=1e-6)


def test_promp_adapted_parameters_step_along_the_ratio_gradient():
    """``adapted`` (the inner step the outer objective differentiates through) at
    ``theta != theta_o``: ``theta + lr * grad J^LR(theta)`` with the ratio to ``theta_o``."""
    learner, config, theta_o, theta, s = _setup()
    chain = jax.tree.map(lambda x: jnp.stack([x, x]), s)  # pre- and post-adaptation samples

    @jax.jit
    def both(theta_o, theta):
        logp_o = _gaussian_logp(learner, config, theta_o, s.obs, s.action)

        def ratio_form(params):
            logp = _gaussian_logp(learner, config, params, s.obs, s.action)
            return jnp.mean(jnp.exp(logp - logp_o) * s.advantage)

        want = jax.tree.map(lambda p, g: p + config.inner_lr * g, theta,
                            jax.grad(ratio_form)(theta))
        return learner.adapted(init_meta_params(theta, config), config, chain), want

    adapted, want = both(theta_o, theta)
    np.testing.assert_allclose(_flat(adapted), _flat(want), rtol=1e-5, atol=1e-6)


def test_adaptive_kl_penalty_has_a_floor_it_can_double_back_from():
    """ProMP's KL coefficient halves below target_kl / 1.5 and doubles above 1.5 x target_kl.
    Without a floor, 200 quiet updates take it to exactly 0 in float32, where doubling keeps it
    (the absorbing state behind #19 part K's collapsed seed); with the default floor it stops
    at ``kl_coef_min`` and a KL excursion brings it back to the initial value within
    ceil(log2(kl_coef / kl_coef_min)) updates."""
    from metarl_jax.algos.maml_rl import adapt_kl_coef

    config = MAMLRLConfig(outer="promp")
    quiet, loud = jnp.float32(config.target_kl / 10), jnp.float32(config.target_kl * 10)
    within = jnp.float32(config.target_kl)
    assert float(adapt_kl_coef(jnp.float32(0.01), quiet, config)) == np.float32(0.005)
    assert float(adapt_kl_coef(jnp.float32(0.01), loud, config)) == np.float32(0.02)
    assert float(adapt_kl_coef(jnp.float32(0.01), within, config)) == np.float32(0.01)

    def run(config, kls):
        coef = jnp.float32(config.kl_coef)
        for kl in kls:
            coef = adapt_kl_coef(coef, kl, config)
        return float(coef)

    no_floor = config.replace(kl_coef_min=0.0)
    assert run(no_floor, [quiet] * 200) == 0.0
    assert run(no_floor, [quiet] * 200 + [loud] * 50) == 0.0  # absorbed
    assert run(config, [quiet] * 200) == np.float32(config.kl_coef_min)
    steps = int(np.ceil(np.log2(config.kl_coef / config.kl_coef_min)))
    assert run(config, [quiet] * 200 + [loud] * steps) >= np.float32(config.kl_coef)
    for bad in (-1e-4, 0.1):  # negative, or above the initial coefficient
        with np.testing.assert_raises(ValueError):
            config.replace(kl_coef_min=bad).validate()
