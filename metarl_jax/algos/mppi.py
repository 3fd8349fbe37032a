"""Model-predictive path integral (MPPI) optimization of an action (or skill) sequence.

    plan, info = mppi(key, cost_fn, init_mean[H, D], config, low=-1.0, high=1.0)

Each of ``num_iters`` iterations draws ``num_samples`` sequences ``x_n = clip(mean + noise_std
eps_n)``, ``eps_n ~ N(0, I)`` ``[H, D]``, scores them with ``cost_fn(x) -> []`` (vmapped), and
moves the mean to their exponentially weighted average (Williams et al. 2017; DADS's
latent-space planner, Sharma et al. 2020, Algorithm 2, refines skill sequences this way)::

    w_n  = softmax(-(c_n - min_m c_m) / temperature)
    mean = sum_n w_n x_n

For a quadratic cost and Gaussian samples this update has the minimizer as its fixed point (the
weighted mean of ``N(mean, s^2)`` tilted by ``exp(-c / temperature)`` lies between ``mean`` and the
minimizer), so iterating converges there up to Monte-Carlo noise (tested).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from flax import struct

static = dict(pytree_node=False)


@struct.dataclass
class MPPIConfig:
    """Sizes static, the rest leaves."""

    num_samples: int = struct.field(default=256, **static)
    num_iters: int = struct.field(default=5, **static)
    noise_std: float = 0.5
    temperature: float = 0.1

    def validate(self) -> "MPPIConfig":
        if self.num_samples < 2 or self.num_iters < 1:
            raise ValueError(f"MPPIConfig needs num_samples >= 2 and num_iters >= 1, got "
                             f"{self.num_samples}, {self.num_iters}")
        if not (float(self.noise_std) > 0 and float(self.temperature) > 0):
            raise ValueError(f"MPPIConfig needs noise_std > 0 and temperature > 0, got "
                             f"{self.noise_std}, {self.temperature}")
        return self


def mppi(key: jax.Array, cost_fn: Callable[[jax.Array], jax.Array], init_mean: jax.Array,
         config: MPPIConfig, low: Optional[float] = None, high: Optional[float] = None
         ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """Refine ``init_mean[H, D]`` (module doc). Returns ``(mean[H, D], {"cost": [num_iters]
    weighted mean cost per iteration, "best_cost": [] lowest sampled cost})``; ``low`` /
    ``high`` clip every sample (and so the mean) to a box."""

    def clip(x):
        return x if low is None and high is None else jnp.clip(x, low, high)

    def iteration(carry, k):
        mean, best = carry
        eps = jax.random.normal(k, (config.num_samples,) + mean.shape, mean.dtype)
        samples = clip(mean + config.noise_std * eps)
        costs = jax.vmap(cost_fn)(samples)
        weights = jax.nn.softmax(-(costs - jnp.min(costs)) / config.temperature)
        mean = jnp.tensordot(weights, samples, axes=1)
        return (mean, jnp.minimum(best, jnp.min(costs))), jnp.sum(weights * costs)

    init = (clip(jnp.asarray(init_mean)), jnp.asarray(jnp.inf, init_mean.dtype))
    (mean, best), cost = jax.lax.scan(iteration, init, jax.random.split(key, config.num_iters))
    return mean, {"cost": cost, "best_cost": best}
