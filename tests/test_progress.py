"""Tests for metarl_jax.io.progress: the progress line and results tables."""

from __future__ import annotations

import io

from metarl_jax.io import Progress, format_table


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_content_and_throttling():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(1_000_000, "ppo", stream=out, interval=10.0, clock=clock)
    clock.t = 10.0
    progress.update(123_456, {"return": -123.4567})
    # The first chunk includes the compile: its time is shown, no rate and no ETA from it.
    assert out.getvalue() == (
        "ppo  steps 123,456/1,000,000 (12%)  first chunk 10s  return -123.5  ETA ?\n"
    )
    clock.t = 15.0
    progress.update(200_000, {"return": -100.0})  # within the interval: held back
    assert out.getvalue().count("\n") == 1
    clock.t = 21.0
    progress.update(250_000, {"return": -90.0})
    assert out.getvalue().count("\n") == 2
    # Throughput over recent updates ((250,000 - 123,456) / 11 s), not since the start, so the
    # first chunk's compile time does not linger in steps/s and ETA.
    assert out.getvalue().splitlines()[-1] == (
        "ppo  steps 250,000/1,000,000 (25%)  11,504 steps/s  return -90.00  ETA 1m05s"
    )
    clock.t = 22.0
    progress.update(260_000)
    progress.close()  # the held-back last line is written on close
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "260,000" in lines[-1] and "\r" not in out.getvalue()


def test_progress_on_a_terminal_rewrites_one_line():
    clock, out = FakeClock(), FakeTTY()
    progress = Progress(100, "x", stream=out, clock=clock, initial_steps=50)
    clock.t = 1.0
    progress.update(60, {"return": 1.0})
    clock.t = 2.0
    progress.update(100)
    progress.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "first chunk 1s" in text and "40 steps/s" in text  # (100 - 60) steps in 1 s
    assert "100/100 (100%)" in text and "done in 2s" in text


def test_compiling_is_announced_before_the_first_update_and_only_then():
    import jax
    import jax.numpy as jnp

    out = io.StringIO()
    progress = Progress(100, "nominal", stream=out)
    already = jax.jit(lambda x: x + 1)
    jax.block_until_ready(already(1.0))  # a first compile
    assert out.getvalue() == "nominal  compiling…\n"
    out.truncate(0), out.seek(0)
    progress2 = Progress(100, "dr", stream=out)
    jax.block_until_ready(already(2.0))  # a cache hit: nothing to announce
    assert out.getvalue() == ""
    jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) * 3)(1.0))  # a new program
    assert out.getvalue() == "dr  compiling…\n"
    progress2.update(50)
    jax.block_until_ready(jax.jit(lambda x: jnp.cos(x) * 3)(1.0))  # after the first update
    progress.close(), progress2.close()
    assert out.getvalue().count("compiling") == 1


def test_format_table_aligns_columns():
    table = format_table(
        [{"method": "ppo", "return": -123.456, "seeds": 3},
         {"method": "domain_rand", "return": (12.5, 0.25), "seeds": 10}],
        columns=["method", "return", "seeds"],
    )
    lines = table.splitlines()
    assert lines[0].split() == ["method", "return", "seeds"]
    assert lines[2].startswith("ppo ") and "-123.5" in lines[2]
    assert "12.50 ± 0.2500" in lines[3]
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert lines[2].endswith("    3") and lines[3].endswith("   10")  # numbers right-aligned


def test_compile_time_is_shown_apart_and_kept_out_of_steps_per_s_and_eta():
    import jax.monitoring

    backend = "/jax/core/compile/backend_compile_duration"
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(1_000_000, "ppo", stream=out, interval=10.0, clock=clock,
                        announce_compile=False)
    jax.monitoring.record_event_duration_secs(backend, 8.0)  # the first chunk's compile
    clock.t = 10.0
    progress.update(123_456)
    assert out.getvalue() == (
        "ppo  steps 123,456/1,000,000 (12%)  first chunk 10s  compile 8s  ETA ?\n")
    jax.monitoring.record_event_duration_secs(backend, 5.0)  # a recompile mid-run
    clock.t = 21.0
    progress.update(250_000)
    # (250,000 - 123,456) steps in 11 s less 5 s of compile; ETA 750,000 / 21,091 = 35.6 s.
    assert out.getvalue().splitlines()[-1] == (
        "ppo  steps 250,000/1,000,000 (25%)  21,091 steps/s  compile 13s  ETA 36s")
    progress.close()
    jax.monitoring.record_event_duration_secs(backend, 1.0)  # after close: not counted
    assert progress.compile_s == 13.0
