"""Portable policy files: an MLP's weights as ``.npz`` + a JSON spec, run by numpy alone.

    export_ppo("run/policies/dr", select_seed(ppo_states, 0), config, action_space,
               obs_layout=env.observation_structure)        # -> dr.npz, dr.json
    act = load_policy("run/policies/dr")                     # on the robot: numpy only
    action = act(obs)                                        # [obs_size] -> [action_size]

``act`` is the deterministic policy the learner evaluates (``ppo.make_policy(state, config,
deterministic=True)``, up to float64 vs float32): normalize the observation with the training
statistics, run the actor MLP, and clip to the action bounds::

    x = clip((obs - obs_mean) / sqrt(obs_var + eps), -obs_clip, obs_clip)    (if normalize)
    x = activation(x @ kernel_i + bias_i)      for every hidden layer i
    action = clip(x @ kernel_L + bias_L, action_low, action_high)

The JSON spec (``FORMAT_VERSION`` 1) holds everything but the arrays: format name and version,
``network`` (``layer_sizes`` ``[obs_size, *hidden, action_size]``, ``activation``),
``observation`` (size, layout ``[{"name", "size"}]``, normalize, clip, eps), ``action`` (size,
clip), and free-form ``metadata``. The ``.npz`` holds ``kernel_i [in, out]``, ``bias_i [out]``,
``obs_mean [obs_size]``, ``obs_var [obs_size]``, ``action_low / action_high [action_size]``.
``load_policy`` checks all of it and raises ``PolicyFormatError`` naming what is wrong.

This module imports numpy and the standard library only (never JAX), so a robot-side program can
``from metarl_jax.sim2real.export import load_policy`` without installing JAX; the export
functions take any array-likes (``np.asarray`` converts JAX arrays).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

FORMAT = "metarl_jax.policy"
FORMAT_VERSION = 1
ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


class PolicyFormatError(ValueError):
    """A policy file that cannot be loaded: unreadable, wrong version, missing or mis-shaped
    arrays."""


def _paths(path) -> Tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


def export_policy(path, layers: Sequence[Tuple[Any, Any]], *, action_low, action_high,
                  obs_mean=None, obs_var=None, activation: str = "tanh", obs_clip: float = 10.0,
                  obs_eps: float = 1e-8, obs_layout: Optional[Mapping[str, int]] = None,
                  metadata: Optional[Mapping[str, Any]] = None) -> Tuple[Path, Path]:
    """Write ``<path>.npz`` and ``<path>.json``. Returns both paths.

    Args:
        layers: ``[(kernel [in, out], bias [out]), ...]`` from the input layer to the output.
        action_low, action_high: ``[action_size]`` clip bounds.
        obs_mean, obs_var: ``[obs_size]`` normalizer statistics; ``None`` for no normalization.
        activation: hidden-layer activation, one of ``ACTIVATIONS``.
        obs_layout: ``{part name: size}`` of the observation, in order (parts of size 0 and
            ``skipped_*`` parts, which are not in the observation, are dropped).
        metadata: JSON-serializable notes (env name, training run, ...).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    arrays: Dict[str, np.ndarray] = {}
    sizes = [int(np.shape(layers[0][0])[0])]
    for i, (kernel, bias) in enumerate(layers):
        arrays[f"kernel_{i}"] = np.asarray(kernel, np.float32)
        arrays[f"bias_{i}"] = np.asarray(bias, np.float32)
        sizes.append(int(arrays[f"kernel_{i}"].shape[1]))
    normalize = obs_mean is not None
    obs_size, action_size = sizes[0], sizes[-1]
    arrays["obs_mean"] = np.asarray(obs_mean if normalize else np.zeros(obs_size), np.float32)
    arrays["obs_var"] = np.asarray(obs_var if normalize else np.ones(obs_size), np.float32)
    arrays["action_low"] = np.broadcast_to(np.asarray(action_low, np.float32), (action_size,))
    arrays["action_high"] = np.broadcast_to(np.asarray(action_high, np.float32), (action_size,))
    layout = [{"name": k, "size": int(v)} for k, v in (obs_layout or {}).items()
              if int(v) > 0 and not k.startswith("skipped")]
    spec = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "network": {"type": "mlp", "layer_sizes": sizes, "activation": activation,
                    "output_activation": "none"},
        "observation": {"size": obs_size, "layout": layout, "normalize": normalize,
                        "clip": float(obs_clip), "eps": float(obs_eps)},
        "action": {"size": action_size, "clip": True},
        "metadata": dict(metadata or {}),
    }
    npz_path, json_path = _paths(path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npz_path, **arrays)
    json_path.write_text(json.dumps(spec, indent=2))
    _check(spec, arrays, json_path)  # never write a file load_policy would refuse
    return npz_path, json_path


