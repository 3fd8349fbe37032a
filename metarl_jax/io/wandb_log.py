"""Optional Weights & Biases mirror of ``metrics.jsonl`` (opt-in; nothing is sent by default).

Set ``METARL_JAX_WANDB=1`` (project ``metarl_jax``) or ``METARL_JAX_WANDB=<project>`` with
``wandb`` installed and logged in (or ``WANDB_MODE=offline``): every line ``MetricsLog`` writes
is also logged to a W&B run, as ``<phase>/<metric>`` against the custom x-axis ``<phase>/step``
(env steps, as in ``metrics.jsonl``; phases restart their step counts, so one global W&B step
would not fit). The W&B run's id is derived from the run folder's absolute path, so a
``--resume`` continues the same W&B run (``resume="allow"``), and its files go to
``<run folder>/wandb``. The experiment's ``config.json`` becomes the W&B config.

Opt-in on purpose: W&B talks to a server. Enabled without ``wandb`` installed, a warning says so
once and the run goes on with ``metrics.jsonl`` (and TensorBoard) only.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

ENV_VAR = "METARL_JAX_WANDB"
DEFAULT_PROJECT = "metarl_jax"
_OFF = ("", "0", "false", "no", "off")
_warned = []


def project(flag: Optional[str] = None) -> Optional[str]:
    """The W&B project to log to, or None when W&B logging is off (the default)."""
    value = os.environ.get(ENV_VAR, "") if flag is None else flag
    value = value.strip()
    if value.lower() in _OFF:
        return None
    return DEFAULT_PROJECT if value.lower() in ("1", "true", "yes", "on") else value


def run_id(run_dir: str | os.PathLike) -> str:
    """A W&B run id that is the same for every process writing ``run_dir`` (16 hex digits)."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


class WandbLog:
    """Scalars of one run folder into one W&B run (``wandb.init`` on construction)."""

    def __init__(self, wandb: Any, run_dir: str | os.PathLike, project_name: str):
        run_dir = Path(run_dir)
        config_path = run_dir / "config.json"
        try:
            config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        except (OSError, ValueError):
            config = {}
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._axes = set()
        self.run = wandb.init(project=project_name, id=run_id(run_dir), resume="allow",
                              name=f"{run_dir.parent.name}/{run_dir.name}", dir=str(run_dir),
                              config=config)

    def log(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        """``metrics`` (finite numbers; lists become ``<name>/<i>``) at env step ``step``."""
        axis = f"{prefix}/step" if prefix else "step"
        if axis not in self._axes:
            self._axes.add(axis)
            self.run.define_metric(axis)
            self.run.define_metric(f"{prefix}/*" if prefix else "*", step_metric=axis)
        data = {axis: int(step)}
        for name, value in metrics.items():
            tag = f"{prefix}/{name}" if prefix else name
            if isinstance(value, (list, tuple)):
                data.update({f"{tag}/{i}": float(v) for i, v in enumerate(value) if _number(v)})
            elif _number(value):
                data[tag] = float(value)
        self.run.log(data)

    def close(self) -> None:
        self.run.finish()


def open_wandb_log(run_dir: str | os.PathLike, flag: Optional[str] = None
                   ) -> Optional[WandbLog]:
    """A ``WandbLog`` for ``run_dir`` when enabled (``METARL_JAX_WANDB``) and ``wandb`` imports;
    otherwise None (with a one-time warning if enabled but not installed)."""
    name = project(flag)
    if name is None:
        return None
    try:
        wandb = importlib.import_module("wandb")
    except ImportError as e:
        if not _warned:
            _warned.append(e)
            warnings.warn(f"{ENV_VAR} is set but wandb cannot be imported ({e}); logging to "
                          "metrics.jsonl only. pip install wandb, or unset the variable.",
                          stacklevel=3)
        return None
    return WandbLog(wandb, run_dir, name)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
