"""UP-OSI on Pendulum: a universal policy plus online system identification vs plain DR.

    python -m experiments.uposi --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.uposi --resume runs/uposi/<timestamp>
    python -m experiments.uposi --devices all    # the PPO phases' seeds/envs split (OSI: 1 device)

Story (Yu et al. 2017): the pendulum's mass and length are drawn from a prior every episode.
``up``: PPO whose observation also holds the true, normalized (m, l) -- the universal policy.
``dr``: PPO on the plain observation, same prior and budget. ``osi``: a network that reads the
last H transitions (s, a, s' - s) and regresses (m, l); it is trained on data labelled with the
sampler's true params, collected first by the UP with the true params and then, iteratively, by
the UP fed with the OSI's own estimates (the paper's scheme). Everything is evaluated on a grid of
(m, l) inside the prior: ``up_true`` (the UP told the truth: an upper bound), ``up_osi`` (the UP
fed OSI's estimate, the deployable system) and ``dr``.

Presets: ``quick`` (tests, ~1 min), ``cpu`` (2 seeds x 2.56M steps per policy and 8 OSI
collections with 4000 Adam steps each, 6-9 minutes on a shared 2-core CPU), ``accel`` (a large
pure-JAX run for a GPU; no MJX variant yet).

Writes: ``summary.json`` (``results.up_true|up_osi|dr`` with ``heldout_mean`` / ``heldout_worst``
/ ``heldout_cvar10`` and per-seed numbers; ``results.osi_rmse`` and ``results.prior_std``: {m, l}
in value units, RMSE over the steps of UP-OSI deployment episodes with a full H-step history),
``osi_trace.png`` (estimate vs truth over one episode), ``curves.png``, ``metrics.jsonl``,
``config.json``, ``policies/up|dr.npz|json`` (the PPO policies, numpy forward pass; ``up`` reads
the observation followed by the normalized true (m, l)) and ``checkpoints/``
(``metarl_jax.load_run`` reads the ``up`` and ``dr`` phases back through ``policies(config)``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.pendulum import Pendulum
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.uposi import OSIConfig, OSILearner, deployment_trace
from metarl_jax.core.context_wrappers import ParamObservation, TransitionHistory, denormalize_params
from metarl_jax.io import plots
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import train_phase
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import mesh_size, run_mesh
from metarl_jax.transfer.evaluation import (
    check_grid_axis,
    evaluate_seeds,
    grid_params,
    summarize_seeds,
)
from metarl_jax.transfer.phases import export_policies, phase_curves, train_ppo_phases

NAME = "uposi"
FIELDS = ("m", "l")


@dataclasses.dataclass(frozen=True)
class Config:
    ppo: PPOConfig = PPOConfig(num_envs=64, num_steps=200, total_steps=2_560_000, num_epochs=10,
                               num_minibatches=16, learning_rate=1e-3, reward_scale=0.1)
    osi: OSIConfig = OSIConfig(num_envs=64, num_steps=200, num_updates=8, buffer_collections=4,
                               fit_steps=4000, batch_size=256)
    num_seeds: int = 2
    updates_per_chunk: int = 10
    osi_updates_per_chunk: int = 2
    history: int = 8  # H transitions the OSI reads
    mass_scale: Tuple[float, float] = (0.5, 2.0)  # the prior, as scales of the nominal m and l
    length_scale: Tuple[float, float] = (0.6, 1.5)
    eval_mass_scales: Tuple[float, ...] = (0.5, 0.9, 1.3, 1.7, 2.0)
    eval_length_scales: Tuple[float, ...] = (0.6, 0.9, 1.2, 1.5)
    eval_episodes: int = 8
    rmse_episodes: int = 64  # deployment episodes (params from the prior) for osi_rmse
    trace_cell: Tuple[float, float] = (1.7, 0.8)  # (mass scale, length scale) of the PNG trace

    def __post_init__(self):
        self.ppo.validate()
        self.osi.validate()
        check_at_least_one(self, ("num_seeds", "updates_per_chunk", "osi_updates_per_chunk",
                                  "history", "eval_episodes", "rmse_episodes"))
        for name in ("mass_scale", "length_scale"):
            low, high = getattr(self, name)
            if not 0 < low < high:
                raise ValueError(f"{name} must be a range 0 < low < high, got {low},{high}")
        for name in ("eval_mass_scales", "eval_length_scales"):
            check_grid_axis(name, getattr(self, name), "scale")
        inside = lambda v, r: all(r[0] <= x <= r[1] for x in v)
        if not (inside(self.eval_mass_scales, self.mass_scale)
                and inside(self.eval_length_scales, self.length_scale)):
            raise ValueError("the evaluation grid must lie inside the prior (the OSI and the UP "
                             "are only trained there)")
        for n, k, what in ((self.ppo.num_updates, self.updates_per_chunk, "updates_per_chunk"),
                           (self.osi.num_updates, self.osi_updates_per_chunk,
                            "osi_updates_per_chunk")):
            if n % k:
                raise ValueError(f"{what}={k} must divide the {n} updates (one compile per phase)")
        if self.history >= Pendulum().max_steps:
            raise ValueError(f"history must be < the episode length {Pendulum().max_steps}")


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=32, total_steps=32 * 200 * 8),
                    osi=dataclasses.replace(Config.osi, num_envs=16, num_updates=2, fit_steps=100),
                    num_seeds=1, updates_per_chunk=4, osi_updates_per_chunk=1,
                    eval_mass_scales=(0.5, 2.0), eval_length_scales=(0.6, 1.5),
                    eval_episodes=2, rmse_episodes=8),
    "cpu": Config(),
    "accel": Config(ppo=dataclasses.replace(Config.ppo, num_envs=2048, num_minibatches=32,
                                            total_steps=2048 * 200 * 120),
                    osi=dataclasses.replace(Config.osi, num_envs=1024, num_updates=20,
                                            fit_steps=2000, batch_size=1024),
                    num_seeds=8, updates_per_chunk=20, osi_updates_per_chunk=4,
                    eval_episodes=32, rmse_episodes=512),
}


def prior(config: Config, nominal):
    """``(space, low, high)``: the (m, l) prior and its bounds in value units."""
    scales = {"m": config.mass_scale, "l": config.length_scale}
    low = [scales[f][0] * float(getattr(nominal, f)) for f in FIELDS]
    high = [scales[f][1] * float(getattr(nominal, f)) for f in FIELDS]
    space = make_param_space(nominal, {f: uniform(*scales[f], relative=True) for f in FIELDS})
    return space, low, high


def policies(config: Config):
    """The trained PPO policies, rebuilt from ``config``: ``{"up" | "dr": (PPO, learner config,
    init args)}``. ``main`` trains exactly these; ``metarl_jax.load_run`` restores them."""
    base = Pendulum()
    space, low, high = prior(config, base.default_params())
    ppos = {"up": PPO(ParamObservation(base, FIELDS, low, high)), "dr": PPO(base)}
    return {p: (ppo, config.ppo, (space,)) for p, ppo in ppos.items()}


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    trained = policies(config)
    ppos = {p: ppo for p, (ppo, _, _) in trained.items()}
    base = ppos["dr"].env
    nominal = base.default_params()
    space, low, high = prior(config, nominal)
    context_env = ParamObservation(TransitionHistory(base, config.history), FIELDS, low, high)
    keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    # --devices N: the PPO phases' seeds (or envs) split over N devices; the OSI phase and the
    # evaluation run on one device.
    mesh = run_mesh(args.devices)
    states = train_ppo_phases(run_dir, {p: (ppo, space) for p, ppo in ppos.items()}, config.ppo,
                              keys, config.updates_per_chunk, mesh=mesh)
    for p, ppo in ppos.items():
        export_policies(run_dir, {p: states[p]}, config.ppo, ppo.env.action_space,
                        metadata={"env": "Pendulum", "experiment": NAME, "seed": seed,
                                  "observation": "obs + normalized (m, l)" if p == "up" else
                                  "obs"})

    up_ppo, dr_ppo = ppos["up"], ppos["dr"]
    up_act = lambda up, k, o, det: up_ppo.make_policy(up, config.ppo, det)(k, o)
    osi = OSILearner(context_env, up_act)
    # The UP's train state: what up_act reads; OSI trains on one device, so a mesh-sharded
    # state comes to the host first.
    up = states["up"] if mesh is None else jax.device_get(states["up"])
    osi_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 2), config.num_seeds)
    # PPO compiles are counted on one device (on a mesh they are the wrappers', not seen here).
    compiles = ({p: ppo.traces.get("train_chunk_seeds", 0) for p, ppo in ppos.items()}
                if mesh is None else {})
    osi_state = train_phase(
        run_dir, "osi", init=lambda: osi.init_seeds(osi_keys, config.osi, space),
        chunk=lambda s, n: osi.train_chunk_seeds(s, config.osi, n, up),
        num_updates=config.osi.num_updates, updates_per_chunk=config.osi_updates_per_chunk,
        steps_per_update=config.osi.num_envs * config.osi.num_steps * config.num_seeds,
        show=("osi_loss", "osi_rmse_0", "osi_rmse_1"))
    compiles["osi"] = osi.traces.get("train_chunk_seeds", 0)

    # ---- evaluation on the held-out grid (every policy acts on the same context obs)
    grid, cells = grid_params(nominal, {"m": config.eval_mass_scales,
                                        "l": config.eval_length_scales}, relative=FIELDS)
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    split = osi.layout.split

    def deployed(seed_states):
        up_s, dr_s, osi_s = seed_states
        up_policy = up_ppo.make_policy(up_s, config.ppo, deterministic=True)
        dr_policy = dr_ppo.make_policy(dr_s, config.ppo, deterministic=True)
        return {
            "up_true": lambda k, o: up_policy(k, jnp.concatenate([split(o)[0], split(o)[2]], -1)),
            "up_osi": osi.make_policy(osi_s, config.osi, up=up_s),
            "dr": lambda k, o: dr_policy(k, split(o)[0]),
        }

    per_seed = evaluate_seeds(deployed, (up, states["dr"], osi_state), context_env, grid,
                              config.eval_episodes, eval_key)  # {policy: [S, C]}
    results = {name: summarize_seeds(returns) for name, returns in per_seed.items()}

    # ---- OSI accuracy during deployment, params drawn from the prior
    rmse_params = space.sample(jax.random.fold_in(eval_key, 3), (config.rmse_episodes,))
    trace = lambda u, o, p, k: deployment_trace(osi, u, o.params, o.in_stats, config.osi, p, k,
                                                base.max_steps)
    ep_keys = jax.random.split(jax.random.fold_in(eval_key, 4), config.rmse_episodes)
    per_episode = jax.vmap(trace, in_axes=(None, None, 0, 0))
    mu_hat, mu_true, _ = jax.device_get(jax.jit(jax.vmap(per_episode, in_axes=(0, 0, None, None)))(
        up, osi_state, rmse_params, ep_keys))  # [S, E, T, D]
    err = (denormalize_params(mu_hat, low, high) - denormalize_params(mu_true, low, high))
    full = np.asarray(err)[:, :, config.history:]  # steps with a full H-transition history
    results["osi_rmse"] = {f: float(np.sqrt(np.mean(full[..., i] ** 2)))
                           for i, f in enumerate(FIELDS)}
    results["osi_rmse_all_steps"] = {f: float(np.sqrt(np.mean(np.asarray(err)[..., i] ** 2)))
                                     for i, f in enumerate(FIELDS)}
    quarters = np.array_split(np.asarray(err), 4, axis=2)  # where in the episode it errs
    results["osi_rmse_by_quarter"] = {f: [float(np.sqrt(np.mean(q[..., i] ** 2))) for q in quarters]
                                      for i, f in enumerate(FIELDS)}
    results["prior_std"] = {f: (high[i] - low[i]) / np.sqrt(12.0) for i, f in enumerate(FIELDS)}

    # ---- plots: one deployment episode of seed 0, and the training curves
    cell = nominal.replace(m=nominal.m * config.trace_cell[0], l=nominal.l * config.trace_cell[1])
    seed0 = jax.tree.map(lambda x: x[0], (up, osi_state))
    est, true, _ = jax.device_get(jax.jit(trace)(seed0[0], seed0[1], cell, eval_key))
    est, true = denormalize_params(est, low, high), denormalize_params(true, low, high)
    t = np.arange(base.max_steps)
    plots.plot_curves(run_dir / "osi_trace.png", {
        **{f"{f} (OSI)": (t, np.asarray(est)[:, i]) for i, f in enumerate(FIELDS)},
        **{f"{f} (true)": (t, np.asarray(true)[:, i]) for i, f in enumerate(FIELDS)},
    }, xlabel="step of the episode", ylabel="value (kg for m, metres for l)",
        title=f"OSI estimate during UP-OSI deployment (H={config.history})")
    plots.plot_curves(run_dir / "curves.png", phase_curves(run_dir, ppos),
                      xlabel="env steps (all seeds)", ylabel="episode return",
                      title="UP vs DR training")

    table = format_table([dict(policy=p, **{k: results[p][k] for k in (
        "heldout_mean", "heldout_worst", "heldout_cvar10")}) for p in ("up_true", "up_osi", "dr")])
    table += "\n" + format_table([dict(param=f, osi_rmse=results["osi_rmse"][f],
                                       prior_std=results["prior_std"][f],
                                       ratio=results["osi_rmse"][f] / results["prior_std"][f])
                                  for f in FIELDS])
    grid_info = {name: values.tolist() for name, values in cells.items()}
    return finish(run_dir, {"results": results, "grid": grid_info, "compiles": compiles,
                            "devices": mesh_size(mesh)}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
