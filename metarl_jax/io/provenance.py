"""Where a run's numbers came from: package versions, git commit, machine (``run_environment``).

``start_run`` stores it in ``config.json`` and ``finish`` in ``summary.json`` (with the wall time),
so a result can be traced to the code and hardware that produced it::

    {"python": "3.11.7", "platform": "Linux-6.1...-x86_64-with-glibc2.36",
     "packages": {"metarl_jax": "0.1.0", "jax": "0.10.2", "jaxlib": "0.10.2", "flax": ...},
     "git": {"commit": "294cb9d...", "dirty": true},          # None outside a git checkout
     "machine": {"cpu": "AMD EPYC 7B13", "cpu_count": 2, "jax_backend": "cpu",
                 "devices": ["cpu:0 (cpu)"]}}

Every part is best effort: a missing package reads as None, no git (or no git checkout) as
``"git": None``; nothing here raises.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

# Distribution names (as pip knows them) whose versions change what a run computes.
PACKAGES = ("metarl_jax", "jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "brax",
            "mujoco", "mujoco-mjx", "numpy", "gymnasium")

_SOURCE = Path(__file__).resolve().parents[2]  # the checkout metarl_jax is imported from


def package_versions() -> Dict[str, Optional[str]]:
    """``{distribution: version}`` of ``PACKAGES``; None when one is not installed."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: Path = _SOURCE) -> Optional[Dict[str, Any]]:
    """``{"commit": sha, "dirty": bool}`` of the source checkout ``path`` (the folder holding
    ``pyproject.toml``); None for an installed copy, without git, or when git fails (``dirty``:
    tracked files differ from the commit)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    if not (path / "pyproject.toml").is_file():  # an installed copy, not a source checkout
        return None
    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        dirty: Optional[bool] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return {"commit": commit, "dirty": dirty}


def cpu_model() -> Optional[str]:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> Dict[str, Any]:
    """CPU model and count, and the accelerators JAX runs on (``jax.devices()``)."""
    info: Dict[str, Any] = {"cpu": cpu_model(), "cpu_count": os.cpu_count()}
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["devices"] = [f"{d} ({d.device_kind})" for d in jax.devices()]
    except Exception as e:  # no usable backend: say so instead of failing the run
        info["jax_backend"], info["devices"] = None, f"unavailable: {type(e).__name__}"
    return info


def run_environment() -> Dict[str, Any]:
    """Python, platform, package versions, git state and machine (module docstring)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "packages": package_versions(), "git": git_state(), "machine": machine()}
