"""Random tabular MDPs, the RL^2 paper's second task family (Duan et al. 2016, sec. 3.2).

Each task is an MDP with ``S`` states and ``A`` actions whose transition probabilities and mean
rewards live in ``TabularMDPParams``; ``TabularMDPTaskSpace`` draws them as in the paper::

    mean_reward[s, a] ~ N(1, 1)            reward = mean_reward[s, a] + N(0, 1) noise
    transitions[s, a] ~ Dirichlet(1, ..., 1)   (uniform over the probability simplex)

An episode is ``max_steps`` (10) steps from a start state drawn uniformly at random; the env never
terminates early. A trial (``metarl_jax.core.trial.Trial``) is several episodes of one MDP.

Shapes (unbatched): obs [S] float32 one-hot state; action [] int32 in ``{0..A-1}``;
reward [] float32; done [] bool. ``optimal_episode_return(params, horizon)`` gives the expected
return of the policy that knows the MDP (finite-horizon value iteration): an upper bound for any
learner, per episode; ``random_episode_return`` that of uniformly random actions.
"""

from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.core.env import Box, Discrete, Env, EnvParams, Info, PRNGKey, time_limit
from metarl_jax.randomization.param_space import ParamDistribution, ParamSpace, fixed_space


@struct.dataclass
class TabularMDPParams(EnvParams):
    """Attributes: transitions [S, A, S] (rows sum to 1); reward_mean [S, A];
    reward_std [] (noise on every reward)."""

    transitions: jax.Array = None
    reward_mean: jax.Array = None
    reward_std: jax.Array = 1.0


@struct.dataclass
class TabularMDPState:
    """Attributes: state [] int32; time [] int32 steps taken."""

    state: jax.Array
    time: jax.Array


class TabularMDP(Env):
    """A finite MDP given entirely by its params (one-hot state observations)."""

    def __init__(self, num_states: int = 10, num_actions: int = 5, max_steps: int = 10):
        if min(num_states, num_actions, max_steps) < 1:
            raise ValueError(f"need positive sizes, got num_states={num_states}, "
                             f"num_actions={num_actions}, max_steps={max_steps}")
        self.num_states, self.num_actions = int(num_states), int(num_actions)
        self.max_steps = int(max_steps)

    def default_params(self) -> TabularMDPParams:
        """A fixed, non-random MDP: uniform transitions, mean reward 1 everywhere."""
        S, A = self.num_states, self.num_actions
        return TabularMDPParams(transitions=jnp.full((S, A, S), 1.0 / S, jnp.float32),
                                reward_mean=jnp.ones((S, A), jnp.float32),
                                reward_std=jnp.float32(1.0), action_delay=jnp.int32(0),
                                obs_noise_std=jnp.float32(0.0))

    def reset(self, key: PRNGKey, params: TabularMDPParams) -> Tuple[TabularMDPState, jax.Array]:
        state = jax.random.randint(key, (), 0, self.num_states).astype(jnp.int32)
        s = TabularMDPState(state=state, time=jnp.zeros((), jnp.int32))
        return s, self._obs(state)

    def step(self, key: PRNGKey, state: TabularMDPState, action: jax.Array,
             params: TabularMDPParams
             ) -> Tuple[TabularMDPState, jax.Array, jax.Array, jax.Array, Info]:
        next_key, noise_key = jax.random.split(key)
        probs = params.transitions[state.state, action]
        next_state = jax.random.categorical(next_key, jnp.log(probs)).astype(jnp.int32)
        reward = (params.reward_mean[state.state, action]
                  + params.reward_std * jax.random.normal(noise_key, ()))
        time = state.time + 1
        truncated = time_limit(time, self.max_steps)
        info = {"truncated": truncated, "terminated": jnp.zeros((), jnp.bool_)}
        new = TabularMDPState(state=next_state, time=time)
        return new, self._obs(next_state), reward.astype(jnp.float32), truncated, info

    def _obs(self, state: jax.Array) -> jax.Array:
        return jax.nn.one_hot(state, self.num_states, dtype=jnp.float32)

    @property
    def observation_space(self) -> Box:
        S = self.num_states
        return Box(low=jnp.zeros((S,), jnp.float32), high=jnp.ones((S,), jnp.float32), shape=(S,))

    @property
    def action_space(self) -> Discrete:
        return Discrete(self.num_actions)


