"""MAML vs first-order MAML vs pretrain-and-finetune on sinusoid regression (Finn et al. 2017).

    python -m experiments.maml_sinusoid --preset quick|cpu|accel [--seed N] [--out DIR]
                                        [field=value]
    python -m experiments.maml_sinusoid --resume runs/maml_sinusoid/<timestamp>

Story: tasks are sine waves ``A sin(x - phase)``, ``A ~ U[0.1, 5]``, ``phase ~ U[0, pi]``,
``x ~ U[-5, 5]``. A 2x40 ReLU MLP is meta-trained with K-shot support and query sets (meta-batch
25, one inner SGD step of rate 0.01, Adam 1e-3 outside) by exact second-order MAML and by
first-order MAML, separately for K = 5 and 10; the baseline is the same network trained on all
tasks at once (MAML with zero inner steps). Each is then adapted to ``eval_tasks`` fresh tasks
from K points by SGD with the inner rate, and scored by MSE on ``eval_points`` fresh inputs.

Writes: ``summary.json`` with ``results.<method>.mse_k{K}_{S}step`` (S = 1 and ``eval_steps``)
and ``..._ci95`` (95% interval half-width over tasks) plus ``curve_k{K}`` (MSE after 0..S
steps), ``fits.png`` (adapted fits on a few tasks), ``curves.png`` (training loss),
``metrics.jsonl``, ``config.json`` and ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from envs import sinusoid
from metarl_jax import stats
from metarl_jax.algos.maml import (
    MAMLConfig,
    SupervisedMAML,
    adaptation_curve,
    inner_rates,
    sgd_step,
)
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.nets.mlp import MLP

NAME = "maml_sinusoid"
METHODS = ("maml", "fomaml", "pretrained")


@dataclasses.dataclass(frozen=True)
class Config:
    maml: MAMLConfig = MAMLConfig(num_inner_steps=1, meta_batch_size=25, inner_lr=0.01,
                                  outer_lr=1e-3)
    num_iterations: int = 40_000  # outer updates per method (the paper: 70k)
    log_every: int = 100  # outer updates averaged into one metrics.jsonl line
    updates_per_chunk: int = 50  # logged lines per compiled call
    shots: Tuple[int, ...] = (5, 10)
    hidden_sizes: Tuple[int, ...] = (40, 40)
    eval_tasks: int = 2000
    eval_points: int = 100
    eval_steps: int = 10
    plot_tasks: int = 4

    def __post_init__(self):
        self.maml.validate()
        check_at_least_one(self, ("num_iterations", "log_every", "updates_per_chunk", "eval_tasks",
                                  "eval_points", "eval_steps", "plot_tasks"))
        if self.num_iterations % self.log_every:
            raise ValueError(f"num_iterations={self.num_iterations} must be a multiple of "
                             f"log_every={self.log_every}")
        if not self.shots or min(self.shots) < 1:
            raise ValueError(f"shots must be positive integers, got {self.shots}")


PRESETS = {
    "quick": Config(num_iterations=1500, updates_per_chunk=15, shots=(5, 10), eval_tasks=1000,
                    plot_tasks=3),
    "cpu": Config(),
    "accel": Config(num_iterations=70_000, eval_tasks=10_000),
}


def network(config: Config) -> MLP:
    return MLP(config.hidden_sizes, 1, activation=nn.relu)


def make_learner(config: Config, shots: int) -> SupervisedMAML:
    net = network(config)

    def loss(params, points):
        return jnp.mean((net.apply(params, points.x) - points.y) ** 2)

    def sample_batch(key, batch_size):
        task_key, support_key, query_key = jax.random.split(key, 3)
        tasks = sinusoid.sample_tasks(task_key, (batch_size,))
        return (sinusoid.sample_points(support_key, tasks, shots),
                sinusoid.sample_points(query_key, tasks, shots))

    init = lambda key: net.init(key, jnp.zeros((1, 1)))
    return SupervisedMAML(loss, init, sample_batch)


def method_config(config: Config, method: str) -> MAMLConfig:
    if method == "fomaml":
        return config.maml.replace(first_order=True)
    if method == "pretrained":
        return config.maml.replace(num_inner_steps=0)
    return config.maml


def finetune_rate(state, mconfig: MAMLConfig, config: Config):
    """The inner rate (learned, or the config's; the baseline has no learned one)."""
    return inner_rates(state.meta, config.maml if mconfig.num_inner_steps == 0 else mconfig)


def evaluate(learner, state, mconfig: MAMLConfig, config: Config, shots: int, key):
    """MSE after 0..eval_steps inner steps on fresh tasks: ``[eval_tasks, eval_steps + 1]``."""
    task_key, support_key, query_key = jax.random.split(key, 3)
    tasks = sinusoid.sample_tasks(task_key, (config.eval_tasks,))
    support = sinusoid.sample_points(support_key, tasks, shots)
    query = sinusoid.sample_points(query_key, tasks, config.eval_points)
    lr = finetune_rate(state, mconfig, config)
    curve = lambda s, q: adaptation_curve(learner.loss, learner.loss, state.meta.params, lr, s,
                                          q, config.eval_steps)
    return np.asarray(jax.jit(jax.vmap(curve))(support, query))


def plot_fits(path, config: Config, learners, states, shots: int, key):
    """Rows: methods; columns: tasks. True curve, the K points, fits after 0, 1, S steps."""
    tasks = sinusoid.sample_tasks(key, (config.plot_tasks,))
    support = sinusoid.sample_points(jax.random.fold_in(key, 1), tasks, shots)
    grid = sinusoid.grid_points(tasks, 200)
    fig = Figure(figsize=(3.2 * config.plot_tasks, 2.6 * len(METHODS)), layout="constrained")
    axes = fig.subplots(len(METHODS), config.plot_tasks, squeeze=False)
    for row, method in enumerate(METHODS):
        learner, state = learners[method], states[method]
        lr = finetune_rate(state, method_config(config, method), config)
        net = network(config)
        for col in range(config.plot_tasks):
            ax, pts = axes[row, col], jax.tree.map(lambda x: x[col], support)
            params, xs = state.meta.params, grid.x[col]
            ax.plot(xs[:, 0], grid.y[col][:, 0], "k-", lw=2, label="true")
            for step in range(config.eval_steps + 1):
                if step in (0, 1, config.eval_steps):
                    ax.plot(xs[:, 0], net.apply(params, xs)[:, 0], "--" if step == 0 else "-",
                            label=f"{step} steps")
                params = sgd_step(learner.loss, params, lr, pts)
            ax.plot(pts.x[:, 0], pts.y[:, 0], "r^", ms=7, label=f"{shots} points")
            ax.set_title(f"{method}, A={float(tasks.amplitude[col]):.2f}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    base_key = jax.random.PRNGKey(seed)
    phases = [(m, k) for m in ("maml", "fomaml") for k in config.shots] + [
        ("pretrained", max(config.shots))]  # the baseline ignores K; trained on the largest
    learners, states = {}, {}
    for index, (method, shots) in enumerate(phases):
        phase = method if method == "pretrained" else f"{method}_k{shots}"
        learner, mconfig = make_learner(config, shots), method_config(config, method)
        states[phase] = train_phase(
            run_dir, phase,
            init=lambda: learner.init(jax.random.fold_in(base_key, index), mconfig),
            chunk=lambda s, n: learner.train_chunk(s, mconfig, n, log_every=config.log_every),
            num_updates=config.num_iterations // config.log_every,
            updates_per_chunk=config.updates_per_chunk,
            steps_per_update=config.log_every * config.maml.meta_batch_size,
            show=("post_loss",))
        learners[phase] = learner

    results, rows = {}, []
    eval_key = jax.random.fold_in(base_key, 10_000)
    for method in METHODS:
        results[method] = {}
        for shots in config.shots:
            phase = method if method == "pretrained" else f"{method}_k{shots}"
            learner = make_learner(config, shots)
            mse = evaluate(learner, states[phase], method_config(config, method), config,
                           shots, jax.random.fold_in(eval_key, shots))
            for step in (1, config.eval_steps):
                name = f"mse_k{shots}_{step}step"
                results[method][name] = float(mse[:, step].mean())
                results[method][name + "_ci95"] = float(stats.ci95(mse[:, step]))
            results[method][f"curve_k{shots}"] = mse.mean(0).tolist()
        rows.append(dict(method=method, **{k: v for k, v in results[method].items()
                                           if k.startswith("mse") and "ci95" not in k}))

    fit_phase = {m: m if m == "pretrained" else f"{m}_k{config.shots[0]}" for m in METHODS}
    plot_fits(run_dir / "fits.png", config, {m: learners[p] for m, p in fit_phase.items()},
              {m: states[p] for m, p in fit_phase.items()}, config.shots[0],
              jax.random.fold_in(eval_key, 1))
    plots.plot_curves(run_dir / "curves.png", {
        phase: ([line["step"] for line in phase_metrics(run_dir, phase)],
                [line["post_loss"] for line in phase_metrics(run_dir, phase)])
        for phase in states}, xlabel="tasks seen", ylabel="post-adaptation query MSE",
        title="meta-training on sinusoids")
    return finish(run_dir, {"results": results, "eval_tasks": config.eval_tasks},
                  format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
