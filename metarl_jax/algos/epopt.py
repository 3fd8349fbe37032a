"""EPOpt-epsilon: train on the worst epsilon-fraction of sampled physics (a CVaR objective).

Rajeswaran, Ghotra, Ravindran, Levine, "EPOpt: Learning Robust Neural Network Policies Using Model
Ensembles", ICLR 2017. Each iteration samples N physics parameters from the source distribution,
rolls out one trajectory per sample, and updates the policy (the paper: TRPO; here: PPO) only on
the trajectories whose return is in the lowest epsilon-percentile -- a sample estimate of the
gradient of CVaR_epsilon of the return over the model ensemble. During the first ``warmup_updates``
iterations epsilon is 1 (every trajectory), the paper's warm start: the CVaR gradient of a random
policy carries little signal.

    ppo = PPO(env, robust=EPOpt(epsilon=0.1, warmup_updates=20))   # num_steps == env.max_steps

**Selection rule (exact, ties documented).** ``cvar_mask`` selects exactly
``k = ceil(epsilon * N)`` episodes (at least 1): the k smallest returns. Equal returns are ordered
by env index (a stable sort), so among tied episodes at the cut-off the lower indices are taken.
The paper's "returns <= the epsilon-percentile" can select more than epsilon*N trajectories when
returns tie; a fixed count keeps the effective batch size (and the gradient's scale) constant.

Deviation from the paper: the selected trajectories enter PPO's loss through 0/1 weights on the
full rollout (``weighted_mean``) rather than by building a smaller batch, so shapes stay static
under ``jit``; the value function is fitted on the selected trajectories only, as in the paper.

**Source-distribution adaptation** (the paper's sec. 3.2, ``SourceAdaptation``): EPOpt alternates
robust training on the source ensemble with a Bayesian update of the source distribution from a
little target-domain data collected *by the current policy*::

    for round in 1..M:
        train the policy on the source space for K updates   (CVaR as above)
        data  = a few episodes of the current policy in the target   (``collect_target``)
        space = posterior of the space given data       (``randomization.posterior``)

``SourceAdaptation(...)(key, space, env, act, target_params, log_likelihood_of)`` is one such
data + posterior step, pure and jit-able; the experiment calls it after every compiled training
round (``experiments.robust_dr``'s ``epopt_adapt`` arm), so the rounds' policies differ and so do
the data they collect.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax import stats
from metarl_jax.core.rollout import rollout
from metarl_jax.randomization.posterior import posterior_update
from metarl_jax.randomization.robust import EpisodeBatch


def cvar_count(epsilon, n: int) -> jax.Array:
    """``[] int32``: ``ceil(epsilon * n)`` clipped to ``[1, n]`` (epsilon may be traced): the one
    CVaR count of ``metarl_jax.stats.cvar_count``, always as a JAX integer here."""
    return jnp.asarray(stats.cvar_count(epsilon, n), jnp.int32)


def ranks(returns: jax.Array) -> jax.Array:
    """``[N] int32`` rank of each entry in ascending order (0 = lowest); ties by index."""
    order = jnp.argsort(returns, stable=True)
    return jnp.zeros_like(order).at[order].set(jnp.arange(returns.shape[0], dtype=order.dtype))


def cvar_mask(returns: jax.Array, epsilon) -> jax.Array:
    """``[N] float32`` 0/1 mask of the ``ceil(epsilon * N)`` lowest ``returns[N]`` (module doc)."""
    return (ranks(returns) < cvar_count(epsilon, returns.shape[0])).astype(jnp.float32)


@struct.dataclass
class EPOpt:
    """The EPOpt hook for ``PPO(env, robust=...)``; a pytree whose numbers are leaves.

    The hook lives in ``PPOState.robust``, so ``ppo.init(key, config, space, EPOpt(0.2))`` runs
    another epsilon through the same compiled program (no recompile), and seeds stacked by
    ``init_seeds`` may each carry their own.

    Args:
        epsilon: fraction of trajectories kept after the warm start, in ``(0, 1]``.
        warmup_updates: number of initial updates that use every trajectory (epsilon = 1).
    """

    epsilon: Any = 0.1
    warmup_updates: Any = 0

    def __post_init__(self):  # Python numbers only: unflattening inside jit passes tracers
        if isinstance(self.epsilon, (int, float)) and not 0.0 < self.epsilon <= 1.0:
            raise ValueError(f"EPOpt epsilon must be in (0, 1], got {self.epsilon}")
        if isinstance(self.warmup_updates, (int, float)) and self.warmup_updates < 0:
            raise ValueError(f"EPOpt warmup_updates must be >= 0, got {self.warmup_updates}")

    def current_epsilon(self, update_step: jax.Array) -> jax.Array:
        return jnp.where(update_step < self.warmup_updates, 1.0, self.epsilon)

    def weights(self, batch: EpisodeBatch, space, update_step):
        epsilon = self.current_epsilon(update_step)
        mask = cvar_mask(batch.returns, epsilon)
        return mask, {"epopt_epsilon": epsilon,
                      "epopt_cutoff": jnp.max(jnp.where(mask > 0, batch.returns, -jnp.inf))}

    def update_space(self, space, batch, update_step):
        return space, {}


# ----------------------------------------------------------------- source-distribution adaptation
class TargetData(NamedTuple):
    """Episodes recorded in the target domain.

    Attributes:
        obs: [E, T + 1, obs_size] the observations, the reset observation first.
        actions: [E, T, action_size] the actions the policy took.
    """

    obs: jax.Array
    actions: jax.Array


def collect_target(key: jax.Array, env, act: Callable[[jax.Array, jax.Array], jax.Array],
                   target_params: Any, num_episodes: int, num_steps: int) -> TargetData:
    """``num_episodes`` episodes of ``num_steps`` steps of the bare ``env`` (no auto-reset) at
    the one physics ``target_params`` (unbatched), actions from ``act(key, obs[E, obs_size]) ->
    [E, action_size]`` (the current, stochastic policy: EPOpt's data come from it)."""
    reset_key, key = jax.random.split(key)
    state, obs = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(reset_key, num_episodes), target_params)
    carry, traj = rollout(lambda k, o: (act(k, o), {}), env, key, state, obs, target_params,
                          num_steps)
    all_obs = jnp.concatenate([traj.obs, carry.obs[None]])  # [T + 1, E, obs_size]
    return TargetData(obs=jnp.swapaxes(all_obs, 0, 1), actions=jnp.swapaxes(traj.action, 0, 1))


