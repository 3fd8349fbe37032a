"""A number measured over seeds from several finished runs of one experiment: the per-seed values,
their mean and 95% t-CI, and the verdict against 0.

    python -m metarl_jax.io.over_seeds RUN_DIR [RUN_DIR ...] --key DOTTED.KEY [--key ...]
                                       [--min-over-keys] [--out FILE]

Each ``RUN_DIR`` is a finished run (``summary.json`` present) of the same experiment, preset and
config, differing only in ``--seed``: runs that differ in anything else, or repeat a seed, are
refused with the differing fields named (mixing settings would make the CI meaningless).
``--key`` is a dotted path into ``summary.json``, e.g.
``results.paired_over_tasks.maml_1_minus_pretrained_1.mean``. ``--min-over-keys`` adds the
per-seed minimum over the keys, e.g. a gain over the *better* of two baselines. Prints a table and
writes the same as JSON with ``--out``: ``{"runs": [...], "seeds": [...], "keys": {key:
stats.seed_summary + "verdict_vs_0"}}``.

This is the CPU route to a several-seed comparison for an experiment that trains one seed per run:
on a 2-core CPU, separate processes (one per seed, run side by side) are as fast per seed as
``vmap`` over seeds in one program, and each stays resumable on its own. On an accelerator,
``maml_cheetah`` / ``maml_ant`` train several seeds in one program (``num_seeds=S``) and write
the same summaries themselves (``results.over_seeds``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from metarl_jax import stats
from metarl_jax.io.run_dir import CONFIG_FILE, SUMMARY_FILE, read_json, to_jsonable, write_json

MIN_KEY = "min_over_keys"


class OverSeedsError(ValueError):
    """Runs that cannot be summarized together (the message says which and why)."""


def _flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def lookup(summary: dict, key: str, where: str) -> float:
    """``summary[a][b]...`` for ``key = "a.b..."`` as a float (``null``, how ``finish`` writes a
    diverged run's NaN, reads back as NaN); a missing part or a value that is not a number raises
    ``OverSeedsError`` naming what exists at that level."""
    node: Any = summary
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            at = ".".join(key.split(".")[:depth]) or "<top>"
            have = sorted(node) if isinstance(node, dict) else type(node).__name__
            raise OverSeedsError(f"{where}: no {part!r} under {at} of summary.json "
                                 f"(there: {have})")
        node = node[part]
    if node is None:
        return math.nan
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise OverSeedsError(f"{where}: {key} is {type(node).__name__}, not a number")
    return float(node)


def read_run(run_dir: Path) -> dict:
    """``{"dir", "name", "preset", "seed", "config", "summary"}`` of a finished run."""
    config_path, summary_path = run_dir / CONFIG_FILE, run_dir / SUMMARY_FILE
    if not config_path.is_file():
        raise OverSeedsError(f"{run_dir}: no config.json (not a run folder)")
    if not summary_path.is_file():
        raise OverSeedsError(f"{run_dir}: no summary.json: the run has not finished "
                             f"(continue it with --resume {run_dir})")
    try:
        saved, summary = read_json(config_path), read_json(summary_path)
    except json.JSONDecodeError as e:
        raise OverSeedsError(f"{run_dir}: unreadable JSON ({e})") from e
    return dict(dir=str(run_dir), name=saved.get("name"), preset=saved.get("preset"),
                seed=saved.get("seed"), config=saved.get("config", {}), summary=summary)


def check_same_setting(runs: Sequence[dict]) -> None:
    """Refuse runs of different experiments or configs, or repeated seeds."""
    first = runs[0]
    for run in runs[1:]:
        if run["name"] != first["name"]:
            raise OverSeedsError(f"{run['dir']} is a {run['name']!r} run, {first['dir']} a "
                                 f"{first['name']!r} run")
        mine, theirs = _flatten(run["config"]), _flatten(first["config"])
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differ:
            shown = ", ".join(f"{k}: {theirs.get(k)!r} vs {mine.get(k)!r}" for k in differ[:5])
            raise OverSeedsError(f"{run['dir']} and {first['dir']} differ in config "
                                 f"({len(differ)} fields: {shown}); over-seed statistics need "
                                 f"one setting")
    seeds = [run["seed"] for run in runs]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise OverSeedsError(f"seed(s) {repeated} appear more than once: each run must be a "
                             f"different seed")


def summary_vs_0(per_seed: Sequence[float]) -> dict:
    """``stats.seed_summary`` of per-seed values plus ``verdict_vs_0`` (their 95% t-CI against
    0: "better" / "worse" / "tie"; "undefined" for a NaN)."""
    summary = stats.seed_summary(per_seed)
    summary["verdict_vs_0"] = stats.ci_verdict(summary["mean"], summary["ci95"], 0.0, 0.0)
    return summary


def summarize(run_dirs: Sequence[Path], keys: Sequence[str], min_over_keys: bool = False) -> dict:
    """The over-seed summary of ``keys`` in ``run_dirs`` (module doc). Needs >= 2 runs."""
    if len(run_dirs) < 2:
        raise OverSeedsError(f"need at least 2 runs for a CI over seeds, got {len(run_dirs)}")
    if not keys:
        raise OverSeedsError("name at least one --key")
    if min_over_keys and len(keys) < 2:
        raise OverSeedsError("--min-over-keys needs at least 2 keys")
    runs = [read_run(Path(d)) for d in run_dirs]
    check_same_setting(runs)
    values: Dict[str, List[float]] = {
        key: [lookup(run["summary"], key, run["dir"]) for run in runs] for key in keys}
    if min_over_keys:
        values[MIN_KEY] = [min(vs) for vs in zip(*(values[k] for k in keys))]
    out = {key: summary_vs_0(per_seed) for key, per_seed in values.items()}
    return dict(name=runs[0]["name"], preset=runs[0]["preset"], runs=[r["dir"] for r in runs],
                seeds=[r["seed"] for r in runs], keys=out)


def format_summary(result: dict) -> str:
    lines = [f"{result['name']} (preset {result['preset']}), {len(result['seeds'])} seeds: "
             f"{result['seeds']}"]
    for key, s in result["keys"].items():
        seeds = " ".join("nan" if not math.isfinite(v) else f"{v:+.2f}" for v in s["per_seed"])
        lines.append(f"{key}: {s['mean']:+.2f} +- {s['ci95']:.2f} (95% t-CI over seeds; "
                     f"{s['verdict_vs_0']} vs 0)  per seed: {seeds}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metarl_jax.io.over_seeds",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders, one per seed")
    parser.add_argument("--key", action="append", default=[], required=True,
                        help="dotted path into summary.json (repeatable)")
    parser.add_argument("--min-over-keys", action="store_true",
                        help="also the per-seed minimum over the keys")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        result = summarize(args.runs, args.key, args.min_over_keys)
    except OverSeedsError as e:
        print(f"over_seeds: {e}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if args.out is not None:
        write_json(args.out, to_jsonable(result, nonfinite=[]))  # a NaN seed -> null
    return 0


if __name__ == "__main__":
    sys.exit(main())
