"""Tests for metarl_jax.io.checkpoint: bitwise round trips, retention, corruption, kills."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from metarl_jax.io import CHECKPOINT_DIR, Checkpointer, CheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]


@struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    typed_key: jax.Array
    step: jax.Array
    history: jax.Array
    num_updates: int = struct.field(pytree_node=False, default=0)


def make_train_state(seed: int) -> TrainState:
    key = jax.random.PRNGKey(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w": jax.random.normal(k1, (4, 3)), "b": jnp.zeros(3),
              "layers": [jax.random.normal(k2, (3,)), jnp.arange(2, dtype=jnp.int32)]}
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3 if p.dtype == jnp.float32
                         else jnp.zeros_like(p), params)
    _, opt_state = tx.update(grads, opt_state, params)  # non-trivial mu, nu, count
    history = jnp.array([1.0, -0.0, jnp.nan, 1e-40, jnp.inf], jnp.float32)
    return TrainState(params, opt_state, k3, jax.random.key(seed + 1), jnp.int32(seed * 7),
                      history, num_updates=5)


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_checkpoint_round_trip_is_bitwise(tmp_path):
    state = make_train_state(1)
    with Checkpointer(tmp_path / CHECKPOINT_DIR) as ckpt:
        assert ckpt.latest_step() is None
        ckpt.save(10, state, {"phase": "train", "updates": np.int64(5)})
    # A fresh Checkpointer stands for a resumed process.
    with Checkpointer(tmp_path / CHECKPOINT_DIR) as ckpt:
        assert ckpt.latest_step() == 10
        restored, extra = ckpt.restore(None, like=make_train_state(2))
    assert extra == {"phase": "train", "updates": 5}
    assert isinstance(restored, TrainState) and restored.num_updates == 5
    assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
    assert restored.key.dtype == jnp.uint32
    assert_bitwise_equal(restored, state)
    # The restored state keeps working with optax.
    tx = optax.adam(1e-2)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, state.params), restored.opt_state,
                           restored.params)
    assert np.isfinite(np.asarray(updates["w"])).all()


def test_checkpoint_latest_step_and_max_to_keep(tmp_path):
    state = make_train_state(0)
    with Checkpointer(tmp_path / "ck", max_to_keep=2) as ckpt:
        for step in (1, 2, 3, 4):
            ckpt.save(step, state.replace(step=jnp.int32(step)), {"s": step})
        ckpt.wait()
        assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
        restored, extra = ckpt.restore(3, like=state)
        assert int(restored.step) == 3 and extra == {"s": 3}
        with pytest.raises(CheckpointError, match=r"step 1 .*available steps: \[3, 4\]"):
            ckpt.restore(1, like=state)
        with pytest.raises(CheckpointError, match="already exists"):
            ckpt.save(4, state)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == ["3", "4"]


def _corrupt_by_deleting_data(step_dir: Path):
    for f in (step_dir / "state" / "d").iterdir():
        f.unlink()


def _corrupt_by_garbling_metadata(step_dir: Path):
    (step_dir / "state" / "_METADATA").write_bytes(b"\x00garbage")


def _corrupt_by_deleting_meta(step_dir: Path):
    (step_dir / "meta" / "metadata").unlink()


def _corrupt_by_removing_state(step_dir: Path):
    import shutil
    shutil.rmtree(step_dir / "state")


# A failed tensorstore read leaves orbax's other pending reads to be collected later, which
# Python reports as "Event loop is closed"; collect them here, where the warning is expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("corrupt", [_corrupt_by_deleting_data, _corrupt_by_garbling_metadata,
                                     _corrupt_by_deleting_meta, _corrupt_by_removing_state])
def test_corrupt_checkpoint_raises_checkpoint_error(tmp_path, corrupt):
    state = make_train_state(0)
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(5, state)
    corrupt(tmp_path / "ck" / "5")
    with Checkpointer(tmp_path / "ck") as ckpt:
        with pytest.raises(CheckpointError, match="checkpoint step 5"):
            ckpt.restore(5, like=state)
    gc.collect()


def test_restore_into_wrong_structure_names_the_leaves(tmp_path):
    state = make_train_state(0)
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(1, state)
        with pytest.raises(CheckpointError, match=r"/step: saved int32\[\], `like` has float32"):
            ckpt.restore(1, like=state.replace(step=jnp.float32(0)))
        with pytest.raises(CheckpointError, match=r"/history: saved float32\[5\]"):
            ckpt.restore(1, like=state.replace(history=jnp.zeros(4)))
        smaller = state.replace(params={k: v for k, v in state.params.items() if k != "b"})
        with pytest.raises(CheckpointError, match="not in `like`: /params/b"):
            ckpt.restore(1, like=smaller)


KILL_SCRIPT = """
import os, signal, sys, time
import jax.numpy as jnp
from metarl_jax.io import Checkpointer
directory = sys.argv[1]
ckpt = Checkpointer(directory)
ckpt.save(1, {"w": jnp.arange(8, dtype=jnp.float32)}, {"phase": "a"})
ckpt.wait()
ckpt.save(2, {"w": jnp.ones(48 * 2**20, jnp.float32)}, {"phase": "b"})  # ~190 MB
deadline = time.time() + 20
while not any(n.startswith("2.") for n in os.listdir(directory)) and time.time() < deadline:
    time.sleep(0.001)
print("in-flight" if not os.path.exists(os.path.join(directory, "2")) else "finished", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_save_leaves_last_complete_checkpoint(tmp_path):
    directory = tmp_path / "ck"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(directory)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "in-flight", proc.stdout + proc.stderr
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith("2.")]
    assert leftovers, "the interrupted save should have left its temporary folder"

    with Checkpointer(directory) as ckpt:
        assert ckpt.latest_step() == 1
        state, extra = ckpt.restore(None, like={"w": jnp.zeros(8, jnp.float32)})
        assert extra == {"phase": "a"}
        np.testing.assert_array_equal(state["w"], np.arange(8, dtype=np.float32))
        assert not any(p.name.startswith("2.") for p in directory.iterdir())  # cleaned up
        ckpt.save(2, {"w": jnp.zeros(3)})  # the interrupted step can be written again
    with Checkpointer(directory) as ckpt:
        assert ckpt.all_steps() == [1, 2]