@struct.dataclass
class SourceAdaptation:
    """One round of EPOpt's source adaptation (module doc): target data from the current policy,
    then a tempered importance-weighted posterior over the space's uniform fields
    (``randomization.posterior.posterior_update``).

    Args:
        num_episodes, num_steps: target episodes per round and their length (static).
        num_particles: physics samples of the space weighted per round (static).
        ess_fraction: the tempering's effective sample size, a fraction of ``num_particles``.
        min_width: the posterior ranges' smallest width (the distribution's units).
    """

    num_episodes: int = struct.field(pytree_node=False, default=4)
    num_steps: int = struct.field(pytree_node=False, default=200)
    num_particles: int = struct.field(pytree_node=False, default=256)
    ess_fraction: float = struct.field(pytree_node=False, default=0.2)
    min_width: Any = 0.0

    def __call__(self, key: jax.Array, space, env, act, target_params: Any,
                 log_likelihood_of: Callable[[TargetData], Callable[[Any], jax.Array]]
                 ) -> Tuple[Any, Dict[str, Any]]:
        """``(new space, info)``: ``log_likelihood_of(data)`` turns the round's ``TargetData``
        into ``log p(data | params[N]) -> [N]``; ``info`` is ``posterior_update``'s (``ess``,
        ``temperature``, ``log_evidence``, ``best``)."""
        data_key, particle_key = jax.random.split(key)
        data = collect_target(data_key, env, act, target_params, self.num_episodes,
                              self.num_steps)
        return posterior_update(particle_key, space, log_likelihood_of(data), self.num_particles,
                                self.ess_fraction, min_width=self.min_width)
