"""Memory at scale: device memory of one compiled PPO training chunk vs envs and vs devices.

Usage (from the repo root)::

    python -m benchmarks.scaling [--preset quick|full] [--out PATH]

The program measured is dr_pendulum's training chunk (``experiments.dr_pendulum.policies`` at
its ``accel`` preset: PPO on Pendulum with action latency, mass / length / gravity / torque /
delay redrawn every episode; 200 steps per env per update, 32 minibatches, one seed), one update
per chunk. Per cell, XLA's ``compiled.memory_analysis()`` of the compiled program, **per device**:
``argument`` (the train state: mostly the env batch), ``output``, ``alias`` (outputs written into
donated arguments), ``temp`` (scratch: the ``[T, N]`` rollout, advantages, minibatch copies) and
``peak = argument + output - alias + temp`` (XLA's own accounting; nothing runs, so a 64k-env
cell costs a compile, not a run).

* ``envs``: 1k -> 64k envs on one device, two programs: ``ShardedPPO``'s chunk on a one-device
  mesh (the state donated, shardings pinned: the program ``--devices N`` runs, per device) and
  ``PPO.train_chunk`` (not donated: the program a run without ``--devices`` runs).
* ``devices``: at a fixed env count, the env batch split over 1, 2, 4 devices (``ShardedPPO``);
  run in a subprocess with ``--xla_force_host_platform_device_count=4`` (host devices share the
  CPU's memory, but XLA's per-device accounting is the same as on accelerators).

MJX envs (256 -> 8k) are not measured here: one MJX HalfCheetah training program takes minutes to
compile on the 2-core CPU per cell (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Dict, Tuple

from benchmarks.cli import preset_parser, save_and_print

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIB = 2.0 ** 20
PROGRAMS = {True: "ShardedPPO chunk (donated)", False: "PPO.train_chunk"}  # by ``donated``


@dataclasses.dataclass(frozen=True)
class Preset:
    envs: Tuple[int, ...] = (1024, 4096, 16384, 65536)
    device_envs: int = 16384  # env count of the devices sweep
    devices: Tuple[int, ...] = (1, 2, 4)


PRESETS = {"quick": Preset(envs=(1024, 4096), device_envs=4096), "full": Preset()}


def _program(num_envs: int):
    """``(learner, config, space)`` of dr_pendulum's accel preset with ``num_envs`` envs."""
    from experiments import dr_pendulum as dr

    base = dr.PRESETS["accel"]
    config = dataclasses.replace(base, ppo=base.ppo.replace(num_envs=num_envs), num_seeds=1)
    learner, ppo_config, (space,) = dr.policies(config)["dr"]
    return learner, ppo_config, space


def memory(compiled) -> Dict[str, float]:
    """``compiled.memory_analysis()`` in MiB per device, with ``peak``."""
    m = compiled.memory_analysis()
    out = {name: getattr(m, f"{name}_size_in_bytes") / MIB
           for name in ("argument", "output", "alias", "temp", "generated_code")}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def measure(num_envs: int, devices: int, donate: bool) -> Dict[str, float]:
    """Memory of one chunk at ``num_envs`` envs on ``devices`` devices (compile only)."""
    import jax

    from metarl_jax.scale import ShardedPPO, data_mesh

    learner, config, space = _program(num_envs)
    state = jax.eval_shape(lambda k: learner._init(k, config, space), jax.random.PRNGKey(0))
    start = time.perf_counter()
    if donate:
        sppo = ShardedPPO(learner, data_mesh(devices))
        shapes = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              state, sppo.state_sharding(state))
        compiled = sppo._chunk.lower(shapes, config, num_updates=1).compile()
    else:
        compiled = learner.train_chunk.lower(state, config, num_updates=1).compile()
    return dict(memory(compiled), envs=num_envs, devices=devices, donated=donate,
                compile_s=round(time.perf_counter() - start, 1),
                transitions_per_update=num_envs * config.num_steps)


def devices_sweep(preset: Preset) -> list:
    """The ``devices`` cells, measured in a subprocess with forced host devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                          f"device_count={max(preset.devices)}").strip())
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--devices-worker",
                           json.dumps(dataclasses.asdict(preset))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"devices sweep failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(preset: str = "quick") -> dict:
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # compile_s: real compiles
    p = PRESETS[preset]
    envs = [measure(n, 1, donate) for n in p.envs for donate in (True, False)]
    return {"title": "Device memory of a PPO training chunk vs envs and devices",
            "settings": dataclasses.asdict(p), "envs": envs, "devices": devices_sweep(p)}


def markdown(result: dict) -> str:
    lines = ["dr_pendulum's accel-preset PPO chunk (200 steps x N envs per update, one seed), "
             "XLA's `memory_analysis()` per device, MiB (peak = argument + output - alias + "
             "temp; compile only, nothing run).", "",
             "| envs | devices | program | argument | output | alias | temp | peak | compile s |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["envs"] + result["devices"]:
        lines.append(f"| {r['envs']} | {r['devices']} | {PROGRAMS[r['donated']]} | "
                     f"{r['argument']:.1f} | {r['output']:.1f} | {r['alias']:.1f} | "
                     f"{r['temp']:.1f} | {r['peak']:.1f} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    """Peak MiB per device vs envs (donated or not), and vs devices at a fixed env count."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for donated, style in ((True, "o-"), (False, "s--")):
        rows = [r for r in result["envs"] if r["donated"] == donated]
        left.loglog([r["envs"] for r in rows], [r["peak"] for r in rows], style,
                    label=PROGRAMS[donated])
    left.set(xlabel="envs (one device)", ylabel="peak MiB per device",
             title="memory vs envs")
    left.legend()
    rows = result["devices"]
    right.plot([r["devices"] for r in rows], [r["peak"] for r in rows], "o-")
    right.set(xlabel="devices (env batch split)", ylabel="peak MiB per device",
              title=f"memory vs devices ({rows[0]['envs'] if rows else '?'} envs)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = preset_parser(__doc__, PRESETS, "benchmarks/results/scaling_cli.json")
    parser.add_argument("--devices-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.devices_worker:
        import jax

        jax.config.update("jax_enable_compilation_cache", False)
        p = Preset(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in json.loads(args.devices_worker).items()})
        print(json.dumps([measure(p.device_envs, d, True) for d in p.devices]))
        return {}
    result = save_and_print(run(args.preset), args.out, markdown)
    plot(result, pathlib.Path(args.out).with_suffix(".png"))
    return result


if __name__ == "__main__":
    main()
