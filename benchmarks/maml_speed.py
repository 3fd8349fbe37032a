"""MAML speed and memory: one meta-training iteration in JAX vs PyTorch (torch.func), memory vs k.

Usage::

    python -m benchmarks.maml_speed [--quick] [--out benchmarks/results/maml_speed.json]

What is measured, all in one run:

* ``sinusoid``: one iteration of second-order MAML on sinusoid regression (meta-batch 25 tasks,
  K = 10 support + 10 query points, 2x40 ReLU MLP, one inner SGD step of 0.01, Adam 1e-3;
  task and point sampling included). JAX: ``SupervisedMAML.update`` (one jitted call per
  iteration) and ``train_chunk`` (a ``lax.scan`` of 100 iterations per call, per-iteration time
  reported). PyTorch: ``torch.func.grad`` of ``vmap`` over tasks of (``functional_call`` +
  inner ``torch.func.grad``) -- the same exact second-order meta-gradient -- then
  ``torch.optim.Adam``. Each framework runs in its own subprocess; the best of several timing
  repeats is reported, and ``peak_rss_mb`` is the process's peak resident memory minus the
  resident memory just before the first iteration (so the framework's own import is excluded).
* ``memory_vs_k``: JAX compiled temporary memory (``jit(grad).lower().compile()
  .memory_analysis().temp_size_in_bytes``) of the sinusoid meta-gradient for k inner steps,
  with and without ``jax.checkpoint`` of each step, at K = 10 and K = 100 points per task.
* ``rl``: one MAML-TRPO and one ProMP meta-iteration on PointNav2D at the ``maml_nav2d`` cpu
  preset's sizes (20 goals x 20 episodes x 100 steps, pre and post; JAX only, no PyTorch twin).

PyTorch is optional (the ``bench-torch`` extra); without it the torch columns are skipped with
a message. CPU timings are noisy on shared machines: compare numbers from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH, SHOTS, HIDDEN, INNER_LR, OUTER_LR = 25, 10, (40, 40), 0.01, 1e-3


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _best(fn, iters: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds per iteration of ``fn(iters)`` (which runs ``iters``)."""
    return min(_timed(fn, iters) for _ in range(repeats)) / iters


def _timed(fn, iters):
    start = time.perf_counter()
    fn(iters)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ workers
