"""Bernoulli-bandit baselines: index policies in pure JAX and the exact Bayes-optimal value.

Policies (``random_arm``, ``greedy``, ``eps_greedy``, ``ucb1``, ``ucb1_classic``, ``thompson``)
are functions of the per-arm success/failure counts; ``run_policy`` plays one of them for ``n``
pulls on every task of a batch (``vmap`` over tasks, ``lax.scan`` over pulls) and returns the
total reward per trial::

    totals = run_policy(thompson, probs, horizon, key)        # probs [M, k] -> totals [M]
    best = tune({"ucb1": (ucb1, UCB_GRID)}, train_probs, horizon, key)  # {name: (c, scores)}
    totals = run_policies({"ucb1": (ucb1, best["ucb1"][0]), ...}, probs, horizon, key)

A policy is ``policy(theta, key, successes[k], failures[k], t) -> arm`` ([] int32), with ``t``
the number of pulls so far and ``theta`` its one constant (eps, c; ignored by the others), a
traced value so a grid search compiles once (and several policies compile together). Ties
between equally good arms are broken uniformly at random. Rewards are drawn
``Bernoulli(probs[arm])`` from the key, independently per pull.

Definitions (``m = s + f`` pulls of an arm; prior Beta(1, 1) where a posterior is used):
    random_arm    a uniformly random arm (expected total n * E[p] = n / 2 for p ~ U[0, 1])
    greedy        argmax posterior mean (s + 1) / (m + 2)  (untried arms count as 1/2)
    eps_greedy    a uniformly random arm with probability eps, else greedy
    ucb1          UCB1 (Auer et al. 2002) on prior-augmented counts -- every arm starts with one
                  pseudo-success and one pseudo-failure, so no initial round of pulling each arm:
                  argmax (s + 1) / (m + 2) + c * sqrt(ln(t + 2k) / (m + 2))
    ucb1_classic  each arm once, then argmax s / m + c * sqrt(ln t / m); with n <= k pulls it
                  never gets past the initial round (= random)
    thompson      argmax of one draw from every arm's Beta(s + 1, f + 1) posterior
Auer et al. use c = sqrt(2); ``tune`` picks c (or eps) by grid search on training tasks.

``bayes_optimal_value(k, n)``: the exact expected total reward of the Bayes-optimal policy for
``n`` pulls of ``k`` arms with ``p_i ~ U[0, 1]`` i.i.d., by finite-horizon dynamic programming
over Beta posteriors (exact up to float64 rounding; see its docstring for the state space).
"""

from __future__ import annotations

import functools
from math import factorial
from typing import Callable, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

# policy(theta, key, successes[k], failures[k], t[]) -> arm [] int32
BanditPolicy = Callable[..., jax.Array]


def argmax_random_ties(key: jax.Array, scores: jax.Array) -> jax.Array:
    """Index of a maximum of ``scores[k]``, uniformly among ties. Returns [] int32."""
    best = scores >= jnp.max(scores)
    return jax.random.categorical(key, jnp.where(best, 0.0, -jnp.inf)).astype(jnp.int32)


def random_arm(theta, key, s, f, t):
    return jax.random.randint(key, (), 0, s.shape[0]).astype(jnp.int32)


def greedy(theta, key, s, f, t):
    return argmax_random_ties(key, (s + 1.0) / (s + f + 2.0))


def eps_greedy(eps, key, s, f, t):
    explore_key, arm_key, greedy_key = jax.random.split(key, 3)
    explore = jax.random.uniform(explore_key) < eps
    return jnp.where(explore, random_arm(None, arm_key, s, f, t), greedy(None, greedy_key, s, f, t))


def ucb1(c, key, s, f, t):
    pulls = s + f + 2.0
    bonus = c * jnp.sqrt(jnp.log(t + 2.0 * s.shape[0]) / pulls)
    return argmax_random_ties(key, (s + 1.0) / pulls + bonus)


