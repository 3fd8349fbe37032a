"""Multi-layer perceptrons (flax.linen)."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np


class MLP(nn.Module):
    """``x[..., in] -> [..., output_size]`` through ``hidden_sizes`` with ``activation``.

    Orthogonal initialization (gain sqrt(2) on hidden layers, ``output_scale`` on the output),
    the choice of most PPO implementations (Engstrom et al. 2020, "Implementation Matters").
    """

    hidden_sizes: Sequence[int]
    output_size: int
    activation: Callable = nn.tanh
    output_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                         bias_init=nn.initializers.zeros)(x)
            x = self.activation(x)
        return nn.Dense(self.output_size, kernel_init=nn.initializers.orthogonal(self.output_scale),
                        bias_init=nn.initializers.zeros)(x)
