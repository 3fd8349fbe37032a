"""Shot-based transfer: a trained policy's return on a target after 0, N1, N2, ... target steps.

    result = finetune_returns(sac, states, config, target, budgets=(2000, 4000, 8000), key=key)
    result.return_by_budget()      # {"0": {mean, ci95, per_seed}, "2000": {...}, ...}
    result.steps_to_threshold(-400.0)   # first budget whose mean return >= -400, or None

``states`` is a learner's train state stacked over seeds ``[S, ...]`` (``init_seeds`` /
``train_chunk_seeds``), trained anywhere (source physics, a randomized space) or freshly
initialized (the from-scratch baseline). ``target`` is either fixed ``Params`` (trained on
through ``fixed_space``) or any ``ParamDistribution`` (``ParamSpace``, ``ADRSpace``...).

What happens, per seed and all seeds at once:

1. **0-shot**: the policy ``learner.make_policy(state, config, deterministic)`` is evaluated on
   the target (``evaluation.evaluate_seeds``; ``eval_cells`` physics drawn from a distribution,
   or the one ``Params``; ``num_episodes`` episodes per cell).
2. **Retarget**: ``learner.retarget(state, config, space, key)`` -- the learner's hook that keeps
   what was learned (networks, optimizer, observation statistics) and moves the envs (and
   whatever else depends on the physics: SAC empties its replay buffer) to the target space,
   with its update counter back at 0. ``config`` is the *finetuning* config: it may differ from
   the pretraining one in sizes (``num_envs``...) and rates.
3. **Finetune**: one continuous run of ``train_chunk_seeds`` on the target, evaluated again
   (same episodes' keys: common random numbers across budgets) each time it has used a budget.

Budgets count target env steps **per seed** (all ``num_envs`` envs of one seed together); each
must be a positive multiple of ``config.num_envs * config.num_steps`` (one update of PPO or
SAC), and the list strictly increasing. Returns are undiscounted episode returns; confidence
intervals are over seeds (``stats.mean_ci95``, Student t; ``None`` with one seed).

``train(states, num_updates, budget) -> states`` replaces step 3's training (default:
``learner.train_chunk_seeds`` in chunks of the greatest common divisor of the segments, so it
compiles once); experiments pass one that runs ``io.training_loop.train_phase`` per segment so
finetuning is checkpointed and resumable. Evaluation keys: ``cells_key, eval_key, retarget_key =
jax.random.split(key, 3)`` (``target_eval_params(target, eval_cells, cells_key)`` gives the cells).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax import stats
from metarl_jax.randomization.param_space import ParamDistribution, fixed_space
from metarl_jax.transfer.evaluation import seed_evaluator

Trainer = Callable[[Any, int, int], Any]  # (states[S], num_updates, budget reached) -> states


@dataclasses.dataclass
class FinetuneResult:
    """Returns on the target after each budget: ``budgets = (0, N1, ..., NK)`` target env steps
    per seed, ``returns[S, K + 1]`` (mean over the evaluation episodes and cells, per seed),
    ``states`` the finetuned states after ``NK``."""

    budgets: Tuple[int, ...]
    returns: np.ndarray
    states: Any

    def mean(self) -> np.ndarray:
        """Mean over seeds, ``[K + 1]``."""
        return self.returns.mean(0)

    def return_by_budget(self) -> Dict[str, Dict[str, Any]]:
        """``{str(budget): {"mean", "ci95" (95% half-width over seeds; None with one seed),
        "per_seed"}}``, JSON-ready."""
        out = {}
        for i, budget in enumerate(self.budgets):
            column = self.returns[:, i]
            ci = stats.mean_ci95(column)[1] if column.size >= 2 else None
            out[str(budget)] = dict(mean=float(column.mean()), ci95=ci,
                                    per_seed=[float(r) for r in column])
        return out

    def steps_to_threshold(self, threshold: float) -> Optional[int]:
        """The first budget (0 included) whose seed-mean return is ``>= threshold``; None if
        none is."""
        reached = np.flatnonzero(self.mean() >= threshold)
        return int(self.budgets[reached[0]]) if reached.size else None


def check_budgets(budgets: Sequence[int], steps_per_update: int) -> Tuple[int, ...]:
    """``budgets`` as ints after checking they are non-empty, strictly increasing positive
    multiples of ``steps_per_update``; ``ValueError`` otherwise."""
    budgets = tuple(budgets)
    if not budgets:
        raise ValueError("budgets must name at least one target budget (env steps per seed)")
    if any(int(b) != b or b < 1 for b in budgets):
        raise ValueError(f"budgets must be positive integers, got {list(budgets)}")
    if any(b >= c for b, c in zip(budgets, budgets[1:])):
        raise ValueError(f"budgets must be strictly increasing, got {list(budgets)}")
    bad = [b for b in budgets if b % steps_per_update]
    if bad:
        raise ValueError(f"budgets {bad} are not multiples of num_envs * num_steps = "
                         f"{steps_per_update} (env steps of one update)")
    return tuple(int(b) for b in budgets)


def target_space(target: Any) -> ParamDistribution:
    """A ``ParamDistribution`` as is; fixed ``Params`` as ``fixed_space(target)``."""
    return target if isinstance(target, ParamDistribution) else fixed_space(target)


def target_eval_params(target: Any, eval_cells: int, key: jax.Array) -> Any:
    """The evaluation physics, batched ``[C]``: ``eval_cells`` draws from a distribution, or the
    one ``Params`` (``C = 1``)."""
    if isinstance(target, ParamDistribution):
        return target.sample(key, (eval_cells,))
    return jax.tree.map(lambda x: jnp.asarray(x)[None], target)


def finetune_returns(learner, states: Any, config: Any, target: Any, budgets: Sequence[int],
                     key: jax.Array, *, num_episodes: int = 8, eval_cells: int = 16,
                     deterministic: bool = True, train: Optional[Trainer] = None
                     ) -> FinetuneResult:
    """The 0-shot return of ``states`` on ``target`` and the return after finetuning on it for
    each of ``budgets`` target env steps per seed (module doc). ``learner``: a ``Learner`` with
    ``env``, ``make_policy`` and ``retarget`` (PPO, SAC); ``config``: the finetuning config."""
    steps_per_update = config.num_envs * config.num_steps
    budgets = check_budgets(budgets, steps_per_update)
    if num_episodes < 1 or eval_cells < 1:
        raise ValueError(f"need num_episodes >= 1 and eval_cells >= 1, got "
                         f"{num_episodes}, {eval_cells}")
    cells_key, eval_key, retarget_key = jax.random.split(key, 3)
    space = target_space(target)
    evaluate = seed_evaluator(lambda s: learner.make_policy(s, config, deterministic),
                              learner.env, target_eval_params(target, eval_cells, cells_key),
                              num_episodes, eval_key)
    seed_keys = jax.random.split(retarget_key, jax.tree.leaves(states)[0].shape[0])
    states = jax.jit(jax.vmap(lambda s, k: learner.retarget(s, config, space, k)))(
        states, seed_keys)
    # Retargeting leaves the policy as it was, so this is the 0-shot return; evaluating the
    # retargeted states every time keeps one state structure: the evaluator compiles once.
    returns = [np.asarray(evaluate(states)).mean(-1)]  # [S] per budget
    updates = [b // steps_per_update for b in budgets]
    segments = np.diff([0, *updates]).tolist()
    if train is None:
        chunk = math.gcd(*segments)

        def train(s, n, _budget):
            for _ in range(n // chunk):
                s, _ = learner.train_chunk_seeds(s, config, chunk)
            return s

    for budget, n in zip(budgets, segments):
        states = train(states, n, budget)
        returns.append(np.asarray(evaluate(states)).mean(-1))
    return FinetuneResult((0, *budgets), np.stack(returns, axis=1), states)
