"""Compile time of each training program, and the number of compiles during a short run.

Usage (from the repo root; part of ``python -m benchmarks.run``)::

    python -m benchmarks.compile_times [--preset quick|full] [--out PATH]

``programs``: for each learner, at the sizes of an experiment's quick preset (the learner,
config and init arguments its ``policies(config)`` gives, or the experiment's own builder), with
JAX's persistent cache off in this process:

* ``init``: compiles (count, seconds) while building the initial state;
* ``first chunk``: compiles and their seconds during the first ``train_chunk`` call (seeds
  stacked as the experiment trains them) and its wall time;
* ``short run``: compiles during ``chunks`` more calls of the same size (0 = one compile per
  training program) and the median steady chunk time.

Counts come from JAX's compile events (``benchmarks.compiles``): every backend compilation in
the process, jitted functions and eager ops alike.

``experiment``: ``python -m experiments.dr_pendulum --preset quick`` twice in fresh processes
sharing an empty persistent-cache folder (``METARL_JAX_CACHE_DIR``): compiles, their seconds and
the wall time of each, i.e. a cold and a warm start.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Dict, Tuple

import numpy as np

from benchmarks.cli import preset_parser, save_and_print
from benchmarks.compiles import CompileCounter

ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Preset:
    experiments: Tuple[str, ...] = ("dr_pendulum", "rl2_mdp", "maml_nav2d", "maml_sinusoid",
                                    "finetune_transfer", "robust_dr", "rl2_nav")
    chunks: int = 3
    updates_per_chunk: int = 2
    experiment_runs: Tuple[str, ...] = ("dr_pendulum",)


PRESETS = {"quick": Preset(experiments=("dr_pendulum", "rl2_mdp", "maml_sinusoid",
                                        "finetune_transfer")),
           "full": Preset()}


def _phase_of(name: str):
    """``(learner, learner config, init args, stacked)`` of experiment ``name``'s quick preset."""
    module = importlib.import_module(f"experiments.{name}")
    config = module.PRESETS["quick"]
    if name == "maml_sinusoid":  # no policies(): a supervised learner
        learner = module.make_learner(config, max(config.shots))
        return learner, module.method_config(config, "maml"), (), False
    if name == "finetune_transfer":  # SAC from scratch on the target
        from envs.pendulum import Pendulum
        from metarl_jax.algos.sac import SAC
        from metarl_jax.randomization.param_space import fixed_space

        sac = SAC(Pendulum())
        return sac, config.sac, (fixed_space(sac.env.default_params()),), True
    phases = module.policies(config)
    phase = next(iter(phases.values()))
    stacked = getattr(phase, "stacked", True)
    return phase[0], phase[1], tuple(phase[2]), stacked


def measure_program(name: str, p: Preset) -> dict:
    import jax

    learner, config, init_args, stacked = _phase_of(name)
    n = p.updates_per_chunk
    key = jax.random.PRNGKey(0)
    with CompileCounter() as compiles:
        mark, start = compiles.mark(), time.perf_counter()
        if stacked:
            state = learner.init_seeds(jax.random.split(key, 2), config, *init_args)
            chunk = learner.train_chunk_seeds
        else:
            state = learner.init(key, config, *init_args)
            chunk = learner.train_chunk
        jax.block_until_ready(state)
        init_compiles, init_s = compiles.since(mark)
        init_wall = time.perf_counter() - start

        mark, start = compiles.mark(), time.perf_counter()
        state, _ = chunk(state, config, n)
        jax.block_until_ready(state)
        first_compiles, first_compile_s = compiles.since(mark)
        first_wall = time.perf_counter() - start

        mark, times = compiles.mark(), []
        for _ in range(p.chunks):
            start = time.perf_counter()
            state, _ = chunk(state, config, n)
            jax.block_until_ready(state)
            times.append(time.perf_counter() - start)
        run_compiles, _ = compiles.since(mark)
    return {"experiment": name, "learner": type(learner).__name__,
            "seeds": 2 if stacked else 1, "updates_per_chunk": n,
            "init_compiles": init_compiles, "init_compile_s": init_s, "init_wall_s": init_wall,
            "first_chunk_compiles": first_compiles, "first_chunk_compile_s": first_compile_s,
            "first_chunk_wall_s": first_wall, "short_run_chunks": p.chunks,
            "short_run_compiles": run_compiles, "steady_chunk_s": float(np.median(times)),
            "traces": dict(learner.traces)}


