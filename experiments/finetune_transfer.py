"""Does max-ent pretraining finetune faster? SAC vs PPO pretraining vs scratch on shifted physics.

    python -m experiments.finetune_transfer --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.finetune_transfer --resume runs/finetune_transfer/<timestamp>

Story: the source is the nominal Pendulum; the target has a heavier, longer pole and a weaker
motor (``mass_scale``, ``length_scale``, ``torque_scale``: the swing-up needs more pumping). Train
PPO and SAC (max-ent, automatic temperature) on the source, same seeds; then give each the same
target budgets of env steps per seed and measure the target return after each
(``transfer.finetune``): ``scratch`` (SAC from a fresh init on the target), ``ppo_pretrain`` and
``sac_pretrain`` (finetuned from the source-trained state). Every phase -- the two source runs and
every finetuning segment between two budgets -- is a checkpointed ``train_phase``.

Threshold: ``untrained + threshold_fraction * (best - untrained)``, with ``untrained`` the fresh
policy's 0-shot return on the target and ``best`` the best seed-mean target return any method
reaches at any budget; ``steps_to_threshold`` is the first budget whose seed-mean target return
reaches it (None: never within the budgets). Not a fraction of the source return: the target's
weaker motor makes its best return lower than the source's (a longer swing-up), so such a
threshold can be out of reach for every method. ``source_return`` (SAC's policy on the source)
is reported beside it. ``env=halfcheetah`` (the ``accel``
preset) runs the MJX HalfCheetah with a mass and friction shift instead (defined, not run yet).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<method>.return_by_budget``
``{budget: {mean, ci95, per_seed}}``, ``.steps_to_threshold``; ``threshold``, ``source_return``),
``finetune.png`` (target return vs budget, 95% CI bands over seeds), ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Tuple

import jax
import jax.numpy as jnp

from envs.pendulum import Pendulum
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.load import Phase
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import train_phase
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer.evaluation import evaluate_seeds
from metarl_jax.transfer.finetune import check_budgets, finetune_returns, target_eval_params

NAME = "finetune_transfer"
METHODS = ("scratch", "ppo_pretrain", "sac_pretrain")
ENVS = ("pendulum", "halfcheetah")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "pendulum"  # or "halfcheetah" (MJX)
    # Target physics as factors of the source's: pendulum m, l, max_torque; cheetah mass, friction.
    mass_scale: float = 1.5
    length_scale: float = 1.2
    torque_scale: float = 0.6
    friction_scale: float = 0.6
    ppo: PPOConfig = PPOConfig(num_envs=64, num_steps=200, total_steps=1_280_000, num_epochs=10,
                               num_minibatches=16, learning_rate=1e-3, reward_scale=0.1)
    # PPO finetuning: small rollouts so it updates within the target budgets; constant rate.
    ppo_finetune: PPOConfig = PPOConfig(num_envs=8, num_steps=200, total_steps=16_000,
                                        num_epochs=10, num_minibatches=4, learning_rate=3e-4,
                                        anneal_lr=False, reward_scale=0.1)
    # SAC on the source and from scratch on the target (auto temperature: max-ent).
    sac: SACConfig = SACConfig(num_envs=8, total_steps=16_000, hidden_sizes=(64, 64),
                               batch_size=256, buffer_size=20_000, learning_starts=1000,
                               actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3)
    sac_finetune_learning_starts: int = 0  # the pretrained actor acts from the first step
    budgets: Tuple[int, ...] = (1600, 3200, 4800, 6400, 9600, 12800, 16000, 24000)  # per seed
    threshold_fraction: float = 0.9
    num_seeds: int = 5
    sac_log_every: int = 10  # SAC updates averaged into one metrics line
    updates_per_chunk: int = 10  # source phases: metrics lines per compiled chunk
    eval_episodes: int = 8

    def __post_init__(self):
        for learner_config in (self.ppo, self.ppo_finetune, self.sac):
            learner_config.validate()
        if self.env not in ENVS:
            raise ValueError(f"env must be one of {ENVS}, got {self.env!r}")
        check_at_least_one(self, ("num_seeds", "sac_log_every", "updates_per_chunk",
                                  "eval_episodes"))
        if self.num_seeds < 2:
            raise ValueError("num_seeds must be >= 2 (confidence intervals over seeds)")
        check_budgets(self.budgets, self.ppo_finetune.batch_size)
        check_budgets(self.budgets, self.sac.steps_per_update * self.sac_log_every)
        if self.sac.num_updates % self.sac_log_every:
            raise ValueError("sac.total_steps must be a multiple of sac_log_every updates")
        if not 0 < self.threshold_fraction <= 1:
            raise ValueError(f"threshold_fraction must be in (0, 1], got "
                             f"{self.threshold_fraction}")
        if self.sac_finetune_learning_starts < 0:
            raise ValueError("sac_finetune_learning_starts must be >= 0")


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=16, total_steps=16 * 200 * 4),
                    ppo_finetune=dataclasses.replace(Config.ppo_finetune, num_envs=2,
                                                     num_steps=40, num_minibatches=2),
                    sac=dataclasses.replace(Config.sac, total_steps=1600, learning_starts=400,
                                            buffer_size=2000, batch_size=64),
                    budgets=(160, 480), num_seeds=2, updates_per_chunk=2, eval_episodes=2),
    "cpu": Config(),
    "accel": Config(env="halfcheetah", mass_scale=1.5, friction_scale=0.6,
                    ppo=PPOConfig(num_envs=2048, num_steps=50, total_steps=50_000_000,
                                  num_epochs=4, num_minibatches=32, learning_rate=3e-4,
                                  hidden_sizes=(256, 256), reward_scale=0.1),
                    ppo_finetune=PPOConfig(num_envs=64, num_steps=50, total_steps=1_024_000,
                                           num_epochs=4, num_minibatches=16,
                                           learning_rate=1e-4, anneal_lr=False,
                                           hidden_sizes=(256, 256), reward_scale=0.1),
                    sac=SACConfig(num_envs=64, total_steps=2_048_000, hidden_sizes=(256, 256),
                                  batch_size=512, buffer_size=1_000_000, learning_starts=10_000,
                                  utd=0.5),
                    budgets=(64_000, 128_000, 256_000, 512_000, 1_024_000), num_seeds=8,
                    eval_episodes=4),
}


def make_env(config: Config):
    """``(env, source Params, target Params)``: the target scales the source's fields."""
    if config.env == "pendulum":
        env = Pendulum()
        source = env.default_params()
        return env, source, source.replace(m=source.m * config.mass_scale,
                                           l=source.l * config.length_scale,
                                           max_torque=source.max_torque * config.torque_scale)
    from envs.half_cheetah import HalfCheetah  # MuJoCo loads only for this env

    env = HalfCheetah(max_steps=1000, ls_iterations=8)
    source = env.default_params()
    return env, source, source.replace(
        body_mass_scale=source.body_mass_scale * config.mass_scale,
        friction_scale=source.friction_scale * config.friction_scale)