def dirichlet_ones(key: jax.Array, shape: Tuple[int, ...], size: int) -> jax.Array:
    """Dirichlet(1, ..., 1) draws ``[*shape, size]``: uniform on the simplex, as normalized
    Exp(1) variables (exact, and much cheaper inside ``vmap`` than general gamma sampling)."""
    e = jax.random.exponential(key, tuple(shape) + (size,))
    return e / jnp.sum(e, axis=-1, keepdims=True)


@struct.dataclass
class TabularMDPTaskSpace(ParamDistribution):
    """The RL^2 task distribution over ``TabularMDPParams``; a pytree like ``ParamSpace``
    (implements ``ParamDistribution``).

    ``sample(key, shape=()) -> TabularMDPParams`` with leaves ``[*shape, ...]``. The numbers
    (reward prior mean/std, reward noise) are leaves; the sizes are static. ``nominal`` is the
    prior's mean MDP (uniform transitions, every mean reward at the prior mean).
    """

    reward_prior_mean: jax.Array = 1.0
    reward_prior_std: jax.Array = 1.0
    reward_std: jax.Array = 1.0
    num_states: int = struct.field(pytree_node=False, default=10)
    num_actions: int = struct.field(pytree_node=False, default=5)

    @property
    def nominal(self) -> TabularMDPParams:
        S, A = self.num_states, self.num_actions
        return TabularMDPParams(
            transitions=jnp.full((S, A, S), 1.0 / S, jnp.float32),
            reward_mean=jnp.full((S, A), self.reward_prior_mean, jnp.float32),
            reward_std=jnp.asarray(self.reward_std, jnp.float32),
            action_delay=jnp.int32(0), obs_noise_std=jnp.float32(0.0))

    def support(self) -> Dict[str, Tuple[jax.Array, jax.Array]]:
        """Transition probabilities lie in [0, 1]; Gaussian mean rewards are unbounded."""
        return {"transitions": (jnp.float32(0.0), jnp.float32(1.0)),
                "reward_mean": (jnp.float32(-jnp.inf), jnp.float32(jnp.inf))}

    def collapse_to_nominal(self) -> ParamSpace:
        return fixed_space(self.nominal)

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> TabularMDPParams:
        shape = tuple(shape)
        S, A = self.num_states, self.num_actions
        t_key, r_key = jax.random.split(key)
        transitions = dirichlet_ones(t_key, shape + (S, A), S)
        reward_mean = (self.reward_prior_mean
                       + self.reward_prior_std * jax.random.normal(r_key, shape + (S, A)))
        full = lambda x, dtype: jnp.broadcast_to(jnp.asarray(x, dtype), shape)
        return TabularMDPParams(transitions=transitions, reward_mean=reward_mean,
                                reward_std=full(self.reward_std, jnp.float32),
                                action_delay=full(0, jnp.int32),
                                obs_noise_std=full(0.0, jnp.float32))


def tabular_mdp_task_space(num_states: int = 10, num_actions: int = 5,
                           reward_prior_mean: float = 1.0, reward_prior_std: float = 1.0,
                           reward_std: float = 1.0) -> TabularMDPTaskSpace:
    """The paper's task distribution (defaults), with array leaves (checkpointable)."""
    if reward_prior_std < 0 or reward_std < 0:
        raise ValueError(f"standard deviations must be >= 0, got {reward_prior_std}, {reward_std}")
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    return TabularMDPTaskSpace(f32(reward_prior_mean), f32(reward_prior_std), f32(reward_std),
                               int(num_states), int(num_actions))


def optimal_episode_return(params: TabularMDPParams, horizon: int) -> jax.Array:
    """Expected return ``[]`` of an episode of ``horizon`` steps from a uniform start state under
    the optimal policy *for this known MDP* (backward value iteration, exact)."""
    return _episode_value(params, horizon, lambda q: jnp.max(q, axis=-1))


def random_episode_return(params: TabularMDPParams, horizon: int) -> jax.Array:
    """Expected return ``[]`` of an episode under uniformly random actions (exact)."""
    return _episode_value(params, horizon, lambda q: jnp.mean(q, axis=-1))


def _episode_value(params: TabularMDPParams, horizon: int, over_actions) -> jax.Array:
    def backup(value, _):
        q = params.reward_mean + jnp.einsum("sat,t->sa", params.transitions, value)
        return over_actions(q), None

    S = params.reward_mean.shape[0]
    value, _ = jax.lax.scan(backup, jnp.zeros((S,), jnp.float32), None, length=horizon)
    return jnp.mean(value)
