"""``Trial``: several episodes of one task, then a fresh task -- the unit of meta-RL (RL^2).

A trial (Duan et al. 2016) is ``episodes_per_trial`` consecutive episodes of the *same* task
(same ``Params``); a recurrent policy keeps its hidden state across the episodes of a trial and
resets it only when the trial ends, so it can learn about the task in early episodes and exploit
it in later ones. The wrapper's ``done`` is the end of the *trial* (what resets the hidden state
and cuts the advantage recursion); the end of an inner episode is ``info["episode_done"]`` (what
the policy sees in its input).

    env = Trial(TabularMDP(), episodes_per_trial=10)
    state, obs = env.reset(key, space)                 # space: draws a task (e.g. a ParamSpace)
    state, obs, reward, trial_done, info = env.step(key, state, action, space)

Like ``AutoReset``, the ``params`` argument is a task distribution: anything with
``sample(key) -> Params`` (a ``ParamSpace``, or a task space such as
``envs.tabular_mdp.TabularMDPTaskSpace``). A fresh task is drawn inside ``jit``, per env, from the
step's key whenever a trial ends; inner episodes are reset in place with the same task.

``info`` (all ``[]``): ``episode_done`` (an inner episode ended on this step), ``episode_index``
(index within the trial of the episode this step belongs to), ``final_obs`` (observation reached
before any reset), ``terminated`` (= trial done: a trial's objective is finite, nothing is
bootstrapped past it), ``truncated`` (False), ``trial_return`` (running return of the trial,
including this step's reward).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.core.env import Env

# batched_over_seeds: the seeds-into-envs custom_vmap rule shared with AutoReset.step_batch.
from metarl_jax.core.wrappers import (
    Wrapper,
    batched_over_seeds,
    select_tree,
    step_batch_of,
    validate_space,
)
from metarl_jax.randomization.keys import EnvKeys, batch_draw_keys


@struct.dataclass
class TrialState:
    inner: Any
    params: Any  # the task of the current trial
    episode: jax.Array  # [] int32, index of the current episode within the trial
    trial_return: jax.Array  # [] float32, running undiscounted return of the trial
    last_trial_return: jax.Array  # [] float32, return of the latest finished trial


class Trial(Wrapper):
    """Runs ``episodes_per_trial`` episodes of one task; ``done`` marks the end of the trial."""

    # batch_draw_keys tags (batched_draws): the inner step, the inner resets, the task draw
    # and its reset. Each >= 2**31, so never an env's own key.
    STEP_TAG, RESET_TAG, TASK_TAG, TASK_RESET_TAG = 0xC0FFEE00, 0xC0FFEE01, 0xC0FFEE02, 0xC0FFEE03

    def __init__(self, env: Env, episodes_per_trial: int, batched_draws: bool = False):
        if episodes_per_trial < 1:
            raise ValueError(f"episodes_per_trial must be >= 1, got {episodes_per_trial}")
        super().__init__(env)
        self.episodes_per_trial = int(episodes_per_trial)
        # Opt-in (other random streams than ``step``): step_batch derives its keys from the
        # batch's (one fold_in per base key and purpose) instead of hashing and splitting a key
        # per env, steps the inner env through its own step_batch, and draws a step's tasks as
        # one ``space.sample(key, (N,))`` per base key. Same semantics.
        self.batched_draws = bool(batched_draws)
        # Upper bound on a trial's length (exact for envs that never terminate early).
        self.max_steps = self.episodes_per_trial * env.max_steps

    def reset(self, key, space):
        validate_space(self.env, space)
        param_key, reset_key = jax.random.split(key)
        params = space.sample(param_key)
        inner, obs = self.env.reset(reset_key, params)
        zero = jnp.float32(0.0)
        return TrialState(inner, params, jnp.int32(0), zero, zero), obs

    def step(self, key, state: TrialState, action, space):
        advance_key, trial_key = jax.random.split(key)
        state, obs, reward, trial_done, info = self._advance(advance_key, state, action)
        state, obs = self._begin_trial(trial_key, state, obs, trial_done, space)
        return state, obs, reward, trial_done, info

    def step_batch(self, keys, state: TrialState, action, space, space_axis=None):
        """``vmap(step)`` over ``N`` envs (keys ``[N]``, batched state and action), bit-identical
        to it, but drawing fresh tasks only on steps where some trial ended (a batch-level
        ``lax.cond``): drawing a task can cost far more than a step (a tabular MDP's
        ``S * A * S`` Dirichlet entries). ``space`` is shared (``space_axis=None``) or batched.

        Under an outer ``vmap`` (the seeds of ``train_chunk_seeds``) the seed and env axes are
        merged into one batch first (``core.wrappers``' ``custom_vmap`` rule, as for
        ``AutoReset.step_batch``), so the ``cond`` stays a branch on ``any(trial_done)`` over
        all seeds' envs instead of becoming a select that draws on every step. On a step where
        some trial ends every env of the merged batch draws (and keeps the draw only where its
        trial ended): with equal-length trials (fixed-horizon envs, as every ``Trial`` here)
        that is exactly one draw per ended trial."""
        return batched_over_seeds(self._step_batch, keys, state, action, space, space_axis)

    def _step_batch(self, keys, state: TrialState, action, space, space_axis):
        if self.batched_draws:
            return self._step_batch_shared_keys(keys, state, action, space, space_axis)
        keys = jax.vmap(jax.random.split)(keys.all())  # EnvKeys -> [N, 2, key]
        state, obs, reward, trial_done, info = jax.vmap(self._advance)(keys[:, 0], state, action)
        begin = jax.vmap(self._begin_trial, in_axes=(0, 0, 0, 0, space_axis))
        state, obs = jax.lax.cond(jnp.any(trial_done),
                                  lambda: begin(keys[:, 1], state, obs, trial_done, space),
                                  lambda: (state, obs))
        return state, obs, reward, trial_done, info

    def _step_batch_shared_keys(self, keys: EnvKeys, state: TrialState, action, space,
                                space_axis):
        """``batched_draws``: the batch step with keys derived per purpose from the batch's."""
        derived = lambda tag: EnvKeys(batch_draw_keys(keys, tag), keys.per)
        stepped = step_batch_of(self.env, derived(self.STEP_TAG), state.inner, action,
                                state.params, 0)
        reset = jax.vmap(self.env.reset)(derived(self.RESET_TAG).all(), state.params)
        state, obs, reward, trial_done, info = jax.vmap(self._after_step)(state, *stepped,
                                                                          *reset)

        def begin():
            if space_axis is None:  # one draw of [per] tasks per base key
                per = keys.per or 1
                tasks = jax.vmap(lambda k: space.sample(k, (per,)))(
                    batch_draw_keys(keys, self.TASK_TAG))
                tasks = jax.tree.map(lambda x: x.reshape((keys.size,) + x.shape[2:]), tasks)
            else:
                tasks = jax.vmap(lambda k, sp: sp.sample(k), in_axes=(0, space_axis))(
                    derived(self.TASK_TAG).all(), space)
            inner, first_obs = jax.vmap(self.env.reset)(derived(self.TASK_RESET_TAG).all(),
                                                        tasks)
            where = lambda new, old: jnp.where(
                trial_done.reshape(trial_done.shape + (1,) * (new.ndim - 1)), new, old)
            new_state = state.replace(inner=jax.tree.map(where, inner, state.inner),
                                      params=jax.tree.map(where, tasks, state.params))
            return new_state, where(first_obs, obs)

        state, obs = jax.lax.cond(jnp.any(trial_done), begin, lambda: (state, obs))
        return state, obs, reward, trial_done, info

    def _advance(self, key, state: TrialState, action):
        """Step the current task; reset a finished episode with the same task."""
        step_key, reset_key = jax.random.split(key)
        inner, obs, reward, episode_done, _ = self.env.step(step_key, state.inner, action,
                                                            state.params)
        reset_inner, reset_obs = self.env.reset(reset_key, state.params)
        return self._after_step(state, inner, obs, reward, episode_done, None, reset_inner,
                                reset_obs)

    def _after_step(self, state: TrialState, inner, obs, reward, episode_done, _info,
                    reset_inner, reset_obs):
        """One env's bookkeeping after the inner step: episode and trial counters, the inner
        reset where the episode ended (``reset_*``: a reset with the same task)."""
        episode = state.episode + episode_done.astype(jnp.int32)
        trial_done = episode_done & (episode >= self.episodes_per_trial)
        trial_return = state.trial_return + reward
        info = {
            "episode_done": episode_done,
            "episode_index": state.episode,
            "final_obs": obs,
            "terminated": trial_done,
            "truncated": jnp.zeros((), jnp.bool_),
            "trial_return": trial_return,
        }
        new_state = TrialState(
            inner=select_tree(episode_done, reset_inner, inner),
            params=state.params,
            episode=jnp.where(trial_done, 0, episode).astype(jnp.int32),
            trial_return=jnp.where(trial_done, 0.0, trial_return).astype(jnp.float32),
            last_trial_return=jnp.where(trial_done, trial_return,
                                        state.last_trial_return).astype(jnp.float32),
        )
        return new_state, jnp.where(episode_done, reset_obs, obs), reward, trial_done, info

    def _begin_trial(self, key, state: TrialState, obs, trial_done, space):
        """Where ``trial_done``: draw a fresh task and reset the env with it."""
        param_key, reset_key = jax.random.split(key)
        params = space.sample(param_key)
        inner, first_obs = self.env.reset(reset_key, params)
        state = state.replace(inner=select_tree(trial_done, inner, state.inner),
                              params=select_tree(trial_done, params, state.params))
        return state, jnp.where(trial_done, first_obs, obs)
