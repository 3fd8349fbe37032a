"""One process of the 2-process ``jax.distributed`` run of ``tests/test_distributed.py``.

    JAX_PLATFORMS=cpu python -m tests.distributed_worker PORT PROCESS_ID RUN_ROOT

Two processes (one CPU device each, gloo collectives) join through the command line of
``tests.toy_experiment`` (``--coordinator/--num-processes/--process-id``; its one-device state
cannot be checkpointed by several processes, which must end in a clear error, exit status 1),
run ``experiments.dr_pendulum`` (quick, shrunk as in ``tests/scale_worker.py``) through its
command line -- it trains on the mesh over both processes' devices -- then form one 2-device
mesh and train PPO on Pendulum with the env batch split between them (``ShardedPPO`` over
``global_mesh``):

* ``run``: ``start_run`` -> ``train_phase`` (4 updates, a checkpoint every 2) -> ``finish``:
  the uninterrupted run;
* ``resumed``: the same phase stopped after 2 updates (``Interrupted``, checkpoint at 2), then
  ``train_phase`` again, which restores the checkpoint into the init state's shardings and
  finishes the run.

Before that, one chunk from a fresh state checks that the chunk donates its input state. Prints
one JSON line: hashes of this process's copy of the parameters (replicated: both
processes must agree) and of its env-state shard (its own rows), which rows it owns, whether the
resumed run's state equals the uninterrupted one bit for bit, and the restored shardings.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from metarl_jax.scale.distributed import (
    DistributedSpec,
    global_mesh,
    initialize,
    is_primary,
    process_slice,
)

NUM_UPDATES, CHUNK = 4, 2


def _hash(tree) -> str:
    """sha256 of the bytes of this process's shards of every leaf (replicated: its one copy)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        for shard in sorted(leaf.addressable_shards, key=lambda s: str(s.index)):
            h.update(np.ascontiguousarray(np.asarray(shard.data)).tobytes())
    return h.hexdigest()


def _rows(leaf) -> list:
    """``[start, stop)`` of the leading-axis rows this process holds of ``leaf``."""
    idx = leaf.addressable_shards[0].index[0]
    return [idx.start or 0, leaf.shape[0] if idx.stop is None else idx.stop]


def main(port: int, process_id: int, root: Path) -> dict:
    t0 = time.perf_counter()
    t = {}
    # The job starts the way a user starts one, from the command line: the toy experiment
    # (state on one device, not on a mesh) runs its first chunk and then stops with a clear
    # error at its first checkpoint.
    from metarl_jax.io.cli import cli
    from tests import toy_experiment as toy

    cli_rc = cli(toy.NAME, toy.main, toy.Config, toy.PRESETS, argv=[
        "--out", str(root / "toy"), "--coordinator", f"127.0.0.1:{port}",
        "--num-processes", "2", "--process-id", str(process_id)])
    initialize(DistributedSpec(f"127.0.0.1:{port}", 2, process_id))  # the same job: a no-op
    t["initialized"] = time.perf_counter()
    # An experiment wired for devices (--devices; here every device of both processes) trains
    # through the 2-process mesh, checkpoints, evaluates, and process 0 writes the run.
    from experiments import dr_pendulum as dr
    from tests.scale_worker import DR_TINY

    dr_rc = cli(dr.NAME, dr.main, dr.Config, dr.PRESETS, argv=[
        "--preset", "quick", "--out", str(root / "dr"), "--coordinator", f"127.0.0.1:{port}",
        "--num-processes", "2", "--process-id", str(process_id), *DR_TINY])
    t["dr_pendulum"] = time.perf_counter()
    from envs.pendulum import Pendulum
    from metarl_jax.algos.ppo import PPO
    from metarl_jax.io import experiment
    from metarl_jax.io.cli import RunArgs
    from metarl_jax.io.training_loop import Interrupted, train_phase
    from metarl_jax.randomization.distributions import uniform
    from metarl_jax.randomization.param_space import make_param_space
    from metarl_jax.scale import ShardedPPO
    from tests.scale_worker import CONFIG

    t["imports"] = time.perf_counter()
    env = Pendulum()
    sppo = ShardedPPO(PPO(env), global_mesh())
    space = make_param_space(env, {"m": uniform(0.5, 1.5)})
    init = lambda: sppo.init(jax.random.PRNGKey(0), CONFIG, space)  # noqa: E731
    chunk = lambda s, n: sppo.train_chunk(s, CONFIG, n)  # noqa: E731

    def phase(run_dir, stop_after=None):
        return train_phase(run_dir, "ppo", init, chunk, NUM_UPDATES, CHUNK, CONFIG.batch_size,
                           stop_after_updates=stop_after)

    args = RunArgs(config=CONFIG, preset="quick", seed=0, out=root / "run", resume=None)
    run_dir, _, _ = experiment.start_run("distributed_ppo", args)
    first = init()
    jax.block_until_ready(chunk(first, CHUNK))
    donated = all(x.is_deleted() for x in jax.tree.leaves(first))  # the chunk reused them
    t["init"] = time.perf_counter()
    state = phase(run_dir)
    t["run"] = time.perf_counter()
    params = _hash(state.params)
    experiment.finish(run_dir, {"params_sha256": params, "written_by": jax.process_index()})

    resumed_dir = root / "resumed"
    resumed_dir.mkdir(exist_ok=True)
    try:
        phase(resumed_dir, stop_after=CHUNK)
        stopped = False
    except Interrupted:
        stopped = True
    resumed = phase(resumed_dir)
    t["resumed"] = time.perf_counter()
    n = CONFIG.num_envs
    return {
        "cli_rc": cli_rc, "dr_rc": dr_rc,
        "process": jax.process_index(), "processes": jax.process_count(),
        "primary": is_primary(), "devices": jax.device_count(),
        "params_sha256": params, "env_sha256": _hash((state.env_state, state.obs)),
        "rows": _rows(state.obs),
        "expected_rows": [process_slice(n).start, process_slice(n).stop],
        "params_replicated": all(x.sharding.is_fully_replicated
                                 for x in jax.tree.leaves(state.params)),
        "stopped": stopped,
        "resumed_rows": _rows(resumed.obs),
        "resumed_equal": (_hash(resumed) == _hash(state)),
        "traces": sppo.traces["train_chunk"],
        "state_donated": donated,
        "seconds": {k: round(v - t0, 2) for k, v in t.items()},
    }


if __name__ == "__main__":
    out = main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
    print(json.dumps(out), flush=True)
