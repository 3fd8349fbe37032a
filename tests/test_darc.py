"""DARC (transfer/darc.py): the reward correction equals the log-ratio of known dynamics when
the classifiers are exact, and the learned classifiers recover it on a synthetic Gaussian case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from envs.domain_nav import DomainNav2D
from metarl_jax.algos.sac import SACConfig
from metarl_jax.core import replay
from metarl_jax.transfer.darc import (
    DARC,
    DARCConfig,
    Transitions,
    delta_r,
    delta_r_from_logits,
)

# Synthetic domains over 1-D s, a, s': the state-action marginals differ (target s is shifted)
# and so do the dynamics, s' = s + a + N(mu, sigma^2).
S_MEAN = {"source": 0.0, "target": 0.5}
DYN = {"source": (0.0, 0.3), "target": (0.4, 0.5)}  # (mu, sigma) of s' - s - a


def _log_p_sa(domain, s, a):
    return scipy_stats.norm.logpdf(s, S_MEAN[domain], 1.0) + scipy_stats.norm.logpdf(a, 0.0, 1.0)


def _log_p_next(domain, s, a, s_next):
    mu, sigma = DYN[domain]
    return scipy_stats.norm.logpdf(s_next, s + a + mu, sigma)


def _sample(domain, n, rng):
    s = rng.normal(S_MEAN[domain], 1.0, n)
    a = rng.normal(0.0, 1.0, n)
    mu, sigma = DYN[domain]
    return s, a, s + a + rng.normal(mu, sigma, n)


def test_delta_r_of_exact_classifiers_is_the_dynamics_log_ratio():
    rng = np.random.default_rng(0)
    s, a, s_next = (np.concatenate(x) for x in zip(_sample("source", 50, rng),
                                                     _sample("target", 50, rng)))
    log_sa = {d: _log_p_sa(d, s, a) for d in S_MEAN}
    log_sas = {d: log_sa[d] + _log_p_next(d, s, a, s_next) for d in S_MEAN}
    # Bayes-optimal classifiers with equal priors: q(t|x) = p_t(x) / (p_t(x) + p_s(x)).
    def log_posteriors(log_p):
        norm = np.logaddexp(log_p["target"], log_p["source"])
        return log_p["target"] - norm, log_p["source"] - norm

    q_t_sas, q_s_sas = log_posteriors(log_sas)
    q_t_sa, q_s_sa = log_posteriors(log_sa)
    want = _log_p_next("target", s, a, s_next) - _log_p_next("source", s, a, s_next)
    got = delta_r(*(jnp.asarray(x, jnp.float32) for x in (q_t_sas, q_s_sas, q_t_sa, q_s_sa)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The same from the logits log q(t|.) - log q(s|.) that DARC's networks output.
    got = delta_r_from_logits(jnp.asarray(q_t_sa - q_s_sa, jnp.float32),
                              jnp.asarray(q_t_sas - q_s_sas, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.ptp(want) > 5.0  # the correction really varies over the samples


def test_trained_classifiers_recover_the_log_ratio():
    env = DomainNav2D()  # only its sizes matter here: obs and action are 2-D
    darc = DARC(env, classifier_sizes=(64, 64))
    config = DARCConfig(sac=SACConfig(num_envs=1, total_steps=1, batch_size=2, buffer_size=2,
                                      learning_starts=0), classifier_batch=256,
                        classifier_noise=0.0, classifier_lr=3e-3).validate()
    rng = np.random.default_rng(1)

    def buffer(domain, n=20_000):  # the synthetic 1-D case in the first coordinate, 0 in the other
        pad = lambda x: jnp.asarray(np.stack([x, np.zeros_like(x)], -1), jnp.float32)
        s, a, s_next = _sample(domain, n, rng)
        return replay.add(replay.init(Transitions(*(jnp.zeros(2),) * 3), n),
                          Transitions(pad(s), pad(a), pad(s_next)))

    source, target = buffer("source"), buffer("target")
    classifier = darc.classifiers.init(jax.random.PRNGKey(0), *(jnp.zeros((1, 2)),) * 3)
    import optax

    stats = DARC.input_stats(target)  # the default: standardized (s, a, s' - s)
    step = lambda c, k: darc._classifier_step(config, source, target, c, k, stats)
    train = jax.jit(lambda c, keys: jax.lax.scan(step, c, keys)[0])  # one dispatch, not 1000
    carry = train((classifier, optax.scale_by_adam().init(classifier)),
                  jax.random.split(jax.random.PRNGKey(2), 1000))
    s, a, s_next = _sample("source", 400, rng)  # where both densities are well covered
    keep = (np.abs(s) < 1.5) & (np.abs(a) < 1.5) & (np.abs(s_next - s - a) < 0.6)
    s, a, s_next = s[keep], a[keep], s_next[keep]
    pad = lambda x: jnp.asarray(np.stack([x, np.zeros_like(x)], -1), jnp.float32)
    got = np.asarray(darc.delta_r(carry[0], pad(s), pad(a), pad(s_next), stats))
    want = _log_p_next("target", s, a, s_next) - _log_p_next("source", s, a, s_next)
    assert np.corrcoef(got, want)[0, 1] > 0.9
    assert np.median(np.abs(got - want)) < 0.3, (np.median(np.abs(got - want)), np.ptp(want))


def test_balanced_residual_loss_weights_source_samples_by_the_sa_density_ratio():
    # Source half: z_sa = log p_t(s,a)/p_s(s,a) -> weight exp(z_sa), clipped at max_weight and
    # normalized to mean 1 over the source half; target samples keep weight 1.
    z_sa = jnp.array([np.log(0.5), np.log(2.0), np.log(100.0), 0.3, -1.0])
    labels = jnp.array([0.0, 0.0, 0.0, 1.0, 1.0])
    losses = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    got = np.asarray(DARC._balanced(losses, z_sa, labels, 20.0))
    w = np.array([0.5, 2.0, 20.0])
    w = w / w.sum() * 3
    np.testing.assert_allclose(got, [w[0] * 1, w[1] * 2, w[2] * 3, 4.0, 5.0], rtol=1e-5)
    # Where only the source visits (z_sa -> -inf) the residual gets (almost) no gradient.
    far = np.asarray(DARC._balanced(jnp.ones(4), jnp.array([-30.0, 0.0, 0.0, 0.0]),
                                    jnp.array([0.0, 0.0, 1.0, 1.0]), 20.0))
    assert far[0] < 1e-12 and far[1] == pytest.approx(2.0)


def test_input_stats_and_standardized_displacement_inputs():
    # Stats over the filled slots only; the inputs are (s, a, s' - s) standardized by them.
    rng = np.random.default_rng(3)
    obs, action, next_obs = (rng.normal(size=(5, 2)).astype(np.float32) * w for w in (1, 2, 3))
    buffer = replay.add(replay.init(Transitions(*(jnp.zeros(2),) * 3), 8),
                        Transitions(*(jnp.asarray(x) for x in (obs, action, next_obs))))
    mean, std = DARC.input_stats(buffer)
    x = np.concatenate([obs, action, next_obs - obs], -1)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(x.var(0) + 1e-6), rtol=1e-5)
    got = DARC.classifier_inputs((mean, std), obs, action, next_obs)
    want = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-6)
    np.testing.assert_allclose(np.concatenate(got, -1), want, rtol=1e-4, atol=1e-5)
    assert DARC.classifier_inputs(None, obs, action, next_obs)[2] is next_obs  # raw inputs
