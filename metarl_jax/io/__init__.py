"""Run infrastructure: configs and CLI, run folders, metrics, progress, checkpoints, plots.

One module per concept:
    config      frozen-dataclass configs, presets, ``name=value`` overrides, JSON round trip
    run_dir     run folders (never overwritten), resume checks, atomic JSON files
    metrics     ``metrics.jsonl`` writer/reader and truncation on resume
    progress    the live progress line and plain results tables
    checkpoint  orbax checkpoints of the full train state
    plots       PNG curves and heatmaps
"""

from metarl_jax.io.checkpoint import CheckpointError, Checkpointer
from metarl_jax.io.config import (
    ConfigError,
    RunArgs,
    UsageError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    field_names,
    parse_args,
    run_cli,
)
from metarl_jax.io.metrics import MetricsLog, read_metrics, truncate_metrics
from metarl_jax.io.plots import plot_curves, plot_heatmaps
from metarl_jax.io.progress import Progress, format_duration, format_number, format_table
from metarl_jax.io.run_dir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ResumeError,
    RunDirError,
    create_run_dir,
    open_for_resume,
    read_json,
    to_jsonable,
    write_json,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CheckpointError",
    "Checkpointer",
    "ConfigError",
    "MetricsLog",
    "Progress",
    "ResumeError",
    "RunArgs",
    "RunDirError",
    "UsageError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "create_run_dir",
    "field_names",
    "format_duration",
    "format_number",
    "format_table",
    "open_for_resume",
    "parse_args",
    "plot_curves",
    "plot_heatmaps",
    "read_json",
    "read_metrics",
    "run_cli",
    "to_jsonable",
    "truncate_metrics",
    "write_json",
]
