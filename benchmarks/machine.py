"""The machine a benchmark ran on: CPU model, cores, accelerator, library versions, commit, date.

``describe()`` is called by ``benchmarks.run`` in each benchmark's process and stored in its JSON,
so every number in ``RESULTS.md`` names where it came from. Versions are read from the installed
distributions (nothing is imported); a missing library is ``None``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import pathlib
import platform
import subprocess
from typing import Dict, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "brax", "mujoco", "mujoco-mjx", "torch",
             "gymnasium", "numpy")


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def accelerator() -> str:
    """The JAX default backend's devices, or ``"none"`` for the CPU backend (imports jax)."""
    import jax

    devices = [d for d in jax.devices() if d.platform != "cpu"]
    if not devices:
        return "none"
    return f"{len(devices)} x {devices[0].device_kind}"


def describe(with_accelerator: bool = True) -> Dict[str, object]:
    """Everything above as a JSON-ready dict."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator() if with_accelerator else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {lib: version(lib) for lib in LIBRARIES},
        "git_commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": load_average(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def one_line(machine: Dict[str, object]) -> str:
    """``AMD EPYC, 2 cores, no accelerator; jax 0.10.2, ...`` for tables and the README."""
    acc = machine.get("accelerator") or "none"
    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("versions") or {}).items() if v)
    return (f"{machine.get('cpu_model')}, {machine.get('cpu_count')} cores, accelerator: {acc}; "
            f"{versions}; commit {machine.get('git_commit')}, {machine.get('date')}, "
            f"1-min load {machine.get('load_average_1min')}")
