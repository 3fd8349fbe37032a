"""The benchmark suite: every benchmark, one JSON + one PNG each, and a regenerated RESULTS.md.

Usage (from the repo root; ``make bench`` runs the quick preset)::

    python -m benchmarks.run [--preset quick|full] [--only ppo_speed,maml_speed] [--out DIR]

Each benchmark runs in its own Python process (its own threads, XLA flags and memory; a crash
in one does not stop the others) and writes ``DIR/<name>.json``: the module's results, the
preset, the wall time and the machine (``benchmarks.machine.describe``). Then this process
draws ``DIR/<name>.png`` and writes ``DIR/../RESULTS.md`` from *every* ``<name>.json`` in DIR
(so ``--only`` refreshes some sections and keeps the others; each section names its own
machine, commit and date).

A benchmark module gives ``run(preset) -> dict`` (JSON-ready) and, optionally,
``markdown(result) -> str`` and ``plot(result, path)``. The result's optional ``headline`` --
a list of ``{"label", "ratio": spread, "target", "note"}`` (``benchmarks.timing.spread`` of the
per-round ratios; ratio > 1: ours is faster) -- feeds the summary table and the default plot.
A module without ``run`` is driven through its CLI (``main(["--quick"?, "--out", path])``) and,
without ``markdown``, rendered from its ``markdown_table(result["results"])``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
PRESETS = ("quick", "full")
# One thread for XLA's CPU matmuls (Eigen), to match torch.set_num_threads(1) (maml_speed doc).
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

# name -> (module, extra environment for its process). Order = the order they run and appear.
BENCHMARKS: Dict[str, tuple] = {
    "env_throughput": ("benchmarks.env_throughput", {}),
    "dr_throughput": ("benchmarks.dr_throughput", {}),
    "ppo_speed": ("benchmarks.ppo_speed", {}),
    "sac_speed": ("benchmarks.sac_speed", {}),
    "maml_speed": ("benchmarks.maml_speed", {"XLA_FLAGS": ONE_THREAD_XLA}),
    "compile_times": ("benchmarks.compile_times", {}),
}
TIMEOUT_S = {"quick": 1800, "full": 7200}  # per benchmark; generous for loaded machines


# ------------------------------------------------------------------------------ one benchmark
def run_benchmark(module_name: str, preset: str) -> dict:
    """Import ``module_name`` and run it at ``preset`` (in this process): its result dict."""
    module = importlib.import_module(module_name)
    if hasattr(module, "run"):
        return module.run(preset)
    with tempfile.TemporaryDirectory() as tmp:  # a module that only has a CLI
        out = pathlib.Path(tmp) / "result.json"
        module.main((["--quick"] if preset == "quick" else []) + ["--out", str(out)])
        return json.loads(out.read_text())


def worker(name: str, module_name: str, preset: str, out: pathlib.Path) -> None:
    """The body of a benchmark's own process: run it and write its JSON (with the machine)."""
    from benchmarks.machine import describe

    start = time.perf_counter()
    result = run_benchmark(module_name, preset)
    record = {"name": name, "preset": preset, "wall_s": time.perf_counter() - start,
              "machine": describe(), "result": result}
    out.write_text(json.dumps(record, indent=1, default=float))


def spawn(name: str, preset: str, out_dir: pathlib.Path, timeout_s: float) -> dict:
    """Run benchmark ``name`` in a fresh process; its record, or an error record."""
    module_name, extra_env = BENCHMARKS[name]
    out = out_dir / f"{name}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra_env)
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", name, "--preset", preset,
           "--out", str(out_dir)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
        error = None if proc.returncode == 0 else (
            f"exit status {proc.returncode}:\n{proc.stderr[-3000:]}")
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout_s:.0f} s"
    if error is None:
        return json.loads(out.read_text())
    from benchmarks.machine import describe

    record = {"name": name, "preset": preset, "wall_s": time.perf_counter() - start,
              "machine": describe(with_accelerator=False), "error": error}
    out.write_text(json.dumps(record, indent=1))
    return record


# ------------------------------------------------------------------------------ rendering
def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def ratio_text(r: dict) -> str:
    """``1.23x [1.10-1.31]``: the median per-round ratio and its min-max over rounds."""
    return f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]"


