"""MAML: one meta-training iteration in JAX vs PyTorch at one thread each, and memory vs k.

Usage (from the repo root; part of ``python -m benchmarks.run``)::

    python -m benchmarks.maml_speed [--preset quick|full] [--out PATH]

Sinusoid regression, second-order MAML on every side: meta-batch 25 tasks, K = 10 support + 10
query points, 2x40 ReLU MLP, one inner SGD step of 0.01, Adam 1e-3, task and point sampling
included in the iteration. Three programs, interleaved in one process (rounds of
``jax, torch_func, torch_eager, jax_scan``; median and spread per side, ratio per round):

* ``jax``: ``SupervisedMAML.update``, one jitted call per iteration (it also computes the
  pre-adaptation loss and the non-finite guard, which the torch sides skip).
  ``jax_scan``: ``train_chunk``, a ``lax.scan`` over the round's iterations in one call, as the
  experiments train; the 3x target is checked on it against the faster torch variant.
* ``torch_func``: ``torch.func.grad`` of ``vmap`` over tasks of (``functional_call`` + inner
  ``torch.func.grad``), then ``torch.optim.Adam``.
* ``torch_eager``: hand-batched eager torch: the parameters expanded over the task axis
  (``expand``), forward passes as ``baddbmm``, one ``autograd.grad(create_graph=True)`` for all
  tasks' inner steps, one ``backward`` for the meta-gradient, ``torch.optim.Adam``.

Threads: one on each side. torch: ``torch.set_num_threads(1)`` (and one inter-op thread); JAX:
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` (``run`` re-runs
itself in a subprocess with these flags when they are not set). These flags do not make XLA
strictly single-threaded (its runtime and Python's dispatching thread both work), so the whole
process is also pinned to one core (``sched_setaffinity``): every thread of both frameworks
shares that core, and no side gets more CPU than the other. As a check, each program's process
CPU time per wall second (about 1.0 on an idle machine when one thread does the work) and its
busy threads (threads that did >= 10% of the CPU work of a round, the most over rounds; from
``/proc/self/task``) are reported.

Before timing, the three meta-gradients are computed from the same initial parameters (JAX's)
on the same batch and must agree (max abs difference <= 1e-5 x max(1, max |g|)); the benchmark
stops otherwise. ``memory_vs_k``: JAX compiled temporary memory
(``memory_analysis().temp_size_in_bytes``) of the sinusoid meta-gradient for k inner steps, with
and without ``jax.checkpoint``. ``rl`` (full preset, JAX only): one MAML-TRPO and one ProMP
meta-iteration on PointNav2D at the ``maml_nav2d`` cpu preset's sizes.

PyTorch is optional (the ``bench-torch`` extra); without it the torch columns say "torch not
installed" and the comparison is skipped.
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
from typing import Dict, Optional

import numpy as np

from benchmarks.cli import preset_parser, save_and_print
from benchmarks.timing import Rounds

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH, SHOTS, HIDDEN, INNER_LR, OUTER_LR = 25, 10, (40, 40), 0.01, 1e-3
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
TARGET = 3.0  # issue #13: JAX >= 3x the fastest PyTorch variant at one thread each
GRAD_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Preset:
    iters_per_round: int = 100
    rounds: int = 9
    memory_ks: tuple = (1, 2, 4, 8, 16, 32)
    rl: bool = True


PRESETS = {"quick": Preset(iters_per_round=20, rounds=7, memory_ks=(1, 2, 4), rl=False),
           "full": Preset()}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------ the programs
def jax_setup():
    """The learner, its config and initial state; the meta-gradient function for the check."""
    import jax
    import jax.numpy as jnp

    from experiments.maml_sinusoid import Config, make_learner, method_config
    from metarl_jax.algos.maml import MetaParams, meta_batch_loss

    mconfig = method_config(Config(hidden_sizes=HIDDEN), "maml").replace(
        meta_batch_size=BATCH, inner_lr=INNER_LR, outer_lr=OUTER_LR)
    learner = make_learner(Config(hidden_sizes=HIDDEN), SHOTS)
    state = learner.init(jax.random.PRNGKey(0), mconfig)

    @jax.jit
    def meta_grad(params, support, query):
        return jax.grad(lambda p: meta_batch_loss(learner.loss, MetaParams(p), mconfig,
                                                  support, query))(params)

    def sample(key):
        return learner.sample_batch(key, BATCH)

    return learner, mconfig, state, meta_grad, sample, jnp


def layers_of(params) -> list:
    """Flax MLP params -> ``[(kernel[in, out], bias[out]), ...]`` as numpy, in layer order."""
    inner = params["params"]
    names = sorted(inner, key=lambda n: int(n.rsplit("_", 1)[1]))
    return [(np.array(inner[n]["kernel"]), np.array(inner[n]["bias"])) for n in names]


class TorchMAML:
    """Both torch variants from the same initial ``layers`` (``[(W[in, out], b[out])]``)."""

    def __init__(self, layers, seed: int = 0):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        # torch.func side: an nn.Module whose Linear weights are [out, in].
        mods = []
        for i, (w, _) in enumerate(layers):
            mods.append(torch.nn.Linear(w.shape[0], w.shape[1]))
            if i < len(layers) - 1:
                mods.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*mods)
        linear = [m for m in mods if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for m, (w, b) in zip(linear, layers):
                m.weight.copy_(torch.from_numpy(w.T.copy()))
                m.bias.copy_(torch.from_numpy(b))
        self.func_params = {k: v.detach().clone().requires_grad_(True)
                            for k, v in self.model.named_parameters()}
        self.func_opt = torch.optim.Adam(self.func_params.values(), lr=OUTER_LR)
        # Eager side: leaves W[in, out] and b[1, out] for baddbmm.
        self.eager_params = []
        for w, b in layers:
            self.eager_params += [torch.from_numpy(w.copy()).requires_grad_(True),
                                  torch.from_numpy(b[None].copy()).requires_grad_(True)]
        self.eager_opt = torch.optim.Adam(self.eager_params, lr=OUTER_LR)
        from torch.func import grad

        self.func_meta_grad = grad(self._func_meta_loss)

    # ---- torch.func
    def _loss(self, p, x, y):
        from torch.func import functional_call

        return ((functional_call(self.model, p, (x,)) - y) ** 2).mean()

    def _task_loss(self, p, xs, ys, xq, yq):
        from torch.func import grad

        g = grad(self._loss)(p, xs, ys)
        return self._loss({k: p[k] - INNER_LR * g[k] for k in p}, xq, yq)

    def _func_meta_loss(self, p, xs, ys, xq, yq):
        from torch.func import vmap

        return vmap(self._task_loss, in_dims=(None, 0, 0, 0, 0))(p, xs, ys, xq, yq).mean()

    def func_grads(self, batch) -> list:
        """The torch.func meta-gradient as ``[(dW[in, out], db[out])]`` numpy."""
        g = self.func_meta_grad({k: v.detach() for k, v in self.func_params.items()}, *batch)
        names = [k for k in g if k.endswith("weight")]
        return [(g[n].numpy().T, g[n.replace("weight", "bias")].numpy()) for n in names]

    def func_iteration(self) -> None:
        grads = self.func_meta_grad({k: v.detach() for k, v in self.func_params.items()},
                                    *self.sample())
        for k, v in self.func_params.items():
            v.grad = grads[k]
        self.func_opt.step()

    # ---- hand-batched eager
    def _forward(self, flat, x):
        """``x[B, K, in]`` through layers ``flat = [W[B, in, out], b[B, 1, out], ...]``."""
        n = len(flat) // 2
        for i in range(n):
            x = self.torch.baddbmm(flat[2 * i + 1], x, flat[2 * i])
            if i < n - 1:
                x = x.relu()
        return x

    def eager_meta_loss(self, xs, ys, xq, yq):
        b = xs.shape[0]
        expanded = [p.unsqueeze(0).expand(b, *p.shape) for p in self.eager_params]
        inner = ((self._forward(expanded, xs) - ys) ** 2).mean(dim=(1, 2)).sum()
        grads = self.torch.autograd.grad(inner, expanded, create_graph=True)
        adapted = [e - INNER_LR * g for e, g in zip(expanded, grads)]
        return ((self._forward(adapted, xq) - yq) ** 2).mean(dim=(1, 2)).mean()

    def eager_grads(self, batch) -> list:
        grads = self.torch.autograd.grad(self.eager_meta_loss(*batch), self.eager_params)
        return [(grads[i].numpy(), grads[i + 1].numpy()[0]) for i in range(0, len(grads), 2)]

    def eager_iteration(self) -> None:
        self.eager_opt.zero_grad(set_to_none=True)
        self.eager_meta_loss(*self.sample()).backward()
        self.eager_opt.step()

    def sample(self):
        torch = self.torch
        amp = torch.empty(BATCH, 1, 1).uniform_(0.1, 5.0)
        phase = torch.empty(BATCH, 1, 1).uniform_(0.0, np.pi)
        x = torch.empty(BATCH, 2 * SHOTS, 1).uniform_(-5.0, 5.0)
        y = amp * torch.sin(x - phase)
        return x[:, :SHOTS], y[:, :SHOTS], x[:, SHOTS:], y[:, SHOTS:]


def max_abs_diff(a: list, b: list) -> float:
    return max(float(np.max(np.abs(x - y))) for la, lb in zip(a, b) for x, y in zip(la, lb))


def gradient_check(seed: int = 7) -> dict:
    """The JAX, torch.func and eager-torch meta-gradients on one batch from the same params."""
    import jax

    learner, _, state, meta_grad, sample, _ = jax_setup()
    params = state.meta.params
    support, query = sample(jax.random.PRNGKey(seed))
    g_jax = layers_of(meta_grad(params, support, query))
    tm = TorchMAML(layers_of(params))
    torch = tm.torch
    batch = tuple(torch.from_numpy(np.array(a, np.float32))
                  for a in (support.x, support.y, query.x, query.y))
    g_func, g_eager = tm.func_grads(batch), tm.eager_grads(batch)
    scale = max(1.0, max(float(np.max(np.abs(x))) for layer in g_jax for x in layer))
    out = {"max_abs_grad": scale, "tolerance": GRAD_TOLERANCE * scale,
           "jax_vs_torch_func": max_abs_diff(g_jax, g_func),
           "jax_vs_torch_eager": max_abs_diff(g_jax, g_eager),
           "torch_func_vs_eager": max_abs_diff(g_func, g_eager)}
    out["agree"] = all(out[k] <= out["tolerance"] for k in
                       ("jax_vs_torch_func", "jax_vs_torch_eager", "torch_func_vs_eager"))
    return out


def thread_cpu_ticks() -> Dict[str, int]:
    """CPU ticks (user + system) of each thread of this process, from ``/proc`` (Linux)."""
    ticks = {}
    for task in pathlib.Path("/proc/self/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a thread that ended
            continue
        ticks[task.name] = int(fields[11]) + int(fields[12])
    return ticks


def busy_threads(before: Dict[str, int], after: Dict[str, int], share: float = 0.1) -> int:
    """Threads that did at least ``share`` of the CPU work between two ``thread_cpu_ticks``."""
    delta = {t: after[t] - before.get(t, 0) for t in after}
    total = sum(delta.values())
    return sum(1 for d in delta.values() if total and d >= share * total)


def time_sinusoid(p: Preset) -> dict:
    import jax

    learner, mconfig, state, _, _, _ = jax_setup()
    n = p.iters_per_round
    box = {"state": state}
    start = time.perf_counter()
    box["state"] = jax.block_until_ready(learner.update(box["state"], mconfig)[0])
    box["state"] = jax.block_until_ready(
        learner.train_chunk(box["state"], mconfig, n, log_every=1)[0])
    jax_compile_s = time.perf_counter() - start

    def jax_calls():
        s = box["state"]
        for _ in range(n):
            s, _ = learner.update(s, mconfig)
        box["state"] = jax.block_until_ready(s)

    def jax_scan():
        box["state"] = jax.block_until_ready(
            learner.train_chunk(box["state"], mconfig, n, log_every=1)[0])

    programs = {"jax": jax_calls}
    threads = {"jax_xla_flags": os.environ.get("XLA_FLAGS", "")}
    if torch_available():
        import torch

        tm = TorchMAML(layers_of(state.meta.params))
        threads.update(torch=torch.get_num_threads(), torch_interop=torch.get_num_interop_threads(),
                       torch_version=torch.__version__)
        tm.func_iteration()  # warm-up
        tm.eager_iteration()
        programs["torch_func"] = lambda: [tm.func_iteration() for _ in range(n)]
        programs["torch_eager"] = lambda: [tm.eager_iteration() for _ in range(n)]
    programs["jax_scan"] = jax_scan
    cpu: Dict[str, float] = {k: 0.0 for k in programs}
    wall: Dict[str, float] = {k: 0.0 for k in programs}

    busy: Dict[str, int] = {k: 0 for k in programs}

    def with_cpu_time(name, fn):
        def run():
            t0, c0, w0 = thread_cpu_ticks(), time.process_time(), time.perf_counter()
            fn()
            cpu[name] += time.process_time() - c0
            wall[name] += time.perf_counter() - w0
            busy[name] = max(busy[name], busy_threads(t0, thread_cpu_ticks()))
        return run

    from benchmarks.timing import interleave

    rounds: Rounds = interleave({k: with_cpu_time(k, f) for k, f in programs.items()},
                                p.rounds)
    out = {"iters_per_round": n, "rounds": p.rounds, "jax_compile_s": jax_compile_s,
           "threads": threads, "cpu_s_per_wall_s": {k: cpu[k] / wall[k] for k in programs},
           "busy_threads": busy,
           "ms_per_iter": {}, "speedup_of_jax": {}, "speedup_of_jax_scan": {}}
    for name in programs:
        out["ms_per_iter"][name] = rounds.summary()[name]  # seconds per round
        for key in ("median", "q25", "q75", "min", "max"):
            out["ms_per_iter"][name][key] *= 1e3 / n
        out["ms_per_iter"][name]["values"] = [v * 1e3 / n for v in
                                              out["ms_per_iter"][name]["values"]]
    from benchmarks.timing import spread

    for peer in ("torch_func", "torch_eager"):
        if peer in programs:
            ratios = rounds.ratios(peer)
            out["speedup_of_jax"][peer] = spread(ratios["jax"])
            out["speedup_of_jax_scan"][peer] = spread(ratios["jax_scan"])
    return out


def jax_memory_vs_k(ks) -> list:
    import jax
    import jax.numpy as jnp

    from envs import sinusoid
    from experiments.maml_sinusoid import Config, network
    from metarl_jax.algos.maml import MAMLConfig, MetaParams, meta_batch_loss

    net = network(Config(hidden_sizes=HIDDEN))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))

    def loss(p, pts):
        return jnp.mean((net.apply(p, pts.x) - pts.y) ** 2)

    tasks = sinusoid.sample_tasks(jax.random.PRNGKey(1), (BATCH,))
    rows = []
    for shots in (SHOTS, 100):
        support = sinusoid.sample_points(jax.random.PRNGKey(2), tasks, shots)
        query = sinusoid.sample_points(jax.random.PRNGKey(3), tasks, shots)
        for k in ks:
            row = {"points_per_task": shots, "k": k}
            for remat in (False, True):
                cfg = MAMLConfig(num_inner_steps=k, remat=remat)
                fn = jax.jit(jax.grad(lambda p, cfg=cfg: meta_batch_loss(
                    loss, MetaParams(p), cfg, support, query)))
                mem = fn.lower(params).compile().memory_analysis()
                row["remat" if remat else "no_remat"] = mem.temp_size_in_bytes / 2**20
            rows.append(row)
    return rows


def jax_rl(repeats: int) -> dict:
    import jax

    from envs.point_nav import PointNav2D
    from experiments.maml_nav2d import PRESETS as NAV_PRESETS
    from metarl_jax.algos.maml_rl import MAMLRL
    from metarl_jax.randomization.distributions import uniform
    from metarl_jax.randomization.param_space import make_param_space

    env = PointNav2D()
    space = make_param_space(env.default_params(), {"goal": uniform(-0.5, 0.5)})
    learner, out = MAMLRL(env), {}
    for name in ("maml", "promp"):
        config = getattr(NAV_PRESETS["cpu"], name)
        state = learner.init(jax.random.PRNGKey(0), config, space)
        start = time.perf_counter()
        state = jax.block_until_ready(learner.train_chunk(state, config, 1)[0])
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(learner.train_chunk(state, config, 1)[0])
            times.append(time.perf_counter() - start)
        out[name] = {"compile_s": compile_s, "s_per_iter": float(np.median(times)),
                     "outer": config.outer, "estimator": config.estimator,
                     "samples_per_iter": 2 * config.meta_batch_size * config.episodes_per_task
                     * env.max_steps}
    return out


# ------------------------------------------------------------------------------ the benchmark
def pin_to_one_core():
    """Pin this process to one CPU (``sched_setaffinity``; the threads it starts later inherit
    it), so all of XLA's and torch's threads share one core; the core, or None where the OS
    has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def run_here(preset: str) -> dict:
    """The whole benchmark in this process (which must already have the one-thread flags)."""
    p = PRESETS[preset]
    core = pin_to_one_core()
    if torch_available():
        import torch

        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
    result = {"title": "MAML meta-iteration: JAX vs PyTorch, one thread each",
              "settings": dataclasses.asdict(p), "torch": torch_available(),
              "pinned_core": core}
    if torch_available():
        check = gradient_check()
        result["gradient_check"] = check
        if not check["agree"]:
            raise RuntimeError(f"meta-gradients disagree, not timing: {check}")
    result["sinusoid"] = time_sinusoid(p)
    result["memory_vs_k"] = jax_memory_vs_k(p.memory_ks)
    result["rl"] = jax_rl(2) if p.rl else None
    sin = result["sinusoid"]
    if sin["speedup_of_jax"]:
        # The target is checked on the program the experiments run (train_chunk's lax.scan).
        fastest = min(sin["speedup_of_jax"], key=lambda k: sin["ms_per_iter"][k]["median"])
        result["headline"] = [
            {"label": f"MAML iteration, JAX lax.scan / {fastest.replace('_', ' ')} "
                      "(fastest torch; one core each)",
             "ratio": sin["speedup_of_jax_scan"][fastest], "target": TARGET}] + [
            {"label": f"MAML iteration, JAX per call / {peer.replace('_', ' ')}",
             "ratio": sin["speedup_of_jax"][peer], "target": None}
            for peer in ("torch_func", "torch_eager")]
    return result


