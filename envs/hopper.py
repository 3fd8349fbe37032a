"""Hopper (gymnasium ``Hopper-v5``) in MJX.

Shapes: obs [11] = (qpos[1:] [5], clip(qvel, -10, 10) [6]); action [3] in [-1, 1] (gears 200);
reward [] = v_x + 1 * healthy - 1e-3 * |a|^2. RK4, timestep 0.002, frame skip 4 (dt = 0.008 s).
Terminates when unhealthy: healthy iff ``qpos[1] > 0.7``, ``|qpos[2]| < 0.2`` and every entry of
``[qpos, qvel][2:]`` in (-100, 100). Reset: ``qpos0 + U[-5e-3, 5e-3]``, ``qvel ~ U[-5e-3, 5e-3]``.
"""

from __future__ import annotations

from envs.mjx_locomotion import PlanarWalker


class Hopper(PlanarWalker):
    """Gymnasium ``Hopper-v5``: hop forward without falling."""

    xml_file = "hopper.xml"
    frame_skip = 4
    gym_id = "Hopper-v5"
    z_range = (0.7, float("inf"))
    angle_range = (-0.2, 0.2)
    state_range = (-100.0, 100.0)
