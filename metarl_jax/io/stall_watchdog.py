"""End a run whose process has stopped working: the XLA:CPU hang ("wedge").

On XLA:CPU (jax 0.10.2 here) a compiled program sometimes never completes: the main thread
waits in ``block_until_ready``, every XLA worker thread is parked waiting for work, and the
process uses no CPU time at all, forever (README, "Known issue: XLA:CPU hangs"). Nothing in the
program is wrong and a re-run usually passes, so the useful response is to end the process with
a message that says what happened and how to continue from the last checkpoint, rather than
leave it hanging until someone notices.

``stall_watchdog(stall_s)`` starts a daemon thread that samples the process's CPU time (all
threads, ``time.process_time``) every ``period_s`` seconds. When it has not advanced by
``min_cpu_s`` for ``stall_s`` seconds, and JAX's backend is the CPU (on an accelerator a
host blocked on the device is idle by design), it prints one line and ends the process with
``os._exit(EXIT_CODE)`` (75, ``EX_TEMPFAIL``: try again). Checkpoints are written to a
temporary folder and renamed when complete, so the last complete one is intact, as after
SIGKILL. A run that is really computing always uses CPU time, so no progress for minutes means
a hang, not a slow step. Compiling, MJX stepping, gymnasium evaluation and plotting all count.

``cli`` starts it for every experiment: ``METARL_JAX_STALL_S`` sets ``stall_s`` (default 600;
``0`` turns it off), and it is off in multi-process runs, whose processes may wait on each other.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Callable, Iterator, Optional

EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, try again
DEFAULT_STALL_S = 600.0
ENV_VAR = "METARL_JAX_STALL_S"


def stall_seconds(environ=None) -> float:
    """``stall_s`` from ``METARL_JAX_STALL_S`` (seconds; 0 turns the watchdog off), else the
    default. Raises ``ValueError`` naming the variable for a value that is not a number >= 0."""
    text = (os.environ if environ is None else environ).get(ENV_VAR, "")
    if not text.strip():
        return DEFAULT_STALL_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{ENV_VAR} must be a number of seconds >= 0 (0: off), got {text!r}")
    return value


def _on_cpu() -> bool:
    try:
        import jax

        return jax.default_backend() == "cpu"
    except Exception:  # no backend yet or none usable: nothing of XLA's is running
        return False


def _default_exit(message: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_CODE)


class StallWatchdog:
    """The watcher thread (see the module doc). ``stop()`` ends it; ``fired`` says whether it
    declared a stall. ``cpu_time``, ``clock``, ``on_cpu`` and ``exit`` are injectable for tests."""

    def __init__(self, stall_s: float, label: str = "", hint: Callable[[], str] = lambda: "",
                 period_s: Optional[float] = None, min_cpu_s: float = 0.5,
                 cpu_time: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 on_cpu: Callable[[], bool] = _on_cpu,
                 exit: Callable[[str], None] = _default_exit):
        if not stall_s > 0 or not min_cpu_s >= 0:
            raise ValueError(f"need stall_s > 0 and min_cpu_s >= 0, got {stall_s}, {min_cpu_s}")
        self.stall_s, self.label, self.hint = float(stall_s), label, hint
        self.period_s = period_s if period_s is not None else min(30.0, self.stall_s / 10)
        self.min_cpu_s = min_cpu_s
        self._cpu_time, self._clock, self._on_cpu, self._exit = cpu_time, clock, on_cpu, exit
        self._stopped = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)

    def start(self) -> "StallWatchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def check(self, cpu: float, now: float, state: list) -> bool:
        """One sample: ``state = [cpu at the last progress, time of it]`` (updated in place).
        True when the process has been idle for ``stall_s``."""
        if cpu - state[0] >= self.min_cpu_s:
            state[0], state[1] = cpu, now
            return False
        return now - state[1] >= self.stall_s

    def message(self) -> str:
        who = f"{self.label}: " if self.label else ""
        return (f"\n{who}error: the process used no CPU time for {self.stall_s:.0f} s: XLA:CPU "
                f"stopped making progress (a known XLA:CPU hang, README 'Known issue: XLA:CPU "
                f"hangs'). Ended with status {EXIT_CODE}; the last checkpoint is intact. "
                f"{self.hint()}".rstrip())

    def _watch(self) -> None:
        state = [self._cpu_time(), self._clock()]
        while not self._stopped.wait(self.period_s):
            if self.check(self._cpu_time(), self._clock(), state):
                if not self._on_cpu():  # on an accelerator an idle host is normal
                    state[0], state[1] = self._cpu_time(), self._clock()
                    continue
                self.fired = True
                self._exit(self.message())
                return


@contextlib.contextmanager
def stall_watchdog(stall_s: float, label: str = "", hint: Callable[[], str] = lambda: "",
                   **kwargs) -> Iterator[Optional[StallWatchdog]]:
    """Run the body under a ``StallWatchdog`` (none when ``stall_s`` is 0)."""
    if not stall_s:
        yield None
        return
    dog = StallWatchdog(stall_s, label, hint, **kwargs).start()
    try:
        yield dog
    finally:
        dog.stop()


__all__ = ["DEFAULT_STALL_S", "ENV_VAR", "EXIT_CODE", "StallWatchdog", "stall_seconds",
           "stall_watchdog"]
