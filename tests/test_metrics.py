"""Tests for metarl_jax.io.metrics: the metrics.jsonl log, its reader and truncation."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.io import METRICS_FILE, MetricsLog, read_metrics, truncate_metrics


def test_metrics_log_read_and_truncate(tmp_path):
    path = tmp_path / METRICS_FILE
    with MetricsLog(path) as log:
        for step in (100, 200, 300):
            log.log(step, {"return": jnp.float32(step / 10), "loss": np.float64(0.5)},
                    phase="train")
            assert read_metrics(path)[-1]["step"] == step  # flushed line by line
        line = log.log(50, {"return": jnp.float32(jnp.nan)}, phase="finetune")
    assert line == {"step": 50, "phase": "finetune", "return": None, "nonfinite": ["return"]}
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [100, 200, 300, 50]
    assert rows[0] == {"step": 100, "phase": "train", "return": 10.0, "loss": 0.5}
    for raw in path.read_text().splitlines():
        json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))

    # Resume from the train checkpoint at step 200: later train lines and later phases go.
    dropped = truncate_metrics(path, keep=lambda r: r["phase"] == "train" and r["step"] <= 200)
    assert dropped == 2 and [r["step"] for r in read_metrics(path)] == [100, 200]
    with MetricsLog(path) as log:  # appending continues after the kept lines
        log.log(300, {"return": 31.0}, phase="train")
    assert [r["step"] for r in read_metrics(path)] == [100, 200, 300]


def test_metrics_log_torn_line_and_strict_mode(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "r": 1.0}\n{"step": 2, "r"')  # killed mid-write
    assert read_metrics(path) == [{"step": 1, "r": 1.0}]
    with pytest.warns(UserWarning, match="torn"):
        log = MetricsLog(path, nonfinite="raise")
    with pytest.raises(ValueError, match="'loss'"):
        log.log(3, {"loss": float("inf")})
    with pytest.raises(ValueError, match="clash"):
        log.log(3, {"step": 1.0})
    log.log(3, {"r": 3.0})
    log.close()
    assert read_metrics(path) == [{"step": 1, "r": 1.0}, {"step": 3, "r": 3.0}]
