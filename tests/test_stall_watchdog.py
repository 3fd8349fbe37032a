"""The stall watchdog (metarl_jax.io.stall_watchdog): idle detection, its switch, and a real
process ended with status 75 and a message when it stops using CPU time."""

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from metarl_jax.io.stall_watchdog import EXIT_CODE, StallWatchdog, stall_seconds

ROOT = Path(__file__).resolve().parents[1]


def test_check_fires_only_after_stall_s_without_cpu_progress():
    dog = StallWatchdog(10.0, min_cpu_s=0.5)
    state = [0.0, 0.0]
    assert not dog.check(0.1, 5.0, state)  # < min_cpu_s of work: the idle clock keeps running
    assert not dog.check(0.7, 9.0, state) and state == [0.7, 9.0]  # work: the clock restarts
    assert not dog.check(0.9, 18.9, state)
    assert dog.check(0.9, 19.0, state)  # 10 s since the last progress


def test_thread_exits_once_with_message_and_not_on_an_accelerator():
    exits, clock, cpu = [], [0.0], [0.0]

    def run(on_cpu, wait_s):
        done = threading.Event()

        def tick():  # each sample advances the fake clock by 1 s, the CPU time not at all
            clock[0] += 1.0
            return clock[0]
        dog = StallWatchdog(5.0, label="exp", hint=lambda: "Continue with: X", period_s=0.001,
                            cpu_time=lambda: cpu[0], clock=tick, on_cpu=lambda: on_cpu,
                            exit=lambda m: (exits.append(m), done.set()))
        dog.start()
        fired = done.wait(wait_s)
        dog.stop()
        return fired, dog.fired

    assert run(on_cpu=False, wait_s=0.5) == (False, False) and not exits  # idle host on a GPU: fine
    assert run(on_cpu=True, wait_s=30) == (True, True) and len(exits) == 1
    assert "exp: error: the process used no CPU time for 5 s" in exits[0]
    assert exits[0].endswith("Continue with: X")


def test_stall_seconds_reads_the_environment():
    assert stall_seconds({}) == 600.0 and stall_seconds({"METARL_JAX_STALL_S": "0"}) == 0.0
    assert stall_seconds({"METARL_JAX_STALL_S": " 90 "}) == 90.0
    for bad in ("-1", "abc", "inf", "nan"):
        with pytest.raises(ValueError, match="METARL_JAX_STALL_S"):
            stall_seconds({"METARL_JAX_STALL_S": bad})


def test_an_idle_process_is_ended_with_status_75():
    # A real process that stops using CPU (here: it sleeps, as a wedged XLA:CPU program does).
    code = textwrap.dedent("""
        import time
        from metarl_jax.io.stall_watchdog import stall_watchdog
        with stall_watchdog(1.0, label="idle", period_s=0.1):
            time.sleep(120)
        """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == EXIT_CODE, out.stderr
    assert "idle: error: the process used no CPU time for 1 s" in out.stderr
