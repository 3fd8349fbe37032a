"""Few-shot (k inner steps) meta-RL runs: train several ``MAMLRL`` configs as checkpointed phases,
then summarize returns after 0..S inner steps on held-out tasks.

Used by ``experiments.maml_nav2d`` and ``experiments.maml_cheetah``; generic over the env.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import jax
import numpy as np
from jax.sharding import Mesh

from metarl_jax import stats
from metarl_jax.io import plots
from metarl_jax.io.load import Phase
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.scale import sharded_all, to_host


def meta_phases(learner, config: Any, space, methods) -> Dict[str, Phase]:
    """An experiment's ``policies(config)`` for MAML-RL methods: ``{method: Phase(learner,
    config.<method>, (space,), num_updates=config.<method>_iterations)}``, restored by
    ``metarl_jax.load_run`` (``act`` is the pre-adaptation meta-policy). One state per method
    (``stacked=False``) unless ``config.num_seeds > 1`` (``train_meta_phases`` with a key per
    seed: states stacked ``[S, ...]``)."""
    stacked = getattr(config, "num_seeds", 1) > 1
    return {m: Phase(learner, getattr(config, m), (space,), stacked=stacked,
                     num_updates=getattr(config, f"{m}_iterations")) for m in methods}


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """``[S, 2]`` base keys of the seeds of a few-shot run: seed i's is ``PRNGKey(seed + i)``,
    the key of a one-seed run with ``--seed seed+i`` (the same held-out tasks, initial
    parameters and rollout keys), so that a batched run's seed i and that separate run are the
    same experiment (bit for bit where ``vmap`` leaves the floats alone, as in nav2d; MJX's can
    differ in the last digits, which training amplifies)."""
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    return jax.numpy.stack([jax.random.PRNGKey(seed + i) for i in range(num_seeds)])


def train_meta_phases(run_dir: Path, phases: Mapping[str, Phase], key: jax.Array,
                      updates_per_chunk: int, mesh: Optional[Mesh] = None) -> Dict[str, Any]:
    """Train each of ``phases`` (``meta_phases``: a ``MAMLRL``, its config, ``(task space,)``)
    for its ``num_updates`` meta-iterations, each a resumable phase of the run named after its
    method; the i-th method's init key is ``fold_in(key, i)``. Returns ``{method: final
    MAMLRLState}``. ``key`` ``[2]``: one seed; ``[S, 2]`` (``seed_keys``, phases with
    ``stacked=True``): S seeds trained side by side in one program (``train_chunk_seeds``: the
    meta-iteration ``vmap``-ed over seeds; states ``[S, ...]``; on an accelerator one program
    fills the device where one seed's meta-batch may not). ``mesh``
    (``metarl_jax.scale.run_mesh(args.devices)``): each update's meta-batch of tasks split over
    its devices (``ShardedMAMLRL``; ``meta_batch_size`` divisible by their number; one seed
    only: ``ShardedMAMLRL`` refuses ``train_chunk_seeds``); the returned states are readable
    by this process."""
    stacked = np.ndim(key) == 2
    num_seeds = np.shape(key)[0] if stacked else 1
    learners = sharded_all([p[0] for p in phases.values()], mesh)
    states = {}
    for index, (learner, (method, (_, config, init_args, num_updates))) in enumerate(
            zip(learners, ((m, p[:4]) for m, p in phases.items()))):
        samples = ((config.num_inner_steps + 1) * config.meta_batch_size
                   * config.episodes_per_task * learner.env.max_steps * num_seeds)
        def init():  # train_phase calls init / chunk within this iteration
            if stacked:
                keys = jax.vmap(lambda k: jax.random.fold_in(k, index))(key)
                return learner.init_seeds(keys, config, *init_args)
            return learner.init(jax.random.fold_in(key, index), config, *init_args)

        def chunk(state, n):
            if stacked:
                return learner.train_chunk_seeds(state, config, n)
            return learner.train_chunk(state, config, n)

        states[method] = train_phase(
            run_dir, method, init=init, chunk=chunk, num_updates=num_updates,
            updates_per_chunk=updates_per_chunk, steps_per_update=samples,
            show=("return_pre", "return_post"))
    return to_host(states)


def held_out_tasks(space, seed_key: jax.Array, count: int) -> Tuple[Any, jax.Array]:
    """``(tasks, rollout_key)``: the ``count`` held-out tasks (leaves ``[count, ...]``) a run with
    base key ``seed_key`` evaluates on, and the key of their rollouts (``MAMLRL.evaluate``'s
    ``key``). Training never draws from this branch of the key (``fold_in(seed_key, 10_000)``),
    and ``experiments.adapt_sweep`` re-derives the same tasks and rollouts from a run folder."""
    eval_key = jax.random.fold_in(seed_key, 10_000)
    return space.sample(jax.random.fold_in(eval_key, 0), (count,)), jax.random.fold_in(eval_key, 1)


def returns_by_steps(returns: Any) -> Tuple[list, list]:
    """``returns[G, S+1]`` (per task, after 0..S inner steps) -> (mean over tasks ``[S+1]``,
    95% confidence half-width over tasks ``stats.ci95`` ``[S+1]``), as lists."""
    returns = np.asarray(returns)
    if returns.ndim != 2 or returns.shape[0] < 2:
        raise ValueError(f"returns must be [tasks >= 2, steps + 1], got {returns.shape}")
    return returns.mean(0).tolist(), stats.ci95(returns, axis=0).tolist()


def plot_meta_training(path: Path, run_dir: Path, methods, ylabel: str, title: str) -> None:
    """``curves.png`` of a few-shot run: pre- and post-adaptation training return per
    meta-iteration for each method (pre only for a zero-step baseline named ``pretrained``)."""
    curves, styles = {}, {}
    for i, method in enumerate(methods):
        lines = phase_metrics(run_dir, method)
        for kind in (("pre", "post") if method != "pretrained" else ("pre",)):
            curves[f"{method} ({kind})"] = ([line["update"] for line in lines],
                                            [line[f"return_{kind}"] for line in lines])
            # One colour per method: pre-adaptation dashed, post-adaptation solid.
            styles[f"{method} ({kind})"] = {"color": f"C{i}",
                                            "linestyle": "--" if kind == "pre" else "-"}
    plots.plot_curves(path, curves, xlabel="meta-iteration", ylabel=ylabel, title=title,
                      styles=styles)


def steps_table_rows(by_steps: Mapping[str, list]) -> list:
    """Rows ``{method, "0 steps", "1 steps", ...}`` for ``format_table``."""
    return [dict(method=m, **{f"{s} steps": r for s, r in enumerate(returns)})
            for m, returns in by_steps.items()]
