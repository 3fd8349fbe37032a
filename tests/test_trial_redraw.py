"""``Trial.step_batch`` draws a task only for trials that ended, also under the seeds' ``vmap``
(where a batch-level ``lax.cond`` would otherwise become a select that draws on every step).
Draws are counted on the host by a test-only task space whose ``sample`` reports each call."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.tabular_mdp import TabularMDP, TabularMDPTaskSpace, tabular_mdp_task_space
from metarl_jax.core.trial import Trial
from metarl_jax.randomization.param_space import fixed_space

SEEDS, ENVS, STEPS = 2, 3, 14  # trials of 2 x 3 = 6 steps: they end on steps 6 and 12


@struct.dataclass
class CountingSpace(TabularMDPTaskSpace):
    """The tabular MDP prior, plus one host callback per task drawn (``sample`` of one task)."""

    def sample(self, key, shape=()):
        params = super().sample(key, shape)
        # A value that depends on the key, so that under vmap it is batched: one per task.
        one = jnp.ones(shape, jnp.int32) + 0 * jax.random.key_data(key).ravel()[0].astype(jnp.int32)
        jax.debug.callback(_DRAWS.append, one)
        return params


_DRAWS = []


def _setup():
    base = tabular_mdp_task_space(4, 2)
    counting = CountingSpace(base.reward_prior_mean, base.reward_prior_std, base.reward_std, 4, 2)
    return Trial(TabularMDP(num_states=4, num_actions=2, max_steps=3), 2), base, counting


def test_tasks_are_drawn_once_per_ended_trial_under_the_seeds_vmap():
    trial, base, counting = _setup()

    # The states come in batched over seeds, as a learner's do under train_chunk_seeds: made
    # inside the vmapped function, their step counters would be unbatched constants and the
    # predicate of the cond with them (nothing to hoist then).
    reset = jax.vmap(jax.vmap(trial.reset, in_axes=(0, None)), in_axes=(0, None))
    keys = jax.random.split(jax.random.PRNGKey(0), SEEDS * (ENVS + 1)).reshape(SEEDS, ENVS + 1, -1)
    states, _ = jax.jit(reset)(keys[:, 1:], base)  # not counted: the plain prior

    def run(key, state):  # one seed: STEPS batch steps
        def body(state, k):
            action = jnp.zeros((ENVS,), jnp.int32)
            state, _, _, done, _ = trial.step_batch(jax.random.split(k, ENVS), state, action,
                                                    counting)
            return state, done

        return jax.lax.scan(body, state, jax.random.split(key, STEPS))[1]

    _DRAWS.clear()
    done = jax.jit(jax.vmap(run))(keys[:, 0], states)
    jax.effects_barrier()
    ended = int(np.asarray(done).sum())
    assert ended == SEEDS * ENVS * (STEPS // 6)  # every env's trial ends on steps 6 and 12
    draws = sum(int(np.sum(x)) for x in _DRAWS)
    assert draws == ended, f"{draws} tasks drawn for {ended} ended trials"


def test_step_batch_under_the_seeds_vmap_equals_the_per_env_step():
    """Bit-identical streams: the seeds-merged batch step against ``vmap(vmap(step))``, with
    trials out of phase (only some end on a given step) and a per-seed task space."""
    trial, base, _ = _setup()
    space = jax.tree.map(lambda x: jnp.stack([x, 2.0 * x]), base)  # [SEEDS] prior leaves
    keys = jax.random.split(jax.random.PRNGKey(1), SEEDS * ENVS).reshape(SEEDS, ENVS, -1)
    state, _ = jax.vmap(jax.vmap(trial.reset, in_axes=(0, None)))(keys, space)
    state = state.replace(episode=jnp.array([[0, 1, 0], [1, 1, 0]], jnp.int32))
    per_env = jax.vmap(jax.vmap(trial.step, in_axes=(0, 0, 0, None)))
    batch = jax.vmap(trial.step_batch)

    @jax.jit
    def both(state, key):
        def body(carry, k):
            a, b = carry
            ks = jax.random.split(k, SEEDS * ENVS).reshape(SEEDS, ENVS, -1)
            action = jnp.ones((SEEDS, ENVS), jnp.int32)
            a, *out_a = per_env(ks, a, action, space)
            b, *out_b = batch(ks, b, action, space)
            return (a, b), (out_a, out_b)

        return jax.lax.scan(body, (state, state), jax.random.split(key, 8))

    (a, b), (out_a, out_b) = both(state, jax.random.PRNGKey(2))
    chex.assert_trees_all_equal((a, out_a), (b, out_b))
    assert 0 < int(np.asarray(out_a[2]).sum()) < 8 * SEEDS * ENVS  # some trials ended, not all


def test_step_batch_with_per_env_tasks_shared_over_the_outer_vmap():
    """``space_axis=0`` (task ``i`` for env ``i``, as ``RL2.evaluate`` plays held-out tasks) under
    an outer ``vmap`` that batches the states but not the tasks (lanes of configs evaluated on
    the same tasks): each lane equals its own unvmapped ``step_batch`` (the rule used to pass
    the ``[N]`` tasks next to ``[S * N]`` merged envs and fail)."""
    trial, base, _ = _setup()
    tasks = base.sample(jax.random.PRNGKey(3), (ENVS,))  # [N] tasks, not batched over lanes
    space = fixed_space(tasks)
    keys = jax.random.split(jax.random.PRNGKey(4), SEEDS * ENVS).reshape(SEEDS, ENVS, -1)
    state, _ = jax.vmap(jax.vmap(trial.reset, in_axes=(0, 0)), in_axes=(0, None))(keys, space)
    state = state.replace(episode=jnp.array([[0, 1, 0], [1, 1, 0]], jnp.int32))
    action = jnp.ones((SEEDS, ENVS), jnp.int32)
    step = lambda k, s, a: trial.step_batch(k, s, a, space, 0)
    lanes = jax.jit(jax.vmap(step))(keys, state, action)
    for i in range(SEEDS):
        one = jax.jit(step)(keys[i], jax.tree.map(lambda x: x[i], state), action[i])
        chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], lanes), one)
