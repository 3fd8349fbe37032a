"""Data-parallel PPO over 4 forced host devices equals the single-device run (``metarl_jax.scale``).

``--xla_force_host_platform_device_count`` only acts before JAX starts, so the runs happen in a
subprocess (``tests/scale_worker.py``) that prints its findings as one JSON line.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STATE_ATOL = 1e-5  # float32 reduction order differs across devices; nothing else may
METRICS_RTOL = 1e-5  # |a - b| / (1 + |a|), per metric


@pytest.fixture(scope="module")
def sharded_run():
    import jax  # conftest has set the suite's persistent compilation cache; the worker shares it

    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false",
               JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                          + " --xla_force_host_platform_device_count=4").strip())
    proc = subprocess.run([sys.executable, "-m", "tests.scale_worker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_equal_one_device(sharded_run):
    run = sharded_run["mesh4"]
    assert sharded_run["devices"] == 4
    assert sharded_run["params_moved"] > 1e-3  # the updates did something to compare
    assert run["state_diff"] <= STATE_ATOL, run
    assert run["metrics_rel_diff"] <= METRICS_RTOL, run


def test_env_batch_sharded_parameters_replicated_one_compile(sharded_run):
    run = sharded_run["mesh4"]
    assert run["env_state_sharded"], "env state / obs leaves not split [N/4] over 4 devices"
    assert run["params_replicated"], "params / optimizer / obs stats / key not replicated"
    assert run["traces"] == 1


def test_seeds_split_over_four_devices_equal_one_device(sharded_run):
    run = sharded_run["seeds4"]
    assert run["seeds_sharded"] and run["traces"] == 1
    assert run["state_diff"] <= STATE_ATOL, run
    assert run["metrics_rel_diff"] <= METRICS_RTOL, run


def test_rl2_with_its_envs_split_over_four_devices_equals_one_device(sharded_run):
    run = sharded_run["rl2"]
    assert run["moved"] > 1e-4 and run["traces"] == 1
    assert run["carry_sharded"] and run["rest_replicated"]
    assert run["state_diff"] <= STATE_ATOL, run
    assert run["metrics_rel_diff"] <= METRICS_RTOL, run


def test_maml_rl_with_its_tasks_split_over_four_devices_equals_one_device(sharded_run):
    """TRPO's outer step solves with the Fisher by conjugate gradient, which amplifies float32
    reduction-order differences (~1e-7) in the task mean: observed 9e-4 of the parameters'
    movement after two meta-iterations (3.5e-4 absolute; 4.8e-5 after one), on the 2-core CPU.
    A bug (one of the 4 tasks dropped or counted twice, a wrong mean) changes the meta-gradient
    by ~25%, hence the parameters by the order of their movement."""
    run = sharded_run["maml"]
    assert run["moved"] > 1e-2 and run["traces"] == 1
    assert run["state_diff"] <= 1e-2 * run["moved"], run
    assert run["metrics_rel_diff"] <= 1e-2, run


def test_indivisible_env_batch_is_a_clear_error(sharded_run):
    assert sharded_run["indivisible_error"] == (
        "num_envs = 6 is not divisible by the 4 devices on mesh axis 'data'")


def test_mesh_and_sharding_spec_in_process():
    """No compile: the mesh checks its size, and the spec splits exactly env_state and obs."""
    import jax
    from jax.sharding import PartitionSpec as P

    from envs.pendulum import Pendulum
    from metarl_jax.algos.ppo import PPO, PPOConfig
    from metarl_jax.randomization.param_space import fixed_space
    from metarl_jax.scale import check_divisible, data_mesh, ppo_state_sharding

    with pytest.raises(ValueError, match="num_devices must be in"):
        data_mesh(jax.local_device_count() + 1)
    mesh = data_mesh(1)
    check_divisible(7, mesh)  # one device takes any batch
    env = Pendulum()
    config = PPOConfig(num_envs=4, num_steps=8, total_steps=32, hidden_sizes=(8,))
    shapes = jax.eval_shape(lambda k: PPO(env)._init(k, config, fixed_space(env.default_params())),
                            jax.random.PRNGKey(0))
    spec = ppo_state_sharding(shapes, mesh)
    split = jax.tree.leaves((spec.env_state, spec.obs))
    rest = jax.tree.leaves(spec.replace(env_state=None, obs=None))
    assert split and all(s.spec == P("data") for s in split)
    assert rest and all(s.spec == P() for s in rest)
    assert len(split) + len(rest) == len(jax.tree.leaves(shapes))
