"""A small nested experiment config and its presets, shared by the config and CLI tests."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    learning_rate: float = 3e-4
    epochs: int = 4
    clip: float = 0.2


@dataclasses.dataclass(frozen=True)
class ExpConfig:
    ppo: PPOConfig = PPOConfig()
    num_envs: int = 8  # parallel environments per update
    total_steps: int = 100_000
    hidden: tuple[int, ...] = (64, 64)
    # Randomization of the physics
    mass_range: tuple[float, float] = (0.5, 1.5)
    normalize_obs: bool = True
    env_name: str = "pendulum"
    eval_every: int | None = None

    def __post_init__(self):
        if self.num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {self.num_envs}")


PRESETS = {
    "quick": ExpConfig(num_envs=2, total_steps=1_000),
    "cpu": ExpConfig(),
    "accel": ExpConfig(num_envs=4096, total_steps=50_000_000),
}
