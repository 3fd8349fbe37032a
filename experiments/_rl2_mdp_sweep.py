"""Tune ``rl2_mdp``'s RL^2 on *validation* MDPs: lanes of traced config leaves in one program.

    python -m experiments._rl2_mdp_sweep --updates 300 \\
        --static 'hidden_size=128;encoder_sizes=()' --lane ent_coef=0.01 \\
        --lane 'ent_coef=0.02;gamma=0.99' \\
        --seeds 1 --out runs/rl2_mdp_sweep/a.json

Every lane is the ``cpu`` preset of ``experiments.rl2_mdp`` with the given static overrides
(``--static``: sizes, shared by all lanes) and its own rate overrides (``--lane``: traced
``RL2Config`` leaves such as ``learning_rate``, ``ent_coef``, ``gamma``, ``gae_lambda``,
``reward_scale``, ``clip_eps``, ``vf_coef``), times ``--seeds`` training keys. All lanes x seeds
train in one ``vmap``-ed, compiled program (``RL2Config`` is a pytree: its rates are leaves, so
stacking configs gives a batch of configs, not a recompile per lane). ``total_steps`` is set so
that a run has ``--updates`` updates (learning-rate annealing ends at the last one).

Evaluation is on ``--tasks`` validation MDPs drawn from ``PRNGKey(VALIDATION_SEED)``, a key
neither training nor ``rl2_mdp``'s held-out set (``PRNGKey(seed + 1_000_003)``) uses: select a
configuration here, then report it once on the held-out set with ``experiments.rl2_mdp``. Each
lane's mean episode return (mean over seeds of the per-task mean over the trial's episodes) is
reported with its 95% CI over tasks, and minus PSRL's on the same tasks, paired over tasks.
Writes one JSON file (``--out``) with every lane's numbers and the wall time, and the trained
parameters beside it (``<out>.params.msgpack``, stacked ``[lanes * seeds, ...]``, lane-major).
``--load <that file> --split heldout --tasks 2000`` (same ``--static``/``--lane``/``--seeds``)
evaluates them, without training, on exactly ``rl2_mdp``'s held-out MDPs and keys (seed 0; a
lane's seed ``s`` is ``rl2_mdp``'s seed ``s``): the once-only report of a selected lane.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from experiments.rl2_mdp import PRESETS, policies
from metarl_jax import stats
from metarl_jax.baselines.psrl import psrl_returns

VALIDATION_SEED = 20_261_203  # not 0 (training) and not seed + 1_000_003 (held-out)


def _parse_overrides(text: str) -> Dict[str, object]:
    """``"a=1;b=2e-3;c=(64,)"`` -> ``{"a": 1, "b": 0.002, "c": (64,)}`` (Python literals)."""
    import ast

    out = {}
    for item in filter(None, text.split(";")):
        name, value = item.split("=", 1)
        out[name.strip()] = ast.literal_eval(value.strip())
    return out


def lane_configs(base, static: Dict[str, object], lanes: List[Dict[str, object]], updates: int):
    """The per-lane ``RL2Config``s: ``base`` with ``static`` and each lane's overrides, with
    ``total_steps`` giving ``updates`` updates. Raises ``ValueError`` if a lane changes a static
    field (lanes must share one program)."""
    config = dataclasses.replace(base, **static)
    config = dataclasses.replace(config, total_steps=updates * config.num_envs * config.num_steps)
    statics = {f.name for f in dataclasses.fields(config) if not f.metadata.get("pytree_node", 1)}
    out = []
    for lane in lanes:
        bad = set(lane) & statics
        if bad:
            raise ValueError(f"lane overrides static fields {sorted(bad)}; pass them in --static")
        out.append(dataclasses.replace(config, **lane).validate())
    return out


def stack(trees):
    """Stack pytrees with equal structure along a new leading axis (leaves as float32/int32)."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--static", default="", help="static RL2Config overrides, a=1;b=(2,)")
    p.add_argument("--lane", action="append", default=[], help="one lane's traced overrides")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=50, help="updates per compiled chunk")
    p.add_argument("--out", required=True)
    p.add_argument("--load", default=None, help="a .params.msgpack this script saved: no training")
    p.add_argument("--split", choices=("validation", "heldout"), default="validation",
                   help="heldout: rl2_mdp's held-out MDPs (--tasks 2000), once, after selecting")
    args = p.parse_args(argv)
    jax.config.update("jax_compilation_cache_dir", str(Path("runs/.jax_cache").resolve()))

    base = PRESETS["cpu"]
    static = _parse_overrides(args.static)
    lanes = [_parse_overrides(text) for text in (args.lane or [""])]
    configs = lane_configs(base.rl2, static, lanes, args.updates)
    rl2, _, (space,) = policies(dataclasses.replace(base, rl2=configs[0]))["rl2"]
    num_lanes, num_seeds = len(configs), args.seeds
    # Flat batch: lane-major, seed-minor. Seed s uses PRNGKey(0)'s s-th split, as rl2_mdp does.
    cfgs = stack([c for c in configs for _ in range(num_seeds)])
    keys = jnp.concatenate([jax.random.split(jax.random.PRNGKey(0), num_seeds)] * num_lanes)

    start = time.time()
    params_path = Path(args.out).with_suffix(".params.msgpack")
    curve = []
    if args.load:  # evaluate saved lanes (same --static / --lane / --seeds) without training
        template = jax.eval_shape(jax.vmap(rl2._init, in_axes=(0, 0, None)), keys, cfgs, space)
        params = serialization.from_bytes(template.params, Path(args.load).read_bytes())
    else:
        states = jax.jit(jax.vmap(rl2._init, in_axes=(0, 0, None)))(keys, cfgs, space)
        chunk = jax.jit(jax.vmap(lambda s, c: rl2._train_chunk(s, c, args.chunk)))
        for done in range(0, args.updates, args.chunk):
            states, metrics = chunk(states, cfgs)
            ret = np.asarray(metrics["trial_return"][:, -1]).reshape(num_lanes, num_seeds).mean(1)
            flags = int(np.bitwise_or.reduce(np.asarray(metrics["nonfinite_flags"]).ravel()))
            curve.append(ret.tolist())
            print(f"[{time.time() - start:6.0f}s] update {done + args.chunk}: train trial return "
                  f"{np.round(ret, 1).tolist()} flags {flags}", flush=True)
        params = states.params
        params_path.parent.mkdir(parents=True, exist_ok=True)
        params_path.write_bytes(serialization.to_bytes(params))
    train_s = time.time() - start

    if args.split == "validation":
        task_key, eval_key = jax.random.split(jax.random.PRNGKey(VALIDATION_SEED))
    else:  # exactly experiments.rl2_mdp's held-out MDPs and keys (seed 0)
        task_key, eval_key = jax.random.split(jax.random.PRNGKey(0 + 1_000_003))
    tasks = space.sample(task_key, (args.tasks,))
    # One lane at a time (one compile): rl2.evaluate's batched task space is not vmapped over
    # lanes here. Seed s plays with fold_in(eval_key, s), as rl2_mdp's seed s does.
    returns = np.stack([np.asarray(rl2.evaluate(
        jax.tree.map(lambda x: x[i], params), jax.tree.map(lambda x: x[i], cfgs), tasks,
        jax.random.fold_in(eval_key, i % num_seeds))["episode_returns"])
        for i in range(num_lanes * num_seeds)])  # [lanes*seeds, M, E]
    returns = returns.reshape((num_lanes, num_seeds) + returns.shape[1:])
    psrl = np.asarray(psrl_returns(jax.random.fold_in(eval_key, 0x9512), rl2.env, tasks, space,
                                   rl2.episodes_per_trial))  # [M, E]
    rows = []
    for i, lane in enumerate(lanes):
        per_seed = returns[i].mean(-1)  # [seeds, M]: mean episode return of each trial
        per_task = per_seed.mean(0)
        mean, ci = stats.mean_ci95(per_task)
        diff, diff_ci = stats.mean_ci95(per_task - psrl.mean(1))
        rows.append({"lane": lane, "mean_episode_return": mean, "ci95": ci,
                     "per_seed": per_seed.mean(1).tolist(),
                     "first_last_episode": [float(returns[i, :, :, 0].mean()),
                                            float(returns[i, :, :, -1].mean())],
                     "minus_psrl": diff, "minus_psrl_ci95": diff_ci,
                     "train_curve": [c[i] for c in curve],
                     "per_episode": returns[i].mean((0, 1)).tolist()})
        print(f"{lane}: {mean:.2f} +- {ci:.2f} (per seed {np.round(per_seed.mean(1), 2)}; "
              f"ep1 {rows[-1]['first_last_episode'][0]:.2f} -> ep10 "
              f"{rows[-1]['first_last_episode'][1]:.2f}); minus PSRL {diff:+.2f} +- {diff_ci:.2f}")
    psrl_mean, psrl_ci = stats.mean_ci95(psrl.mean(1))
    print(f"PSRL {psrl_mean:.2f} +- {psrl_ci:.2f}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    result = {"split": args.split, "updates": args.updates, "lanes_text": args.lane,
              "static": static, "seeds": num_seeds, "tasks": args.tasks,
              "psrl": [psrl_mean, psrl_ci], "lanes": rows,
              "train_seconds": train_s, "wall_seconds": time.time() - start,
              "loadavg_at_end": load}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
