"""Human-facing progress: one live status line during training and plain tables of results.

``Progress`` is called from the thin Python loop between compiled chunks (never from inside
``jit``)::

    progress = Progress(cfg.total_steps, "ppo/pendulum")
    for ...:
        state, metrics = train_chunk(state)
        progress.update(steps_done, {"return": metrics["return"]})
    progress.close()

which shows, on stderr,
``ppo/pendulum  steps 123,456/1,000,000 (12%)  45,678 steps/s  return -123.4  ETA 1m23s``.
On a terminal the line is rewritten in place (carriage return); in a log file or CI output a
plain line is written at most every ``interval`` seconds.

Before the first update, ``ppo/pendulum  compiling…`` appears as soon as JAX starts compiling
(a first compile is 20-60 s of silence otherwise; nothing is shown when the program is already
compiled). Throughput and ETA are measured from the second update on, so compile time never
inflates the ETA: the first line shows how long the first chunk took and ``ETA ?``. Time JAX
spends compiling while the line is live (``jax.monitoring``'s trace, lowering and backend-compile
durations) is shown on its own, ``compile 14s``, and left out of steps/s and the ETA (the first
chunk's ETA stays ``?``: besides compiling, it pays one-off costs such as the first checkpoint).
"""

from __future__ import annotations

import collections
import math
import sys
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

import jax.monitoring

# JAX records this event when it has traced a function for compilation (not on a cache hit).
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
# The stages of a compile (trace, lowering, XLA compile or persistent-cache read), summed into the
# compile time shown apart from the throughput.
_COMPILE_EVENTS = (_TRACE_EVENT, "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")


def format_number(x: Any) -> str:
    """Four significant digits for floats (``-123.4``, ``0.01235``, ``1.235e+07``), ints as is."""
    if hasattr(x, "shape") and getattr(x, "shape") == () and hasattr(x, "item"):
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 6 or mag < -3:
        return f"{x:.3e}"
    return f"{x:.{max(0, 3 - mag)}f}"


