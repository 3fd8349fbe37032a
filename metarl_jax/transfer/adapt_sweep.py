"""Re-adapt a finished few-shot meta-RL run's policies at other inner rates and sample sizes.

    python -m metarl_jax.transfer.adapt_sweep RUN_DIR [--rates 0.025,0.05,0.1]
        [--episodes 2,8] [--tasks N] [--steps S] [--methods maml,pretrained]
        [--log-std-shift D] [--seed-index I] [--out FILE]

For a ``maml_cheetah``, ``maml_ant`` or ``maml_nav2d`` run folder (any experiment whose
``policies(config)`` are ``MAMLRL`` phases and which has ``eval_config(config, method)``): each
saved meta-policy (``--methods``, default all of the run's phases) is adapted on the run's own
held-out tasks (``few_shot.held_out_tasks``: the same tasks and rollout keys as the run's
evaluation) for 0..S inner steps with the method's test-time inner step, at every inner rate of
``--rates`` and every episode count of ``--episodes`` (episodes per inner step and per
evaluation). Nothing is trained: a question such as "does this seed's meta-policy adapt at a
smaller step, or from more samples, or is it not adaptable at all?" costs evaluations only.
At the run's own rate, episode count, task count and steps it reproduces the run's
``returns_by_steps`` (a test checks this).

``--log-std-shift D`` adds D to every policy's log-std before adapting (a lower exploration
noise, same means): a check of whether a policy's noise level alone explains its adaptability.

A run of several seeds (``num_seeds=S``) is swept one seed at a time: ``--seed-index I`` (default
0) picks seed I, whose held-out tasks are those of the run ``--seed <run's seed + I>``.

Writes ``RUN_DIR/adapt_sweep.json`` (or ``--out``): ``{"run", "experiment", "seed" (the swept
seed's), "tasks",
"steps", "log_std_shift", "rows": [{"method", "episodes", "inner_lr", "learned_rates",
"log_std_mean",
"returns_by_steps" [S+1], "returns_ci95" [S+1], "gain_1_minus_0" (``stats.paired_comparison``
of the 1-step minus the 0-step returns over tasks)}]}``, and prints one table line per row.
Rollouts are ``rates x episodes x methods`` evaluations of ``tasks x episodes x (S+1)``
episodes; a rate is a traced leaf (one compile per episode count and method config).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax import stats
from metarl_jax.algos.maml import mean_rate
from metarl_jax.algos.maml_rl import MAMLRL
from metarl_jax.io.experiment import enable_compile_cache
from metarl_jax.io.load import RunLoadError, load_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.run_dir import jsonable_listing_nonfinite, write_json
from metarl_jax.transfer.few_shot import held_out_tasks, returns_by_steps

OUT_FILE = "adapt_sweep.json"


def _eval_task_count(config) -> int:
    for field in ("eval_tasks", "eval_goals"):
        if hasattr(config, field):
            return int(getattr(config, field))
    raise ValueError(f"{type(config).__name__} has no eval_tasks / eval_goals field")


def shift_log_std(params, shift: float):
    """``params`` with ``shift`` added to the Gaussian policy's ``log_std`` leaf."""
    inner = dict(params["params"])
    inner["log_std"] = inner["log_std"] + jnp.float32(shift)
    return {**params, "params": inner}


