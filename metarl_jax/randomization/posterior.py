"""EPOpt's source-distribution adaptation: a Bayesian update of a ``ParamSpace`` from target data.

EPOpt (Rajeswaran et al. 2017, sec. 3.2) trains a robust policy on a source distribution over
physics, then *adapts the source distribution* with data from the target domain: the posterior
``p(theta | D) ~ p(D | theta) p(theta)`` is approximated with samples of the current source
distribution, and the next round trains on it. Here, with ``N`` particles from the space:

    particles theta_i ~ space                               (i = 1..N)
    log w_i = log p(D | theta_i) / T,   w = softmax(log w)  (importance weights, prior = proposal)
    new range of each uniform field = weighted mean +- sqrt(3) * weighted std   (the uniform with
        the particles' weighted mean and variance), clipped to the old range

``log p(D | theta)`` is the caller's: e.g. a Gaussian likelihood of real trajectories under a
physics ``theta``, ``-0.5 * n * L(theta) / sigma^2`` with ``L`` the mean squared prediction error
of ``metarl_jax.sim2real.calibrate.prediction_loss``.

**Tempering.** A deterministic simulator makes the likelihood of thousands of observations
extremely sharp: at ``T = 1`` one particle takes all the weight and the range collapses to a
point that is only the best of ``N`` guesses. As in adaptive sequential Monte Carlo, ``T`` is
chosen per update (by bisection on ``log T``) so that the effective sample size
``ESS = 1 / sum w_i^2`` is ``ess_fraction * N``; repeating the update (``rounds``) anneals
towards the posterior, the range shrinking each round around the likely physics. ``T`` and the
ESS are reported. ``abc=True`` instead keeps the ``ess_fraction * N`` particles of highest
likelihood with equal weight (rejection ABC with a quantile threshold).

**Model evidence.** ``log_evidence = log mean_i p(D | theta_i)`` (at ``T = 1``) compares discrete
hypotheses that the particles do not cover, e.g. candidate actuation latencies: update once per
candidate and keep the one of highest evidence.

Only ``Uniform`` fields (relative or absolute) are updated; other fields keep their distribution.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from metarl_jax.randomization.distributions import Uniform
from metarl_jax.randomization.param_space import ParamSpace

Params = Any


def effective_sample_size(weights: jax.Array) -> jax.Array:
    """``1 / sum w^2`` of normalized ``weights [N]``: N for equal weights, 1 for one particle."""
    return 1.0 / jnp.sum(jnp.square(weights))


def tempered_weights(log_likelihood: jax.Array, ess_fraction: float, iterations: int = 40
                     ) -> Tuple[jax.Array, jax.Array]:
    """``(weights [N], temperature [])``: ``softmax(log_likelihood / T)`` with ``T >= 1`` the
    smallest for which ``ESS >= ess_fraction * N`` (bisection on ``log T``; ``T = 1`` when the
    untempered weights already have that ESS). Non-finite log-likelihoods get weight 0."""
    ll = jnp.where(jnp.isfinite(log_likelihood), log_likelihood, -jnp.inf)
    target = ess_fraction * ll.shape[0]
    ll = ll - jnp.max(ll)
    weights_at = lambda log_t: jax.nn.softmax(ll / jnp.exp(log_t))
    spread = jnp.max(jnp.where(jnp.isfinite(ll), -ll, 0.0))  # the largest finite gap
    high = jnp.log(jnp.maximum(spread, 1.0)) + 5.0  # T >> gap: nearly equal weights

    def bisect(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        ok = effective_sample_size(weights_at(mid)) >= target
        return jnp.where(ok, low, mid), jnp.where(ok, mid, high)

    enough = effective_sample_size(weights_at(0.0)) >= target
    _, log_t = jax.lax.fori_loop(0, iterations, bisect, (jnp.float32(0.0), high))
    log_t = jnp.where(enough, 0.0, log_t)
    return weights_at(log_t), jnp.exp(log_t)


def abc_weights(log_likelihood: jax.Array, accept_fraction: float) -> jax.Array:
    """Equal weights on the ``ceil(accept_fraction * N)`` particles of highest likelihood (a
    rejection-ABC step whose threshold is a quantile of the distances), 0 elsewhere."""
    n = log_likelihood.shape[0]
    k = max(1, min(n, int(-(-accept_fraction * n // 1))))
    order = jnp.argsort(-jnp.where(jnp.isfinite(log_likelihood), log_likelihood, -jnp.inf))
    return jnp.zeros((n,)).at[order[:k]].set(1.0 / k)


def weighted_space(space: ParamSpace, particles: Params, weights: jax.Array,
                   min_width: float = 0.0) -> ParamSpace:
    """``space`` with every ``Uniform`` field's range moved to the particles' weighted mean +-
    ``sqrt(3)`` weighted std (per element), clipped to the old range and at least ``min_width``
    wide in the distribution's own units (relative fields: a fraction of the nominal).
    ``particles``: ``Params`` with leaves ``[N, *field]``; ``weights [N]`` normalized."""
    dists = dict(space.dists)
    for name, dist in space.dists.items():
        if not isinstance(dist, Uniform):
            continue
        values = jnp.asarray(getattr(particles, name), jnp.float32)
        if dist.relative:  # back to the distribution's units
            nominal = jnp.asarray(getattr(space.nominal, name), jnp.float32)
            values = values / jnp.where(nominal == 0, 1.0, nominal)
        w = weights.reshape((-1,) + (1,) * (values.ndim - 1))
        mean = jnp.sum(w * values, 0)
        std = jnp.sqrt(jnp.sum(w * jnp.square(values - mean), 0))
        half = jnp.maximum(jnp.sqrt(3.0) * std, 0.5 * min_width)
        old_low, old_high = jnp.broadcast_to(dist.low, mean.shape), jnp.broadcast_to(
            dist.high, mean.shape)
        low = jnp.clip(mean - half, old_low, old_high)
        high = jnp.clip(mean + half, old_low, old_high)
        dists[name] = dist.replace(low=low, high=jnp.maximum(high, low))
    return space.replace(dists=dists)


def posterior_update(key: jax.Array, space: ParamSpace,
                     log_likelihood: Callable[[Params], jax.Array], num_particles: int,
                     ess_fraction: float = 0.2, abc: bool = False, min_width: float = 0.0
                     ) -> Tuple[ParamSpace, Dict[str, jax.Array]]:
    """One EPOpt source update (module doc): ``(new space, info)``.

    ``log_likelihood(params) -> [N]`` takes ``Params`` with leaves ``[N, *field]`` (e.g. a
    ``vmap`` of a trajectory likelihood). ``info``: ``ess`` (effective sample size of the
    weights), ``temperature``, ``log_evidence`` (``log mean exp`` of the untempered
    log-likelihoods), ``best`` (the particle of highest likelihood, unbatched ``Params``).
    Jit-able with ``log_likelihood``, ``num_particles`` and ``abc`` static."""
    if not 0 < ess_fraction <= 1:
        raise ValueError(f"ess_fraction must be in (0, 1], got {ess_fraction}")
    particles = space.sample(key, (num_particles,))
    ll = log_likelihood(particles)
    if abc:
        weights, temperature = abc_weights(ll, ess_fraction), jnp.float32(jnp.nan)
    else:
        weights, temperature = tempered_weights(ll, ess_fraction)
    finite = jnp.where(jnp.isfinite(ll), ll, -jnp.inf)
    info = {"ess": effective_sample_size(weights), "temperature": temperature,
            "log_evidence": logsumexp(finite) - jnp.log(num_particles),
            "best": jax.tree.map(lambda x: x[jnp.argmax(finite)], particles)}
    return weighted_space(space, particles, weights, min_width), info


def posterior_rounds(key: jax.Array, space: ParamSpace,
                     log_likelihood: Callable[[Params], jax.Array], num_particles: int,
                     rounds: int, ess_fraction: float = 0.2, abc: bool = False,
                     min_width: float = 0.0) -> Tuple[ParamSpace, Dict[str, jax.Array]]:
    """``rounds`` successive ``posterior_update``s (one ``lax.scan``; each round's particles come
    from the previous round's space). ``info`` leaves gain a leading ``[rounds]`` axis, plus
    ``low``/``high``: ``{field: [rounds, *field]}`` the ranges after each round."""
    def one(space, key):
        new, info = posterior_update(key, space, log_likelihood, num_particles, ess_fraction,
                                     abc, min_width)
        ranges = {name: (d.low, d.high) for name, d in new.dists.items()
                  if isinstance(d, Uniform)}
        return new, dict(info, low={k: v[0] for k, v in ranges.items()},
                         high={k: v[1] for k, v in ranges.items()})

    # Full-shaped bounds keep the scan carry's shapes fixed across rounds.
    space = space.replace(dists={
        name: (d.replace(low=jnp.broadcast_to(d.low, jnp.shape(getattr(space.nominal, name))),
                         high=jnp.broadcast_to(d.high, jnp.shape(getattr(space.nominal, name))))
               if isinstance(d, Uniform) else d)
        for name, d in space.dists.items()})
    return jax.lax.scan(one, space, jax.random.split(key, rounds))