def ucb1_classic(c, key, s, f, t):
    pulls = s + f
    safe = jnp.maximum(pulls, 1.0)
    bonus = c * jnp.sqrt(jnp.log(jnp.maximum(t, 1.0)) / safe)
    return argmax_random_ties(key, jnp.where(pulls == 0, jnp.inf, s / safe + bonus))


def thompson(theta, key, s, f, t):
    sample_key, tie_key = jax.random.split(key)
    return argmax_random_ties(tie_key, jax.random.beta(sample_key, s + 1.0, f + 1.0))


@functools.partial(jax.jit, static_argnames=("policies", "horizon"))
def _run(policies, thetas, probs, horizon, key):
    """Totals ``[G_j, M]`` for every policy ``j``, constant ``thetas[j][g]`` and task ``probs[M,
    k]``: all policies and grids in one compiled program (one compile instead of one each)."""

    def one_task(policy, theta, task_key, p):
        def pull(carry, step_key):
            s, f, t, total = carry
            arm_key, reward_key = jax.random.split(step_key)
            arm = policy(theta, arm_key, s, f, t)
            reward = jax.random.bernoulli(reward_key, p[arm]).astype(jnp.float32)
            s = s.at[arm].add(reward)
            f = f.at[arm].add(1.0 - reward)
            return (s, f, t + 1.0, total + reward), None

        zeros = jnp.zeros(p.shape, jnp.float32)
        init = (zeros, zeros, jnp.float32(0.0), jnp.float32(0.0))
        (_, _, _, total), _ = jax.lax.scan(pull, init, jax.random.split(task_key, horizon))
        return total

    keys = jax.random.split(key, probs.shape[0])
    out = []
    for policy, grid in zip(policies, thetas):
        per_theta = jax.vmap(functools.partial(one_task, policy), in_axes=(None, 0, 0))
        out.append(jax.lax.map(lambda theta: per_theta(theta, keys, probs), grid))
    return tuple(out)


def run_policies(runs: Dict[str, Tuple[BanditPolicy, float]], probs: jax.Array, horizon: int,
                 key: jax.Array) -> Dict[str, jax.Array]:
    """``{name: (policy, theta)}`` -> ``{name: totals [M]}`` on the same tasks ``probs [M, k]``,
    in one compiled program."""
    names = list(runs)
    thetas = tuple(jnp.asarray([runs[n][1]], jnp.float32) for n in names)
    totals = _run(tuple(runs[n][0] for n in names), thetas, jnp.asarray(probs, jnp.float32),
                  int(horizon), key)
    return {n: t[0] for n, t in zip(names, totals)}


def run_policy(policy: BanditPolicy, probs: jax.Array, horizon: int, key: jax.Array,
               theta: float = 0.0) -> jax.Array:
    """Play ``policy`` for ``horizon`` pulls on each task. ``probs [M, k] -> totals [M]``."""
    return run_policies({"policy": (policy, theta)}, probs, horizon, key)["policy"]


def tune(searches: Dict[str, Tuple[BanditPolicy, Sequence[float]]], probs: jax.Array,
         horizon: int, key: jax.Array) -> Dict[str, Tuple[float, Dict[str, float]]]:
    """Grid searches of policies' constants on (training) tasks ``probs [M, k]``.

    ``{name: (policy, grid)}`` -> ``{name: (best theta, {str(theta): mean total reward})}``.
    Every grid value is scored on the same tasks with the same key (common random numbers); all
    searches run in one compiled program.
    """
    names = list(searches)
    thetas = tuple(jnp.asarray(searches[n][1], jnp.float32) for n in names)
    totals = _run(tuple(searches[n][0] for n in names), thetas, jnp.asarray(probs, jnp.float32),
                  int(horizon), key)
    out = {}
    for name, t in zip(names, totals):
        grid = [float(v) for v in searches[name][1]]
        means = np.asarray(t).mean(-1)
        out[name] = (grid[int(np.argmax(means))], {str(v): float(m) for v, m in zip(grid, means)})
    return out


UCB_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
EPS_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


# ---------------------------------------------------------------------------------------------
# Bayes-optimal value by dynamic programming


