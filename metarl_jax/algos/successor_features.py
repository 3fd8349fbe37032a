"""Successor features and generalized policy improvement (Barreto et al. 2017), tabular and shared.

If every task's reward is linear in fixed features, ``r_w(s, a, s') = phi(s, a, s') . w``, then a
policy's action values on *any* task are a dot product with its successor features

    psi^pi(s, a) = E_pi[ sum_t gamma^t phi(s_t, a_t, s_{t+1}) | s_0 = s, a_0 = a ]   [K]
    Q^pi_w(s, a) = psi^pi(s, a) . w,

so a library of policies ``pi_1..pi_n`` (their ``psi``) is evaluated on a new task ``w'`` for free,
and generalized policy improvement (GPI) acts greedily on the best of them,

    pi_GPI(s) = argmax_a max_i psi^{pi_i}(s, a) . w'      (no worse than every pi_i on w').

Tabular functions (``S`` states, ``A`` actions, ``K`` features; ``P[S, A, S]`` transitions,
``pi[S, A]`` action probabilities, ``phi[S, A, K]`` the expected feature ``E_{s'}[phi(s, a, s')]``):

* ``exact_sf(P, pi, phi, gamma) -> psi[S, A, K]``: the Bellman equation
  ``psi = phi + gamma P^pi psi`` over state-action pairs, solved as one linear system
  ``psi = (I - gamma P^pi)^{-1} phi`` with ``P^pi[(s,a), (s',a')] = P[s, a, s'] pi[s', a']``;
* ``td_sf(...)``: the same learned from sampled transitions by TD(0) (the estimate the deep
  learner in ``algos/sf.py`` makes with a network);
* ``gpi_values`` / ``gpi_action``: GPI over a stack of ``psi`` (any leading state shape), shared by
  the tabular and deep versions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def expected_features(P: jax.Array, phi_sas: jax.Array) -> jax.Array:
    """``E_{s' ~ P(.|s,a)}[phi(s, a, s')]``: ``P[S, A, S]``, ``phi_sas[S, A, S, K]`` ->
    ``[S, A, K]``."""
    return jnp.einsum("sat,satk->sak", P, phi_sas)


def state_action_transitions(P: jax.Array, pi: jax.Array) -> jax.Array:
    """``P^pi[S*A, S*A]``: ``P^pi[(s,a), (s',a')] = P[s, a, s'] pi[s', a']`` (row-major pairs)."""
    S, A, _ = P.shape
    return jnp.einsum("sat,tb->satb", P, pi).reshape(S * A, S * A)


def exact_sf(P: jax.Array, pi: jax.Array, phi: jax.Array, gamma: float) -> jax.Array:
    """Successor features ``psi^pi[S, A, K]`` by one linear solve (module doc); ``gamma < 1``."""
    S, A, K = phi.shape
    if P.shape != (S, A, S) or pi.shape != (S, A):
        raise ValueError(f"exact_sf: need P[S, A, S], pi[S, A], phi[S, A, K]; got P{P.shape}, "
                         f"pi{pi.shape}, phi{phi.shape}")
    system = jnp.eye(S * A) - gamma * state_action_transitions(P, pi)
    return jnp.linalg.solve(system, phi.reshape(S * A, K)).reshape(S, A, K)


def td_sf(key: jax.Array, P: jax.Array, pi: jax.Array, phi: jax.Array, gamma: float,
          num_steps: int, batch: int, step_size: float, psi0: jax.Array | None = None
          ) -> jax.Array:
    """Successor features ``[S, A, K]`` learned by TD(0) from sampled transitions.

    Each of ``num_steps`` steps draws ``batch`` state-action pairs uniformly, samples
    ``s' ~ P(.|s, a)`` and ``a' ~ pi(.|s')``, and moves ``psi(s, a)`` towards
    ``phi(s, a) + gamma psi(s', a')`` with a step ``step_size / (1 + n(s, a))^0.6`` that decays
    with the pair's visit count ``n`` (Robbins-Monro, so the estimate converges to ``exact_sf``).
    Updates of one batch are averaged per pair (``batch`` samples of one pair count as one step).
    """
    S, A, K = phi.shape
    psi = jnp.zeros((S, A, K), jnp.float32) if psi0 is None else psi0
    log_P, log_pi = jnp.log(jnp.maximum(P, 1e-30)), jnp.log(jnp.maximum(pi, 1e-30))

    def step(carry, k):
        psi, visits = carry
        k_sa, k_next, k_act = jax.random.split(k, 3)
        pair = jax.random.randint(k_sa, (batch,), 0, S * A)
        s, a = pair // A, pair % A
        s2 = jax.random.categorical(k_next, log_P[s, a])
        a2 = jax.random.categorical(k_act, log_pi[s2])
        error = phi[s, a] + gamma * psi[s2, a2] - psi[s, a]  # [batch, K]
        counts = jnp.zeros(S * A).at[pair].add(1.0)
        sums = jnp.zeros((S * A, K)).at[pair].add(error)
        rate = step_size / (1.0 + visits) ** 0.6
        mean_error = sums / jnp.maximum(counts, 1.0)[:, None]
        psi = psi + (rate[:, None] * mean_error).reshape(S, A, K)
        return (psi, visits + (counts > 0)), None

    keys = jax.random.split(key, num_steps)
    (psi, _), _ = jax.lax.scan(step, (psi, jnp.zeros(S * A)), keys)
    return psi


def gpi_values(psis: jax.Array, w: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """``max_i psi_i(., a) . w``: ``psis[n, ..., A, K]``, ``w[K]`` -> ``[..., A]``.

    ``mask[n]`` (bool) leaves out the policies where it is False (at least one must be True)."""
    q = psis @ w  # [n, ..., A]
    if mask is not None:
        shape = (-1,) + (1,) * (q.ndim - 1)
        q = jnp.where(mask.reshape(shape), q, -jnp.inf)
    return jnp.max(q, axis=0)


def gpi_action(psis: jax.Array, w: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """GPI's greedy action ``argmax_a max_i psi_i(., a) . w``: ``[...]`` int32 (``gpi_values``)."""
    return jnp.argmax(gpi_values(psis, w, mask), axis=-1).astype(jnp.int32)


def greedy_policy(psi: jax.Array, w: jax.Array) -> jax.Array:
    """One-hot greedy policy ``pi[S, A]`` of ``psi[S, A, K]`` on the task ``w[K]``."""
    return jax.nn.one_hot(jnp.argmax(psi @ w, axis=-1), psi.shape[-2])
