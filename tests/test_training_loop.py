"""The chunked training loop with a toy learner: logging, checkpoints, resume, NaN stop."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.core.nonfinite import NonFiniteError
from metarl_jax.io.checkpoint import Checkpointer, CheckpointError
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE
from metarl_jax.io.training_loop import Interrupted, train_phase


def _toy(bad_update=None):
    """State counts updates; the metric is the update index; ``bad_update`` sets the NaN flag."""

    def init():
        return {"x": jnp.float32(0.0), "n": jnp.int32(0)}

    def chunk(state, n):
        idx = np.arange(int(state["n"]) + 1, int(state["n"]) + n + 1)
        flags = np.where(idx == bad_update, 1, 0) if bad_update else np.zeros(n, int)
        good = idx[flags == 0] if bad_update in idx else idx
        last = int(good[-1]) if good.size else int(state["n"])
        if bad_update in idx:
            last = bad_update - 1
        return ({"x": jnp.float32(last * 0.5), "n": jnp.int32(last)},
                {"value": idx.astype(np.float32), "nonfinite_flags": flags})

    return init, chunk


def test_logs_every_update_and_checkpoints_every_chunk(tmp_path):
    init, chunk = _toy()
    state = train_phase(tmp_path, "a", init, chunk, num_updates=10, updates_per_chunk=4,
                        steps_per_update=100, show=("value",))
    assert float(state["x"]) == 5.0
    lines = read_metrics(tmp_path / METRICS_FILE)
    assert [line["update"] for line in lines] == list(range(1, 11))
    assert [line["step"] for line in lines][-1] == 1000
    with Checkpointer(tmp_path / CHECKPOINT_DIR / "a") as ckpt:
        assert ckpt.all_steps() == [8, 10]  # max_to_keep=2; chunks of 2 (even_chunk_size)


def test_finished_phase_is_skipped_and_interrupted_one_resumes(tmp_path):
    init, chunk = _toy()
    with pytest.raises(Interrupted) as info:
        train_phase(tmp_path, "a", init, chunk, 10, 4, 1, stop_after_updates=4)
    assert info.value.update == 4
    state = train_phase(tmp_path, "a", init, chunk, 10, 4, 1)
    assert int(state["n"]) == 10
    assert [line["update"] for line in read_metrics(tmp_path / METRICS_FILE)] == list(range(1, 11))
    calls = []
    again = train_phase(tmp_path, "a", init, lambda s, n: calls.append(n), 10, 4, 1)
    assert calls == [] and int(again["n"]) == 10


def test_nonfinite_stops_logs_the_good_updates_and_keeps_the_last_good_checkpoint(tmp_path):
    init, chunk = _toy(bad_update=7)
    with pytest.raises(NonFiniteError, match="non-finite loss at update 7 of phase 'a'"):
        train_phase(tmp_path, "a", init, chunk, 12, 4, 1)
    assert [line["update"] for line in read_metrics(tmp_path / METRICS_FILE)] == [1, 2, 3, 4, 5, 6]
    with Checkpointer(tmp_path / CHECKPOINT_DIR / "a") as ckpt:
        assert ckpt.all_steps() == [4]


def _garble(step_dir):
    (step_dir / "state" / "_METADATA").write_bytes(b"\x00garbage")


def test_corrupt_latest_checkpoint_falls_back_to_the_older_kept_one(tmp_path, capsys):
    init, chunk = _toy()
    with pytest.raises(Interrupted):
        train_phase(tmp_path, "a", init, chunk, 12, 4, 1, stop_after_updates=8)
    _garble(tmp_path / CHECKPOINT_DIR / "a" / "8")
    state = train_phase(tmp_path, "a", init, chunk, 12, 4, 1)
    err = capsys.readouterr().err
    assert "checkpoint step 8" in err and "falling back to checkpoint step 4" in err
    assert int(state["n"]) == 12
    assert [line["update"] for line in read_metrics(tmp_path / METRICS_FILE)] == list(range(1, 13))


def test_every_checkpoint_corrupt_raises_and_changes_nothing(tmp_path):
    init, chunk = _toy()
    with pytest.raises(Interrupted):
        train_phase(tmp_path, "a", init, chunk, 12, 4, 1, stop_after_updates=8)
    for step in (4, 8):
        _garble(tmp_path / CHECKPOINT_DIR / "a" / str(step))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="no readable checkpoint of phase 'a'"):
        train_phase(tmp_path, "a", init, chunk, 12, 4, 1)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_chunks_divide_the_run_so_the_training_program_compiles_once(tmp_path):
    import jax

    from metarl_jax.io.training_loop import even_chunk_size
    from tests.compile_count import count_compiles

    assert [even_chunk_size(12, 5), even_chunk_size(10, 4), even_chunk_size(30, 20),
            even_chunk_size(13, 5), even_chunk_size(3, 8)] == [4, 2, 15, 5, 3]

    @jax.jit
    def init():  # "w": a weak-typed float32 (from a Python float), as learners' states hold
        return {"x": jnp.float32(1.0), "n": jnp.int32(0), "w": 1.0}

    @functools.partial(jax.jit, static_argnums=1)
    def chunk(state, n):  # n updates of x <- 0.5 x + 1, the metric is x after each
        def one(s, _):
            s = {"x": 0.5 * s["x"] + 1.0, "n": s["n"] + 1, "w": s["w"]}
            return s, s["x"]
        state, xs = jax.lax.scan(one, state, None, length=n)
        return state, {"value": xs}

    jax.block_until_ready(init())
    with count_compiles() as compiles:  # 12 updates asked in chunks of 5: 3 chunks of 4
        state = train_phase(tmp_path, "a", init, chunk, 12, 5, 1)
    assert compiles.count == 1
    expected = 1.0
    for _ in range(12):
        expected = 0.5 * expected + 1.0
    assert int(state["n"]) == 12 and float(state["x"]) == np.float32(expected)
    assert [line["update"] for line in read_metrics(tmp_path / METRICS_FILE)] == list(range(1, 13))
    # A resumed phase reuses the program: the restored state is uncommitted and weak-typed
    # where a fresh one is (either difference compiled the chunk again; orbax's own tiny copies
    # may compile, so the chunk's cache is what is counted).
    with pytest.raises(Interrupted):
        train_phase(tmp_path, "b", init, chunk, 12, 5, 1, stop_after_updates=4)
    programs = chunk._cache_size()
    resumed = train_phase(tmp_path, "b", init, chunk, 12, 5, 1)
    assert chunk._cache_size() == programs == 1
    assert float(resumed["x"]) == float(state["x"])
