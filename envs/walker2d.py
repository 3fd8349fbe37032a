"""Walker2d (gymnasium ``Walker2d-v5``, with its ``walker2d_v5.xml``: both feet friction 0.9) in
MJX.

Shapes: obs [17] = (qpos[1:] [8], clip(qvel, -10, 10) [9]); action [6] in [-1, 1] (gears 100);
reward [] = v_x + 1 * healthy - 1e-3 * |a|^2. RK4, timestep 0.002, frame skip 4 (dt = 0.008 s).
Terminates when unhealthy: healthy iff ``0.8 < qpos[1] < 2`` and ``-1 < qpos[2] < 1``.
Reset: ``qpos0 + U[-5e-3, 5e-3]``, ``qvel ~ U[-5e-3, 5e-3]``.
"""

from __future__ import annotations

from envs.mjx_locomotion import PlanarWalker


class Walker2d(PlanarWalker):
    """Gymnasium ``Walker2d-v5``: walk forward without falling."""

    xml_file = "walker2d_v5.xml"
    frame_skip = 4
    gym_id = "Walker2d-v5"
    z_range = (0.8, 2.0)
    angle_range = (-1.0, 1.0)
    state_range = None
