import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.core import replay


def _example():
    return {"obs": jnp.zeros(3), "action": jnp.zeros(1), "reward": jnp.float32(0),
            "done": jnp.bool_(False)}


def _batch(start, n):
    ids = jnp.arange(start, start + n, dtype=jnp.float32)
    return {"obs": jnp.stack([ids] * 3, -1), "action": ids[:, None], "reward": ids,
            "done": (jnp.arange(n) % 2 == 0)}


def test_init_shapes_and_dtypes():
    buffer = replay.init(_example(), 5)
    assert buffer.capacity == 5
    assert buffer.data["obs"].shape == (5, 3) and buffer.data["reward"].shape == (5,)
    assert buffer.data["done"].dtype == jnp.bool_
    assert int(buffer.size) == 0 and int(buffer.position) == 0


def test_add_wraps_around_overwriting_the_oldest():
    buffer = replay.init(_example(), 5)
    buffer = replay.add(buffer, _batch(0, 3))       # slots 0..2 <- 0,1,2
    assert int(buffer.size) == 3 and int(buffer.position) == 3
    buffer = replay.add(buffer, _batch(3, 4))       # slots 3,4,0,1 <- 3,4,5,6
    assert int(buffer.size) == 5 and int(buffer.position) == 2
    np.testing.assert_array_equal(np.asarray(buffer.data["reward"]), [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(np.asarray(buffer.data["obs"][:, 1]), [5, 6, 2, 3, 4])
    buffer = replay.add(buffer, _batch(7, 5))       # a whole lap: slots 2,3,4,0,1 <- 7..11
    np.testing.assert_array_equal(np.asarray(buffer.data["reward"]), [10, 11, 7, 8, 9])
    assert int(buffer.size) == 5 and int(buffer.position) == 2


def test_add_is_jittable_and_compiles_once():
    add = jax.jit(replay.add)
    buffer = replay.init(_example(), 8)
    for i in range(5):
        buffer = add(buffer, _batch(3 * i, 3))
    assert add._cache_size() == 1
    np.testing.assert_array_equal(np.asarray(buffer.data["reward"]),
                                  [8, 9, 10, 11, 12, 13, 14, 7])  # 0..14 into 8 slots


def test_sample_draws_only_filled_slots_uniformly():
    buffer = replay.add(replay.init(_example(), 100), _batch(1, 7))  # slots 0..6 hold 1..7
    batch = jax.jit(replay.sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 7000)
    assert batch["obs"].shape == (7000, 3) and batch["action"].shape == (7000, 1)
    rewards = np.asarray(batch["reward"])
    assert set(np.unique(rewards)) == set(range(1, 8))  # never an empty (zero) slot
    counts = np.bincount(rewards.astype(int), minlength=8)[1:]
    assert counts.min() > 850 and counts.max() < 1150  # 1000 expected each
    # Rows stay whole: every field of a sampled row comes from the same slot.
    np.testing.assert_array_equal(np.asarray(batch["obs"][:, 0]), rewards)


def test_sample_and_add_vmap_over_seeds():
    buffers = jax.vmap(lambda _: replay.init(_example(), 4))(jnp.arange(2))
    batches = jax.tree.map(lambda x: jnp.stack([x, x + 10]), _batch(0, 3))
    buffers = jax.vmap(replay.add)(buffers, batches)
    out = jax.vmap(replay.sample, in_axes=(0, 0, None))(
        buffers, jax.random.split(jax.random.PRNGKey(1), 2), 50)
    assert out["reward"].shape == (2, 50)
    assert np.asarray(out["reward"][0]).max() < 3 and np.asarray(out["reward"][1]).min() >= 10


def test_empty_like_resets_counters():
    buffer = replay.empty_like(replay.add(replay.init(_example(), 4), _batch(1, 3)))
    assert int(buffer.size) == 0 and int(buffer.position) == 0
    assert float(jnp.abs(buffer.data["reward"]).sum()) == 0.0


@pytest.mark.parametrize("make_bad, message", [
    (lambda: replay.init(_example(), 0), "capacity must be >= 1"),
    (lambda: replay.init({}, 4), "no array leaves"),
    (lambda: replay.add(replay.init(_example(), 4), _batch(0, 5)), "exceeds the capacity"),
    (lambda: replay.add(replay.init(_example(), 4), {"obs": jnp.zeros((2, 3))}), "structure"),
    (lambda: replay.add(replay.init(_example(), 4),
                        dict(_batch(0, 2), obs=jnp.zeros((2, 4)))), "per-transition shape"),
    (lambda: replay.add(replay.init(_example(), 4),
                        dict(_batch(0, 2), reward=jnp.zeros(3))), "same leading size"),
    (lambda: replay.sample(replay.init(_example(), 4), jax.random.PRNGKey(0), 0),
     "batch_size must be >= 1"),
])
def test_bad_input_raises_a_clear_error(make_bad, message):
    with pytest.raises(ValueError, match=message):
        make_bad()
