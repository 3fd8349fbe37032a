"""Recurrent actor-critic: a GRU over ``(obs, previous action, previous reward, done)`` inputs.

The building block of RL^2 (Duan et al. 2016) and of any learner whose policy must remember: the
hidden state summarizes the history of the current trial, so the policy can identify the task
from its own experience. One call is one time step; ``unroll`` scans it over a sequence and
resets the hidden state wherever ``resets`` says a new trial starts.

Shapes (batch axes ``...`` are any leading axes, time-major ``[L, B]`` in ``unroll``)::

    RecurrentInput.obs         [..., obs_size] float32
    RecurrentInput.prev_action [...] int32 (discrete, one-hot encoded here) or [..., A] float32
    RecurrentInput.prev_reward [...] float32   (0 at the start of a trial)
    RecurrentInput.prev_done   [...] float32   (1 when the previous step ended an episode)
    hidden                     [..., hidden_size]
    net.apply(params, hidden, x) -> (hidden', dist, value[...])

``dist`` is what the heads in ``nets/policy_heads.py`` consume: ``logits[..., A]`` for a discrete
policy, ``(mean[..., A], log_std[..., A])`` for a continuous one (state-independent log-std).
Actor and critic share the GRU and have separate heads (linear, or small MLPs).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax.nets.mlp import MLP
from metarl_jax.nets.policy_heads import Categorical, DiagGaussian


class RecurrentInput(NamedTuple):
    """What the policy sees at one step (see the module docstring for shapes)."""

    obs: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array
    prev_done: jax.Array


class RecurrentActorCritic(nn.Module):
    """``(hidden, RecurrentInput) -> (hidden', dist, value)``, one time step.

    Attributes:
        action_size: number of discrete actions, or the continuous action dimension.
        discrete: categorical (True) or diagonal-Gaussian (False) policy.
        hidden_size: GRU state size.
        encoder_sizes: tanh MLP applied to the input features before the GRU (may be empty).
        head_sizes: tanh MLPs between the GRU output and the actor / critic outputs (one each;
            empty: linear heads).
        reward_scale: multiplies ``prev_reward`` in the input (keeps features O(1)).
        init_log_std: initial log-std of a continuous policy.
    """

    action_size: int
    discrete: bool
    hidden_size: int = 128
    encoder_sizes: Sequence[int] = ()
    head_sizes: Sequence[int] = ()
    reward_scale: float = 1.0
    init_log_std: float = 0.0

    def features(self, x: RecurrentInput) -> jax.Array:
        """The GRU input ``[..., obs_size + A + 2]``: obs, previous action, reward, done."""
        if self.discrete:
            prev_action = jax.nn.one_hot(x.prev_action, self.action_size, dtype=jnp.float32)
        else:
            prev_action = x.prev_action.astype(jnp.float32)
        return jnp.concatenate([
            x.obs.astype(jnp.float32), prev_action,
            (self.reward_scale * x.prev_reward)[..., None].astype(jnp.float32),
            x.prev_done[..., None].astype(jnp.float32),
        ], axis=-1)

    @nn.compact
    def __call__(self, hidden: jax.Array, x: RecurrentInput):
        h = self.features(x)
        for size in self.encoder_sizes:
            h = nn.tanh(nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(h))
        hidden, out = nn.GRUCell(self.hidden_size, name="gru")(hidden, h)
        policy_out = MLP(self.head_sizes, self.action_size, output_scale=0.01, name="actor")(out)
        value = MLP(self.head_sizes, 1, output_scale=1.0, name="critic")(out)[..., 0]
        if self.discrete:
            return hidden, policy_out, value
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (self.action_size,))
        return hidden, (policy_out, jnp.broadcast_to(log_std, policy_out.shape)), value

    def initial_hidden(self, batch_shape: Tuple[int, ...] = ()) -> jax.Array:
        """The hidden state at the start of a trial: zeros ``[*batch_shape, hidden_size]``."""
        return jnp.zeros(tuple(batch_shape) + (self.hidden_size,), jnp.float32)

    def dummy_input(self, obs_size: int, batch_shape: Tuple[int, ...] = ()) -> RecurrentInput:
        """A zero ``RecurrentInput`` (to initialize parameters)."""
        zeros = jnp.zeros(tuple(batch_shape), jnp.float32)
        action = (jnp.zeros(tuple(batch_shape), jnp.int32) if self.discrete
                  else jnp.zeros(tuple(batch_shape) + (self.action_size,), jnp.float32))
        return RecurrentInput(jnp.zeros(tuple(batch_shape) + (obs_size,), jnp.float32), action,
                              zeros, zeros)

    @property
    def head(self):
        return Categorical if self.discrete else DiagGaussian


def unroll(net: RecurrentActorCritic, params, hidden: jax.Array, inputs: RecurrentInput,
           resets: jax.Array):
    """Run ``net`` over a time-major sequence, zeroing the hidden state where ``resets``.

    Args:
        hidden: ``[B, H]``, the state before step 0 (e.g. stored at the start of a chunk).
        inputs: a ``RecurrentInput`` with leaves ``[L, B, ...]``.
        resets: ``[L, B]`` bool; where true the hidden state is zeroed *before* that step (the
            step starts a new trial), so gradients never flow across a trial boundary.

    Returns:
        ``(hidden_final[B, H], dist[L, B, ...], value[L, B])``. Gradients flow through the whole
        sequence (backpropagation through time over ``L`` steps).
    """

    def step(h, xs):
        x, reset = xs
        h = jnp.where(reset[:, None], jnp.zeros_like(h), h)
        h, dist, value = net.apply(params, h, x)
        return h, (dist, value)

    hidden, (dist, value) = jax.lax.scan(step, hidden, (inputs, resets))
    return hidden, dist, value
