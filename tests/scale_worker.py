"""Subprocess side of ``tests/test_scale.py``: forced host devices must be set before JAX starts.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \
        python -m tests.scale_worker RUN_ROOT        # prints one JSON line

Every comparison of a 4-device run with the one-device run, in one process, each learner's
program compiled once per device count (tiny sizes: compiling is most of the cost):

* ``dr_pendulum``: the experiment's quick preset (shrunk by overrides) run through its command
  line with ``--devices 1`` and ``--devices 4`` (one seed: each seed's 8 envs split 2 per
  device), then the 4-device run resumed from its next-to-last checkpoint of the ``dr`` phase;
* ``sac``: ``ShardedSAC`` (envs, replay buffer, sampled batches split) against ``SAC``;
* ``maml`` / ``rl2``: ``ShardedMAMLRL`` (4 tasks split) and ``ShardedRL2`` (8 envs' carry split);
* the error for a batch that does not split (no compile).

Prints the largest differences, where the leaves live and the traces. ``--throughput`` instead
times env steps/s of sharded PPO chunks per mesh size.
"""

import json
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

from envs.bandits import BernoulliBandit, bernoulli_task_space
from envs.pendulum import Pendulum
from envs.point_nav import PointNav2D
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import ShardedMAMLRL, ShardedPPO, ShardedRL2, ShardedSAC, data_mesh
from metarl_jax.stats import mean_ci95

CONFIG = PPOConfig(num_envs=8, num_steps=16, total_steps=8 * 16 * 4, num_epochs=2,
                   num_minibatches=4, hidden_sizes=(16,))
# dr_pendulum's quick preset at the sizes of CONFIG: 4 updates in chunks of 2 per phase.
DR_TINY = ("ppo.num_envs=8", "ppo.num_steps=16", "ppo.total_steps=512", "ppo.num_epochs=2",
           "ppo.num_minibatches=4", "ppo.hidden_sizes=16", "updates_per_chunk=2",
           "eval_episodes=1", "eval_mass_scales=0.5,1.5", "eval_length_scales=1.0",
           "eval_delays=0")
SAC_CONFIG = SACConfig(num_envs=8, num_steps=2, total_steps=8 * 2 * 10, batch_size=16,
                       buffer_size=64, learning_starts=16, hidden_sizes=(16,), utd=0.25)


def _max_diff(a, b) -> float:
    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)) if np.size(x)]
    return max(diffs)


def _rel_diff(ref: dict, other: dict) -> float:
    """Largest ``|a - b| / (1 + |a|)`` over the metrics ``ref`` (``a``) and ``other`` (``b``)."""
    return max(float(np.max(np.abs(np.asarray(other[k]) - np.asarray(v))
                            / (1.0 + np.abs(np.asarray(v))))) for k, v in ref.items())


def _split_over(leaf, n, axis=0) -> bool:
    """``leaf`` split along ``axis`` into ``n`` shards on ``n`` devices."""
    s = leaf.sharding
    return (len(s.device_set) == n and (n == 1 or not s.is_fully_replicated)
            and s.shard_shape(leaf.shape)[axis] == leaf.shape[axis] // n)


def _replicated_over(leaf, n) -> bool:
    return len(leaf.sharding.device_set) == n and leaf.sharding.is_fully_replicated


def _init_compiles(*learners) -> int:
    """Init programs compiled by the distinct ``learners`` (a wrapper's constrained copy, if it
    has one, beside the learner it wraps)."""
    return sum({id(x): x.traces.get("init", 0) for x in learners}.values())


def check_dr_pendulum(root: Path) -> dict:
    """dr_pendulum (shrunk quick preset) on 1 and on 4 devices, and the 4-device run resumed."""
    from experiments import dr_pendulum as dr
    from metarl_jax.io.cli import cli

    def run(*argv):
        rc = cli(dr.NAME, dr.main, dr.Config, dr.PRESETS, argv=list(argv))
        if rc:
            raise RuntimeError(f"dr_pendulum {argv} exited with {rc}")

    def policies(run_dir):
        return {p: dict(np.load(run_dir / "policies" / f"{p}.npz")) for p in ("nominal", "dr")}

    def lines(run_dir):
        return (run_dir / "metrics.jsonl").read_text().splitlines()

    one, four, resumed = root / "dr1", root / "dr4", root / "dr4_resumed"
    t = time.perf_counter()
    run("--preset", "quick", "--out", str(one), "--devices", "1", *DR_TINY)
    run("--preset", "quick", "--out", str(four), "--devices", "4", *DR_TINY)
    # Resume: the finished 4-device run, its last checkpoint of the "dr" phase and its outputs
    # removed, continues from the checkpoint before (restored into 4-device shardings).
    shutil.copytree(four, resumed)
    for name in ("summary.json", "heatmap.png", "curves.png", "policies"):
        path = resumed / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    dr_ckpts = resumed / "checkpoints" / "dr"
    steps = sorted(int(p.name) for p in dr_ckpts.iterdir())
    shutil.rmtree(dr_ckpts / str(steps[-1]))
    run("--resume", str(resumed), "--devices", "4")
    p1, p4, pr = policies(one), policies(four), policies(resumed)
    # load_run reads the 4-device checkpoints back onto one device (templates without shardings)
    from metarl_jax import load_run

    loaded = [load_run(d).policies["dr"].state.params for d in (one, four)]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (one, four, resumed)]
    weights = lambda p: {k: v for k, v in p.items() if k.startswith(("kernel", "bias"))}
    stats = lambda p: {k: v for k, v in p.items() if k.startswith("obs_")}
    return {
        "devices": [s["devices"] for s in summaries],
        "weights_diff": max(_max_diff(weights(p1[k]), weights(p4[k])) for k in p1),
        "obs_stats_rel_diff": max(_rel_diff(stats(p1[k]), stats(p4[k])) for k in p1),
        # how far training moved the parameters: the two phases start from the same init
        "phases_apart": _max_diff(p1["nominal"], p1["dr"]),
        "heldout_diff": abs(summaries[0]["results"]["dr"]["heldout_mean"]
                            - summaries[1]["results"]["dr"]["heldout_mean"]),
        "loaded_params_diff": _max_diff(*loaded),
        "resumed_from": steps[-2],
        "resumed_params_equal": _max_diff(p4, pr) == 0.0,
        "resumed_metrics_equal": lines(four) == lines(resumed),
        "seconds": round(time.perf_counter() - t, 1),
    }