def export_ppo(path, state, config, action_space,
               obs_layout: Optional[Mapping[str, int]] = None,
               metadata: Optional[Mapping[str, Any]] = None) -> Tuple[Path, Path]:
    """Export the deterministic policy of one PPO seed's train ``state`` (``metarl_jax.algos.ppo``;
    ``select_seed(states, i)`` takes seed ``i`` of a stacked state): the state's flax ``params``
    (``params["params"]["actor"]["Dense_i"]``) and ``obs_stats`` (a ``RunningStats``), the
    ``PPOConfig`` (hidden sizes, whether observations are normalized) and the env's continuous
    ``action_space`` (a ``Box``; its bounds become the clip). The file's forward pass is
    ``ppo.make_policy(state, config, deterministic=True)``'s. The normalizer constants (clip 10,
    eps 1e-8) are those of ``metarl_jax.core.normalization.normalize``.

    An asymmetric actor-critic (``PPO(..., actor_obs_size=k)``) exports its actor alone: the
    file takes the first ``k`` observation entries (the actor's first kernel has ``k`` rows) and
    keeps the normalizer statistics of those entries; the critic's privileged entries are not
    needed on the robot."""
    params, obs_stats = state.params, state.obs_stats
    actor = params["params"]["actor"]
    layers = [(actor[f"Dense_{i}"]["kernel"], actor[f"Dense_{i}"]["bias"])
              for i in range(len(config.hidden_sizes) + 1)]
    actor_obs_size = int(np.shape(layers[0][0])[0])
    normalize = bool(config.normalize_obs)
    return export_policy(
        path, layers, action_low=action_space.low, action_high=action_space.high,
        obs_mean=np.asarray(obs_stats.mean)[:actor_obs_size] if normalize else None,
        obs_var=np.asarray(obs_stats.var)[:actor_obs_size] if normalize else None,
        activation="tanh", obs_clip=10.0, obs_eps=1e-8, obs_layout=obs_layout, metadata=metadata)


class Policy:
    """A loaded policy: ``policy(obs)`` / ``policy.act(obs)`` -> action (float64, numpy).

    Attributes: ``spec`` (the JSON dict), ``obs_size``, ``action_size``, ``arrays``.
    """

    def __init__(self, spec: Dict[str, Any], arrays: Dict[str, np.ndarray]):
        self.spec = spec
        self.arrays = arrays
        self.obs_size = int(spec["observation"]["size"])
        self.action_size = int(spec["action"]["size"])
        self._activation = ACTIVATIONS[spec["network"]["activation"]]
        self._num_layers = len(spec["network"]["layer_sizes"]) - 1
        obs = spec["observation"]
        self._normalize, self._clip, self._eps = bool(obs["normalize"]), obs["clip"], obs["eps"]
        # float64 throughout: differs from a float32 JAX forward pass by ~1e-7 relative.
        self._layers = [(arrays[f"kernel_{i}"].astype(np.float64),
                         arrays[f"bias_{i}"].astype(np.float64)) for i in range(self._num_layers)]

    def act(self, obs) -> np.ndarray:
        """``obs [obs_size]`` (or ``[B, obs_size]``) -> clipped mean action
        ``[..., action_size]``."""
        x = np.asarray(obs, np.float64)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_size:
            raise ValueError(f"policy expects observations of size {self.obs_size} "
                             f"(shape [{self.obs_size}] or [batch, {self.obs_size}]), got shape "
                             f"{x.shape}")
        if self._normalize:
            std = np.sqrt(self.arrays["obs_var"].astype(np.float64) + self._eps)
            x = np.clip((x - self.arrays["obs_mean"]) / std, -self._clip, self._clip)
        for i, (kernel, bias) in enumerate(self._layers):
            x = x @ kernel + bias
            if i < self._num_layers - 1:
                x = self._activation(x)
        return np.clip(x, self.arrays["action_low"], self.arrays["action_high"])

    __call__ = act