def table(columns: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def headline_rows(record: dict) -> List[list]:
    rows = []
    for h in (record.get("result") or {}).get("headline", []):
        target, r = h.get("target"), h["ratio"]
        met = "" if target is None else ("yes" if r["median"] >= target else
                                         f"no ({r['median'] / target:.0%} of target)")
        if target is not None and r["min"] < target <= r["max"]:
            met += "; rounds on both sides of it"
        rows.append([record["name"], h["label"], ratio_text(h["ratio"]),
                     "" if target is None else f">= {target}x", met])
    return rows


def section(record: dict) -> str:
    """A RESULTS.md section for one record (the module's own markdown, or a generic one)."""
    from benchmarks.machine import one_line

    name = record["name"]
    head = [f"## {name}", "",
            f"`python -m benchmarks.run --preset {record['preset']} --only {name}` "
            f"({record['wall_s']:.0f} s wall)", "",
            f"Machine: {one_line(record['machine'])}."]
    if record["machine"].get("xla_flags"):
        head.append(f"XLA_FLAGS: `{record['machine']['xla_flags']}`.")
    head.append("")
    if "error" in record:
        return "\n".join(head + ["**Failed**:", "", "```", record["error"], "```", ""])
    module = importlib.import_module(BENCHMARKS[name][0])
    result = record["result"]
    if hasattr(module, "markdown"):
        body = module.markdown(result)
    elif hasattr(module, "markdown_table") and "results" in result:
        body = module.markdown_table(result["results"])
    else:
        body = "```\n" + json.dumps(result, indent=1, default=float)[:4000] + "\n```"
    rows = headline_rows(record)
    if rows:
        body += "\n\n" + table(["benchmark", "comparison", "ratio (median [min-max])",
                                "target", "met"], rows)
    return "\n".join(head) + body.rstrip() + "\n"


def plot(record: dict, path: pathlib.Path) -> Optional[pathlib.Path]:
    """``path`` (PNG): the module's ``plot``, else its headline ratios with min-max bars."""
    if "error" in record:
        return None
    module = importlib.import_module(BENCHMARKS[record["name"]][0])
    import matplotlib

    matplotlib.use("Agg")
    if hasattr(module, "plot"):
        module.plot(record["result"], path)
        return path
    heads = record["result"].get("headline", [])
    if not heads:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(heads)), constrained_layout=True)
    med = [h["ratio"]["median"] for h in heads]
    lo = [m - h["ratio"]["min"] for m, h in zip(med, heads)]
    hi = [h["ratio"]["max"] - m for m, h in zip(med, heads)]
    y = range(len(heads))
    ax.barh(y, med, xerr=[lo, hi], color="tab:blue", alpha=0.8)
    for i, h in enumerate(heads):
        if h.get("target") is not None:
            ax.plot([h["target"]] * 2, [i - 0.4, i + 0.4], color="tab:red")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(list(y), [h["label"] for h in heads])
    ax.set_xlabel("speed ratio, ours / peer (median per round, min-max bars; red: target)")
    ax.set_title(record["name"])
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results_md(out_dir: pathlib.Path, md_path: pathlib.Path) -> str:
    """RESULTS.md from every known ``<name>.json`` in ``out_dir``, in suite order."""
    records = []
    for name in BENCHMARKS:
        path = out_dir / f"{name}.json"
        if path.exists():
            record = json.loads(path.read_text())
            if "machine" in record and "preset" in record:  # skip files of the old format
                records.append(record)
    summary = [row for r in records for row in headline_rows(r)]
    parts = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.run` (`make bench`: the quick preset) from "
        "`benchmarks/results/<name>.json`; do not edit by hand. Each comparison interleaves its "
        "programs (A, B, A, B, ...) and reports the median of the per-round ratios with its "
        "min-max over rounds (`benchmarks/timing.py`); ratio > 1 means ours is faster. Numbers "
        "from a shared or loaded machine are noisy: each section names its machine and the "
        "1-minute load average when it ran.",
        "",
    ]
    if summary:
        parts += ["## Summary", "", table(["benchmark", "comparison", "ratio (median [min-max])",
                                           "target", "met"], summary), ""]
    failed = [r["name"] for r in records if "error" in r]
    if failed:
        parts += [f"Failed in their latest run: {', '.join(failed)}.", ""]
    parts += [section(r) for r in records]
    text = "\n".join(parts)
    md_path.write_text(text)
    return text


# ------------------------------------------------------------------------------ CLI
def parse_only(only: Optional[str]) -> List[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="quick")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", default=str(RESULTS_DIR),
                        help="results folder (RESULTS.md is written beside it)")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark "
                        f"(default {TIMEOUT_S})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args.worker, BENCHMARKS[args.worker][0], args.preset,
               out_dir / f"{args.worker}.json")
        return 0
    try:
        names = parse_only(args.only)
    except ValueError as e:
        parser.error(str(e))
    timeout_s = args.timeout or TIMEOUT_S[args.preset]
    suite_start = time.perf_counter()
    for name in names:
        print(f"[bench] {name} ({args.preset}) ...", flush=True)
        record = spawn(name, args.preset, out_dir, timeout_s)
        status = "FAILED: " + record["error"].splitlines()[0] if "error" in record else "ok"
        print(f"[bench] {name}: {status} ({record['wall_s']:.0f} s)", flush=True)
        for row in headline_rows(record):
            print(f"         {row[1]}: {row[2]}" + (f"  target {row[3]}: {row[4]}"
                                                    if row[3] else ""), flush=True)
        plot(record, out_dir / f"{name}.png")
    md = out_dir.parent / "RESULTS.md"
    write_results_md(out_dir, md)
    print(f"[bench] wrote {md} ({time.perf_counter() - suite_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