def check_sac(key) -> dict:
    """``ShardedSAC`` on 4 devices against ``SAC`` on one: two chunks of 3 updates each."""
    env = Pendulum()
    sac = SAC(env)
    space = make_param_space(env, {"m": uniform(0.5, 1.5)})
    t = time.perf_counter()
    start = ref = sac.init(key, SAC_CONFIG, space)
    ssac = ShardedSAC(sac, data_mesh(4))
    state = ssac.init(key, SAC_CONFIG, space)
    for _ in range(2):  # the second chunk takes the sharded output back in, no recompile
        ref, ref_metrics = sac.train_chunk(ref, SAC_CONFIG, num_updates=3)
        state, metrics = ssac.train_chunk(state, SAC_CONFIG, num_updates=3)
    return {
        "moved": _max_diff(start.params, ref.params),
        "state_diff": _max_diff(ref, state),
        "metrics_rel_diff": _rel_diff(ref_metrics, metrics),
        "grad_steps": float(np.asarray(ref_metrics["critic_loss"] != 0).sum()),
        "split": all(_split_over(x, 4) for x in jax.tree.leaves(
            (state.env_state, state.obs, state.buffer.data))),
        "replicated": all(_replicated_over(x, 4) for x in jax.tree.leaves(
            (state.params, state.target_critic, state.opt_state, state.key,
             state.buffer.position, state.buffer.size))),
        "traces": ssac.traces["train_chunk"],
        # the wrapper inits through the unpinned learner: its one init program, not a second
        "init_compiles": _init_compiles(sac, ssac.learner),
        "seconds": round(time.perf_counter() - t, 1),
    }


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
        t = time.perf_counter()
        start = ref = learner.init(key, config, space)
        sharded = wrapper(learner, data_mesh(4))
        state = sharded.init(key, config, space)
        for _ in range(2):
            ref, ref_metrics = learner.train_chunk(ref, config, 1)
            state, metrics = sharded.train_chunk(state, config, 1)
        out[name] = {"moved": _max_diff(moving(start), moving(ref)),
                     "state_diff": _max_diff(ref, state),
                     "metrics_rel_diff": _rel_diff(ref_metrics, metrics),
                     "traces": sharded.traces["train_chunk"],
                     "init_compiles": _init_compiles(learner, sharded.learner),
                     "seconds": round(time.perf_counter() - t, 1)}
    out["rl2"]["carry_sharded"] = all(_split_over(x, 4) for x in jax.tree.leaves(state.carry))
    out["rl2"]["rest_replicated"] = all(_replicated_over(x, 4) for x in jax.tree.leaves(
        (state.params, state.opt_state, state.key)))
    return out


def check(root: Path) -> dict:
    key = jax.random.PRNGKey(0)
    env = Pendulum()
    space = make_param_space(env, {"m": uniform(0.5, 1.5)})
    out = {"devices": jax.local_device_count()}
    try:
        ShardedPPO(PPO(env), data_mesh(4)).init(key, CONFIG.replace(num_envs=6), space)
        out["indivisible_error"] = None
    except ValueError as err:
        out["indivisible_error"] = str(err)
    out["dr_pendulum"] = check_dr_pendulum(root)
    out["sac"] = check_sac(key)
    out.update(check_meta_learners(key))
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
    else:
        print(json.dumps(check(Path(sys.argv[1]))))
