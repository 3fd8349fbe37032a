"""Physics parameters as data for MJX robots: scale factors that rebuild the model per env.

``PhysicsParams`` holds one *scale factor* per physical quantity that matters for transfer; the
nominal ``mjx.Model`` is shared (a compile-time constant of the env) and ``apply_physics`` builds
the per-env model from the factors inside the compiled step:

    model_i = apply_physics(nominal_model, params_i)      # under vmap: only the factors batch

Fields, shapes (``nbody``, ``nv``, ``nu`` from the robot's model) and the model fields they scale:

    body_mass_scale  [nbody]  body_mass[b] and body_inertia[b, :] (the same factor: the body's
                              density changes, its geometry does not, so inertia ~ mass); a
                              scalar [] scales every body alike (a whole-robot mass factor)
    friction_scale   []       geom_friction[:, :] of every geom (one global factor: MuJoCo takes
                              the max of the two geoms' frictions, so per-geom factors would be
                              partly invisible)
    damping_scale    [nv]     dof_damping
    armature_scale   [nv]     dof_armature
    gear_scale       [nu]     actuator_gear[:, 0] (actuator strength: torque = gear * ctrl)
    gravity_scale    []       opt.gravity (magnitude; direction unchanged)

plus ``action_delay`` and ``obs_noise_std`` inherited from ``EnvParams`` (read by wrappers).
Every factor is 1.0 in ``nominal_physics(mj_model)``; a ``ParamSpace`` with relative ranges
(``uniform(0.8, 1.2, relative=True)``) draws them, independently per element for vector fields.

Derived constants (``body_invweight0``, ``dof_invweight0``, ``body_subtreemass``) stay at their
nominal values: MJX reads them only for constraint regularization, and MuJoCo C does the same
when ``model.body_mass`` is edited in place without ``mj_setConst`` -- which is exactly what the
sim-to-real harness (``metarl_jax.sim2real.deploy``) does to "the real world".
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.core.env import EnvParams

# The mjx.Model fields that ``apply_physics`` replaces (dotted paths, as ``tree_replace`` takes).
RANDOMIZED_MODEL_FIELDS: Tuple[str, ...] = (
    "body_mass", "body_inertia", "geom_friction", "dof_damping", "dof_armature",
    "actuator_gear", "opt.gravity",
)


@struct.dataclass
class PhysicsParams(EnvParams):
    """Scale factors of a robot's physics (1.0 = nominal). Shapes in the module docstring."""

    body_mass_scale: jax.Array = 1.0
    friction_scale: jax.Array = 1.0
    damping_scale: jax.Array = 1.0
    armature_scale: jax.Array = 1.0
    gear_scale: jax.Array = 1.0
    gravity_scale: jax.Array = 1.0


def nominal_physics(mj_model, params_cls=PhysicsParams, **task_fields) -> PhysicsParams:
    """Nominal ``params_cls`` for ``mj_model`` (a ``mujoco.MjModel``): every factor 1.0, with the
    shapes the model needs; ``task_fields`` set the extra fields of a task variant's Params."""
    ones = lambda n: jnp.ones((n,), jnp.float32)
    return params_cls(
        action_delay=jnp.int32(0), obs_noise_std=jnp.float32(0.0),
        body_mass_scale=ones(mj_model.nbody), friction_scale=jnp.float32(1.0),
        damping_scale=ones(mj_model.nv), armature_scale=ones(mj_model.nv),
        gear_scale=ones(mj_model.nu), gravity_scale=jnp.float32(1.0),
        **{k: jnp.asarray(v, jnp.float32) for k, v in task_fields.items()},
    )


def apply_physics(model, params: PhysicsParams):
    """The model of one env: ``model`` (an ``mjx.Model``, or a brax ``System``) with the fields in
    ``RANDOMIZED_MODEL_FIELDS`` scaled by ``params``; every other field is ``model``'s own array.

    Under ``vmap`` over ``params`` only those fields become batched (see ``physics_in_axes``).
    """
    mass = jnp.asarray(params.body_mass_scale)  # [nbody], or [] for one factor on every body
    gear = model.actuator_gear.at[:, 0].multiply(params.gear_scale)
    return model.tree_replace({
        "body_mass": model.body_mass * mass,
        "body_inertia": model.body_inertia * mass[..., None],
        "geom_friction": model.geom_friction * params.friction_scale,
        "dof_damping": model.dof_damping * params.damping_scale,
        "dof_armature": model.dof_armature * params.armature_scale,
        "actuator_gear": gear,
        "opt.gravity": model.opt.gravity * params.gravity_scale,
    })


def physics_in_axes(model):
    """A pytree shaped like ``model`` with ``0`` on ``RANDOMIZED_MODEL_FIELDS`` and ``None``
    elsewhere: the ``in_axes``/``out_axes`` of a batch of per-env models. Passing it as
    ``out_axes`` of ``jax.vmap(lambda p: apply_physics(model, p))`` fails if any other field
    depended on the params -- the check that only the randomized leaves are batched."""
    axes = jax.tree.map(lambda _: None, model)
    return axes.tree_replace({name: 0 for name in RANDOMIZED_MODEL_FIELDS})


def batched_models(model, params: PhysicsParams):
    """``[N]`` per-env models from ``params`` batched ``[N, ...]``: ``(models, in_axes)``, with only
    the randomized fields carrying the leading axis (the form brax's
    ``DomainRandomizationVmapWrapper`` takes from its ``randomization_fn``)."""
    axes = physics_in_axes(model)
    return jax.vmap(lambda p: apply_physics(model, p), out_axes=axes)(params), axes