def format_duration(seconds: float) -> str:
    """``45s``, ``1m23s``, ``2h05m``, ``3d04h``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class Progress:
    """A live progress line: steps done, throughput, chosen metrics and time left.

    Args:
        total_steps: steps of the whole run.
        label: printed first (experiment or phase name).
        initial_steps: steps already done when this line starts (a resumed run), so that
            throughput and ETA count only the steps done now.
        stream: where to write; stderr by default.
        interval: seconds between lines when ``stream`` is not a terminal.
        clock: time source (seconds), replaceable in tests.
        announce_compile: show ``<label>  compiling…`` when JAX compiles before the first
            update (listens to ``jax.monitoring`` until the first update or ``close``).
        track_compile: show time spent compiling (``compile 14s``) and keep it out of steps/s
            and the ETA (listens to ``jax.monitoring`` until ``close``).
    """

    def __init__(self, total_steps: int, label: str = "", *, initial_steps: int = 0,
                 stream: TextIO | None = None, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, announce_compile: bool = True,
                 track_compile: bool = True):
        self.total_steps = int(total_steps)
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        self._tty = bool(isatty and isatty())
        self._interval = interval
        self._clock = clock
        self._t0 = clock()
        self._steps0 = int(initial_steps)
        # Recent (time, steps) points: throughput is measured over the last few updates so that
        # the first chunk's compile time does not depress steps/s and the ETA for the whole run.
        self._recent: collections.deque = collections.deque(maxlen=10)
        self._last_printed_at: float | None = None
        self._pending: str | None = None  # newest line not yet written (non-tty throttling)
        self._width = 0
        self._closed = False
        self.line = ""
        self._compile_listener: Callable[..., None] | None = None
        self._registered: Callable[..., None] | None = None
        if announce_compile:
            def listener(name, duration, **kwargs):
                # Only a flag changes here: JAX is iterating over its listeners.
                if name == _TRACE_EVENT and self._compile_listener is listener:
                    self._compile_listener = None
                    self.announce("compiling…")

            self._compile_listener = self._registered = listener
            jax.monitoring.register_event_duration_secs_listener(listener)
        self.compile_s = 0.0  # seconds JAX spent compiling since this line started
        self._timer: Callable[..., None] | None = None
        if track_compile:
            def timer(name, duration, **kwargs):
                if name in _COMPILE_EVENTS and self._timer is timer:
                    self.compile_s += float(duration)

            self._timer = timer
            jax.monitoring.register_event_duration_secs_listener(timer)

    def _stop_compile_listener(self) -> None:
        self._compile_listener = None
        registered, self._registered = self._registered, None
        if registered is not None:
            jax.monitoring.unregister_event_duration_listener(registered)

    def announce(self, message: str) -> None:
        """Show ``<label>  <message>`` now, as a status line (e.g. before the first update)."""
        text = "  ".join(part for part in (self.label, message) if part)
        if self._tty:
            pad = " " * max(0, self._width - len(text))
            self._stream.write("\r" + text + pad)
            self._width = len(text)
            self._stream.flush()
        else:
            self._write_line(text)

    def format(self, steps_done: int, metrics: Mapping[str, Any] | None = None) -> str:
        """The status line for ``steps_done`` (without writing it)."""
        now = self._clock()
        elapsed = max(now - self._t0, 1e-9)
        done_now = steps_done - self._steps0
        compile_s = self.compile_s
        rate: float | None = None  # unknown on the first update: it includes the compile
        if self._recent:
            rate = done_now / max(elapsed - compile_s, 1e-9) if done_now > 0 else 0.0
            if now > self._recent[0][0] and steps_done > self._recent[0][1]:
                t_old, s_old, c_old = self._recent[0]
                rate = (steps_done - s_old) / max(now - t_old - (compile_s - c_old), 1e-9)
        parts = [self.label] if self.label else []
        if self.total_steps > 0:
            pct = math.floor(100 * steps_done / self.total_steps)
            parts.append(f"steps {steps_done:,}/{self.total_steps:,} ({pct}%)")
        else:
            parts.append(f"steps {steps_done:,}")
        if not self._recent:
            parts.append(f"first chunk {format_duration(elapsed)}")
        elif rate is not None:
            parts.append(f"{rate:,.0f} steps/s")
        if compile_s > 0:
            parts.append(f"compile {format_duration(compile_s)}")
        for name, value in (metrics or {}).items():
            parts.append(f"{name} {format_number(value)}")
        if steps_done >= self.total_steps > 0:
            parts.append(f"done in {format_duration(elapsed)}")
        else:
            remaining = (self.total_steps - steps_done) / rate if rate else float("nan")
            parts.append(f"ETA {format_duration(remaining)}")
        return "  ".join(parts)

    def update(self, steps_done: int, metrics: Mapping[str, Any] | None = None) -> None:
        """Show progress after ``steps_done`` steps; ``metrics`` are shown as ``name value``."""
        self._stop_compile_listener()
        self.line = self.format(int(steps_done), metrics)
        now = self._clock()
        self._recent.append((now, int(steps_done), self.compile_s))
        if self._tty:
            pad = " " * max(0, self._width - len(self.line))
            self._stream.write("\r" + self.line + pad)
            self._width = len(self.line)
            self._stream.flush()
            self._last_printed_at = now
            return
        finished = steps_done >= self.total_steps > 0
        if (self._last_printed_at is None or finished
                or now - self._last_printed_at >= self._interval):
            self._write_line(self.line)
            self._last_printed_at = now
        else:
            self._pending = self.line

    def _write_line(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()
        self._pending = None

    def close(self) -> None:
        """End the live line (a newline on a terminal; the last unwritten line otherwise)."""
        self._stop_compile_listener()
        timer, self._timer = self._timer, None
        if timer is not None:
            jax.monitoring.unregister_event_duration_listener(timer)
        if self._closed:
            return
        self._closed = True
        if self._tty:
            if self._width:
                self._stream.write("\n")
                self._stream.flush()
        elif self._pending is not None:
            self._write_line(self._pending)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain, aligned text table (numbers right-aligned, text left-aligned).

    Args:
        rows: one mapping per row; a missing value prints as ``-``. A ``(mean, std)`` pair
            prints as ``mean ± std``.
        columns: the keys to show, in order; every key seen in ``rows`` when None.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    columns = list(columns)

    def cell(value: Any) -> tuple[str, bool]:
        if value is None:
            return "-", True
        if isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value):
            return f"{format_number(value[0])} ± {format_number(value[1])}", True
        return format_number(value), _is_number(value)

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(str(c))] + [len(r[i][0]) for r in body]) for i, c in enumerate(columns)]
    right = [all(r[i][1] for r in body) and bool(body) for i in range(len(columns))]

    def join(cells: Sequence[str]) -> str:
        return "  ".join(
            s.rjust(w) if r else s.ljust(w) for s, w, r in zip(cells, widths, right)
        ).rstrip()

    lines = [join([str(c) for c in columns]), join(["-" * w for w in widths])]
    lines += [join([text for text, _ in r]) for r in body]
    return "\n".join(lines)


def _is_number(x: Any) -> bool:
    if hasattr(x, "shape") and getattr(x, "shape") == () and hasattr(x, "item"):
        x = x.item()
    return isinstance(x, (int, float)) and not isinstance(x, bool)
