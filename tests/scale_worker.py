"""Subprocess side of ``tests/test_scale.py``: forced host devices must be set before JAX starts.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \
        python -m tests.scale_worker            # prints one JSON line

Runs two chunks of PPO updates on Pendulum (randomized mass) on 1 device and on a 4-device mesh
(``--meshes 1,4``: more meshes), and reports the largest differences, where the leaves live, and
the error for a batch that does not split. ``--throughput`` instead times env steps/s of the
sharded chunk.
"""

import json
import sys
import time

import jax
import numpy as np

from envs.bandits import BernoulliBandit, bernoulli_task_space
from envs.pendulum import Pendulum
from envs.point_nav import PointNav2D
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import ShardedMAMLRL, ShardedPPO, ShardedRL2, data_mesh
from metarl_jax.stats import mean_ci95

CONFIG = PPOConfig(num_envs=8, num_steps=16, total_steps=8 * 16 * 4, num_epochs=2,
                   num_minibatches=4, hidden_sizes=(16,))
UPDATES = 3


def _max_diff(a, b) -> float:
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)) if np.size(x)]
    return max(diffs)


def _rel_diff(ref: dict, other: dict) -> float:
    """Largest ``|a - b| / (1 + |a|)`` over the metrics ``ref`` (``a``) and ``other`` (``b``)."""
    return max(float(np.max(np.abs(np.asarray(other[k]) - np.asarray(v))
                            / (1.0 + np.abs(np.asarray(v))))) for k, v in ref.items())


