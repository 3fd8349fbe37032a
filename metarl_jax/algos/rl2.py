"""RL^2 (Duan et al. 2016, Wang et al. 2016): recurrent PPO over trials of sampled tasks.

    rl2 = RL2(env, episodes_per_trial=2)                 # env: any Env; wrapped in Trial here
    state = rl2.init(key, config, space)                 # space: task distribution (sample(key))
    state, metrics = rl2.train_chunk(state, config, num_updates=10)  # one compiled lax.scan
    returns = rl2.evaluate(state.params, config, tasks, key)         # per-episode returns

Each of the ``N`` envs runs trials of one task each (``Trial``: ``episodes_per_trial`` episodes,
then a fresh task drawn inside the compiled program). The policy is a GRU
(``RecurrentActorCritic``) fed the observation, the previous action, reward and episode-done
flag; its hidden state is carried across the episodes of a trial and zeroed when a trial ends.
The objective is the return of the whole trial: the advantage recursion runs across episode
boundaries and stops only at trial boundaries.

Truncated BPTT: a rollout of ``T = num_steps`` steps is cut into ``T / L`` chunks of
``L = seq_len`` steps per env; the hidden state at the start of every chunk is stored during the
rollout, and the loss re-runs the GRU over each chunk from it (resetting where a trial starts),
so gradients flow through the whole chunk. Minibatches are sets of whole chunks (env, chunk
index); time order within a chunk is kept. Trials longer than a rollout continue across updates
(the carry -- env state, hidden state, previous action/reward -- is part of the train state).

RL² is a ``Learner`` (``metarl_jax.algos.learner``): ``init_seeds``, ``train_chunk(_seeds)``,
``train`` and the non-finite guard come from the contract; the loss is the PPO-family loss of
``metarl_jax.algos.ppo_loss`` over whole sequences.

``RL2Config`` is a pytree like ``PPOConfig``: sizes static, rates traced. Shapes: time-major
``[T, N, ...]``; sequences ``[L, S, ...]`` with ``S = N * T / L``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl_jax.algos.advantages import gae
from metarl_jax.algos.learner import Learner
from metarl_jax.algos.ppo_loss import Batch, clipped_surrogate_loss, ppo_optimizer, run_epochs
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.trial import Trial
from metarl_jax.nets.policy_heads import set_log_std
from metarl_jax.nets.recurrent import RecurrentActorCritic, RecurrentInput, unroll
from metarl_jax.randomization.param_space import ParamDistribution, fixed_space

static = dict(pytree_node=False)


@struct.dataclass
class RL2Config:
    """Recurrent PPO hyperparameters. Sizes are static fields; rates are pytree leaves."""

    num_envs: int = struct.field(default=64, **static)  # parallel trials, one task each
    num_steps: int = struct.field(default=128, **static)  # rollout length per update (T)
    seq_len: Optional[int] = struct.field(default=None, **static)  # BPTT chunk (L); None: T
    total_steps: int = struct.field(default=1_000_000, **static)  # env steps, all envs
    num_epochs: int = struct.field(default=4, **static)
    num_minibatches: int = struct.field(default=4, **static)  # over the S = N * T / L chunks
    hidden_size: int = struct.field(default=128, **static)
    encoder_sizes: Tuple[int, ...] = struct.field(default=(), **static)
    head_sizes: Tuple[int, ...] = struct.field(default=(), **static)
    input_reward_scale: float = struct.field(default=1.0, **static)  # reward feature scale
    init_log_std: float = 0.0  # a leaf: set in init (nets.policy_heads.set_log_std)
    anneal_lr: bool = struct.field(default=True, **static)
    anneal_ent: bool = struct.field(default=False, **static)  # ent_coef linearly to 0
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0

    @property
    def chunk_len(self) -> int:
        return self.num_steps if self.seq_len is None else self.seq_len

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_sequences(self) -> int:
        return self.num_envs * (self.num_steps // self.chunk_len)

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.batch_size

    def validate(self) -> "RL2Config":
        """Raise ``ValueError`` naming the field for an inconsistent config; return self."""
        for name in ("num_envs", "num_steps", "total_steps", "num_epochs", "num_minibatches",
                     "hidden_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RL2Config.{name} must be >= 1, got {getattr(self, name)}")
        if self.chunk_len < 1 or self.num_steps % self.chunk_len:
            raise ValueError(f"RL2Config.seq_len = {self.seq_len} must divide "
                             f"num_steps = {self.num_steps}")
        if self.num_sequences % self.num_minibatches:
            raise ValueError(f"RL2Config: the {self.num_sequences} sequences (num_envs * "
                             f"num_steps / seq_len) are not divisible by num_minibatches = "
                             f"{self.num_minibatches}")
        if self.num_updates < 1:
            raise ValueError(f"RL2Config.total_steps = {self.total_steps} is less than one "
                             f"update (num_envs * num_steps = {self.batch_size})")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"RL2Config: need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got "
                             f"gamma={self.gamma}, gae_lambda={self.gae_lambda}")
        for name in ("learning_rate", "clip_eps", "max_grad_norm", "reward_scale"):
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"RL2Config.{name} must be > 0, got {getattr(self, name)}")
        return self


@struct.dataclass
class ActorCarry:
    """The acting state of ``N`` envs between steps (and between updates)."""

    env_state: Any  # [N, ...] Trial state (incl. the current task)
    obs: jax.Array  # [N, obs_size]
    hidden: jax.Array  # [N, H], zero at the start of a trial
    prev_action: jax.Array  # [N] int32 or [N, A]; zero at the start of a trial
    prev_reward: jax.Array  # [N]
    prev_done: jax.Array  # [N] float32, 1 when the previous step ended an (inner) episode
    first: jax.Array  # [N] bool, the next step is the first of a trial

    def inputs(self) -> RecurrentInput:
        return RecurrentInput(self.obs, self.prev_action, self.prev_reward, self.prev_done)


@struct.dataclass
class RL2State:
    """Everything a run needs to continue bit-for-bit (checkpointed whole)."""

    params: Any
    opt_state: Any
    carry: ActorCarry
    space: ParamDistribution  # the task distribution trials are drawn from
    key: jax.Array
    update_step: jax.Array  # [] int32


class Step(NamedTuple):
    """One rollout step; every field ``[T, N, ...]``."""

    inputs: RecurrentInput
    hidden: jax.Array  # [T, N, H], the hidden state *before* the step (after any reset)
    first: jax.Array  # [T, N] bool
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array  # trial ended
    episode_done: jax.Array
    episode_index: jax.Array  # [T, N] int32, episode of the trial this step belongs to


def _mask(done: jax.Array, x: jax.Array) -> jax.Array:
    """Zero the rows of ``x [N, ...]`` where ``done [N]``."""
    return jnp.where(done.reshape(done.shape + (1,) * (x.ndim - 1)), jnp.zeros_like(x), x)


def trial_advantages(traj: Step, last_value: jax.Array, config: RL2Config
                     ) -> Tuple[jax.Array, jax.Array]:
    """GAE over the return of whole trials: ``(advantages[T, N], value targets[T, N])``.

    ``traj``: a rollout ``Step[T, N]``; ``last_value [N]``: the value of the state after its
    last step. Rewards are multiplied by ``config.reward_scale`` (the value net's target scale).
    A trial's end is terminal (the objective is the trial's finite return: nothing is
    bootstrapped past it and the recursion stops there); the end of an episode *inside* a trial
    is neither: ``gamma`` and ``gae_lambda`` run on across it, so an early episode's action is
    credited with the reward of the later episodes (Duan et al. 2016: the trial's return is
    what is optimized).
    """
    next_value = jnp.concatenate([traj.value[1:], last_value[None]])
    return gae(traj.reward * config.reward_scale, traj.value, next_value, traj.done, traj.done,
               config.gamma, config.gae_lambda)


def _optimizer(config: RL2Config) -> optax.GradientTransformation:
    return ppo_optimizer(config.max_grad_norm)


class RL2(Learner):
    """Recurrent PPO over trials. Holds static structure only; all data is in ``RL2State``."""

    def __init__(self, env: Env, episodes_per_trial: int = 1):
        self.env = env
        self.trial_env = Trial(env, episodes_per_trial)
        self.episodes_per_trial = int(episodes_per_trial)
        self.discrete = is_discrete(env.action_space)
        super().__init__()
        self.evaluate = jax.jit(self._evaluate, static_argnames="deterministic")

    def network(self, config: RL2Config) -> RecurrentActorCritic:
        return RecurrentActorCritic(self.env.action_size, self.discrete, config.hidden_size,
                                    tuple(config.encoder_sizes), tuple(config.head_sizes),
                                    config.input_reward_scale,
                                    0.0)  # init_log_std is set by init (a config leaf)

    # ----------------------------------------------------------------------------- acting
    def _fresh_carry(self, net, env_state, obs) -> ActorCarry:
        n = obs.shape[0]
        action = net.dummy_input(1, (n,)).prev_action
        zeros = jnp.zeros((n,), jnp.float32)
        return ActorCarry(env_state, obs, net.initial_hidden((n,)), action, zeros, zeros,
                          jnp.ones((n,), jnp.bool_))

    def _reset(self, net, key, space, num_envs: int, space_axis=None) -> ActorCarry:
        keys = jax.random.split(key, num_envs)
        env_state, obs = jax.vmap(self.trial_env.reset, in_axes=(0, space_axis))(keys, space)
        return self._fresh_carry(net, env_state, obs)

    def _rollout(self, net, params, carry: ActorCarry, key, space, num_steps: int,
                 space_axis=None, deterministic: bool = False) -> Tuple[ActorCarry, Step]:
        """``num_steps`` steps of the ``N`` envs in ``carry``; returns ``(carry, Step[T, N])``."""
        num_envs = carry.obs.shape[0]

        def one_step(c: ActorCarry, step_key):
            act_key, env_key = jax.random.split(step_key)
            x = c.inputs()
            hidden, dist, value = net.apply(params, c.hidden, x)
            action = net.head.mode(dist) if deterministic else net.head.sample(act_key, dist)
            env_state, obs, reward, done, info = self.trial_env.step_batch(
                jax.random.split(env_key, num_envs), c.env_state, action, space, space_axis)
            episode_done = info["episode_done"]
            step = Step(x, c.hidden, c.first, action, net.head.log_prob(dist, action), value,
                        reward, done, episode_done, info["episode_index"])
            nxt = ActorCarry(env_state, obs, _mask(done, hidden), _mask(done, action),
                             _mask(done, reward), _mask(done, episode_done.astype(jnp.float32)),
                             done)
            return nxt, step

        return jax.lax.scan(one_step, carry, jax.random.split(key, num_steps))

    # ----------------------------------------------------------------------------- init
    def _init(self, key: jax.Array, config: RL2Config, space) -> RL2State:
        net_key, env_key, key = jax.random.split(key, 3)
        net = self.network(config)
        params = net.init(net_key, net.initial_hidden((1,)),
                          net.dummy_input(self.env.observation_size, (1,)))
        params = set_log_std(params, config.init_log_std)  # no-op for a discrete policy
        return RL2State(params=params, opt_state=_optimizer(config).init(params),
                        carry=self._reset(net, env_key, space, config.num_envs), space=space,
                        key=key, update_step=jnp.int32(0))

    # ----------------------------------------------------------------------------- update
    def _update(self, state: RL2State, config: RL2Config) -> Tuple[RL2State, Dict[str, jax.Array]]:
        net = self.network(config)
        key, rollout_key, perm_key = jax.random.split(state.key, 3)
        carry, traj = self._rollout(net, state.params, state.carry, rollout_key, state.space,
                                    config.num_steps)
        _, _, last_value = net.apply(state.params, carry.hidden, carry.inputs())
        advantages, targets = trial_advantages(traj, last_value, config)

        L = config.chunk_len

        def to_sequences(x):  # [T, N, ...] -> [L, S, ...], S = (T / L) * N, chunk-major
            x = x.reshape((config.num_steps // L, L) + x.shape[1:])
            x = jnp.swapaxes(x, 0, 1)
            return x.reshape((L, config.num_sequences) + x.shape[3:])

        sequences = jax.tree.map(to_sequences, (traj.inputs, traj.first, traj.action,
                                                traj.log_prob, advantages, targets))
        h0 = traj.hidden[::L].reshape((config.num_sequences, config.hidden_size))
        # Minibatches are sets of whole sequences: samples are axis 1 of the time-major
        # sequences [L, S, ...] and axis 0 of the initial hidden states [S, H].
        inputs, first, action, log_prob, adv, target = sequences
        batch = Batch((h0, inputs, first), action, log_prob, adv, target)
        sample_axes = Batch((0, 1, 1), 1, 1, 1, 1, None)
        lr, ent_coef = config.learning_rate, config.ent_coef
        progress = state.update_step.astype(jnp.float32) / config.num_updates
        if config.anneal_lr:
            lr = lr * (1.0 - progress)
        if config.anneal_ent:
            ent_coef = ent_coef * (1.0 - progress)

        def loss_fn(params, minibatch: Batch):
            hidden0, inputs, first = minibatch.obs
            _, dist, value = unroll(net, params, hidden0, inputs, first)
            return clipped_surrogate_loss(
                net.head.log_prob(dist, minibatch.action), value, net.head.entropy(dist),
                minibatch, config.clip_eps, config.vf_coef, ent_coef)

        (params, opt_state), stats = run_epochs(
            loss_fn, _optimizer(config), lr, state.params, state.opt_state, batch, perm_key,
            config.num_epochs, config.num_minibatches, sample_axes)
        metrics = jax.tree.map(jnp.mean, stats)
        metrics.update(
            # Mean return of the latest finished trial of each env (0 before any finishes).
            trial_return=jnp.mean(carry.env_state.last_trial_return),
            trials_finished=traj.done.astype(jnp.float32).sum(),
            rollout_reward=jnp.mean(traj.reward),
        )
        new_state = state.replace(params=params, opt_state=opt_state, carry=carry, key=key,
                                  update_step=state.update_step + 1)
        # The Learner base checks losses, grad_norm and params for NaN/inf (state kept if any).
        return new_state, metrics

    # ----------------------------------------------------------------------------- export
    def make_recurrent_policy(self, state: RL2State, config: RL2Config,
                              deterministic: bool = False) -> "RecurrentPolicy":
        """One seed's trained GRU policy as pure functions over an explicit memory.

        The memory holds what training feeds the GRU besides the observation: its hidden state
        and the previous action, reward and episode-done flag (all zero at a trial's start).
        """
        net, params = self.network(config), state.params

        def initial(batch_shape: Tuple[int, ...] = ()) -> RecurrentMemory:
            x = net.dummy_input(self.env.observation_size, tuple(batch_shape))
            return RecurrentMemory(net.initial_hidden(tuple(batch_shape)), x.prev_action,
                                   x.prev_reward, x.prev_done)

        def act(key: jax.Array, memory: RecurrentMemory, obs: jax.Array):
            x = RecurrentInput(obs, memory.prev_action, memory.prev_reward, memory.prev_done)
            hidden, dist, _ = net.apply(params, memory.hidden, x)
            action = net.head.mode(dist) if deterministic else net.head.sample(key, dist)
            return action, memory._replace(hidden=hidden, prev_action=action)

        def observe(memory: RecurrentMemory, reward: jax.Array, episode_done: jax.Array,
                    trial_done: jax.Array) -> RecurrentMemory:
            memory = memory._replace(prev_reward=jnp.asarray(reward, jnp.float32),
                                     prev_done=jnp.asarray(episode_done, jnp.float32))
            return jax.tree.map(lambda m: _mask(jnp.asarray(trial_done), m), memory)

        return RecurrentPolicy(initial, act, observe)

    # ----------------------------------------------------------------------------- evaluation
    def _evaluate(self, params, config: RL2Config, tasks, key: jax.Array,
                  deterministic: bool = False) -> Dict[str, jax.Array]:
        """One fresh trial on each of ``M`` given tasks (``Params`` batched ``[M]``).

        Returns ``{"episode_returns": [M, episodes_per_trial], "trial_return": [M]}``:
        undiscounted returns of each episode of the first trial (from a zero hidden state).
        """
        net = self.network(config)
        num_tasks = jax.tree.leaves(tasks)[0].shape[0]
        space = fixed_space(tasks)  # batched: env i always draws task i
        reset_key, key = jax.random.split(key)
        carry = self._reset(net, reset_key, space, num_tasks, space_axis=0)
        _, traj = self._rollout(net, params, carry, key, space, self.trial_env.max_steps,
                                space_axis=0, deterministic=deterministic)
        # Count each env's first trial only: steps after its first trial-done are masked.
        ended_before = jnp.cumsum(traj.done, axis=0) - traj.done
        alive = (ended_before == 0).astype(jnp.float32)
        per_episode = jax.nn.one_hot(traj.episode_index, self.episodes_per_trial)
        episode_returns = jnp.einsum("tn,tne->ne", traj.reward * alive, per_episode)
        return {"episode_returns": episode_returns, "trial_return": episode_returns.sum(-1)}


class RecurrentMemory(NamedTuple):
    """What an RL² policy carries between steps: ``hidden [..., H]``, ``prev_action [...]``
    (int32) or ``[..., A]``, ``prev_reward [...]``, ``prev_done [...]`` (float32)."""

    hidden: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array
    prev_done: jax.Array


class RecurrentPolicy(NamedTuple):
    """A trained RL² policy as pure functions (``RL2.make_recurrent_policy``):

    - ``initial(batch_shape=()) -> memory``: the memory at the start of a trial;
    - ``act(key, memory, obs[..., obs_size]) -> (action, memory)``;
    - ``observe(memory, reward, episode_done, trial_done) -> memory``: after the env step; a
      finished trial zeroes the memory (a new task starts from scratch, as in training).
    """

    initial: Callable
    act: Callable
    observe: Callable


class RecurrentActor:
    """A ``RecurrentPolicy`` behind a numpy interface, one env at a time (jitted once)::

        actor = run["rl2"].recurrent(seed=0)       # or RecurrentActor(policy)
        actor.reset()                               # a new trial (a new task)
        action = actor.act(obs)                     # obs [obs_size] -> action (numpy)
        actor.observe(reward, done)                 # done: this step ended an episode
        actor.observe(reward, done, trial_done=True)   # ... or the whole trial
    """

    def __init__(self, policy: RecurrentPolicy, seed: int = 0):
        self.policy = policy
        self._act = jax.jit(policy.act)
        self._observe = jax.jit(policy.observe)
        self._key = jax.random.PRNGKey(seed)
        self.reset()

    def reset(self) -> None:
        self.memory = self.policy.initial(())

    def act(self, obs) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 1:
            raise ValueError(f"RecurrentActor acts on one observation [obs_size], got shape "
                             f"{obs.shape}")
        self._key, key = jax.random.split(self._key)
        action, self.memory = self._act(key, self.memory, obs)
        return np.asarray(action)

    def observe(self, reward: float, done: bool, trial_done: bool = False) -> None:
        self.memory = self._observe(self.memory, np.float32(reward), np.bool_(done),
                                    np.bool_(trial_done))
