"""Run infrastructure: configs and CLI, run folders, metrics, progress, checkpoints, plots.

One module per concept:
    config         frozen-dataclass configs, ``name=value`` overrides, JSON round trip
    cli            an experiment's command line (presets, overrides, exit codes): ``cli``
    experiment     ``start_run`` / ``finish``: a run's config.json and summary.json
    run_dir        run folders (never overwritten, one writer each) and their file names,
                   resume checks, JSON
    metrics        ``metrics.jsonl`` writer/reader and truncation on resume
    progress       the live progress line and plain results tables
    checkpoint     orbax checkpoints of the full train state
    plots          PNG curves and heatmaps
    training_loop  the Python loop around compiled training chunks: log, checkpoint, resume
    stop_signals   SIGINT/SIGTERM: stop after the chunk in flight, or abort at once
"""

from metarl_jax.io.checkpoint import Checkpointer, CheckpointError
from metarl_jax.io.cli import RunArgs, cli, parse_args
from metarl_jax.io.config import (
    ConfigError,
    UsageError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    field_names,
)
from metarl_jax.io.metrics import MetricsLog, read_metrics, truncate_metrics
from metarl_jax.io.plots import plot_curves, plot_heatmaps
from metarl_jax.io.progress import Progress, format_duration, format_number, format_table
from metarl_jax.io.run_dir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
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
    "METRICS_FILE",
    "SUMMARY_FILE",
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
    "cli",
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
    "to_jsonable",
    "truncate_metrics",
    "write_json",
]