def _split_over(leaf, n) -> bool:
    """``leaf`` split along its leading axis into ``n`` shards on ``n`` devices."""
    s = leaf.sharding
    return (len(s.device_set) == n and (n == 1 or not s.is_fully_replicated)
            and s.shard_shape(leaf.shape)[0] == leaf.shape[0] // n)


def _replicated_over(leaf, n) -> bool:
    return len(leaf.sharding.device_set) == n and leaf.sharding.is_fully_replicated


def check(meshes=(4,)) -> dict:
    env = Pendulum()
    ppo = PPO(env)
    space = make_param_space(env, {"m": uniform(0.5, 1.5)})
    key = jax.random.PRNGKey(0)
    start = ppo.init(key, CONFIG, space)
    ref = start
    for _ in range(2):
        ref, ref_metrics = ppo.train_chunk(ref, CONFIG, num_updates=UPDATES)
    out = {"devices": jax.local_device_count(),
           "params_moved": _max_diff(start.params, ref.params)}
    for n in meshes:
        sppo = ShardedPPO(ppo, data_mesh(n))
        state = sppo.init(key, CONFIG, space)
        for _ in range(2):  # the second chunk takes the sharded output back in, no recompile
            state, metrics = sppo.train_chunk(state, CONFIG, num_updates=UPDATES)
        out[f"mesh{n}"] = {
            "state_diff": _max_diff(ref, state),
            "metrics_rel_diff": _rel_diff(ref_metrics, metrics),
            "env_state_sharded": all(_split_over(x, n) for x in
                                     jax.tree.leaves((state.env_state, state.obs))),
            "params_replicated": all(_replicated_over(x, n) for x in jax.tree.leaves(
                (state.params, state.opt_state, state.obs_stats, state.key))),
            "traces": sppo.traces["train_chunk"],
        }
    # Seeds as the split axis: 4 seeds, one per device, against each seed trained alone (the
    # program compiled above, so the reference costs no compile).
    keys = jax.random.split(key, 4)
    alone = [ppo.train_chunk(ppo.init(k, CONFIG, space), CONFIG, num_updates=UPDATES)
             for k in keys]
    ref_s, ref_sm = jax.tree.map(lambda *xs: np.stack(xs), *alone)
    sppo = ShardedPPO(ppo, data_mesh(4))
    states, sm = sppo.train_chunk_seeds(sppo.init_seeds(keys, CONFIG, space), CONFIG,
                                        num_updates=UPDATES)
    out["seeds4"] = {"state_diff": _max_diff(ref_s, states),
                     "metrics_rel_diff": _rel_diff(ref_sm, sm),
                     "seeds_sharded": all(_split_over(x, 4) for x in jax.tree.leaves(states)),
                     "traces": sppo.traces["train_chunk_seeds"]}
    try:
        ShardedPPO(ppo, data_mesh(4)).init(key, CONFIG.replace(num_envs=6), space)
        out["indivisible_error"] = None
    except ValueError as err:
        out["indivisible_error"] = str(err)
    out.update(check_meta_learners(key))
    return out


def check_meta_learners(key) -> dict:
    """MAML-RL with its meta-batch of 4 tasks split over 4 devices, and RL² with its 8 envs
    split, each against the same chunks on one device (two chunks: the sharded state goes back
    in without a recompile)."""
    out = {}
    maml = MAMLRL(PointNav2D(max_steps=10))
    mcfg = MAMLRLConfig(meta_batch_size=4, episodes_per_task=2, hidden_sizes=(8,))
    mspace = make_param_space(PointNav2D().default_params(), {"goal": uniform(-0.5, 0.5)})
    rl2 = RL2(BernoulliBandit(num_arms=3, max_steps=2), 2)
    rcfg = RL2Config(num_envs=8, num_steps=8, total_steps=128, num_epochs=1, num_minibatches=2,
                     hidden_size=8, seq_len=4)
    for name, learner, wrapper, config, space, moving in (
            ("maml", maml, ShardedMAMLRL, mcfg, mspace, lambda s: s.meta),
            ("rl2", rl2, ShardedRL2, rcfg, bernoulli_task_space(3), lambda s: s.params)):
        start = ref = learner.init(key, config, space)
        sharded = wrapper(learner, data_mesh(4))
        state = sharded.init(key, config, space)
        for _ in range(2):
            ref, ref_metrics = learner.train_chunk(ref, config, 1)
            state, metrics = sharded.train_chunk(state, config, 1)
        out[name] = {"moved": _max_diff(moving(start), moving(ref)),
                     "state_diff": _max_diff(ref, state),
                     "metrics_rel_diff": _rel_diff(ref_metrics, metrics),
                     "traces": sharded.traces["train_chunk"]}
    out["rl2"]["carry_sharded"] = all(_split_over(x, 4) for x in jax.tree.leaves(state.carry))
    out["rl2"]["rest_replicated"] = all(_replicated_over(x, 4) for x in jax.tree.leaves(
        (state.params, state.opt_state, state.key)))
    return out


def throughput(num_envs: int = 256, num_steps: int = 64, updates: int = 5,
               repeats: int = 3) -> dict:
    """Env steps/s of chunks of ``updates`` PPO updates per mesh size (after a compile and
    warm-up chunk): ``{devices: [mean, 95% CI half-width, per-chunk values]}``."""
    env = Pendulum()
    ppo = PPO(env)
    space = make_param_space(env, {"m": uniform(0.5, 1.5)})
    config = PPOConfig(num_envs=num_envs, num_steps=num_steps,
                       total_steps=num_envs * num_steps * 100, num_epochs=4, num_minibatches=4)
    out = {}
    for n in sorted({1, jax.local_device_count()}):
        sppo = ShardedPPO(ppo, data_mesh(n))
        state = sppo.init(jax.random.PRNGKey(0), config, space)
        state, _ = sppo.train_chunk(state, config, num_updates=updates)
        jax.block_until_ready(state)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            state, _ = sppo.train_chunk(state, config, num_updates=updates)
            jax.block_until_ready(state)
            rates.append(updates * config.batch_size / (time.perf_counter() - start))
        out[n] = [*mean_ci95(rates), rates]
    return out


if __name__ == "__main__":
    if "--throughput" in sys.argv:
        print(json.dumps(throughput()))
    else:  # "--meshes 1,4" checks those mesh sizes (default: 4)
        meshes = sys.argv[sys.argv.index("--meshes") + 1] if "--meshes" in sys.argv else "4"
        print(json.dumps(check(tuple(int(m) for m in meshes.split(",")))))
