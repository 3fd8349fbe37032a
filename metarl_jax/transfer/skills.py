"""Using learned skills (DIAYN / DADS, ``metarl_jax.algos.diayn`` / ``dads``).

* imitation by skill inference: the skill whose discriminator explains an expert's states best,
  ``argmax_z sum_t log q(z | s_t)`` (``infer_skill``);
* a hierarchical controller that picks a skill every ``k`` env steps and lets the skill policy
  act in between (``run_skill_sequence``; the choice of skills comes from a planner such as
  ``algos.mppi``'s latent-space planner, or any meta-controller);
* policy initialization from a skill: a skill-conditioned actor with its skill built in, to
  finetune on a downstream task (``actor_from_skill``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def infer_skill(logits: jax.Array) -> jax.Array:
    """``argmax_z sum_t log q(z | s_t)`` ``[...]`` int32 for discriminator ``logits[..., T, K]``
    of a trajectory's states ``s_1..s_T`` (the skill that best explains the whole trajectory;
    a uniform prior adds the same ``-T ln K`` to every skill and drops out)."""
    return jnp.argmax(jnp.sum(jax.nn.log_softmax(logits, axis=-1), axis=-2), axis=-1)


def run_skill_sequence(act: Callable, env: Any, params: Any, state: Any, obs: jax.Array,
                       skills: jax.Array, steps_per_skill: int, key: jax.Array):
    """Execute ``skills[P, D]`` in order, each for ``steps_per_skill`` env steps, with the skill
    policy ``act(key, obs_with_skill)`` on a ``SkillConditioned`` env (no auto-reset).

    Returns ``(state, obs, rewards[P * steps_per_skill], features[P * steps_per_skill,
    base_obs_size])`` -- the env observations after every step, without the skill."""

    def one_skill(carry, xs):
        state, obs = carry
        skill, k = xs
        state, obs = env.with_skill(state, obs, skill)

        def step(c, step_key):
            state, obs = c
            act_key, env_key = jax.random.split(step_key)
            state, obs, reward, _, _ = env.step(env_key, state, act(act_key, obs), params)
            return (state, obs), (reward, obs[:env.base_obs_size])

        return jax.lax.scan(step, (state, obs), jax.random.split(k, steps_per_skill))

    keys = jax.random.split(key, skills.shape[0])
    (state, obs), (rewards, feats) = jax.lax.scan(one_skill, (state, obs), (skills, keys))
    return state, obs, rewards.reshape(-1), feats.reshape((-1,) + feats.shape[2:])


def actor_from_skill(actor_params: Any, skill: jax.Array, base_obs_size: int) -> Any:
    """Policy initialization from a skill: the parameters of a skill-conditioned MLP actor on
    ``[s, z]`` turned into those of the same actor on ``s`` alone with ``z = skill`` built in.

    The first dense layer computes ``W_s s + W_z z + b``; with ``z`` fixed that is ``W_s s +
    (b + W_z z)``, so its kernel keeps the first ``base_obs_size`` rows and ``W_z z`` moves into
    its bias -- the new actor's outputs equal the skill's exactly (tested). Works for any flax
    MLP whose first layer is ``MLP_0/Dense_0`` (``algos.sac.Actor``)."""
    first = actor_params["params"]["MLP_0"]["Dense_0"]
    kernel, bias = first["kernel"], first["bias"]
    folded = {"kernel": kernel[:base_obs_size], "bias": bias + skill @ kernel[base_obs_size:]}
    mlp = dict(actor_params["params"]["MLP_0"], Dense_0=folded)
    return {"params": dict(actor_params["params"], MLP_0=mlp)}