def experiment_worker(name: str, out_dir: str) -> dict:
    """Run ``experiments.<name> --preset quick`` in this process, counting compiles."""
    from metarl_jax.io.cli import cli

    module = importlib.import_module(f"experiments.{name}")
    start = time.perf_counter()
    with CompileCounter() as compiles:
        status = cli(name, module.main, module.Config, module.PRESETS, module.__doc__ or "",
                     argv=["--preset", "quick", "--out", out_dir])
    return {"status": status, "compiles": compiles.count, "cache_hits": compiles.cache_hits,
            "compile_s": compiles.seconds, "wall_s": time.perf_counter() - start}


def measure_experiment(name: str) -> dict:
    """Cold then warm run of ``name``'s quick preset, in fresh processes, one cache folder."""
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(ROOT), METARL_JAX_CACHE_DIR=f"{tmp}/cache")
        env.pop("METARL_JAX_COMPILE_CACHE", None)
        for label in ("cold_cache", "warm_cache"):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.compile_times", "--experiment", name,
                 "--run-out", f"{tmp}/{label}"], cwd=ROOT, env=env, capture_output=True,
                text=True)
            if proc.returncode:
                raise RuntimeError(f"{name} ({label}) failed:\n{proc.stderr[-2000:]}")
            runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    runs["warm_over_cold_wall"] = runs["warm_cache"]["wall_s"] / runs["cold_cache"]["wall_s"]
    return runs


def run(preset: str = "quick") -> dict:
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # real compiles, not disk reads
    p = PRESETS[preset]
    programs = []
    for name in p.experiments:
        try:
            programs.append(measure_program(name, p))
        except Exception as e:  # one program's failure must not hide the others
            programs.append({"experiment": name, "error": f"{type(e).__name__}: {e}"})
    experiments = {name: measure_experiment(name) for name in p.experiment_runs}
    return {"title": "Compile times and compiles per run", "settings": dataclasses.asdict(p),
            "programs": programs, "experiments": experiments}


def markdown(result: dict) -> str:
    lines = [
        "Per learner, at its experiment's quick-preset sizes (persistent cache off): compiles "
        "and their seconds while initializing and during the first `train_chunk` call, then the "
        f"compiles during {result['settings']['chunks']} more chunks of "
        f"{result['settings']['updates_per_chunk']} updates (0: the training program compiled "
        "once).",
        "",
        "| experiment | learner | seeds | init: compiles / s | first chunk: compiles / compile s "
        "/ wall s | compiles in short run | steady chunk s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["programs"]:
        if "error" in r:
            lines.append(f"| {r['experiment']} | failed: {r['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {r['experiment']} | {r['learner']} | {r['seeds']} | {r['init_compiles']} / "
            f"{r['init_compile_s']:.1f} | {r['first_chunk_compiles']} / "
            f"{r['first_chunk_compile_s']:.1f} / {r['first_chunk_wall_s']:.1f} | "
            f"{r['short_run_compiles']} | {r['steady_chunk_s']:.3f} |")
    for name, runs in result["experiments"].items():
        lines += ["", f"`python -m experiments.{name} --preset quick`, two fresh processes "
                  "sharing one empty persistent-cache folder:", "",
                  "| run | compile requests | of them cache hits | compile s (hits: reads) "
                  "| wall s |", "|---|---:|---:|---:|---:|"]
        for label in ("cold_cache", "warm_cache"):
            r = runs[label]
            lines.append(f"| {label} | {r['compiles']} | {r.get('cache_hits', '-')} | "
                         f"{r['compile_s']:.1f} | {r['wall_s']:.1f} |")
        lines.append(f"\nWarm / cold wall time: {runs['warm_over_cold_wall']:.2f}.")
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    """Seconds spent compiling per learner (init and first chunk) beside a steady chunk."""
    import matplotlib.pyplot as plt

    rows = [r for r in result["programs"] if "error" not in r]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(rows)), constrained_layout=True)
    y = np.arange(len(rows))
    init = [r["init_compile_s"] for r in rows]
    first = [r["first_chunk_compile_s"] for r in rows]
    ax.barh(y, init, color="tab:gray", label="init compiles")
    ax.barh(y, first, left=init, color="tab:red", label="first train_chunk compile")
    ax.barh(y, [r["steady_chunk_s"] for r in rows], left=np.add(init, first), color="tab:blue",
            label="one steady chunk")
    ax.set_yticks(y, [f"{r['experiment']} ({r['learner']})" for r in rows])
    ax.set_xlabel("seconds")
    ax.legend(loc="lower right")
    ax.set_title("compile time per training program (quick-preset sizes, cache off)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> Dict:
    parser = preset_parser(__doc__, PRESETS, "benchmarks/results/compile_times_cli.json")
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--run-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.experiment:
        print(json.dumps(experiment_worker(args.experiment, args.run_out)))
        return {}
    return save_and_print(run(args.preset), args.out, markdown)


if __name__ == "__main__":
    main()
