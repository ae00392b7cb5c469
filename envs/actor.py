"""What acts in an episode: the contract between the episode runner (envs/runner.py) and the scripted experts,
a learned policy's per-episode actor, and the agent loop (planner + policy), which all implement it.

The runner calls, per episode: `reset()`, `seed(seed)`, then `act(obs, subgoal, info)` at every step, and at the
end `episode_summary()` (merged into the episode's record); `annotate(frame)` draws on each video frame.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Actor(ABC):
    def reset(self) -> None:
        """A new episode starts: forget what the last one left (action queues, a script's phase)."""

    def seed(self, episode_seed: int) -> None:
        """Draw this episode's own randomness (a noisy expert's) from its seed, so that an episode depends on its
        seed alone, not on which worker ran it or what that worker ran before. Called after `reset`."""

    @abstractmethod
    def act(self, obs: dict, subgoal: str | None = None, info: dict | None = None) -> np.ndarray:
        """The action for this step. `subgoal`: what the simulator (or the planner) says is to be done now;
        `info`: the env's step info (the scene's object names, the simulator's sub-goals), for those that read it."""

    def episode_summary(self) -> dict:
        """What to add to the episode's record when it ends (the agent's plans and decisions)."""
        return {}

    def annotate(self, frame: np.ndarray) -> np.ndarray:
        """The video frame with what this actor wants shown on it (the agent's current sub-goal)."""
        return frame