def bayes_optimal_value(num_arms: int, horizon: int) -> float:
    """Exact expected total reward of the Bayes-optimal policy, ``p_i ~ U[0, 1]`` i.i.d.

    With a Beta(1, 1) prior an arm with ``s`` successes and ``f`` failures pays next with
    probability ``(s + 1) / (s + f + 2)``, so the posterior over all tasks is summarized by the
    counts, and by the arms' symmetry only the *multiset* of per-arm ``(s, f)`` matters. The
    state is the sorted tuple of ``(s, f)`` of the arms pulled so far (the other arms are fresh,
    all alike); the remaining horizon is ``n - sum(s + f)``. Bellman recursion::

        V(state) = max over arm classes a of  q_a (1 + V(state + success_a))
                                            + (1 - q_a) V(state + failure_a),
        q_a = (s_a + 1) / (s_a + f_a + 2),   V = 0 when no pulls remain.

    Exact (no discounting, no index approximation such as Gittins) for any ``k`` and ``n``.
    The number of (state, remaining) pairs grows fast with ``n``: about 3.5e3 for n = 10, k = 5
    (4.4e3 for any k >= 10), 4.5e4 for n = 15, k = 5, 3.5e5 for n = 20, k = 5 -- well under a
    second for n = 10, ~1.5 s for n = 15, ~15 s for n = 20 -- so it is meant for small ``n``.
    """
    if num_arms < 1 or horizon < 0:
        raise ValueError(f"need num_arms >= 1 and horizon >= 0, got {num_arms}, {horizon}")

    @functools.lru_cache(maxsize=None)
    def value(state: Tuple[Tuple[int, int], ...], remaining: int) -> float:
        if remaining == 0:
            return 0.0
        options = set(state)
        if len(state) < num_arms:
            options.add((0, 0))  # a fresh arm
        best = 0.0
        for s, f in options:
            q = (s + 1.0) / (s + f + 2.0)
            q_value = (q * (1.0 + value(_moved(state, (s, f), (s + 1, f)), remaining - 1))
                       + (1.0 - q) * value(_moved(state, (s, f), (s, f + 1)), remaining - 1))
            best = max(best, q_value)
        return best

    return value((), int(horizon))


def _moved(state, old, new):
    """``state`` with one arm of class ``old`` moved to ``new``. Pulled arms have ``s + f >= 1``,
    so ``old == (0, 0)`` is a fresh arm, which is implicit (not listed in ``state``)."""
    items = list(state)
    if old != (0, 0):
        items.remove(old)
    return tuple(sorted(items + [new]))


def brute_force_bayes_value(num_arms: int, horizon: int) -> float:
    """The same value by enumerating every deterministic policy (history -> arm) and integrating
    its expected reward exactly over ``p ~ U[0, 1]^k`` (Beta integrals). Exponential in ``n``:
    for tests on tiny cases (``k = 2, n = 3``: 2^7 = 128 policies)."""
    def beta_integral(s, f):  # int_0^1 p^s (1-p)^f dp
        return factorial(s) * factorial(f) / factorial(s + f + 1)

    # Under a deterministic policy the arms pulled follow from the rewards seen, so a policy is
    # one arm per reward prefix: 2^n - 1 decision points, k^(2^n - 1) policies.
    decision_points = 2 ** horizon - 1
    best = 0.0
    for choice in np.ndindex(*([num_arms] * decision_points)):
        table, it = {}, iter(choice)

        def act(prefix):  # prefixes are met in the same order for every policy
            if prefix not in table:
                table[prefix] = next(it)
            return table[prefix]

        total = 0.0
        for rewards in np.ndindex(*([2] * horizon)):
            counts = np.zeros((num_arms, 2), int)  # [arm, (successes, failures)]
            for t, r in enumerate(rewards):
                counts[act(rewards[:t]), 1 - r] += 1
            prob = np.prod([beta_integral(int(c[0]), int(c[1])) for c in counts])
            total += prob * sum(rewards)
        best = max(best, total)
    return best
