"""Simulated manipulation environments with one observation layout for every backend.

    env = make_env({"backend": "robosuite", "task": "Stack", "cameras": ["agentview", "robot0_eye_in_hand"]})
    obs, info = env.reset(seed=0)   # obs["rgb"][camera], obs["proprio"], obs["object"]; info["subgoals"], ...
"""
from __future__ import annotations

from typing import Any

from embodied.errors import EmbodiedError

BACKENDS = ("robosuite", "metaworld")
TASKS = {
    "robosuite": ("Lift", "Stack", "PickPlaceCan", "Door", "NutAssemblySquare"),
    "metaworld": ("assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer"),
}


def make_env(cfg: Any):
    """Build the env described by `cfg` (a dict or OmegaConf node: backend, task, cameras, ...).

    Wrapped with a perturbation wrapper when `cfg.perturbation` is set.
    """
    if hasattr(cfg, "items") and not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    backend = cfg.get("backend")
    if backend == "robosuite":
        from embodied.envs.robosuite_env import RobosuiteEnv as cls
    elif backend == "metaworld":
        from embodied.envs.metaworld_env import MetaWorldEnv as cls
    else:
        raise EmbodiedError(f"env.backend: unknown backend '{backend}'; expected one of {list(BACKENDS)}")
    if cfg.get("task") not in TASKS[backend]:
        raise EmbodiedError(
            f"env.task: unknown {backend} task '{cfg.get('task')}'; expected one of {list(TASKS[backend])}"
        )
    env = cls(cfg)
    if cfg.get("perturbation"):
        from embodied.envs.perturb import PerturbationWrapper

        env = PerturbationWrapper(env, cfg["perturbation"])
    return env


__all__ = ["make_env", "TASKS", "BACKENDS"]
