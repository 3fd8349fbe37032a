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
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false",
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


def test_indivisible_env_batch_is_a_clear_error(sharded_run):
    assert sharded_run["indivisible_error"] == (
        "num_envs = 6 is not divisible by the 4 devices on mesh axis 'data'")