def load_policy(path) -> Policy:
    """Load ``<path>.npz`` + ``<path>.json`` (``path`` may carry either suffix or none)."""
    npz_path, json_path = _paths(path)
    for p in (json_path, npz_path):
        if not p.is_file():
            raise PolicyFormatError(f"policy file {p} does not exist "
                                    "(a policy is a .npz + .json pair)")
    try:
        spec = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyFormatError(f"{json_path}: not a readable JSON policy spec ({e})") from None
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:  # zipfile/pickle/ValueError: any unreadable archive
        raise PolicyFormatError(f"{npz_path}: not a readable .npz archive ({e})") from None
    _check(spec, arrays, json_path)
    return Policy(spec, arrays)


def _check(spec: Any, arrays: Mapping[str, np.ndarray], where: Path) -> None:
    """Raise ``PolicyFormatError`` unless ``spec`` and ``arrays`` describe a runnable policy."""
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise PolicyFormatError(f"{where}: not a {FORMAT} spec (format={_get(spec, 'format')!r})")
    version = spec.get("format_version")
    if version != FORMAT_VERSION:
        raise PolicyFormatError(f"{where}: format_version {version!r} is not supported "
                                f"(this loader reads version {FORMAT_VERSION})")
    try:
        sizes = [int(s) for s in spec["network"]["layer_sizes"]]
        activation = spec["network"]["activation"]
        obs_size, action_size = int(spec["observation"]["size"]), int(spec["action"]["size"])
        for key in ("normalize", "clip", "eps"):
            spec["observation"][key]
    except (KeyError, TypeError, ValueError) as e:
        raise PolicyFormatError(
            f"{where}: spec is missing or has a malformed field ({e!r})") from None
    if activation not in ACTIVATIONS:
        raise PolicyFormatError(f"{where}: unknown activation {activation!r} "
                                f"(known: {', '.join(sorted(ACTIVATIONS))})")
    if len(sizes) < 2 or sizes[0] != obs_size or sizes[-1] != action_size:
        raise PolicyFormatError(f"{where}: layer_sizes {sizes} must run from observation size "
                                f"{obs_size} to action size {action_size}")
    expected = {"obs_mean": (obs_size,), "obs_var": (obs_size,),
                "action_low": (action_size,), "action_high": (action_size,)}
    for i in range(len(sizes) - 1):
        expected[f"kernel_{i}"] = (sizes[i], sizes[i + 1])
        expected[f"bias_{i}"] = (sizes[i + 1],)
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise PolicyFormatError(f"{where.with_suffix('.npz')}: missing arrays {missing}")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != shape:
            raise PolicyFormatError(f"{where.with_suffix('.npz')}: array {name!r} has shape "
                                    f"{tuple(arrays[name].shape)}, the spec needs {shape}")
        if not np.all(np.isfinite(arrays[name])):
            raise PolicyFormatError(f"{where.with_suffix('.npz')}: array {name!r} is not finite")
    if np.any(arrays["obs_var"] < 0) or np.any(arrays["action_low"] > arrays["action_high"]):
        raise PolicyFormatError(f"{where}: obs_var must be >= 0 and action_low <= action_high")


def _get(spec: Any, key: str):
    return spec.get(key) if isinstance(spec, dict) else None
