"""The robust-randomization hook PPO calls once per update: protocol, episode batch, helpers.

Robust and adaptive domain randomization (EPOpt, MRPO, ADR) changes two things in an on-policy
learner, both computed from the episodes of the latest rollout:

* **which trajectories the update uses** -- per-env weights ``w[N]`` in the PPO loss and in the
  advantage normalization (EPOpt: the worst epsilon-fraction; MRPO: a worst-case-aware selection);
* **the randomization distribution** in the train state (ADR widens / shrinks its ranges).

A hook is a small pytree of pure functions (``RobustHook``, a ``flax.struct`` dataclass):
``PPO(env, robust=hook)`` stores it in ``PPOState.robust`` and calls ``hook_step`` inside its
compiled update. Its numbers (EPOpt's epsilon, MRPO's kappa schedule) are leaves, so another value
runs through the same compiled program (``ppo.init(key, config, space, EPOpt(0.2))``); what
changes during training lives in the train state (the distribution) or is a function of the
update counter.

**One episode per env per update.** Hooks reason about *episodes* and the physics they ran on, so
the rollout must hold exactly one whole episode per env: ``PPOConfig.num_steps == env.max_steps``,
no ``resample_every``, and an env that never terminates early (Pendulum runs its 200 steps). All
envs then start together (at init every env resets; each rollout's last step ends every episode
and resets it with fresh physics for the next rollout), so each env's summed reward over the
rollout is its episode return, and the params of those episodes are the ``AutoReset`` state's
params at the start of the rollout. ``check_alignment`` enforces the static part;
the metric ``episodes_aligned`` (1.0 when every env finished exactly one episode on the rollout's
last step) reports the dynamic part.

Shapes: ``N = num_envs``, ``T = num_steps``; ``D`` = number of parameters a hook looks at.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Protocol, Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax import stats

Metrics = Dict[str, jax.Array]


class EpisodeBatch(NamedTuple):
    """The episodes of one rollout, one per env.

    Attributes:
        returns: [N] float32, undiscounted episode return (sum of the unscaled rewards).
        params: the env ``Params`` of those episodes, every leaf batched ``[N, ...]``.
        aligned: [] bool, every env finished exactly one episode, on the rollout's last step.
    """

    returns: jax.Array
    params: Any
    aligned: jax.Array


class RobustHook(Protocol):
    """What ``PPO(env, robust=hook)`` calls, once per update, inside ``jit``.

    ``weights(batch, space, update_step) -> (w[N] or None, metrics)``: non-negative per-episode
    weights for the loss (``None``: plain PPO, every sample counts once).
    ``update_space(space, batch, update_step) -> (space, metrics)``: the next randomization
    distribution (same pytree structure). ``metrics`` are dicts of ``[]`` arrays, logged per update.
    """

    def weights(self, batch: EpisodeBatch, space: Any, update_step: jax.Array
                ) -> Tuple[Optional[jax.Array], Metrics]: ...

    def update_space(self, space: Any, batch: EpisodeBatch, update_step: jax.Array
                     ) -> Tuple[Any, Metrics]: ...


@struct.dataclass
class PlainDR:
    """The identity hook: plain domain randomization (no weights, the space never changes).

    Useful to log the episode-level metrics (``train_return_cvar10``) of a DR baseline with the
    same code path as the robust methods; the update itself is exactly PPO's.
    """

    def weights(self, batch, space, update_step):
        return None, {}

    def update_space(self, space, batch, update_step):
        return space, {}


def check_alignment(env, num_steps: int, resample_every: Optional[int]) -> None:
    """Raise ``ValueError`` unless a rollout of ``num_steps`` holds exactly one episode per env."""
    if resample_every is not None:
        raise ValueError("a robust hook needs the physics fixed for a whole episode; "
                         f"got resample_every={resample_every} (use None)")
    if int(num_steps) != int(env.max_steps):
        raise ValueError(
            f"a robust hook needs one whole episode per env per update: PPOConfig.num_steps "
            f"({num_steps}) must equal the episode length env.max_steps ({env.max_steps})")


def episode_batch(reward: jax.Array, done: jax.Array, start_env_state: Any) -> EpisodeBatch:
    """Build the ``EpisodeBatch`` of a rollout.

    Args:
        reward: [T, N] unscaled rewards; done: [T, N] bool.
        start_env_state: the ``EpisodeStats(AutoReset(env))`` state ``[N, ...]`` the rollout
            started from (its ``inner.params`` are the params of this rollout's episodes).
    """
    aligned = jnp.all(done[-1]) & (jnp.sum(done) == done.shape[1])
    return EpisodeBatch(returns=reward.sum(0).astype(jnp.float32),
                        params=start_env_state.inner.params, aligned=aligned)


def worst_fraction_mean(returns: jax.Array, fraction: float = 0.1) -> jax.Array:
    """Mean of the worst ``ceil(fraction * N)`` entries of ``returns[N]`` (``stats.cvar``)."""
    return stats.cvar(returns, fraction)


def hook_step(hook: RobustHook, reward: jax.Array, done: jax.Array, start_env_state: Any,
              space: Any, update_step: jax.Array
              ) -> Tuple[Optional[jax.Array], Any, Metrics]:
    """Run a hook on one rollout. Returns ``(weights[T, N] or None, new_space, metrics)``.

    Besides the hook's own metrics, logs ``train_return_mean`` / ``train_return_cvar10`` (the
    rollout's episodes; CVaR over the worst 10% of envs), ``episodes_aligned`` and, with weights,
    ``selected_frac`` (fraction of episodes with non-zero weight).
    """
    batch = episode_batch(reward, done, start_env_state)
    weights, metrics = hook.weights(batch, space, update_step)
    new_space, space_metrics = hook.update_space(space, batch, update_step)
    metrics = dict(metrics, **space_metrics)
    metrics.update(train_return_mean=batch.returns.mean(),
                   train_return_cvar10=worst_fraction_mean(batch.returns, 0.1),
                   episodes_aligned=batch.aligned.astype(jnp.float32))
    if weights is not None:
        weights = weights.astype(jnp.float32)
        metrics["selected_frac"] = jnp.mean(weights > 0)
        weights = jnp.broadcast_to(weights, reward.shape)  # [N] -> [T, N]
    return weights, new_space, metrics


def param_matrix(params: Any, fields: Sequence[str]) -> jax.Array:
    """Stack scalar fields of batched ``Params`` into ``[N, D]`` float32 (D = len(fields))."""
    return jnp.stack([jnp.asarray(getattr(params, f), jnp.float32) for f in fields], axis=-1)
