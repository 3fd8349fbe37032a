"""TensorBoard event files beside metrics.jsonl (#12 item 7), read back with an event reader."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import masked_crc32c

from metarl_jax.io.metrics import MetricsLog, read_metrics


def read_events(path: Path) -> list:
    """Every ``Event`` of one event file (TFRecord framing: length, its CRC, data, its CRC)."""
    data, events, i = path.read_bytes(), [], 0
    while i < len(data):
        header = data[i:i + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[i + 8:i + 12])[0] == masked_crc32c(header)
        body = data[i + 12:i + 12 + length]
        assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == masked_crc32c(body)
        events.append(Event.FromString(body))
        i += 16 + length
    return events


def scalars(logdir: Path) -> dict:
    """``{tag: [(step, value), ...]}`` over every event file in ``logdir``; checked against
    TensorBoard's own reader when tensorboard is installed."""
    out: dict = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        events = read_events(path)
        assert events[0].file_version == "brain.Event:2"
        for event in events[1:]:
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        return out
    acc = event_accumulator.EventAccumulator(str(logdir))
    acc.Reload()
    assert {t: [(s.step, s.value) for s in acc.Scalars(t)] for t in acc.Tags()["scalars"]} == out
    return out


def test_metrics_lines_are_mirrored_into_an_event_file(tmp_path, monkeypatch):
    monkeypatch.delenv("METARL_JAX_TENSORBOARD", raising=False)
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        for update in (1, 2, 3):
            log.log(100 * update, {"episode_return": -10.0 * update, "loss": float("nan"),
                                   "episode_return_per_seed": [-1.0 * update, -2.0 * update]},
                    phase="dr", update=update)
        log.log(400, {"episode_return": 5.0}, phase="nominal", update=1)
    files = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o044  # readable by others too
    tags = scalars(tmp_path)
    assert tags["dr/episode_return"] == [(100, -10.0), (200, -20.0), (300, -30.0)]
    assert tags["dr/episode_return_per_seed/1"] == [(100, -2.0), (200, -4.0), (300, -6.0)]
    assert tags["nominal/episode_return"] == [(400, 5.0)]
    assert not any("loss" in t for t in tags)  # NaN: null in metrics.jsonl, absent here
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 4


def test_a_reopened_log_adds_a_file_and_tensorboard_reads_both(tmp_path):
    for step in (1, 2):
        with MetricsLog(tmp_path / "metrics.jsonl") as log:
            log.log(step, {"x": float(step)})
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert scalars(tmp_path) == {"x": [(1, 1.0), (2, 2.0)]}


@pytest.mark.parametrize("how", ["env", "argument"])
def test_event_files_can_be_switched_off(tmp_path, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("METARL_JAX_TENSORBOARD", "0")
    with MetricsLog(tmp_path / "metrics.jsonl",
                    **({"tensorboard": False} if how == "argument" else {})) as log:
        log.log(1, {"x": 1.0})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_without_tensorboardx_only_metrics_jsonl_is_written(tmp_path, monkeypatch):
    import metarl_jax.io.tensorboard as tb

    monkeypatch.setitem(sys.modules, "tensorboardX.event_file_writer", None)  # import fails
    monkeypatch.setattr(tb, "_warned", [])
    with pytest.warns(UserWarning, match="no TensorBoard event files"):
        log = MetricsLog(tmp_path / "metrics.jsonl")
    log.log(1, {"x": 1.0})
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
