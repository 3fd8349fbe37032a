"""DiCE, LVC and the plain surrogate against exact derivatives of a closed-form value.

The oracle is the iterated prisoner's dilemma with tabular memory-1 policies (the DiCE paper's
test bed): the discounted value of agent 1 is ``p0 (I - gamma P)^-1 r`` for the Markov chain of
joint outcomes, so ``jax.grad`` / ``jax.hessian`` of it are exact. Sample estimates from many
episodes must converge to them (DiCE, gradient and Hessian), and the estimators with a biased
Hessian (LVC, the plain surrogate) must visibly not.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.algos import dice

PAYOFF = jnp.array([-1.0, -3.0, 0.0, -2.0])  # agent 1's reward for CC, CD, DC, DD
SWAP = jnp.array([0, 1, 3, 2, 4])  # agent 2 sees CD and DC swapped
GAMMA, HORIZON = 0.75, 40  # gamma^T = 1e-5: truncation far below the sampling error


def cooperation(theta):
    """``theta[10]`` -> each agent's cooperation probability in states (s0, CC, CD, DC, DD)."""
    return jax.nn.sigmoid(theta[:5]), jax.nn.sigmoid(theta[5:][SWAP])


def outcome_probs(theta):
    p1, p2 = cooperation(theta)
    return jnp.stack([p1 * p2, p1 * (1 - p2), (1 - p1) * p2, (1 - p1) * (1 - p2)], -1)  # [5, 4]


def state_values(theta):
    """Expected discounted return of agent 1 from each state (before acting): ``[5]``."""
    m = outcome_probs(theta)
    return m @ jnp.linalg.solve(jnp.eye(4) - GAMMA * m[1:], PAYOFF)


def exact_value(theta):
    return state_values(theta)[0]


def sample_episodes(theta, key, num_episodes):
    """States ``[T, N]``, defect flags of both agents ``[T, N]`` and agent 1's rewards."""
    p1, p2 = cooperation(theta)

    def step(state, k):
        k1, k2 = jax.random.split(k)
        d1 = (jax.random.uniform(k1, state.shape) > p1[state]).astype(jnp.int32)
        d2 = (jax.random.uniform(k2, state.shape) > p2[state]).astype(jnp.int32)
        outcome = 2 * d1 + d2
        return 1 + outcome, (state, d1, d2, PAYOFF[outcome])

    keys = jax.random.split(key, HORIZON)
    return jax.lax.scan(step, jnp.zeros(num_episodes, jnp.int32), keys)[1]


def log_probs(theta, states, d1, d2):
    """Log-probability of both agents' actions at each step: ``[T, N]`` (one-hot gathers keep
    the reverse pass a matmul rather than a scatter)."""
    p1, p2 = cooperation(theta)
    onehot = jax.nn.one_hot(states, 5)
    logp = lambda p, d: jnp.where(d == 1, onehot @ jnp.log1p(-p), onehot @ jnp.log(p))
    return logp(p1, d1) + logp(p2, d2)


THETA = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (10,))


def _estimates(num_episodes, kind, seed=1):
    states, d1, d2, rewards = sample_episodes(THETA, jax.random.PRNGKey(seed), num_episodes)
    baseline = state_values(THETA)[states]  # exact V(s_t): a constant, so still unbiased
    disc = dice.discounts(HORIZON, GAMMA)
    advantages = dice.returns_to_go(rewards, GAMMA) - baseline

    def surrogate(theta):  # x T: the objectives average over time, the value sums
        logp = log_probs(theta, states, d1, d2)
        if kind == "dice":
            return HORIZON * dice.dice_objective(logp, rewards, GAMMA, baseline)
        if kind == "lvc":
            return HORIZON * dice.lvc_objective(logp, disc * advantages)
        return HORIZON * dice.pg_objective(logp, disc * advantages)

    return jax.jit(jax.grad(surrogate))(THETA), jax.jit(jax.hessian(surrogate))(THETA)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.fixture(scope="module")
def exact():
    return jax.grad(exact_value)(THETA), jax.hessian(exact_value)(THETA)


def test_sampled_value_matches_the_closed_form():
    _, _, _, rewards = sample_episodes(THETA, jax.random.PRNGKey(3), 32768)
    estimate = float(jnp.mean(jnp.sum(dice.discounts(HORIZON, GAMMA) * rewards, 0)))
    assert estimate == pytest.approx(float(exact_value(THETA)), abs=0.02)


def test_dice_gradient_and_hessian_converge_to_the_exact_ones(exact):
    grad, hess = exact
    g_small, h_small = _estimates(2048, "dice")
    g_big, h_big = _estimates(32768, "dice")
    assert _rel(g_big, grad) < 0.02
    assert _rel(h_big, hess) < 0.15
    # More samples, smaller error (these seeds; the error shrinks like 1/sqrt(N)).
    assert _rel(h_big, hess) < 0.6 * _rel(h_small, hess)
    assert _rel(g_big, grad) < 0.6 * _rel(g_small, grad)


@pytest.mark.parametrize("kind", ["lvc", "pg"])
def test_biased_curvature_estimators_have_the_right_gradient_but_not_the_hessian(exact, kind):
    grad, hess = exact
    g, h = _estimates(16384, kind)
    assert _rel(g, grad) < 0.03  # same first derivative as DiCE
    assert _rel(h, hess) > 0.5  # the cross-time (and, for pg, all) score products are missing


def test_magic_box_is_one_with_the_score_as_derivative():
    x = jnp.array([0.3, -1.2])
    assert jnp.allclose(dice.magic_box(x), 1.0)
    assert jnp.allclose(jax.grad(lambda y: dice.magic_box(y).sum())(x), 1.0)
    # d^2/dx^2 box(f(x)) = box * (f'^2 + f''): with f = x^2 at x: 4x^2 + 2.
    second = jax.grad(jax.grad(lambda y: dice.magic_box(y**2)))(0.7)
    assert float(second) == pytest.approx(4 * 0.49 + 2)


def test_score_weights_give_dice_first_derivative():
    key = jax.random.PRNGKey(4)
    w = jax.random.normal(key, (3,))
    states = jax.random.normal(jax.random.fold_in(key, 1), (12, 5, 3))
    rewards = jax.random.normal(jax.random.fold_in(key, 2), (12, 5))
    baseline = jax.random.normal(jax.random.fold_in(key, 3), (12, 5))
    logp = lambda w: jnp.tanh(states @ w)
    g_dice = jax.grad(lambda w: dice.dice_objective(logp(w), rewards, 0.9, baseline))(w)
    weights = dice.dice_score_weights(rewards, 0.9, baseline)
    g_plain = jax.grad(lambda w: dice.pg_objective(logp(w), weights))(w)
    np.testing.assert_allclose(g_dice, g_plain, rtol=1e-5, atol=1e-6)


def test_returns_to_go_matches_a_loop():
    rewards = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    expected = np.zeros_like(rewards)
    running = np.zeros(3, np.float32)
    for t in reversed(range(7)):
        running = rewards[t] + 0.9 * running
        expected[t] = running
    np.testing.assert_allclose(dice.returns_to_go(jnp.asarray(rewards), 0.9), expected, rtol=1e-5)
