"""DANN (transfer/dann.py): the gradient-reversal layer against jax.grad of the un-reversed loss,
and the DomainNav2D sensor the experiment's target domain is built from."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.domain_nav import DomainNav2D
from metarl_jax.algos.sac import SACConfig
from metarl_jax.transfer.dann import DANN, DANNConfig, domain_loss, gradient_reversal


def test_gradient_reversal_is_identity_forward_and_negates_scaled_gradient():
    x = jnp.array([0.5, -1.0, 2.0])
    c = jnp.array([1.0, 3.0, -2.0])
    np.testing.assert_array_equal(gradient_reversal(x, 0.7), x)
    g_x, g_coef = jax.grad(lambda x, k: jnp.sum(c * gradient_reversal(x, k)), argnums=(0, 1))(
        x, jnp.float32(0.7))
    np.testing.assert_allclose(g_x, -0.7 * c, rtol=1e-6)
    assert float(g_coef) == 0.0  # no gradient reaches the coefficient
    jitted = jax.jit(jax.grad(lambda x: jnp.sum(c * gradient_reversal(x, 0.7))))
    np.testing.assert_allclose(jitted(x), -0.7 * c, rtol=1e-6)


@pytest.fixture(scope="module")
def dann_setup():
    env = DomainNav2D(num_distractors=2)
    dann = DANN(env, encoder_sizes=(16,), feature_size=4, classifier_sizes=(16,))
    config = DANNConfig(sac=SACConfig(num_envs=2, total_steps=8, batch_size=4, buffer_size=16,
                                      learning_starts=0, hidden_sizes=(8,)),
                        explore_envs=2, obs_buffer_size=16, domain_batch=4,
                        domain_coef=0.7).validate()
    params = env.default_params()
    target = params.replace(obs_bias=jnp.array([0.6, -0.5]), distractor_std=jnp.float32(0.5))
    from metarl_jax.randomization.param_space import fixed_space
    state = dann.init(jax.random.PRNGKey(0), config, fixed_space(params), fixed_space(target))
    return env, dann, config, state


def test_reversal_flips_exactly_the_encoders_gradient_and_not_the_classifiers(dann_setup):
    _, dann, config, state = dann_setup
    actor = state.sac.params["actor"]
    encoder = actor["params"]["encoder"]
    obs_s = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    obs_t = 2.0 + jax.random.normal(jax.random.PRNGKey(2), (6, 4))

    def plain_loss(enc, clf):  # the same loss with no reversal layer
        params = {"params": {**actor["params"], "encoder": enc}}
        feats = dann.features(params, config, jnp.concatenate([obs_s, obs_t]))
        logits = dann.classifier_net.apply(clf, feats)
        return domain_loss(logits[:6], logits[6:])[0]

    reversed_loss = lambda enc, clf: dann.adversarial_loss(enc, clf, actor, config, obs_s,
                                                           obs_t)[0]
    g_enc, g_clf = jax.jit(jax.grad(plain_loss, argnums=(0, 1)))(encoder, state.classifier)
    r_enc, r_clf = jax.jit(jax.grad(reversed_loss, argnums=(0, 1)))(encoder, state.classifier)
    np.testing.assert_allclose(reversed_loss(encoder, state.classifier),
                               plain_loss(encoder, state.classifier), rtol=1e-6)
    for got, want in zip(jax.tree.leaves(r_enc), jax.tree.leaves(g_enc)):
        np.testing.assert_allclose(got, -0.7 * want, rtol=1e-5, atol=1e-7)
    for got, want in zip(jax.tree.leaves(r_clf), jax.tree.leaves(g_clf)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_enc)) > 1e-4  # not vacuous


def test_domain_loss_is_log2_and_accuracy_half_at_zero_logits():
    loss, accuracy = domain_loss(jnp.zeros(5), jnp.zeros(5))
    assert float(loss) == pytest.approx(np.log(2.0), rel=1e-6)
    assert float(accuracy) == 0.5  # a zero logit is read as "target"
    loss, accuracy = domain_loss(jnp.full(4, -20.0), jnp.full(4, 20.0))
    assert float(loss) < 1e-6 and float(accuracy) == 1.0


def test_target_buffer_stores_observations_only(dann_setup):
    env, _, config, state = dann_setup
    # Unlabelled: one observation per slot, no reward, action or label anywhere in the buffer.
    target = state.obs_buffers["target"]
    assert target.data.shape == (config.obs_buffer_size, env.observation_size)
    assert int(target.size) == 0


def test_sensor_is_affine_with_fresh_distractors():
    env = DomainNav2D(num_distractors=3)
    params = env.default_params().replace(
        obs_matrix=jnp.array([[2.0, 1.0], [0.0, -1.0]]), obs_bias=jnp.array([0.5, 0.25]),
        distractor_std=jnp.float32(0.3), start=jnp.array([0.2, -0.4]))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_allclose(obs[:2], [2 * 0.2 - 0.4 + 0.5, 0.4 + 0.25], rtol=1e-6)
    assert obs.shape == (5,) and float(jnp.abs(obs[2:]).max()) > 0
    _, obs2, reward, _, _ = env.step(jax.random.PRNGKey(1), state, jnp.array([0.1, 0.1]), params)
    np.testing.assert_allclose(obs2[:2], [2 * 0.3 - 0.3 + 0.5, 0.3 + 0.25], rtol=1e-5)
    assert not np.allclose(obs2[2:], obs[2:])
    np.testing.assert_allclose(reward, -np.hypot(0.3 - 0.5, -0.3 - 0.3), rtol=1e-5)


def test_wall_blocks_crossing_only_when_on():
    env = DomainNav2D()
    params = env.default_params().replace(start=jnp.array([0.45, 0.0]))
    on = params.replace(wall_on=jnp.float32(1.0))
    state, _ = env.reset(jax.random.PRNGKey(0), on)
    right_up = jnp.array([0.1, 0.05])
    blocked, _, _, _, info = env.step(jax.random.PRNGKey(0), state, right_up, on)
    np.testing.assert_allclose(blocked.position, [0.45, 0.05], rtol=1e-6)  # slides along
    assert bool(info["blocked"])
    free, _, _, _, info = env.step(jax.random.PRNGKey(0), state, right_up, params)
    np.testing.assert_allclose(free.position, [0.55, 0.05], rtol=1e-6)
    high = on.replace(start=jnp.array([0.45, 0.7]))  # above the wall's end: passes
    state, _ = env.reset(jax.random.PRNGKey(0), high)
    over, _, _, _, info = env.step(jax.random.PRNGKey(0), state, right_up, high)
    np.testing.assert_allclose(over.position, [0.55, 0.75], rtol=1e-6)
    assert not bool(info["blocked"])