def segment_trainer(run_dir, method, learner, config, log_every, steps_per_line, budgets):
    """``train(states, num_updates, budget)`` for ``finetune_returns``: each segment between two
    budgets is a checkpointed phase ``<method>_to_<budget>``; chunks divide every segment, so
    the chunk compiles once."""
    lines = [b // steps_per_line for b in (0, *budgets)]
    chunk_lines = math.gcd(*[b - a for a, b in zip(lines, lines[1:])])

    def train(states, num_updates, budget):
        return train_phase(
            run_dir, f"{method}_to_{budget}", init=lambda: states,
            chunk=lambda s, n: learner.train_chunk_seeds(s, config, n, log_every=log_every),
            num_updates=num_updates // log_every, updates_per_chunk=chunk_lines,
            steps_per_update=steps_per_line * len(jax.tree.leaves(states)[0]))
    return train


def policies(config: Config):
    """What ``metarl_jax.load_run`` restores: the source-trained ``ppo_source`` and
    ``sac_source``, and each method's last finetuning segment ``<method>_to_<last budget>``
    (its state is the source-shaped one retargeted to the target with the finetuning config)."""
    env, source, target = make_env(config)
    ppo, sac = PPO(env), SAC(env)
    L, last = config.sac_log_every, config.budgets[-1]
    previous = config.budgets[-2] if len(config.budgets) > 1 else 0
    source_space, target_space = fixed_space(source), fixed_space(target)

    def finetuned(learner, pretrain_config, finetune_config, log_every):
        def init_seeds(keys):
            states = learner.init_seeds(keys, pretrain_config, source_space)
            return jax.vmap(lambda s, k: learner.retarget(s, finetune_config, target_space, k))(
                states, keys)
        lines = (last - previous) // (finetune_config.num_envs * finetune_config.num_steps
                                      * log_every)
        return Phase(learner, finetune_config, num_updates=lines, init_seeds=init_seeds)

    sac_finetune = config.sac.replace(learning_starts=config.sac_finetune_learning_starts)
    return {
        "ppo_source": Phase(ppo, config.ppo, (source_space,)),
        "sac_source": Phase(sac, config.sac, (source_space,),
                            num_updates=config.sac.num_updates // L),
        f"scratch_to_{last}": finetuned(sac, config.sac, config.sac, L),
        f"ppo_pretrain_to_{last}": finetuned(ppo, config.ppo, config.ppo_finetune, 1),
        f"sac_pretrain_to_{last}": finetuned(sac, config.sac, sac_finetune, L),
    }


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    env, source, target = make_env(config)
    ppo, sac = PPO(env), SAC(env)
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    S, L = config.num_seeds, config.sac_log_every

    # Source training: PPO and SAC on the source physics, the same seeds.
    ppo_source = train_phase(
        run_dir, "ppo_source", init=lambda: ppo.init_seeds(seed_keys, config.ppo,
                                                           fixed_space(source)),
        chunk=lambda s, n: ppo.train_chunk_seeds(s, config.ppo, n),
        num_updates=config.ppo.num_updates, updates_per_chunk=config.updates_per_chunk,
        steps_per_update=config.ppo.batch_size * S)
    sac_source = train_phase(
        run_dir, "sac_source", init=lambda: sac.init_seeds(seed_keys, config.sac,
                                                           fixed_space(source)),
        chunk=lambda s, n: sac.train_chunk_seeds(s, config.sac, n, log_every=L),
        num_updates=config.sac.num_updates // L, updates_per_chunk=config.updates_per_chunk,
        steps_per_update=config.sac.steps_per_update * L * S, show=("episode_return", "alpha"))

    # Each method: (learner, starting states, finetuning config).
    sac_finetune = config.sac.replace(learning_starts=config.sac_finetune_learning_starts)
    starts = {
        "scratch": (sac, sac.init_seeds(seed_keys, config.sac, fixed_space(target)), config.sac),
        "ppo_pretrain": (ppo, ppo_source, config.ppo_finetune),
        "sac_pretrain": (sac, sac_source, sac_finetune),
    }
    finetune_key = jax.random.fold_in(jax.random.PRNGKey(seed), 2)  # the same for every method
    results, curves = {}, {}
    for method, (learner, states, cfg) in starts.items():
        log_every = L if learner is sac else 1
        steps_per_line = cfg.num_envs * cfg.num_steps * log_every
        train = segment_trainer(run_dir, method, learner, cfg, log_every, steps_per_line,
                                config.budgets)
        results[method] = finetune_returns(learner, states, cfg, target, config.budgets,
                                           finetune_key, num_episodes=config.eval_episodes,
                                           train=train)

    # The threshold: a fraction of the way from the untrained policy to the best target return.
    cells_key, eval_key, _ = jax.random.split(finetune_key, 3)
    source_cells = target_eval_params(source, 1, cells_key)
    source_returns = evaluate_seeds(lambda s: sac.make_policy(s, config.sac, True), sac_source,
                                    env, source_cells, config.eval_episodes, eval_key)[:, 0]
    untrained = float(results["scratch"].mean()[0])
    source_return = float(source_returns.mean())
    best = max(float(r.mean().max()) for r in results.values())
    threshold = untrained + config.threshold_fraction * (best - untrained)

    summary, rows = {}, []
    for method, result in results.items():
        by_budget = result.return_by_budget()
        summary[method] = dict(return_by_budget=by_budget,
                               steps_to_threshold=result.steps_to_threshold(threshold))
        curves[method] = (list(result.budgets), [by_budget[str(b)]["mean"] for b in
                                                 result.budgets],
                          [by_budget[str(b)]["ci95"] for b in result.budgets])
        rows.append(dict(method=method, steps_to_threshold=str(summary[method][
            "steps_to_threshold"]), **{str(b): by_budget[str(b)]["mean"] for b in
                                       result.budgets}))
    title = (f"{config.env}: target return vs target steps "
             f"(threshold {threshold:.0f}, 95% CI over {S} seeds)")
    plots.plot_curves(run_dir / "finetune.png", curves, xlabel="target env steps per seed",
                      ylabel="target return", title=title)
    return finish(run_dir, {
        "results": summary, "threshold": threshold, "source_return": source_return,
        "source_return_per_seed": [float(r) for r in source_returns],
        "untrained_return": untrained, "best_return": best,
        "target": {k: float(jnp.mean(getattr(target, k))) for k in (
            ("m", "l", "max_torque") if config.env == "pendulum"
            else ("body_mass_scale", "friction_scale"))}},
        format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
