"""PPO end to end: ours (``metarl_jax.algos.ppo``) vs brax.training's PPO, same env and settings.

Usage (from the repo root; part of ``python -m benchmarks.run``)::

    python -m benchmarks.ppo_speed [--preset quick|full] [--out PATH]

Env: our pure-JAX Pendulum on both sides (brax gets ``benchmarks.brax_peer.brax_pendulum()``,
wrapped by brax's own training wrappers: 200-step episodes, auto-reset). Same settings on both
sides, at each env count ``N`` of the preset (64 and 256):

* rollout ``T`` steps per env per update (brax: ``unroll_length=T``, ``batch_size * num_minibatches
  = N``, so one unroll per training step and ``N * T`` samples per update, as ours);
* ``num_epochs`` passes over ``num_minibatches`` minibatches of ``N * T / num_minibatches``
  samples (brax: ``num_updates_per_batch``; its minibatches hold whole unrolls, ours samples);
* separate policy and value MLPs of ``hidden`` tanh units (brax: ``activation=tanh``), a Gaussian
  with a state-independent log-std initialized to 0 (brax: ``distribution_type="normal"``,
  ``noise_std_type="log"``, ``init_noise_std=1``), unbounded actions clipped by the env;
* Adam 1e-3 without annealing, gradient-norm clip 0.5, gamma 0.99, GAE lambda 0.95, clip 0.2,
  value coefficient 0.5, no entropy bonus, reward scale 0.1, observation normalization,
  per-minibatch advantage normalization.

Known differences that stay: weight initialization (brax lecun-uniform, ours orthogonal), brax
resets an env to its first initial state (its ``AutoResetWrapper``) while ours draws a new one,
and brax masks truncated steps out of GAE while ours bootstraps them.

Timing, interleaved: brax's ``train`` runs ``rounds + 2`` epochs of ``updates_per_round``
updates; its ``progress_fn`` (called after each epoch) runs our ``train_chunk`` of the same
number of updates, so rounds go brax, ours, brax, ours... in one process. Brax's epoch time is
its own ``training/sps``; ours is the wall time of the chunk. Rounds in which either side
compiled are dropped (JAX's compile events): brax's first two epochs compile (its pmapped epoch
compiles again on its second call under jax 0.10); ours is compiled once per env count before.
This repeats for every seed (brax compiles again per seed: its ``train`` builds new closures).
Both sides then have trained the same number of env steps, and their final policies are
evaluated the same way (deterministic, ``eval_envs`` fresh Pendulum episodes): the return at
equal steps, mean and 95% CI over seeds.

brax 0.14.2 calls ``jax.device_put_replicated`` (gone in jax 0.10): ``brax_peer``'s shim is
installed only while brax's ``train`` runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.brax_peer import EPISODE_LENGTH, brax_pendulum, device_put_replicated_shim
from benchmarks.cli import preset_parser, save_and_print
from benchmarks.compiles import CompileCounter
from benchmarks.timing import Rounds, spread
from envs.pendulum import Pendulum
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.stats import mean_ci95

TARGET = 1.0  # issue #13: ours >= 1.0x brax.training's PPO at 64 and 256 envs
# brax's pmapped epoch compiles on its first and second call under jax 0.10 (brax_peer): two
# extra epochs per seed whose rounds are dropped, so ``rounds`` stay timed.
BRAX_COMPILE_EPOCHS = 2


@dataclasses.dataclass(frozen=True)
class Preset:
    env_counts: Tuple[int, ...] = (64, 256)
    num_steps: int = 200
    num_epochs: int = 10
    num_minibatches: int = 16
    hidden: Tuple[int, ...] = (64, 64)
    updates_per_round: int = 2
    rounds: int = 4  # timed rounds per seed (besides the BRAX_COMPILE_EPOCHS dropped ones)
    seeds: int = 3
    eval_envs: int = 64


PRESETS = {
    "quick": Preset(num_steps=64, num_epochs=4, num_minibatches=8, updates_per_round=6,
                    rounds=3, seeds=3),
    "full": Preset(updates_per_round=4, rounds=4, seeds=3),
}


def ppo_config(p: Preset, num_envs: int) -> PPOConfig:
    total = (p.rounds + BRAX_COMPILE_EPOCHS) * p.updates_per_round * num_envs * p.num_steps
    return PPOConfig(num_envs=num_envs, num_steps=p.num_steps, total_steps=total,
                     num_epochs=p.num_epochs, num_minibatches=p.num_minibatches,
                     hidden_sizes=p.hidden, normalize_obs=True, anneal_lr=False,
                     learning_rate=1e-3, gamma=0.99, gae_lambda=0.95, clip_eps=0.2,
                     ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                     reward_scale=0.1).validate()


def brax_kwargs(p: Preset, num_envs: int) -> dict:
    """brax.training.agents.ppo.train arguments equal to ``ppo_config`` (module doc)."""
    from brax.training.agents.ppo import networks as ppo_networks
    from flax import linen

    if num_envs % p.num_minibatches:
        raise ValueError(f"num_envs {num_envs} must be divisible by num_minibatches "
                         f"{p.num_minibatches} (brax's batch_size = num_envs / num_minibatches)")
    network_factory = functools.partial(
        ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=p.hidden,
        value_hidden_layer_sizes=p.hidden, activation=linen.tanh, distribution_type="normal",
        noise_std_type="log", init_noise_std=1.0)
    return dict(
        num_timesteps=(p.rounds + BRAX_COMPILE_EPOCHS) * p.updates_per_round * num_envs
        * p.num_steps,
        num_evals=p.rounds + BRAX_COMPILE_EPOCHS + 1, run_evals=False,
        episode_length=EPISODE_LENGTH,
        num_envs=num_envs, unroll_length=p.num_steps, batch_size=num_envs // p.num_minibatches,
        num_minibatches=p.num_minibatches, num_updates_per_batch=p.num_epochs,
        learning_rate=1e-3, max_grad_norm=0.5, discounting=0.99, gae_lambda=0.95,
        clipping_epsilon=0.2, entropy_cost=0.0, vf_loss_coefficient=0.5, reward_scaling=0.1,
        normalize_observations=True, normalize_advantage=True, network_factory=network_factory)


def make_evaluator(num_envs: int):
    """``evaluate(act, key) -> mean return`` of ``act(key, obs[E, 3]) -> action[E, 1]`` over
    ``num_envs`` fresh nominal Pendulum episodes of 200 steps (the same for both sides)."""
    env = Pendulum(max_steps=EPISODE_LENGTH)
    params = env.default_params()

    def evaluate(act, key):
        reset_key, key = jax.random.split(key)
        state, obs = jax.vmap(env.reset, (0, None))(jax.random.split(reset_key, num_envs),
                                                    params)

        def one(carry, k):
            state, obs, total = carry
            action = act(k, obs)
            state, obs, reward, _, _ = jax.vmap(env.step, (None, 0, 0, None))(
                k, state, action, params)
            return (state, obs, total + reward), None

        (_, _, total), _ = jax.lax.scan(one, (state, obs, jnp.zeros(num_envs)),
                                        jax.random.split(key, EPISODE_LENGTH))
        return total.mean()

    return evaluate


def bench_env_count(p: Preset, num_envs: int) -> dict:
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks as brax_networks
    from brax.training.agents.ppo import train as brax_ppo

    config = ppo_config(p, num_envs)
    ppo = PPO(Pendulum(max_steps=EPISODE_LENGTH))
    space = fixed_space(ppo.env.default_params())
    evaluate = make_evaluator(p.eval_envs)
    eval_ours = jax.jit(lambda params, stats, key: evaluate(
        lambda k, o: ppo.act(params, stats, config, k, o, deterministic=True), key))
    kwargs = brax_kwargs(p, num_envs)
    brax_net = kwargs["network_factory"](ppo.env.observation_size, ppo.env.action_size,
                                         preprocess_observations_fn=running_statistics.normalize)
    brax_inference = brax_networks.make_inference_fn(brax_net)
    eval_brax = jax.jit(lambda params, key: evaluate(
        lambda k, o: brax_inference(params, deterministic=True)(o, k)[0], key))

    start = time.perf_counter()  # compile ours once (a throwaway state), outside every round
    warm = ppo.init(jax.random.PRNGKey(10_000), config, space)
    jax.block_until_ready(ppo.train_chunk(warm, config, p.updates_per_round))
    ours_compile_s = time.perf_counter() - start

    work = p.updates_per_round * config.batch_size  # env steps per round
    rounds = Rounds(["ours", "brax"])
    returns = {"ours": [], "brax": []}
    brax_compile_epochs_s, dropped = [], 0
    with CompileCounter() as compiles:
        for seed in range(p.seeds):
            box = {"state": ppo.init(jax.random.PRNGKey(seed), config, space), "epoch": 0,
                   "mark": compiles.mark()}

            def progress(step, metrics, box=box):
                nonlocal dropped
                brax_s = work / float(metrics["training/sps"])
                brax_compiled = compiles.since(box["mark"])[0]
                start = time.perf_counter()
                box["state"], _ = ppo.train_chunk(box["state"], config, p.updates_per_round)
                jax.block_until_ready(box["state"])
                ours_s = time.perf_counter() - start
                if brax_compiled or compiles.since(box["mark"])[0]:  # not a steady-state round
                    brax_compile_epochs_s.append(brax_s)
                    dropped += 1
                else:
                    rounds.add("brax", brax_s)
                    rounds.add("ours", ours_s)
                box["epoch"] += 1
                box["mark"] = compiles.mark()

            with device_put_replicated_shim():
                _, brax_params, _ = brax_ppo.train(brax_pendulum(1.0), seed=seed,
                                                   progress_fn=progress, **kwargs)
            if box["epoch"] != p.rounds + BRAX_COMPILE_EPOCHS:
                raise RuntimeError(f"brax ran {box['epoch']} epochs, expected "
                                   f"{p.rounds + BRAX_COMPILE_EPOCHS}")
            eval_key = jax.random.PRNGKey(1_000 + seed)
            state = box["state"]
            returns["ours"].append(float(eval_ours(state.params, state.obs_stats, eval_key)))
            returns["brax"].append(float(eval_brax(brax_params, eval_key)))

    summary = rounds.summary(baseline="brax", work=work)
    steps = (p.rounds + BRAX_COMPILE_EPOCHS) * work
    ret = {side: _mean_ci(v) for side, v in returns.items()}
    tie = None  # one seed: no CI, no verdict
    if p.seeds >= 2:
        tie = bool(abs(ret["ours"]["mean"] - ret["brax"]["mean"])
                   <= ret["ours"]["ci95"] + ret["brax"]["ci95"])
    return {"num_envs": num_envs, "timing": summary, "ours_compile_s": ours_compile_s,
            "brax_compile_epochs_s": spread(brax_compile_epochs_s),
            "rounds_dropped_for_compiles": dropped, "env_steps_per_seed": steps,
            "return": ret, "return_ci_overlap": tie}


def _mean_ci(values) -> dict:
    if len(values) >= 2:
        mean, ci = mean_ci95(values)
    else:
        mean, ci = float(values[0]), float("nan")
    return {"mean": mean, "ci95": ci, "per_seed": list(values)}


def run(preset: str = "quick") -> dict:
    p = PRESETS[preset]
    cells = [bench_env_count(p, n) for n in p.env_counts]
    headline = [{"label": f"PPO end to end, {c['num_envs']} envs (ours / brax.training)",
                 "ratio": c["timing"]["ratios"]["ours"], "target": TARGET} for c in cells]
    return {"title": "PPO end to end vs brax.training PPO (Pendulum)",
            "settings": dataclasses.asdict(p), "cells": cells, "headline": headline,
            "shim": "jax.device_put_replicated defined only while brax's train runs "
                    "(benchmarks/brax_peer.py): each leaf stacked per device, sharded over them"}


def markdown(result: dict) -> str:
    p = result["settings"]
    lines = [
        f"Pendulum (ours on both sides; brax through `benchmarks/brax_peer.py`), rollout "
        f"{p['num_steps']} steps x N envs per update, {p['num_epochs']} epochs x "
        f"{p['num_minibatches']} minibatches, tanh MLPs {tuple(p['hidden'])} (policy and value), "
        f"Adam 1e-3; {p['updates_per_round']} updates per round, {p['rounds']} timed rounds "
        f"per seed x {p['seeds']} seeds; rounds in which either side compiled are dropped (brax "
        f"compiles in its first two epochs of every seed). Settings and known differences: "
        f"`benchmarks/ppo_speed.py`. {result['shim']}.",
        "",
        "| envs | ours us/env-step (median [IQR]) | brax us/env-step | ours / brax speed "
        "(median [min-max], per round) | rounds | return at equal steps: ours | brax | "
        "env steps / seed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["cells"]:
        t = c["timing"]
        us = {s: t[s]["per_unit_s"] for s in ("ours", "brax")}
        r = t["ratios"]["ours"]
        ret = c["return"]
        lines.append(
            f"| {c['num_envs']} | {us['ours']['median'] * 1e6:.2f} [{us['ours']['q25'] * 1e6:.2f}-"
            f"{us['ours']['q75'] * 1e6:.2f}] | {us['brax']['median'] * 1e6:.2f} "
            f"[{us['brax']['q25'] * 1e6:.2f}-{us['brax']['q75'] * 1e6:.2f}] | "
            f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}] | {t['rounds']} | "
            f"{ret['ours']['mean']:.0f} +- {ret['ours']['ci95']:.0f} | "
            f"{ret['brax']['mean']:.0f} +- {ret['brax']['ci95']:.0f} | "
            f"{c['env_steps_per_seed']} |")
    lines.append("")
    for c in result["cells"]:
        verdict = {None: "one seed, no CI: no verdict", True: "the 95% CIs overlap: a tie",
                   False: "the 95% CIs do not overlap"}[c["return_ci_overlap"]]
        lines.append(f"- {c['num_envs']} envs: return (mean +- 95% CI over {p['seeds']} seeds, "
                     f"deterministic policy, {p['eval_envs']} episodes each): {verdict}. "
                     f"Compile: ours {c['ours_compile_s']:.1f} s once; brax's epochs that "
                     f"compiled took {c['brax_compile_epochs_s']['median']:.1f} s (median); "
                     f"rounds dropped because a side compiled in them: "
                     f"{c['rounds_dropped_for_compiles']}.")
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    """Time per env step (median, IQR bars) and return at equal steps (mean, 95% CI) per side."""
    import matplotlib.pyplot as plt

    cells = result["cells"]
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    x = np.arange(len(cells))
    for i, (side, colour) in enumerate((("ours", "tab:blue"), ("brax", "tab:orange"))):
        us = [c["timing"][side]["per_unit_s"] for c in cells]
        med = np.array([u["median"] for u in us]) * 1e6
        err = [med - np.array([u["q25"] for u in us]) * 1e6,
               np.array([u["q75"] for u in us]) * 1e6 - med]
        ax_t.bar(x + (i - 0.5) * 0.38, med, 0.38, yerr=err, color=colour, label=side, capsize=3)
        ret = [c["return"][side] for c in cells]
        ax_r.errorbar(x + (i - 0.5) * 0.2, [r["mean"] for r in ret],
                      yerr=[r["ci95"] for r in ret], fmt="o", color=colour, label=side,
                      capsize=4)
    labels = [f"{c['num_envs']} envs\n{c['timing']['ratios']['ours']['median']:.2f}x"
              for c in cells]
    ax_t.set_xticks(x, labels)
    ax_t.set_ylabel("us per env step (median, IQR)")
    ax_t.set_title("time per env step (ours / brax speed below)")
    ax_t.legend()
    ax_r.set_xticks(x, [f"{c['num_envs']} envs\n{c['env_steps_per_seed']} steps" for c in cells])
    ax_r.set_ylabel("return, deterministic policy")
    ax_r.set_title(f"return at equal steps (mean, 95% CI, {result['settings']['seeds']} seeds)")
    ax_r.legend()
    fig.suptitle("PPO end to end on Pendulum: ours vs brax.training")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = preset_parser(__doc__, PRESETS, "benchmarks/results/ppo_speed_cli.json").parse_args(argv)
    return save_and_print(run(args.preset), args.out, markdown)


if __name__ == "__main__":
    main()
