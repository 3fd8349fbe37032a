"""SAC training speed: ours (``metarl_jax.algos.sac``) vs brax.training's SAC, same settings.

Usage (from the repo root; part of ``python -m benchmarks.run``)::

    python -m benchmarks.sac_speed [--preset quick|full] [--out PATH]

The env: our pure-JAX ``Pendulum`` for both; brax gets ``benchmarks.brax_peer.brax_pendulum``
(tanh actions in ``[-1, 1]`` scaled to the torque box, as our SAC does), wrapped by brax's own
training wrappers (200-step episodes, auto-reset). brax's own pendulum runs a physics pipeline
whose step cost on a CPU would swamp the learner being compared.

Same settings on both sides: ``num_envs`` envs stepped once per iteration, UTD 1 (brax:
``grad_updates_per_step = num_envs``; ours: ``num_steps=1, utd=1``), batch ``batch_size``, the
same hidden sizes for actor and both critics, Adam 3e-4, gamma 0.99, a replay buffer filled with
``batch_size`` transitions before learning, one seed.

Timing, interleaved in one process: brax's ``train`` runs ``rounds + 2`` epochs of
``steps_per_round`` env steps; its ``progress_fn`` (called after each epoch and its evaluation)
runs our ``train_chunk`` of the same number of env steps, so rounds go brax, ours, brax, ours...
Brax's epoch time is its own ``training/sps`` (evaluation outside it); ours is the chunk's wall
time. Rounds in which either side compiled (JAX's compile events) are dropped -- brax's first
two epochs (its pmapped epoch compiles again on its second call under jax 0.10); ours is
compiled before. Gradient steps/s = env steps/s x UTD (1).

brax 0.14.2 calls ``jax.device_put_replicated`` (gone in jax 0.10): ``brax_peer``'s shim is
installed only while brax's ``train`` runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Tuple

import jax

from benchmarks.brax_peer import EPISODE_LENGTH, brax_pendulum, device_put_replicated_shim
from benchmarks.cli import preset_parser, save_and_print
from benchmarks.compiles import CompileCounter
from benchmarks.timing import Rounds
from envs.pendulum import Pendulum
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.randomization.param_space import fixed_space

TARGET = 1.0
BRAX_COMPILE_EPOCHS = 2  # brax's first two epochs compile (ppo_speed, brax_peer): not timed


@dataclasses.dataclass(frozen=True)
class Preset:
    num_envs: int = 8
    batch_size: int = 256
    hidden: Tuple[int, ...] = (256, 256)
    steps_per_round: int = 2000  # env steps per timed round and side
    rounds: int = 4


PRESETS = {"quick": Preset(steps_per_round=800, rounds=3), "full": Preset()}


def sac_config(p: Preset) -> SACConfig:
    total = p.batch_size + (p.rounds + BRAX_COMPILE_EPOCHS) * p.steps_per_round
    return SACConfig(num_envs=p.num_envs, num_steps=1, utd=1.0, batch_size=p.batch_size,
                     hidden_sizes=p.hidden, buffer_size=total + 1000,
                     learning_starts=p.batch_size, total_steps=total, gamma=0.99).validate()


def run(preset: str = "quick") -> dict:
    from brax.training.agents.sac import networks as brax_sac_networks
    from brax.training.agents.sac import train as brax_sac

    p = PRESETS[preset]
    if p.steps_per_round % p.num_envs or p.batch_size % p.num_envs:
        raise ValueError("steps_per_round and batch_size must be multiples of num_envs")
    config = sac_config(p)
    sac = SAC(Pendulum(max_steps=EPISODE_LENGTH))
    space = fixed_space(sac.env.default_params())
    updates = p.steps_per_round // config.steps_per_update

    start = time.perf_counter()  # compile ours once (a throwaway state), outside every round
    warm = sac.init(jax.random.PRNGKey(10_000), config, space)
    jax.block_until_ready(sac.train_chunk(warm, config, updates))
    ours_compile_s = time.perf_counter() - start

    rounds = Rounds(["ours", "brax"])
    dropped, returns = [], {}
    with CompileCounter() as compiles:
        box = {"state": sac.init(jax.random.PRNGKey(0), config, space), "mark": compiles.mark()}
        # Ours fills its buffer (learning_starts) inside its first chunk, which runs beside
        # brax's compile epoch and is never timed (brax prefills before its first epoch).

        def progress(step, metrics):
            if "training/sps" not in metrics:  # brax's evaluation before training
                box["mark"] = compiles.mark()
                return
            brax_s = p.steps_per_round / float(metrics["training/sps"])
            brax_compiled = compiles.since(box["mark"])[0]
            t0 = time.perf_counter()
            box["state"], m = sac.train_chunk(box["state"], config, updates)
            jax.block_until_ready(box["state"])
            ours_s = time.perf_counter() - t0
            if brax_compiled or compiles.since(box["mark"])[0]:
                dropped.append({"brax_s": brax_s, "ours_s": ours_s})
            else:
                rounds.add("brax", brax_s)
                rounds.add("ours", ours_s)
            returns["brax"] = float(metrics.get("eval/episode_reward", float("nan")))
            returns["ours_training"] = float(m["episode_return"][-1])
            box["mark"] = compiles.mark()

        network_factory = functools.partial(brax_sac_networks.make_sac_networks,
                                            hidden_layer_sizes=p.hidden)
        with device_put_replicated_shim():
            brax_sac.train(
                brax_pendulum(float(sac.env.default_params().max_torque)),
                num_timesteps=config.total_steps, episode_length=EPISODE_LENGTH,
                num_envs=p.num_envs, num_eval_envs=p.num_envs, learning_rate=3e-4,
                discounting=0.99, batch_size=p.batch_size,
                num_evals=p.rounds + BRAX_COMPILE_EPOCHS + 1,
                min_replay_size=p.batch_size, max_replay_size=config.buffer_size,
                grad_updates_per_step=p.num_envs, network_factory=network_factory,
                progress_fn=progress, seed=0)
    if rounds.complete < 1:
        raise RuntimeError(f"no steady-state round: every round compiled ({dropped})")
    timing = rounds.summary(baseline="brax", work=p.steps_per_round)
    return {"title": "SAC vs brax.training SAC (Pendulum)", "settings": dataclasses.asdict(p),
            "timing": timing, "ours_compile_s": ours_compile_s, "dropped_rounds": dropped,
            "returns_last_round": returns,
            "headline": [{"label": f"SAC training, {p.num_envs} envs, UTD 1 (ours / brax)",
                          "ratio": timing["ratios"]["ours"], "target": TARGET}]}


def markdown(result: dict) -> str:
    p, t = result["settings"], result["timing"]
    sps = {s: t[s]["units_per_s"] for s in ("ours", "brax")}
    r = t["ratios"]["ours"]
    return "\n".join([
        f"Pendulum, {p['num_envs']} envs, UTD 1, batch {p['batch_size']}, actor and critics "
        f"{tuple(p['hidden'])}, {p['steps_per_round']} env steps per round, {t['rounds']} timed "
        f"rounds interleaved (brax's compile epoch and any round with a compile dropped: "
        f"{len(result['dropped_rounds'])}); our compile {result['ours_compile_s']:.1f} s. "
        f"`jax.device_put_replicated` is shimmed only while brax's `train` runs "
        f"(`benchmarks/brax_peer.py`).",
        "",
        "| side | env (= gradient) steps/s, median [IQR] | min-max |",
        "|---|---:|---:|",
        *[f"| {s} | {sps[s]['median']:.1f} [{sps[s]['q25']:.1f}-{sps[s]['q75']:.1f}] | "
          f"{sps[s]['min']:.1f}-{sps[s]['max']:.1f} |" for s in ("ours", "brax")],
        "",
        f"Ours / brax per round: median {r['median']:.2f}x, min-max {r['min']:.2f}-"
        f"{r['max']:.2f}x. Returns after the last round (not a comparison: one seed): brax eval "
        f"{result['returns_last_round'].get('brax', float('nan')):.0f}, ours training episodes "
        f"{result['returns_last_round'].get('ours_training', float('nan')):.0f}.",
    ])


def main(argv=None) -> dict:
    args = preset_parser(__doc__, PRESETS, "benchmarks/results/sac_speed_cli.json").parse_args(argv)
    return save_and_print(run(args.preset), args.out, markdown)


if __name__ == "__main__":
    main()
