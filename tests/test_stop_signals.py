"""SIGINT/SIGTERM: a stop request survives chunks and phases, a second signal aborts at once,
a Ctrl-C during start-up prints one line; with a toy two-phase experiment (tests.toy_experiment).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE
from metarl_jax.io.stop_signals import stop_signals
from metarl_jax.io.training_loop import Interrupted, train_phase
from tests import toy_experiment

ROOT = Path(__file__).resolve().parent.parent
ACK = "stopping after this chunk; Ctrl-C again to abort now"


def _toy_cli(*argv):
    return cli(toy_experiment.NAME, toy_experiment.main, toy_experiment.Config,
               toy_experiment.PRESETS, argv=list(argv))


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    assert _toy_cli("--out", str(out)) == 0
    return read_metrics(out / METRICS_FILE)


def _steps(run: Path, phase: str) -> list:
    folder = run / CHECKPOINT_DIR / phase
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []


def _wait_for(path: Path, proc=None, timeout=120):
    start = time.time()
    while not path.exists():
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.01)


def test_signal_on_a_phases_last_chunk_stops_before_the_next_phase(tmp_path, monkeypatch,
                                                                    capsys, toy_reference):
    """The SIGINT lands while phase a's last chunk runs: a's final checkpoint is saved, phase b
    never starts, exit 130 with the resume command; the resumed run equals an uninterrupted one."""
    out = tmp_path / "run"
    monkeypatch.setenv("TOY_HOLD", "a:6:stop")  # the last chunk of a waits for the stop request

    def interrupt():
        _wait_for(out / "held")
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    assert _toy_cli("--out", str(out)) == 130
    sender.join()
    err = capsys.readouterr().err
    assert ACK in err and "phase 'a' interrupted at update 6" in err, err
    assert f"--resume {out}" in err.splitlines()[-1]
    assert _steps(out, "a")[-1] == 6 and _steps(out, "b") == []
    assert {line["phase"] for line in read_metrics(out / METRICS_FILE)} == {"a"}

    monkeypatch.delenv("TOY_HOLD")
    assert _toy_cli("--resume", str(out)) == 0
    assert read_metrics(out / METRICS_FILE) == toy_reference


def _toy_train(run, phase, hook=None):
    def chunk(state, n):
        first = int(state["n"]) + 1
        if hook is not None:
            hook(phase, first + n - 1)
        return {"n": state["n"] + n}, {"value": np.arange(first, first + n, dtype=np.float32)}

    return train_phase(run, phase, lambda: {"n": jnp.int32(0)}, chunk, 6, 2, 1)


def test_library_use_keeps_the_request_across_phases_and_a_second_signal_raises(tmp_path):
    """Outside the command line (``exit_on_abort=False``) the request still outlives the phase,
    and a second signal raises KeyboardInterrupt in the main thread."""
    calls = []

    def hook(phase, last):
        calls.append((phase, last))
        if (phase, last) == ("a", 6):
            os.kill(os.getpid(), signal.SIGINT)  # handled before the chunk returns

    previous = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background
    with stop_signals() as stop:
        with pytest.raises(Interrupted, match="phase 'a' interrupted at update 6"):
            for phase in ("a", "b"):
                _toy_train(tmp_path, phase, hook)
        assert stop.requested
        with pytest.raises(Interrupted, match="stopped before phase 'b'"):
            _toy_train(tmp_path, "b", hook)
        assert ("b", 2) not in calls
        with pytest.raises(KeyboardInterrupt):  # what a second signal runs in the main thread
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is previous  # restored on exit


def _spawn(module, *argv, **env):
    return subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _Lines:
    """Collects a pipe's lines in a thread, so a test can wait for one."""

    def __init__(self, pipe):
        self.lines = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(pipe.readline, "")))
        self._thread.start()

    def wait_for(self, text, proc, timeout=60):
        start = time.time()
        while not any(text in line for line in self.lines):
            assert proc.poll() is None, "".join(self.lines)
            assert time.time() - start < timeout, "".join(self.lines)
            time.sleep(0.01)
        return time.time() - start

    def text(self):
        self._thread.join(timeout=30)
        return "".join(self.lines)


def test_first_ctrl_c_is_acknowledged_at_once_and_a_second_aborts_promptly(tmp_path,
                                                                           toy_reference):
    """The main thread is blocked in a long chunk (as in XLA): the first SIGINT is acknowledged
    at once, the second ends the process with 130 without waiting for the chunk; the last
    complete checkpoint resumes to the uninterrupted results."""
    out = tmp_path / "run"
    proc = _spawn("tests.toy_experiment", "--out", str(out), TOY_HOLD="a:4:kill")
    err = _Lines(proc.stderr)
    _wait_for(out / "held", proc)
    _wait_for(out / CHECKPOINT_DIR / "a" / "2", proc)  # the save before the long chunk
    proc.send_signal(signal.SIGINT)
    assert err.wait_for(ACK, proc) < 10
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    text = err.text()
    proc.stdout.close()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert "aborted; the last complete checkpoint is kept. Continue with: " in text
    assert f"--resume {out}" in text.splitlines()[-1]
    assert _steps(out, "a") == [2]

    resumed = _spawn("tests.toy_experiment", "--resume", str(out))
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert read_metrics(out / METRICS_FILE) == toy_reference


def test_ctrl_c_while_importing_prints_one_line():
    # The child first takes Python's usual Ctrl-C handler, as it has when started from a
    # terminal: a shell that runs the suite in the background (CI) makes its children inherit
    # SIGINT ignored, and then Python installs none.
    proc = subprocess.run(
        [sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, "
                               "signal.default_int_handler); import experiments, os; "
                               "os.kill(os.getpid(), signal.SIGINT); import jax"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGINT  # a shell reports 130
    assert proc.stderr.strip() == "interrupted while starting up; nothing was written."