def run(preset: str = "quick") -> dict:
    """``run_here`` in this process when XLA has the one-thread flags, else in a subprocess."""
    if "--xla_cpu_multi_thread_eigen=false" in os.environ.get("XLA_FLAGS", ""):
        return run_here(preset)
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=ONE_THREAD_XLA)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.maml_speed", "--worker",
                           "--preset", preset], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"maml_speed worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    s = result["sinusoid"]
    ms = s["ms_per_iter"]
    lines = [
        f"Second-order MAML on sinusoids (meta-batch {BATCH}, K = {SHOTS} + {SHOTS}, 2x40 ReLU "
        f"MLP, one inner step, Adam; sampling included), one process, {s['rounds']} interleaved "
        f"rounds of {s['iters_per_round']} iterations per program. Threads: torch "
        f"{s['threads'].get('torch', '-')} intra-op / {s['threads'].get('torch_interop', '-')} "
        f"inter-op (torch {s['threads'].get('torch_version', 'not installed')}), JAX with "
        f"`XLA_FLAGS={s['threads']['jax_xla_flags']}`; the process pinned to CPU "
        f"{result.get('pinned_core')} (all threads of both frameworks share one core). JAX "
        f"compile: {s['jax_compile_s']:.1f} s.",
        "",
        "| program | ms / iteration (median [IQR]) | min-max | CPU s per wall s | busy threads |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in ms.items():
        lines.append(f"| {name} | {row['median']:.3f} [{row['q25']:.3f}-{row['q75']:.3f}] | "
                     f"{row['min']:.3f}-{row['max']:.3f} | {s['cpu_s_per_wall_s'][name]:.2f} | "
                     f"{s.get('busy_threads', {}).get(name, '-')} |")
    if not result["torch"]:
        lines += ["", "torch not installed: the PyTorch columns are skipped "
                  "(`pip install -e '.[bench-torch]'`)."]
    else:
        g = result["gradient_check"]
        lines += ["", f"Meta-gradients on one batch from the same parameters (checked before "
                  f"timing): max abs difference JAX vs torch.func {g['jax_vs_torch_func']:.1e}, "
                  f"JAX vs eager {g['jax_vs_torch_eager']:.1e}, torch.func vs eager "
                  f"{g['torch_func_vs_eager']:.1e} (max |g| {g['max_abs_grad']:.2f}, "
                  f"tolerance {g['tolerance']:.1e})."]
    lines += ["", "JAX compiled temporaries of the meta-gradient vs inner steps k (MiB, "
              "no remat / `jax.checkpoint` per step):", "",
              "| points per task | k | no remat | remat |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['points_per_task']} | {r['k']} | {r['no_remat']:.2f} | {r['remat']:.2f} |"
              for r in result["memory_vs_k"]]
    if result.get("rl"):
        lines.append("")
        for name, r in result["rl"].items():
            lines.append(f"- RL (JAX only), PointNav2D cpu sizes: {name} ({r['outer']}, "
                         f"{r['estimator']}) {r['s_per_iter']:.2f} s / meta-iteration, "
                         f"compile {r['compile_s']:.1f} s.")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> dict:
    parser = preset_parser(__doc__, PRESETS,
                           ROOT / "benchmarks" / "results" / "maml_speed_cli.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_here(args.preset), default=float))
        return {}
    return save_and_print(run(args.preset), args.out, markdown)


if __name__ == "__main__":
    main()
