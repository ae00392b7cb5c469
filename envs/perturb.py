"""Perturbations for failure and recovery studies, applied from inside the env and recorded in info.

cfg: {kind: drop | displace | push, at_step: int | null, at_subgoal: int | str | null, delay: int,
      duration: int, offset: [x, y, z] (displace), force: [x, y, z] (push, newtons)}
`at_subgoal` is a sub-goal index or the first word of a sub-goal ("lift"); the perturbation fires
`delay` steps after that sub-goal first becomes current.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from embodied.errors import EmbodiedError

KINDS = ("drop", "displace", "push")


class PerturbationWrapper(gym.Wrapper):
    def __init__(self, env: gym.Env, cfg: dict):
        super().__init__(env)
        self.cfg = dict(cfg)
        self.kind = self.cfg.get("kind")
        if self.kind not in KINDS:
            raise EmbodiedError(f"env.perturbation.kind: unknown '{self.kind}'; expected one of {list(KINDS)}")
        if self.cfg.get("at_step") is None and self.cfg.get("at_subgoal") is None:
            raise EmbodiedError("env.perturbation: set at_step or at_subgoal")
        self.duration = int(self.cfg.get("duration", 10 if self.kind == "drop" else 5))

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._check_target(info)
        self._t, self._fired_at, self._entered_at = 0, None, None
        self._track(info)
        return obs, self._record(info)

    def step(self, action):
        action = np.array(action, dtype=np.float64, copy=True)
        if self._fired_at is None and self._due():
            self._fired_at = self._t
            if self.kind == "displace":
                self.env.unwrapped.displace_object(np.asarray(self.cfg.get("offset", [0.1, 0.0, 0.0]), float))
        active = self._fired_at is not None and self._t < self._fired_at + self.duration
        if active and self.kind == "drop":
            action[-1] = -1.0  # force the gripper open: whatever it holds falls
        if self.kind == "push":
            force = np.asarray(self.cfg.get("force", [0.0, 0.0, -30.0]), float) if active else np.zeros(3)
            self.env.unwrapped.push_object(force)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        self._track(info)
        return obs, reward, terminated, truncated, self._record(info)

    def _track(self, info: dict) -> None:
        target = self.cfg.get("at_subgoal")
        if target is None or self._entered_at is not None:
            return
        index = info["subgoal_index"]
        hit = index == target if isinstance(target, int) else info["subgoal"].split()[0] == str(target)
        if hit:
            self._entered_at = self._t

    def _check_target(self, info: dict) -> None:
        """A sub-goal the task does not have would leave every episode unperturbed without a word."""
        target, subgoals = self.cfg.get("at_subgoal"), list(info["subgoals"])
        if target is None or self.cfg.get("at_step") is not None:  # at_step, when set, decides alone
            return
        if isinstance(target, int):
            ok = 0 <= target < len(subgoals)
        else:
            ok = any(s.split()[0] == str(target) for s in subgoals)
        if not ok:
            raise EmbodiedError(
                f"env.perturbation.at_subgoal={target!r}: the task '{self.env.unwrapped.task}' has no such "
                f"sub-goal; its sub-goals are {subgoals} "
                "(give an index or a sub-goal's first word, or env.perturbation=null)"
            )

    def _due(self) -> bool:
        if self.cfg.get("at_step") is not None:
            return self._t >= int(self.cfg["at_step"])
        return self._entered_at is not None and self._t >= self._entered_at + int(self.cfg.get("delay", 0))

    def _record(self, info: dict) -> dict:
        active = self._fired_at is not None and self._t <= self._fired_at + self.duration
        info["perturbation"] = {
            "kind": self.kind,
            "applied": self._fired_at is not None,
            "step": -1 if self._fired_at is None else self._fired_at,
            "active": bool(active),
        }
        return info
