"""robust_dr's arms as data: DR, EPOpt, MRPO, ADR and EPOpt with source adaptation, one program.

The arms differ only in pure functions of a rollout's episodes -- which episodes the loss keeps
(EPOpt's CVaR cut, MRPO's selection; DR and ADR keep all) and how the randomization distribution
moves (ADR's ranges; EPOpt's posterior, between rounds) -- so the arm is a number:
``ArmSpace.arm`` picks the distribution episodes are drawn from (the DR box or ADR's ranges) and
``ArmHook`` the selection, by ``jnp`` selects over every rule's result (each rule is the library's
own: ``EPOpt.weights``, ``MRPO.weights``, ``ADR.update_space``). One ``PPO(env,
robust=ArmHook(...))`` thus compiles one training program (and one init) for every arm: the
quick preset compiled four before. Each arm draws from its distribution with the key it had when
it was a program of its own (``ArmSpace.sample`` samples both with the same key); DR's and
ADR's losses now weight every episode by 1 instead of taking the plain mean (equal up to float
rounding).

EPOpt's adaptation (``epopt_adapt``, Rajeswaran et al. 2017 sec. 3.2): after every compiled
chunk of training (a round), ``adapt_seeds`` records ``SourceAdaptation.num_episodes`` episodes of
the current policy on the hidden target physics and moves the box to the posterior given them
(the likelihood: ``pendulum_log_likelihood``, a Gaussian on the multi-step prediction error of
``sim2real.calibrate``), then resets the envs so the next round's episodes come from it.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs.pendulum import PendulumState
from metarl_jax.algos.epopt import EPOpt, SourceAdaptation, TargetData
from metarl_jax.algos.mrpo import MRPO
from metarl_jax.core.rollout import reset_batch
from metarl_jax.randomization.adr import ADR, ADRSpace
from metarl_jax.randomization.param_space import ParamDistribution, ParamSpace, fixed_space
from metarl_jax.randomization.robust import EpisodeBatch
from metarl_jax.sim2real import calibrate as cal

ARMS = ("dr", "epopt", "mrpo", "adr", "epopt_adapt")
ADR_ARM = ARMS.index("adr")
SELECTS = {"epopt": ARMS.index("epopt"), "epopt_adapt": ARMS.index("epopt_adapt"),
           "mrpo": ARMS.index("mrpo")}
# The metrics an arm logs (what its own hook logged as a program of its own).
OWN_METRICS = {"dr": (), "epopt": ("epopt_", "selected_frac"), "mrpo": ("mrpo_", "selected_frac"),
               "adr": ("adr_",), "epopt_adapt": ("epopt_", "selected_frac", "posterior_")}
FOREIGN = ("epopt_", "mrpo_", "adr_", "selected_frac", "posterior_")


@struct.dataclass
class ArmSpace(ParamDistribution):
    """The training distribution of arm ``arm`` (``[] int32`` index into ``ARMS``): ADR's
    ``adr`` ranges for the ADR arm, the ``box`` (a ``ParamSpace``; EPOpt's posterior moves it)
    for the others."""

    arm: jax.Array
    box: ParamSpace
    adr: ADRSpace

    @property
    def nominal(self):
        return self.box.nominal

    def _pick(self, adr_value, box_value):
        return jax.tree.map(lambda a, b: jnp.where(self.arm == ADR_ARM, a, b), adr_value,
                            box_value)

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> Any:
        return self._pick(self.adr.sample(key, shape), self.box.sample(key, shape))

    def support(self):
        adr, box = self.adr.support(), self.box.support()
        return {f: self._pick(adr[f], box[f]) for f in box}

    def collapse_to_nominal(self) -> ParamSpace:
        return fixed_space(self.box.nominal)


@struct.dataclass
class ArmHook:
    """PPO's robust hook for every arm: the selection of the space's arm (module doc)."""

    epopt: EPOpt
    mrpo: MRPO

    def weights(self, batch: EpisodeBatch, space: ArmSpace, update_step):
        epopt, epopt_metrics = self.epopt.weights(batch, space, update_step)
        mrpo, mrpo_metrics = self.mrpo.weights(batch, space, update_step)
        arm = space.arm
        keep_all = jnp.ones_like(batch.returns)
        is_epopt = (arm == SELECTS["epopt"]) | (arm == SELECTS["epopt_adapt"])
        weights = jnp.where(is_epopt, epopt, jnp.where(arm == SELECTS["mrpo"], mrpo, keep_all))
        return weights, dict(epopt_metrics, **mrpo_metrics)

    def update_space(self, space: ArmSpace, batch: EpisodeBatch, update_step):
        adr, metrics = ADR().update_space(space.adr, batch, update_step)
        adr = jax.tree.map(lambda new, old: jnp.where(space.arm == ADR_ARM, new, old), adr,
                           space.adr)
        return space.replace(adr=adr), metrics


def own_metrics(arm: str, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """The chunk's metrics without the other arms' (their rules run too, unused)."""
    own = OWN_METRICS[arm]
    return {k: v for k, v in metrics.items()
            if not k.startswith(FOREIGN) or k.startswith(own)}


# ------------------------------------------------------------------------ EPOpt's adaptation
def pendulum_state(obs: jax.Array) -> PendulumState:
    """The Pendulum's state from its observation ``[cos, sin, theta_dot]`` (time 0)."""
    return PendulumState(theta=jnp.arctan2(obs[1], obs[0]), theta_dot=obs[2],
                         time=jnp.int32(0))


def pendulum_log_likelihood(env, nominal, fields: Sequence[str], horizon: int,
                            noise_std: float):
    """``log_likelihood_of(data) -> (params[N] -> [N])``: the target episodes' Gaussian
    log-likelihood ``-0.5 n L(params) / noise_std^2`` under physics ``params`` (only ``fields``
    read), ``L`` the ``horizon``-step prediction error of ``sim2real.calibrate`` (each
    observation dimension divided by its spread in the data; ``n`` observations)."""
    scale = cal.LogScale(nominal, tuple(fields))

    def of(data: TargetData):
        windows = cal.cut_windows(data.obs, data.actions, horizon)
        loss = cal.prediction_loss(env, pendulum_state, scale, cal.obs_scale(windows))
        n = windows.targets.size
        return lambda params: (-0.5 * n / noise_std ** 2) * jax.vmap(loss, in_axes=(0, None))(
            jax.vmap(scale.of_params)(params), windows)

    return of


def make_adapt_seeds(ppo, ppo_config, adaptation: SourceAdaptation, target_params,
                     log_likelihood_of, fields: Sequence[str]):
    """A jitted ``adapt(states[S]) -> (states, info)``: every seed's EPOpt adaptation round
    (module doc), its key derived from the state's (a resumed run redoes it exactly). ``info``:
    ``posterior_low_<f>`` / ``posterior_high_<f>`` (the box after the round, value units),
    ``posterior_ess``, ``posterior_temperature``, each ``[S]``."""

    def one(state):
        key = jax.random.fold_in(state.key, 0x45504F)
        round_key, reset_key = jax.random.split(key)
        act = ppo.make_policy(state, ppo_config)
        box, info = adaptation(round_key, state.space.box, ppo.env, act, target_params,
                               log_likelihood_of)
        space = state.space.replace(box=box)
        env_state, obs = reset_batch(ppo.train_env, reset_key, space, ppo_config.num_envs)
        support = box.support()
        out = {"posterior_ess": info["ess"], "posterior_temperature": info["temperature"]}
        for f in fields:
            out[f"posterior_low_{f}"], out[f"posterior_high_{f}"] = support[f]
        return state.replace(space=space, env_state=env_state, obs=obs), out

    return jax.jit(jax.vmap(one))
