"""Sim-to-real: portable policy files (``export``: numpy-only loader) and evaluation of a
policy file in gymnasium's MuJoCo-C environments under perturbed physics (``deploy``).

Importing this package imports numpy only; ``deploy`` (gymnasium + MuJoCo) and ``report``
(matplotlib) are imported on demand.
"""

from metarl_jax.sim2real.export import (
    FORMAT_VERSION,
    Policy,
    PolicyFormatError,
    export_policy,
    export_ppo,
    load_policy,
)

__all__ = ["FORMAT_VERSION", "Policy", "PolicyFormatError", "export_policy", "export_ppo",
           "load_policy"]