def sweep(run_dir, rates: Optional[Sequence[float]] = None,
          episodes: Optional[Sequence[int]] = None, *,
          methods: Optional[Sequence[str]] = None, tasks: Optional[int] = None,
          steps: Optional[int] = None, log_std_shift: float = 0.0, seed_index: int = 0) -> dict:
    """Adapt the run's saved meta-policies at each rate x episode count (see the module doc).

    Args:
        run_dir: a finished or checkpointed few-shot meta-RL run folder.
        rates: inner rates (> 0, finite), each applied as the method's fixed test-time rate,
            also in place of learned (Meta-SGD) rates (default: each method's own test-time
            rate(s), ``eval_config``'s; a row's ``inner_lr`` is then the learned rates' mean
            and ``learned_rates`` is true).
        episodes: episodes per inner step and per evaluation (>= 1 each; default: the
            method's own).
        methods: phases to adapt (default: every phase with a checkpoint).
        tasks: the first ``tasks`` of the run's held-out tasks (default: all of them; fewer
            tasks also change the rollout keys, so only the full count reproduces the run).
        steps: inner steps S (default: the run's ``eval_steps``).
        log_std_shift: added to each policy's log-std before adapting.
        seed_index: which seed of a several-seed run (``num_seeds``) to adapt (default 0).

    Returns the JSON-ready dict written by ``main``. Raises ``ValueError`` on a bad argument
    and ``RunLoadError`` on a folder that is not such a run.
    """
    if rates is not None:
        rates = [float(r) for r in rates]
        if not rates or not all(np.isfinite(r) and r > 0 for r in rates):
            raise ValueError(f"rates must be finite and > 0, got {rates}")
    if episodes is not None:
        episodes = [int(e) for e in episodes]
        if not episodes or min(episodes) < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not np.isfinite(log_std_shift):
        raise ValueError(f"log_std_shift must be finite, got {log_std_shift}")
    run = load_run(run_dir)
    module = importlib.import_module(f"experiments.{run.name}")
    if not hasattr(module, "eval_config") or not all(
            isinstance(p.learner, MAMLRL) for p in run.policies.values()):
        raise RunLoadError(f"{run.run_dir} is a {run.name!r} run, not a few-shot MAML-RL run "
                           "(maml_cheetah, maml_ant, maml_nav2d)")
    methods = list(run.policies) if methods is None else list(methods)
    unknown = sorted(set(methods) - set(run.policies))
    if unknown:
        raise ValueError(f"no trained phase {unknown} in {run.run_dir}; it has "
                         f"{sorted(run.policies)}")
    count = _eval_task_count(run.config)
    tasks = count if tasks is None else int(tasks)
    if not 1 <= tasks <= count:
        raise ValueError(f"tasks must be in [1, {count}] (the run's held-out tasks), got {tasks}")
    steps = int(run.config.eval_steps if steps is None else steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    num_seeds = int(getattr(run.config, "num_seeds", 1))
    if not 0 <= seed_index < num_seeds:
        raise ValueError(f"seed_index must be in [0, {num_seeds}) (the run's seeds), got "
                         f"{seed_index}")
    seed = run.seed + seed_index  # few_shot.seed_keys

    # The task distribution the run trained and evaluated on (part of each saved state).
    space = jax.tree.map(lambda x: x[0], run.policies[methods[0]].state.space)
    all_tasks, rollout_key = held_out_tasks(space, jax.random.PRNGKey(seed), count)
    held_out = jax.tree.map(lambda x: x[:tasks], all_tasks)
    if tasks < count:
        rollout_key = jax.random.fold_in(rollout_key, tasks)
    rows = []
    for method in methods:
        trained = run.policies[method]
        meta = jax.tree.map(lambda x: x[seed_index], trained.state.meta)
        if log_std_shift:
            meta = meta.replace(params=shift_log_std(meta.params, log_std_shift))
        base = module.eval_config(run.config, method)
        for eps in (base.episodes_per_task,) if episodes is None else episodes:
            for rate in (None,) if rates is None else rates:
                # A given rate replaces learned (Meta-SGD) rates too: the step is that fixed one.
                config = base.replace(episodes_per_task=eps) if rate is None else base.replace(
                    inner_lr_mode="fixed", inner_lr=rate, episodes_per_task=eps)
                returns, _ = trained.learner.evaluate(meta, config, held_out, rollout_key, steps)
                returns = np.asarray(returns, np.float64)  # [G, S+1]
                mean, ci95 = returns_by_steps(returns)
                own = rate is None and base.inner_lr_mode != "fixed"
                rows.append({"method": method, "episodes": eps,
                             "inner_lr": float(mean_rate(meta.inner_lr) if own
                                               else config.inner_lr),
                             "learned_rates": own,
                             "log_std_mean": float(np.mean(meta.params["params"]["log_std"])),
                             "returns_by_steps": mean, "returns_ci95": ci95,
                             "gain_1_minus_0": stats.paired_comparison(returns[:, 1],
                                                                       returns[:, 0])})
    return {"run": str(run.run_dir), "experiment": run.name, "seed": seed, "tasks": tasks,
            "steps": steps, "log_std_shift": log_std_shift, "rows": rows}


def table(result: dict) -> str:
    """One line per row: method, episodes, rate, returns after 0..S steps, the 1-step gain
    (mean +- 95% CI half-width over tasks) and its verdict."""
    lines = []
    for r in result["rows"]:
        g = r["gain_1_minus_0"]
        line = {"method": r["method"], "episodes": r["episodes"], "inner_lr": f"{r['inner_lr']:g}",
                "log_std": f"{r['log_std_mean']:.2f}"}
        for s, x in enumerate(r["returns_by_steps"]):
            line[f"{s} step{'s' if s != 1 else ''}"] = f"{x:.1f}"
        line["1-step gain"] = f"{g['mean']:+.1f} ± {g['ci95']:.1f}" if g["ci95"] is not None \
            else f"{g['mean']:+.1f}"
        line["verdict"] = g["paired_verdict"] or "-"
        lines.append(line)
    return format_table(lines)


def _floats(text: str):
    return [float(x) for x in text.split(",") if x]


def _ints(text: str):
    return [int(x) for x in text.split(",") if x]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metarl_jax.transfer.adapt_sweep",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--rates", type=_floats, default=None,
                        help="inner rates, comma-separated (default: each method's own)")
    parser.add_argument("--episodes", type=_ints, default=None,
                        help="episodes per inner step, comma-separated (default: the run's)")
    parser.add_argument("--methods", default=None, help="phases, comma-separated (default: all)")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--log-std-shift", type=float, default=0.0)
    parser.add_argument("--seed-index", type=int, default=0,
                        help="which seed of a several-seed run (default 0)")
    parser.add_argument("--out", default=None, help=f"output JSON (default: RUN_DIR/{OUT_FILE})")
    args = parser.parse_args(argv)
    enable_compile_cache()  # the same evaluation program serves every seed of a design
    try:
        result = sweep(args.run_dir, args.rates, args.episodes,
                       methods=args.methods.split(",") if args.methods else None,
                       tasks=args.tasks, steps=args.steps, log_std_shift=args.log_std_shift,
                       seed_index=args.seed_index)
    except (ValueError, RunLoadError) as e:
        print(f"adapt_sweep: error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.run_dir) / OUT_FILE
    # A diverged adaptation (too large a rate) is NaN: written as null and listed, not hidden.
    jsonable, _ = jsonable_listing_nonfinite(result, "value(s)", " (a diverged adaptation?)")
    write_json(out, jsonable, indent=1)
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
