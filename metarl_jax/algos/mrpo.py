"""MRPO: monotonic robust policy optimization, as a trajectory-selection hook for PPO.

Jiang, Li, Dai, Zou, Xiong, "Monotonic Robust Policy Optimization with Model Discrepancy",
ICML 2021. The paper lower-bounds the worst-case return by the expected return over the
environment distribution minus a model-discrepancy term that grows with the distance between an
environment's parameters and the worst-case environment's (a Lipschitz assumption on the
dynamics in the parameters), and maximizes that bound jointly over the policy and the sampling
distribution. Its practical algorithm realizes the distribution step by *selecting trajectories*:

1. sample L environments p_i from the (uniform) training distribution, one trajectory each, and
   estimate each return eta_i;
2. take the worst-case environments: the worst 10% of the sampled ones, set W;
3. keep every trajectory of W, and the trajectory of any other environment i whose return, less
   the discrepancy penalty, still beats every worst-case return:
   ``eta_i - kappa * ||p_i - p_w|| > eta_w`` for all w in W;
4. a PPO update on the kept trajectories; ``kappa`` grows geometrically each iteration
   (``kappa_k = kappa_0 * growth^k``, optionally capped at ``kappa_max``).

Sources, stated: the full text of the paper's Algorithm 1 was not available when this was
written; steps 1-4 follow the paper's description (a worst-case lower bound traded against the
average through a parameter-distance term) and the trajectory selection of the authors' public
PPO2-based implementation (its ``MRPORunner``; none of its code is reused). Implemented:
``mrpo_mask`` below, used as ``PPO(env, robust=MRPO(fields, scale, ...))`` with 0/1 weights on
the rollout.

Deviations, stated: (a) W is exactly the ``ceil(0.1 N)`` lowest returns (EPOpt's ``cvar_mask``,
ties to the lower env index) rather than "returns <= the 10th percentile"; (b) the distance is
the L1 norm of the parameter difference, each parameter divided by ``scale`` (the width of its
training range) -- the authors' code takes the absolute value of the *sum* of signed normalized
differences, which can vanish between distant environments, and normalizes one parameter by twice
its range; (c) the discrepancy coefficient is a hyperparameter in return units (as in the
authors' code; the paper's theoretical constant 2 gamma |r|_max L / (1 - gamma)^2 is far too
loose to use), so ``kappa_0`` must be chosen for the task's return scale: with the authors'
defaults (``kappa_0 = 1``, growth 1.005) the penalty is a few return units after hundreds of
iterations, and on Pendulum (returns in the hundreds) the selection keeps every episode, i.e.
MRPO reduces to DR; ``experiments.robust_dr`` uses ``kappa_0 = 100``, growth 1.01.
"""

from __future__ import annotations

from typing import Any, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.algos.epopt import cvar_mask
from metarl_jax.randomization.robust import EpisodeBatch, param_matrix


def mrpo_mask(returns: jax.Array, theta: jax.Array, kappa, worst_fraction: float = 0.1
              ) -> jax.Array:
    """MRPO's trajectory selection.

    Args:
        returns: [N] episode returns; theta: [N, D] normalized env parameters.
        kappa: [] discrepancy coefficient (return units per unit of normalized L1 distance).
        worst_fraction: size of the worst-case set W (``ceil(worst_fraction * N)`` episodes).

    Returns:
        [N] float32 0/1 mask: every member of W, plus each ``i`` with
        ``returns[i] - kappa * |theta[i] - theta[w]|_1 > returns[w]`` for every ``w`` in W.
    """
    worst = cvar_mask(returns, worst_fraction) > 0  # [N]
    dist = jnp.abs(theta[:, None, :] - theta[None, :, :]).sum(-1)  # [N, N]: i, w
    beats = returns[:, None] - kappa * dist > returns[None, :]
    beats_all_worst = jnp.all(beats | ~worst[None, :], axis=1)
    return (worst | beats_all_worst).astype(jnp.float32)


@struct.dataclass
class MRPO:
    """The MRPO hook for ``PPO(env, robust=...)``; a pytree whose numbers are leaves (it lives in
    ``PPOState.robust``: other coefficients run through the same compiled program).

    Args:
        fields: the randomized scalar ``Params`` fields that define the distance (static).
        scale: [D] their normalization (e.g. the width of each training range, value units).
        kappa0, growth, kappa_max: the schedule ``min(kappa0 * growth^update, kappa_max)``.
        worst_fraction: fraction of episodes in the worst-case set W.
    """

    fields: Tuple[str, ...] = struct.field(pytree_node=False)
    scale: Any
    kappa0: Any = 1.0
    growth: Any = 1.005
    kappa_max: Any = float("inf")
    worst_fraction: Any = 0.1

    def __post_init__(self):  # Python numbers only: unflattening inside jit passes tracers
        if not isinstance(self.kappa0, (int, float)):
            return
        fields, scale = self.fields, self.scale
        if len(fields) != len(scale) or not fields:
            raise ValueError(f"MRPO needs one scale per field, got fields={list(fields)}, "
                             f"scale={list(scale)}")
        kappa0, growth, kappa_max = self.kappa0, self.growth, self.kappa_max
        if any(s <= 0 for s in scale) or kappa0 < 0 or growth < 1.0 or kappa_max < kappa0:
            raise ValueError("MRPO needs scale > 0, kappa0 >= 0, growth >= 1, "
                             f"kappa_max >= kappa0; got scale={list(scale)}, kappa0={kappa0}, "
                             f"growth={growth}, kappa_max={kappa_max}")
        if not 0.0 < self.worst_fraction <= 1.0:
            raise ValueError(f"MRPO worst_fraction must be in (0, 1], got {self.worst_fraction}")
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "scale", tuple(float(s) for s in scale))

    def kappa(self, update_step: jax.Array) -> jax.Array:
        k = self.kappa0 * jnp.power(self.growth, update_step.astype(jnp.float32))
        return jnp.minimum(k, self.kappa_max)

    def weights(self, batch: EpisodeBatch, space, update_step):
        theta = param_matrix(batch.params, self.fields) / jnp.asarray(self.scale, jnp.float32)
        kappa = self.kappa(update_step)
        return mrpo_mask(batch.returns, theta, kappa, self.worst_fraction), {"mrpo_kappa": kappa}

    def update_space(self, space, batch, update_step):
        return space, {}
