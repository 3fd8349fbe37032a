"""``python -m metarl_jax.io.over_seeds``: a number over seeds from finished runs, refusing runs
that are not one setting."""

import json

import numpy as np
import pytest

from metarl_jax import stats
from metarl_jax.io import over_seeds

KEY = "results.paired_over_tasks.gain.mean"


def _run(root, seed, gain, other=1.0, config=None, name="exp", summary=True):
    run = root / f"s{seed}"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"name": name, "preset": "cpu", "seed": seed, "config": config or {"a": {"b": 1}}}))
    if summary:
        (run / "summary.json").write_text(json.dumps(
            {"results": {"paired_over_tasks": {"gain": {"mean": gain}, "other": {"mean": other}}}}))
    return run


def test_summary_is_the_t_ci_over_seeds_and_the_min_over_keys(tmp_path, capsys):
    gains, others = [3.0, 5.0, 4.0], [6.0, 2.0, 9.0]
    runs = [_run(tmp_path, s, g, o) for s, (g, o) in enumerate(zip(gains, others))]
    other = "results.paired_over_tasks.other.mean"
    out = tmp_path / "over.json"
    assert over_seeds.main([*map(str, runs), "--key", KEY, "--key", other, "--min-over-keys",
                            "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seeds"] == [0, 1, 2]
    gain = result["keys"][KEY]
    assert gain["per_seed"] == gains
    assert gain["mean"] == pytest.approx(4.0)
    assert gain["ci95"] == pytest.approx(stats.ci95(np.array(gains)))
    assert gain["verdict_vs_0"] == "better"  # 4 +- 2.5
    assert result["keys"][over_seeds.MIN_KEY]["per_seed"] == [3.0, 2.0, 4.0]
    assert result["keys"][other]["verdict_vs_0"] == "tie"  # 5.7 +- 8.7
    assert f"{KEY}: +4.00 +- " in capsys.readouterr().out


def test_refuses_mixed_settings_repeated_seeds_and_unfinished_runs(tmp_path, capsys):
    a = _run(tmp_path, 0, 1.0)
    b = _run(tmp_path, 1, 2.0, config={"a": {"b": 2}})
    with pytest.raises(over_seeds.OverSeedsError, match=r"a\.b: 1 vs 2"):
        over_seeds.summarize([a, b], [KEY])
    dup = tmp_path / "dup"
    dup.mkdir()
    d = _run(dup, 0, 2.0)
    with pytest.raises(over_seeds.OverSeedsError, match=r"seed\(s\) \[0\]"):
        over_seeds.summarize([a, d], [KEY])
    other = tmp_path / "other"
    other.mkdir()
    e = _run(other, 5, 2.0, name="not_exp")
    with pytest.raises(over_seeds.OverSeedsError, match="'not_exp' run"):
        over_seeds.summarize([a, e], [KEY])
    f = _run(other, 6, 2.0, summary=False)
    with pytest.raises(over_seeds.OverSeedsError, match="has not finished"):
        over_seeds.summarize([a, f], [KEY])
    with pytest.raises(over_seeds.OverSeedsError, match="at least 2 runs"):
        over_seeds.summarize([a], [KEY])
    g = _run(other, 7, 2.0)
    with pytest.raises(over_seeds.OverSeedsError, match=r"no 'gian'.*there: \['gain', 'other'\]"):
        over_seeds.summarize([a, g], ["results.paired_over_tasks.gian.mean"])
    with pytest.raises(over_seeds.OverSeedsError, match="dict, not a number"):
        over_seeds.summarize([a, g], ["results.paired_over_tasks"])
    assert over_seeds.main([str(a), str(b), "--key", KEY]) == 2
    assert "differ in config" in capsys.readouterr().err


def test_a_diverged_seed_makes_the_verdict_undefined(tmp_path):
    """``finish`` writes a NaN result as null: it reads back as NaN, the verdict is "undefined",
    and ``--out`` stays strict JSON (null again)."""
    runs = [_run(tmp_path, 0, 1.0), _run(tmp_path, 1, None), _run(tmp_path, 2, 2.0)]
    result = over_seeds.summarize(runs, [KEY])
    assert result["keys"][KEY]["verdict_vs_0"] == "undefined"
    assert "nan" in over_seeds.format_summary(result)
    out = tmp_path / "over.json"
    assert over_seeds.main([*map(str, runs), "--key", KEY, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["keys"][KEY]["per_seed"] == [1.0, None, 2.0]
