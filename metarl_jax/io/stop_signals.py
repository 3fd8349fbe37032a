"""SIGINT / SIGTERM during a run: stop at the next chunk boundary, or abort at once.

One ``StopSignals`` is active per process while a run (``cli``) or a phase used on its own
(``train_phase``) is in progress; nested ``stop_signals()`` share it. A stop request therefore
outlives the chunk and the phase it arrived in: a signal landing on a phase's last chunk or final
save is still seen by the next phase, which then does not start.

What a signal does depends on what an abort would lose:

* inside a phase's chunk loop once its first chunk is done (``stoppable()``): the first signal
  asks to stop after the chunk in flight (the loop saves a checkpoint and raises
  ``Interrupted``) and is acknowledged on stderr at once; a second one aborts;
* anywhere else (building, restoring, the first compile, evaluation): nothing since the last
  checkpoint would be lost, so the first signal aborts.

Aborting in the command line (``exit_on_abort=True``): a watcher thread, woken through
``signal.set_wakeup_fd`` even while the main thread is blocked in XLA (compiling or running a
chunk), prints one line and ends the process with ``os._exit(130)``. Checkpoints are written to
a temporary folder and renamed when complete, so the last complete one stays valid: the same
guarantee as after SIGKILL. Used as a library (``exit_on_abort=False``), an abort raises
``KeyboardInterrupt`` in the main thread instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd program

_active: Optional["StopSignals"] = None


def _say(text: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream must not stop the message
            pass
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except Exception:
        pass


class StopSignals:
    """The process's stop request (see the module doc); get it with ``stop_signals()``.

    Attributes:
        requested: a stop after the chunk in flight was asked for (checked by ``train_phase``
            after every chunk and at the start and end of every phase).
        received: signals received so far.
        run_dir: the run folder, named in the abort message (set by ``start_run`` /
            ``train_phase``).
    """

    def __init__(self, exit_on_abort: bool = False, label: str = "", command: str = ""):
        self.exit_on_abort = exit_on_abort
        self.label = label
        self.command = command
        self.requested = False
        self.received = 0
        self.run_dir: Optional[Path] = None
        self._stoppable = 0

    @contextlib.contextmanager
    def stoppable(self) -> Iterator[None]:
        """Within this block a first signal only requests a stop (``requested``)."""
        self._stoppable += 1
        try:
            yield
        finally:
            self._stoppable -= 1

    def resume_hint(self) -> str:
        """``"Continue with: <command> --resume <run_dir>"``, or "" before the run folder exists."""
        if self.run_dir is None:
            return ""
        resume = f"{self.command} --resume {self.run_dir}" if self.command else \
            f"--resume {self.run_dir}"
        return f"Continue with: {resume}"

    def abort_message(self) -> str:
        label = f"{self.label}: " if self.label else ""
        if self.run_dir is None:
            return f"\n{label}interrupted before the run started; nothing was saved."
        return f"\n{label}aborted; the last complete checkpoint is kept. {self.resume_hint()}"

    def _received(self, signum: int) -> bool:
        """Count a signal; True when it aborts, False when it only requests a stop."""
        self.received += 1
        if self.received == 1 and self._stoppable:
            self.requested = True
            again = "Ctrl-C again" if signum == signal.SIGINT else \
                f"send {signal.Signals(signum).name} again"
            _say(f"\nstopping after this chunk; {again} to abort now")
            return False
        return True

    # -- the two ways of receiving signals -------------------------------------------------------

    def _handler(self, signum, frame) -> None:
        """Library mode: runs in the main thread between bytecodes."""
        if self._received(signum):
            raise KeyboardInterrupt

    def _watch(self, reader: socket.socket) -> None:
        """Command-line mode: woken by the C-level handler through the wakeup fd."""
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:  # the writer was closed: the context is over
                return
            for signum in data:
                if signum in SIGNALS and self._received(signum):
                    _say(self.abort_message())
                    os._exit(EXIT_CODE)


def current() -> Optional[StopSignals]:
    """The active ``StopSignals``, or None outside ``stop_signals()``."""
    return _active


@contextlib.contextmanager
def stop_signals(exit_on_abort: bool = False, label: str = "", command: str = ""
                 ) -> Iterator[StopSignals]:
    """Handle SIGINT/SIGTERM as in the module doc for the duration of the block.

    Nested calls yield the outer ``StopSignals`` unchanged (its mode, label and flag). Outside
    the main thread signals cannot be handled: the yielded object then never sees one.
    """
    global _active
    if _active is not None:
        yield _active
        return
    stop = StopSignals(exit_on_abort, label, command)
    previous, old_fd, reader, writer, watcher = {}, None, None, None, None
    try:
        if threading.current_thread() is threading.main_thread():
            if exit_on_abort:
                reader, writer = socket.socketpair()
                writer.setblocking(False)
                old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
                watcher = threading.Thread(target=stop._watch, args=(reader,), daemon=True,
                                           name="stop-signals")
                watcher.start()
                handler = lambda signum, frame: None  # the watcher acts on every signal
            else:
                handler = stop._handler
            for sig in SIGNALS:
                previous[sig] = signal.signal(sig, handler)
        _active = stop
        yield stop
    finally:
        _active = None
        for sig, old in previous.items():
            signal.signal(sig, old)
        if old_fd is not None:
            signal.set_wakeup_fd(old_fd)
        if writer is not None:
            writer.close()
            watcher.join(timeout=5)
            reader.close()


def note_run_dir(run_dir: Path) -> None:
    """Tell the active ``StopSignals`` (if any) which run folder an abort leaves behind."""
    if _active is not None:
        _active.run_dir = Path(run_dir)


__all__ = ["EXIT_CODE", "StopSignals", "current", "note_run_dir", "stop_signals"]