def jax_sinusoid(iters: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from experiments.maml_sinusoid import Config, make_learner, method_config

    config = Config(hidden_sizes=HIDDEN)
    mconfig = method_config(config, "maml").replace(meta_batch_size=BATCH, inner_lr=INNER_LR,
                                                    outer_lr=OUTER_LR)
    learner = make_learner(config, SHOTS)
    state = learner.init(jax.random.PRNGKey(0), mconfig)
    start = time.perf_counter()
    state = jax.block_until_ready(learner.update(state, mconfig)[0])
    compile_s = time.perf_counter() - start
    jax.block_until_ready(learner.train_chunk(state, mconfig, 1, log_every=100))
    rss0 = _rss_mb()
    box = {"state": state}

    def per_call(n):
        s = box["state"]
        for _ in range(n):
            s, _ = learner.update(s, mconfig)
        box["state"] = jax.block_until_ready(s)

    def scanned(n):
        box["state"] = jax.block_until_ready(
            learner.train_chunk(box["state"], mconfig, n // 100, log_every=100)[0])

    per_call_s = _best(per_call, iters, repeats)
    scan_s = _best(scanned, max(100, iters // 100 * 100), repeats)
    loss = float(jnp.mean(learner.update(box["state"], mconfig)[1]["post_loss"]))
    return {"compile_s": compile_s, "ms_per_iter": per_call_s * 1e3,
            "ms_per_iter_scan": scan_s * 1e3, "peak_rss_mb": _peak_mb() - rss0,
            "post_loss": loss}


def torch_sinusoid(iters: int, repeats: int) -> dict:
    import torch
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    layers, width_in = [], 1
    for width in HIDDEN:
        layers += [torch.nn.Linear(width_in, width), torch.nn.ReLU()]
        width_in = width
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width_in, 1))
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    opt = torch.optim.Adam(params.values(), lr=OUTER_LR)

    def loss(p, x, y):
        return ((functional_call(model, p, (x,)) - y) ** 2).mean()

    def task_loss(p, xs, ys, xq, yq):
        g = grad(loss)(p, xs, ys)
        return loss({k: p[k] - INNER_LR * g[k] for k in p}, xq, yq)

    def meta_loss(p, xs, ys, xq, yq):
        return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(p, xs, ys, xq, yq).mean()

    def sample():
        amp = torch.empty(BATCH, 1, 1).uniform_(0.1, 5.0)
        phase = torch.empty(BATCH, 1, 1).uniform_(0.0, np.pi)
        x = torch.empty(BATCH, 2 * SHOTS, 1).uniform_(-5.0, 5.0)
        y = amp * torch.sin(x - phase)
        return x[:, :SHOTS], y[:, :SHOTS], x[:, SHOTS:], y[:, SHOTS:]

    meta_grad = grad(meta_loss)
    last = {}

    def run(n):
        for _ in range(n):
            batch = sample()
            grads = meta_grad({k: v.detach() for k, v in params.items()}, *batch)
            for k, v in params.items():
                v.grad = grads[k]
            opt.step()
        last["loss"] = float(meta_loss({k: v.detach() for k, v in params.items()}, *sample()))

    run(3)
    rss0 = _rss_mb()
    ms = _best(run, iters, repeats) * 1e3
    return {"ms_per_iter": ms, "peak_rss_mb": _peak_mb() - rss0, "post_loss": last["loss"],
            "threads": torch.get_num_threads(), "version": torch.__version__}


def jax_memory_vs_k(ks) -> list:
    import jax
    import jax.numpy as jnp

    from envs import sinusoid
    from experiments.maml_sinusoid import Config, network
    from metarl_jax.algos.maml import MAMLConfig, MetaParams, meta_batch_loss

    net = network(Config(hidden_sizes=HIDDEN))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    loss = lambda p, pts: jnp.mean((net.apply(p, pts.x) - pts.y) ** 2)
    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(1), (BATCH,))
    rows = []
    for shots in (SHOTS, 100):
        support = sinusoid.sample_points(jax.random.PRNGKey(2), tasks, shots)
        query = sinusoid.sample_points(jax.random.PRNGKey(3), tasks, shots)
        for k in ks:
            row = {"points_per_task": shots, "k": k}
            for remat in (False, True):
                cfg = MAMLConfig(num_inner_steps=k, remat=remat)
                fn = jax.jit(jax.grad(lambda p: meta_batch_loss(loss, MetaParams(p), cfg,
                                                                support, query)))
                mem = fn.lower(params).compile().memory_analysis()
                row["remat" if remat else "no_remat"] = mem.temp_size_in_bytes / 2**20
            rows.append(row)
    return rows


def jax_rl(iters: int) -> dict:
    import jax

    from envs.point_nav import PointNav2D
    from experiments.maml_nav2d import PRESETS
    from metarl_jax.algos.maml_rl import MAMLRL
    from metarl_jax.randomization.distributions import uniform
    from metarl_jax.randomization.param_space import make_param_space

    env = PointNav2D()
    space = make_param_space(env.default_params(), {"goal": uniform(-0.5, 0.5)})
    learner, out = MAMLRL(env), {}
    for name in ("maml", "promp"):
        config = getattr(PRESETS["cpu"], name)
        state = learner.init(jax.random.PRNGKey(0), config, space)
        start = time.perf_counter()
        state = jax.block_until_ready(learner.train_chunk(state, config, 1)[0])
        compile_s = time.perf_counter() - start
        step = lambda n: jax.block_until_ready(learner.train_chunk(state, config, 1)[0])
        out[name] = {"compile_s": compile_s, "s_per_iter": _best(step, 1, iters),
                     "outer": config.outer, "estimator": config.estimator,
                     "samples_per_iter": 2 * config.meta_batch_size * config.episodes_per_task
                     * env.max_steps}
    return out


WORKERS = {"jax_sinusoid": jax_sinusoid, "torch_sinusoid": torch_sinusoid}


def _subprocess(worker: str, iters: int, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.maml_speed", "--worker", worker,
                           "--iters", str(iters), "--repeats", str(repeats)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{worker} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "maml_speed.json"))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.iters, args.repeats)))
        return {}

    iters, repeats = (20, 1) if args.quick else (100, 3)
    report = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                          "platform": platform.platform()}}
    import jax

    report["machine"]["jax"] = jax.__version__
    sinusoid = {"jax": _subprocess("jax_sinusoid", iters, repeats)}
    if torch_available():
        sinusoid["torch"] = _subprocess("torch_sinusoid", iters, repeats)
        sinusoid["torch_over_jax"] = (sinusoid["torch"]["ms_per_iter"]
                                      / sinusoid["jax"]["ms_per_iter"])
    else:
        print("torch is not installed: skipping the PyTorch column "
              "(pip install -e '.[bench-torch]' to compare)", file=sys.stderr)
        sinusoid["torch"] = None
    report["sinusoid"] = sinusoid
    report["memory_vs_k"] = jax_memory_vs_k((1, 2, 4) if args.quick else (1, 2, 4, 8, 16, 32))
    report["rl"] = None if args.quick else jax_rl(2)

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    _print(report)
    return report


def _print(report: dict) -> None:
    s = report["sinusoid"]
    print("sinusoid MAML (2nd order), one meta-iteration:")
    print(f"  jax   {s['jax']['ms_per_iter']:.3f} ms/iter (jit per call), "
          f"{s['jax']['ms_per_iter_scan']:.3f} ms/iter (lax.scan), "
          f"peak +{s['jax']['peak_rss_mb']:.1f} MB")
    if s["torch"]:
        print(f"  torch {s['torch']['ms_per_iter']:.3f} ms/iter, "
              f"peak +{s['torch']['peak_rss_mb']:.1f} MB"
              f"  (torch / jax = {s['torch_over_jax']:.1f}x)")
    print("memory vs k (JAX compiled temp MiB: no remat / remat):")
    for row in report["memory_vs_k"]:
        print(f"  K={row['points_per_task']:3d} k={row['k']:2d}: "
              f"{row['no_remat']:7.2f} / {row['remat']:7.2f}")
    if report["rl"]:
        for name, r in report["rl"].items():
            print(f"  RL {name} ({r['outer']}, {r['estimator']}): {r['s_per_iter']:.2f} s/iter")


if __name__ == "__main__":
    main()
