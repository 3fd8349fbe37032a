"""SAC training speed: ours (``metarl_jax.algos.sac``) vs brax.training's SAC, same settings.

Usage (from the repo root)::

    python -m benchmarks.sac_speed [--steps N] [--repeats R] [--hidden 256,256] [--quick]
                                   [--out PATH]

The env: our pure-JAX ``Pendulum`` (gymnasium's ``Pendulum-v1``) for both. brax's own envs are
physics-pipeline envs (``inverted_pendulum`` runs a generalized/MJX pipeline), whose step cost on
a CPU would swamp the learner being compared; so brax gets ``BraxPendulum``, a ``brax.envs.Env``
that calls the very same ``Pendulum.reset``/``step`` (actions in ``[-1, 1]`` scaled to the
torque box, as our SAC does), wrapped by brax's own ``wrap_for_training`` (episode length 200,
auto-reset). Both sides thus step identical dynamics; what differs is the learner.

Same settings on both sides: ``num_envs`` envs stepped once per iteration, UTD 1 (brax:
``grad_updates_per_step = num_envs``; ours: ``num_steps=1, utd=1``), batch 256, the same hidden
sizes for actor and both critics, Adam, one seed, the same process and threads, interleaved
(ours, brax, ours, brax, ...; the best of ``--repeats`` is reported). Timed: steady-state
training after warm-up and compilation (ours: a second ``train_chunk`` call of the same size;
brax: its ``training/sps`` of the second epoch -- brax times each epoch itself and the first
includes compilation; evaluation is outside that timer). Gradient steps/s = env steps/s x UTD.

brax 0.14.2 calls ``jax.device_put_replicated``, removed in jax 0.10.2: this script (only)
installs a shim that stacks the tree once per device, which is what the old function did.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time
from typing import Dict, List

import jax
import jax.numpy as jnp

from benchmarks.env_throughput import machine_info
from envs.pendulum import Pendulum
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.randomization.param_space import fixed_space

if not hasattr(jax, "device_put_replicated"):  # brax 0.14.2 on jax >= 0.10 (module doc)
    jax.device_put_replicated = lambda x, devices: jax.tree.map(
        lambda a: jnp.stack([a] * len(devices)), x)

from brax.envs.base import Env as BraxEnv  # noqa: E402  (after the shim)
from brax.envs.base import State as BraxState  # noqa: E402
from brax.training.agents.sac import networks as brax_sac_networks  # noqa: E402
from brax.training.agents.sac import train as brax_sac  # noqa: E402

EPISODE_LENGTH = 200


class BraxPendulum(BraxEnv):
    """Our ``Pendulum`` behind brax's ``Env`` interface (module doc); time limits come from
    brax's ``EpisodeWrapper``."""

    def __init__(self):
        self.env = Pendulum(max_steps=EPISODE_LENGTH)
        self.params = self.env.default_params()

    def reset(self, rng: jax.Array) -> BraxState:
        state, obs = self.env.reset(rng, self.params)
        zero = jnp.zeros((), jnp.float32)
        return BraxState(pipeline_state=state, obs=obs, reward=zero, done=zero, metrics={},
                         info={})

    def step(self, state: BraxState, action: jax.Array) -> BraxState:
        torque = action * self.params.max_torque
        inner, obs, reward, _, _ = self.env.step(jax.random.PRNGKey(0), state.pipeline_state,
                                                 torque, self.params)
        return state.replace(pipeline_state=inner, obs=obs, reward=reward,
                             done=jnp.zeros((), jnp.float32))

    @property
    def observation_size(self) -> int:
        return 3

    @property
    def action_size(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        return "jax"


def ours(args) -> Dict[str, float]:
    config = SACConfig(num_envs=args.num_envs, num_steps=1, utd=1.0, batch_size=args.batch_size,
                       hidden_sizes=args.hidden, buffer_size=args.steps * 2 + 1000,
                       learning_starts=args.batch_size, total_steps=args.steps * 2,
                       gamma=0.99).validate()
    sac = SAC(Pendulum(max_steps=EPISODE_LENGTH))
    state = sac.init(jax.random.PRNGKey(0), config, fixed_space(sac.env.default_params()))
    updates = args.steps // config.steps_per_update
    start = time.perf_counter()
    state, _ = sac.train_chunk(state, config, updates)  # compile, warm-up, fill the buffer
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    start = time.perf_counter()
    state, metrics = sac.train_chunk(state, config, updates)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    steps_per_s = updates * config.steps_per_update / seconds
    return dict(env_steps_per_s=steps_per_s, grad_steps_per_s=steps_per_s * config.utd,
                first_call_s=first, timed_s=seconds,
                final_return=float(metrics["episode_return"][-1]))


def brax(args) -> Dict[str, float]:
    epochs: List[dict] = []
    network_factory = functools.partial(brax_sac_networks.make_sac_networks,
                                        hidden_layer_sizes=args.hidden)
    start = time.perf_counter()
    brax_sac.train(
        BraxPendulum(), num_timesteps=args.batch_size + 2 * args.steps,
        episode_length=EPISODE_LENGTH, num_envs=args.num_envs, num_eval_envs=args.num_envs,
        learning_rate=3e-4, discounting=0.99, batch_size=args.batch_size, num_evals=3,
        min_replay_size=args.batch_size, max_replay_size=2 * args.steps + 1000,
        grad_updates_per_step=args.num_envs, network_factory=network_factory,
        progress_fn=lambda step, metrics: epochs.append(
            {k: float(v) for k, v in metrics.items() if jnp.ndim(v) == 0}))
    total = time.perf_counter() - start
    timed = [e for e in epochs if "training/sps" in e]
    steps_per_s = timed[-1]["training/sps"]  # the second epoch: compiled, steady state
    return dict(env_steps_per_s=steps_per_s,
                grad_steps_per_s=steps_per_s,  # grad_updates_per_step / num_envs = UTD = 1
                first_epoch_sps=timed[0]["training/sps"], total_s=total,
                final_return=epochs[-1].get("eval/episode_reward", float("nan")))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="timed env steps per side")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny nets and runs")
    parser.add_argument("--out", default="benchmarks/results/sac_speed.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.hidden, args.batch_size = 160, 1, "16,16", 32
    args.hidden = tuple(int(h) for h in args.hidden.split(","))
    if args.steps % args.num_envs:
        raise SystemExit("--steps must be a multiple of --num-envs")

    runs = {"ours": [], "brax": []}
    for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
        runs["ours"].append(ours(args))
        runs["brax"].append(brax(args))
    best = {side: max(r, key=lambda x: x["env_steps_per_s"]) for side, r in runs.items()}
    ratio = best["ours"]["env_steps_per_s"] / best["brax"]["env_steps_per_s"]
    report = dict(settings=dict(env="Pendulum (ours; BraxPendulum for brax)",
                                num_envs=args.num_envs, utd=1, batch_size=args.batch_size,
                                hidden=list(args.hidden), timed_env_steps=args.steps,
                                repeats=args.repeats),
                  best=best, runs=runs, ratio_ours_over_brax=ratio, machine=machine_info())
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    for side in ("ours", "brax"):
        print(f"{side:5s} env steps/s {best[side]['env_steps_per_s']:9.1f}  "
              f"grad steps/s {best[side]['grad_steps_per_s']:9.1f}")
    print(f"ours / brax: {ratio:.2f}x   ({out})")
    return report


if __name__ == "__main__":
    main()
